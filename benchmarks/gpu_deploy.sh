#!/usr/bin/env bash
# benchmarks/gpu_deploy.py on the device machine, in one call (see its docstring): joins onnxruntime-gpu's
# wheel from the parts carried earlier (.whl/onnxruntime_gpu-*.whl.part-*), installs the carried wheels and
# zoo with its torchvision plugin into /tmp/site, exports on the CPU cores, then measures on the GPU.
# Arguments go to gpu_deploy.py (e.g. --models resnet50 --batches 1,32). Results land in $OUT.
set -euo pipefail
export PYTHONUNBUFFERED=1
for first in .whl/*.whl.part-aa; do
  [ -e "$first" ] && cat "${first%.part-aa}".part-* > "${first%.part-aa}"
done
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --target /tmp/site . \
  plugins/zoo-torchvision
export PYTHONPATH=/tmp/site
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c "import onnxruntime as o; print('onnxruntime', o.__version__, o.get_available_providers())"
python3 benchmarks/gpu_deploy.py --prepare --work /tmp/exports "$@"
python3 benchmarks/gpu_deploy.py --work /tmp/exports --out "${OUT:-benchmarks/results}" "$@" 2>&1 | tee "${OUT:-/tmp}/gpu_deploy.log"

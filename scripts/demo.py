"""The main job: the zoo end to end on the shipped digits model.

Catalog summary, the digits model's record, then build it with its weights and
measure it on the held-out split it ships with (exits non-zero if the measured
accuracy differs from the recorded one), then export it to ONNX, verified against
PyTorch, and run the export on the held-out split in a process where torch cannot
be imported (exits non-zero if fewer than 99.5% of its predictions match
PyTorch's), ready for netron. Last, the registry as a service: `zoo serve` is started,
the worked fine-tuning example (``zoo finetune`` of the digits model to odd or even)
runs against it and publishes its best weights with their metrics and run record as
``examples/digits-parity``, which are fetched back, exported and the export published,
all by client processes (``ZOO_REGISTRY_URL=http://...``), and a process without torch
or SQLAlchemy predicts with the export found by name (exits non-zero if fewer than 99.5%
of its predictions match PyTorch's); then the service is stopped.
"""

from __future__ import annotations

import collections
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import zoo

EXPORT_PATH = "digits.onnx"  # in the working directory, like registry.db
PARITY_RUN, PARITY_EXPORT = "finetune-digits-parity", "digits-parity.onnx"
PUBLISHED = "examples/digits-parity"
ROOT = Path(__file__).resolve().parent.parent
WITHOUT = str(Path(__file__).with_name("without.py"))
#: The zoo command (its console script, run by this Python): a child never imports from the working directory.
ZOO = [str(Path(sys.executable).with_name("zoo"))]
#: Run in a child process: the deployment runtime, with torch, torchvision, onnx and SQLAlchemy unimportable.
TORCH_FREE_PREDICTION = """
import json
import sys

from zoo.runtime import Predictor
from zoo_digits.data import load_heldout

images, _ = load_heldout()
predictor = Predictor(sys.argv[1])
top1 = [r.indices[0] for r in predictor.predict(list(images), topk=1)]
print(json.dumps({"providers": predictor.providers, "top1": top1}))
"""
#: In a client process: the published version as the service describes it; its weights built (fetched from the
#: service) and run on the held-out split.
CLIENT_BUILD = """
import json, sys
import torch, zoo
from zoo_digits.data import load_heldout

published = zoo.resolve_published(sys.argv[1])
model = zoo.get_model("digits_cnn", weights=published.spec).eval()
images, _ = load_heldout()
transforms = zoo.get_weight("digits_cnn.DEFAULT").transforms()
with torch.inference_mode():
    top1 = model(transforms(torch.from_numpy(images).unsqueeze(1))).argmax(1).tolist()
print(json.dumps({"spec": published.spec, "sha256": published.sha256, "size": published.size,
                  "metrics": published.metrics, "from": published.from_weights,
                  "run_epochs": len(published.run["epochs"]), "top1": top1}))
"""
#: On a deployment host (no torch, no SQLAlchemy): the published export, found by model and weights.
DEPLOYED_PREDICTION = """
import json, sys
from zoo.runtime import Predictor
from zoo_digits.data import load_heldout

images, _ = load_heldout()
predictor = Predictor.from_registry("digits_cnn", sys.argv[1])
top1 = [r.indices[0] for r in predictor.predict(list(images), topk=1)]
print(json.dumps({"file": predictor.path.name, "top1": top1}))
"""


def main() -> int:
    print("== catalog")
    plugins = zoo.list_plugins()
    for p in plugins:
        error = f"  ({p['error']})" if p["error"] else ""
        print(f"  plugin {p['name']:<12} {p['distribution']} {p['version']}: {p['status']}, {p['models']} models{error}")
    tasks = collections.Counter(model["task"] for model in zoo.summarize_models())
    print(f"  {sum(tasks.values())} models: " + ", ".join(f"{n} {t}" for t, n in tasks.most_common()))
    small = zoo.list_models(task="classification", max_params=10_000_000, min_metric={"ImageNet-1K:acc@1": 75})
    print(f"  classification, under 10M parameters, ImageNet-1K acc@1 >= 75: {', '.join(small)}")

    print("\n== digits_cnn")
    record = zoo.describe("digits_cnn")
    weights_record = next(w for w in record["weights"] if w["is_default"])
    recorded = weights_record["meta"]["_metrics"]["sklearn-digits-heldout"]["acc@1"]
    print(f"  {record['num_params']:,} parameters; weights {weights_record['name']}")
    print(f"  file {weights_record['file_size']:,} bytes, sha256 {weights_record['sha256']}")
    print(f"  recorded held-out acc@1: {recorded}%")

    from zoo_digits.model import evaluate

    start = time.perf_counter()
    weights = zoo.get_weight("digits_cnn.DEFAULT")
    model = zoo.get_model("digits_cnn", weights=weights)
    accuracy = evaluate(model, weights)
    print(f"  built with weights (sha256 verified) and evaluated in {time.perf_counter() - start:.2f} s")
    print(f"  measured held-out acc@1: {accuracy * 100:.3f}%")
    if round(accuracy * 100, 3) != recorded:
        print(f"demo: measured accuracy differs from the recorded {recorded}%", file=sys.stderr)
        return 1
    print("  reproduces the recorded accuracy")

    print("\n== export to ONNX")
    result = zoo.export_onnx("digits_cnn", EXPORT_PATH, weights=weights)
    shaped = result.intermediate_tensors - len(result.tensors_without_shape)
    print(f"  {'reused' if result.reused else 'wrote'} {result.path}: {result.exporter} exporter, opset {result.opset}, "
          f"dynamic axes {result.dynamic_axes}")
    print(f"  shape inference: {shaped}/{result.intermediate_tensors} intermediate tensors shaped; checker passed")
    for check in result.verification:
        print(f"  onnxruntime vs PyTorch at {'x'.join(map(str, check.input_shape))}: "
              f"max abs error {check.max_abs_error:.2e} ({'ok' if check.passed else 'FAIL'})")

    print("\n== torch-free prediction (numpy, Pillow, onnxruntime; torch cannot be imported)")
    import torch
    from zoo_digits.data import load_heldout

    images, labels = load_heldout()
    with torch.inference_mode():
        torch_top1 = model.eval()(weights.transforms()(torch.from_numpy(images).unsqueeze(1))).argmax(1).tolist()
    without = [sys.executable, WITHOUT, "torch,torchvision,onnx,sqlalchemy"]
    child = subprocess.run([*without, "-c", TORCH_FREE_PREDICTION, EXPORT_PATH], capture_output=True, text=True,
                           check=True)
    answer = json.loads(child.stdout)
    same = sum(a == b for a, b in zip(answer["top1"], torch_top1))
    correct = sum(a == int(y) for a, y in zip(answer["top1"], labels))
    print(f"  providers: {', '.join(answer['providers'])}")
    print(f"  held-out acc@1: {correct / len(labels) * 100:.3f}% ({correct}/{len(labels)}), "
          f"PyTorch {accuracy * 100:.3f}%")
    print(f"  identical predictions on {same}/{len(labels)} images ({same / len(labels):.1%})")
    if same < 0.995 * len(labels):
        print("demo: the torch-free predictions differ from PyTorch's on more than 0.5% of images", file=sys.stderr)
        return 1
    print(f"  same from the command line: .venv/bin/zoo predict {EXPORT_PATH} IMAGE...")
    print(f"\n  view the graph: .venv/bin/zoo view {EXPORT_PATH}")
    return registry_service()


def registry_service() -> int:
    """Publish, fetch, export and deploy the fine-tuned parity weights through a real `zoo serve`."""
    print("\n== the registry as a service (zoo serve; every step below is a client process)")
    from zoo.catalog.tokens import DEFAULT_SCOPES
    from zoo.context import current
    from zoo.testing import serving

    token = current().catalog.create_token(f"demo-{os.getpid()}", DEFAULT_SCOPES)
    with serving(log="zoo-serve.log") as service:  # `zoo serve` on a free loopback port, once it answers
        url = service.url
        client = {**os.environ, "ZOO_REGISTRY_URL": url, "ZOO_TOKEN": token}
        tuned = _run([str(ROOT / "examples" / "finetune_digits.py"), "--output", PARITY_RUN, "--publish", PUBLISHED,
                      "--force"], env=client)
        accuracy = re.search(r"held-out parity accuracy: (.*)", tuned)[1]
        print(f"  fine-tuned odd/even and published it with its metrics and run record (examples/finetune_digits.py "
              f"--publish {PUBLISHED}: zoo finetune of digits_cnn): held-out acc@1 {accuracy}")
        built = json.loads(_run(["-c", CLIENT_BUILD, PUBLISHED], env=client))
        metrics = ", ".join(f"{k} {v:.2f}" for k, v in built["metrics"].items() if k.endswith("acc@1"))
        print(f"  {url} has {built['spec']}: {metrics}, fine-tuned from {built['from']}, a run record of "
              f"{built['run_epochs']} epochs (sha256 {built['sha256'][:16]}, {built['size']:,} bytes)")
        print("  a client fetched and built it (verified by SHA-256) and predicted the held-out split")
        _run([*ZOO, "export", "digits_cnn", "--weights", PUBLISHED, "-o", PARITY_EXPORT, "--force"],
             env=client)
        export = json.loads(_run([*ZOO, "publish", "export", PARITY_EXPORT, "--json"], env=client))
        print(f"  exported it (verified against PyTorch) and published the export (sha256 {export['sha256'][:16]})")
        deployed = json.loads(_run([WITHOUT, "torch,torchvision,onnx,sqlalchemy", "-c", DEPLOYED_PREDICTION,
                                    PUBLISHED], env=client))
    print("  service stopped")
    same = sum(a == b for a, b in zip(deployed["top1"], built["top1"]))
    print(f"  without torch or SQLAlchemy, Predictor.from_registry('digits_cnn', '{PUBLISHED}') fetched the export "
          f"{deployed['file'][:16]}...: identical predictions on {same}/{len(built['top1'])} images")
    if same < 0.995 * len(built["top1"]):
        print("demo: the deployed export's predictions differ from PyTorch's on more than 0.5% of images",
              file=sys.stderr)
        return 1
    print(f"  same from the command line: ZOO_REGISTRY_URL=http://HOST:PORT .venv/bin/zoo predict --model digits_cnn "
          f"--weights {PUBLISHED} IMAGE...")
    return 0


def _run(args: list[str], *, env: dict[str, str] | None = None) -> str:
    """``python ARGS`` in a child process; its stdout (the demo stops, with the child's errors, if it fails)."""
    done = subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"demo: python {' '.join(args[:5])} ... failed:\n{done.stderr}")
    return done.stdout


if __name__ == "__main__":
    sys.exit(main())

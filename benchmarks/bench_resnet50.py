"""ResNet-50 (random weights) at batch 1 on this machine's CPU: eager PyTorch, ONNX Runtime float and int8.

Runs `zoo.tools.bench.bench` once (all engines in one process, same threads, interleaved
rounds), prints the table and checks the targets of the issue: ONNX Runtime float at
least 1.5x and int8 at least 2.5x faster than eager PyTorch at p50, in the same run.
Writes ``benchmarks/results/resnet50_cpu.json`` (the result, the targets, the
machine's load) and ``.txt`` (the table). ``--compare-quantization`` also times the
int8 variants (QDQ and QOperator, per-channel or per-tensor weights, 7-bit
``reduce_range``) against the float model, interleaved, and adds them to the JSON.

    .venv/bin/python benchmarks/bench_resnet50.py [--iterations 50] [--compare-quantization]

The catalog is a temporary one unless ``ZOO_REGISTRY_URL`` is set.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
TARGETS = {"onnxruntime": 1.5, "int8": 2.5}
#: label -> quantize_int8 options
VARIANTS = {
    "int8 QDQ per-channel": {"quant_format": "qdq", "per_channel": True},
    "int8 QDQ per-tensor": {"quant_format": "qdq", "per_channel": False},
    "int8 QDQ per-channel reduce_range": {"quant_format": "qdq", "per_channel": True, "reduce_range": True},
    "int8 QOperator per-channel": {"quant_format": "qoperator", "per_channel": True},
}


def targets(result: Any) -> dict[str, dict[str, Any]]:
    """Each target engine's speedup over eager at p50, and whether it reaches its target."""
    speedups = {r.engine: r.speedup for r in result.rows if r.batch == 1}
    return {engine: {"target": f">= {target}x", "speedup": speedups.get(engine),
                     "met": speedups.get(engine) is not None and speedups[engine] >= target}
            for engine, target in TARGETS.items()}


def compare_quantization(work: Path, iterations: int, warmup: int, threads: int | None) -> list[dict[str, Any]]:
    """Every variant of `VARIANTS` timed against the float model in one interleaved run."""
    from zoo.tools.bench import compare_onnx, sample_photographs
    from zoo.export import export_onnx
    from zoo.tools.quantize import quantize_int8

    float_path = export_onnx("resnet50", work / "resnet50.onnx").path
    images, _ = sample_photographs()
    models = {"float": float_path}
    for label, options in VARIANTS.items():
        models[label] = quantize_int8(float_path, work / f"{label.replace(' ', '_')}.onnx", images, **options).path
    rows = compare_onnx(models, providers="CPUExecutionProvider", warmup=warmup, iterations=iterations,
                        threads=threads)
    float_p50 = rows[0].p50_ms
    return [{"variant": r.engine, "p50_ms": round(r.p50_ms, 2), "p90_ms": round(r.p90_ms, 2),
             "vs_float": round(float_p50 / r.p50_ms, 2), "size_mb": round(models[r.engine].stat().st_size / 1e6, 1)}
            for r in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="default: the cores this process may use")
    parser.add_argument("--compare-quantization", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as work:
        os.environ.setdefault("ZOO_REGISTRY_URL", f"sqlite:///{Path(work) / 'registry.db'}")
        from zoo.tools.bench import bench

        load_before = os.getloadavg()
        result = bench("resnet50", batches=(1,), providers="CPUExecutionProvider", warmup=args.warmup,
                       iterations=args.iterations, threads=args.threads)
        load_after = os.getloadavg()
        data = {**result.to_json(), "targets": targets(result),
                "load_average_1_5_15": {"before": load_before, "after": load_after}}
        print(result.table())
        for engine, t in data["targets"].items():
            shown = "n/a" if t["speedup"] is None else f"{t['speedup']:.2f}x"
            print(f"target {engine} {t['target']}: {shown} -> {'met' if t['met'] else 'NOT met'}")
        if args.compare_quantization:
            data["quantization_variants"] = compare_quantization(Path(work), args.iterations, args.warmup,
                                                                 args.threads)
            for v in data["quantization_variants"]:
                print(f"{v['variant']:<36} p50 {v['p50_ms']:8.2f} ms  p90 {v['p90_ms']:8.2f} ms  "
                      f"{v['vs_float']:.2f}x float  {v['size_mb']} MB")

    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "resnet50_cpu.json").write_text(json.dumps(data, indent=2) + "\n")
    (RESULTS / "resnet50_cpu.txt").write_text(result.table() + "\n")
    print(f"wrote {RESULTS / 'resnet50_cpu.json'}", file=sys.stderr)


if __name__ == "__main__":
    main()

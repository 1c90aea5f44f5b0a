"""Deployment on one GPU: ONNX Runtime against eager PyTorch and torch.compile, fp32 and fp16 (issue 28).

For ResNet-50, ConvNeXt-Tiny, ViT-B/16 (batch 1, 8, 32, 128) and a detector,
fasterrcnn_mobilenet_v3_large_320_fpn (one image per call: batch 1), it runs
`zoo.tools.bench.bench` on ``device="cuda"``: eager PyTorch (fp16 under autocast),
``torch.compile`` (mode max-autotune), ONNX Runtime plain, through IO binding and in a
CUDA graph (fp16: the export converted at load by `zoo.runtime.float16_model`), all in
one process, warmed up and timed in interleaved rounds: images/s, p50/p99 latency and
GPU memory per row. It also checks, per model and precision, that ONNX Runtime's
outputs on the GPU are within the task's tolerance of eager PyTorch's (fp32:
`tolerance`; fp16: `float16_tolerance`, both against eager fp32), and writes
``gpu_deploy.md`` (the tables, the card named, and whether ONNX Runtime's best
configuration is at least as fast as eager at every batch and precision, with its ratio
to torch.compile) and ``gpu_deploy.json``.

Steps (weights are random, seeded: the exports are what the timings need, and the
machine reaches no network):

    python benchmarks/gpu_deploy.py --prepare --work .gpu   # exports (fp32 ONNX) on the CPU
    python benchmarks/gpu_deploy.py --work .gpu --out DIR   # measures on the GPU
    python benchmarks/gpu_deploy.py --dry-run --out DIR     # CPU, tiny sizes (digits_cnn): checks the script

``--prepare`` needs no GPU; measuring refuses to start without one (one line), so no
CPU figures pass for GPU ones. ``--models``, ``--batches``, ``--precisions`` narrow a
run (to split it over calls).

With the device tool (/work/.library/device/README.md): the exports (ResNet-50 100 MB,
ViT-B/16 330 MB) are larger than the 64 MiB a call carries, so ``--prepare`` runs there
too, on its CPU cores, at the start of the same call, before any GPU timing. That
machine's Python (3.12, torch 2.11 with CUDA, onnx, onnxscript, onnxruntime without
CUDA) lacks zoo's SQLAlchemy, alembic, Mako and tenacity, and onnxruntime-gpu: fetch
cp312 wheels here once (the README's ``pip download --no-deps --only-binary=:all:
--python-version 3.12 ... -d .whl NAME==VERSION`` line, into a folder that
``.git/info/exclude`` ignores). onnxruntime-gpu's wheel is above 64 MiB: split it
(``split -b 60M``) and carry one part per call while the machine stays warm (a path
carried once stays there between calls), then run ``benchmarks/gpu_deploy.sh`` with
``.whl`` carried: it joins the parts, installs everything into /tmp/site, makes the
exports and measures, writing into $OUT. Give the call a timeout that leaves time for
a rerun (torch.compile's max-autotune takes minutes per model; ``--models`` splits).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

#: model -> batch sizes (a detector takes one image per call)
MODELS = {"resnet50": (1, 8, 32, 128), "convnext_tiny": (1, 8, 32, 128), "vit_b_16": (1, 8, 32, 128),
          "fasterrcnn_mobilenet_v3_large_320_fpn": (1,)}
PRECISIONS = ("fp32", "fp16")
ORT_ENGINES = ("onnxruntime", "iobinding", "cudagraph")
#: --dry-run: tiny sizes on the CPU, so that the script itself is checked without a GPU
DRY_RUN = {"digits_cnn": (1, 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prepare", action="store_true", help="only export the models (CPU), into --work")
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU: checks the script, no GPU")
    parser.add_argument("--work", type=Path, default=Path(".gpu"), help="where the exports are (default .gpu)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"), help="where the results go")
    parser.add_argument("--models", help="comma-separated subset of " + ", ".join(MODELS))
    parser.add_argument("--batches", help="comma-separated batch sizes (default 1,8,32,128; detectors 1)")
    parser.add_argument("--precisions", default="fp32,fp16", help="fp32,fp16 (default)")
    parser.add_argument("--iterations", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=10)
    args = parser.parse_args(argv)
    models = DRY_RUN if args.dry_run else MODELS
    if args.models:
        models = {m: models[m] for m in args.models.split(",")}
    if args.batches:
        chosen = tuple(int(b) for b in args.batches.split(","))
        models = {m: tuple(b for b in chosen if b in batches) or batches[:1] for m, batches in models.items()}
    with tempfile.TemporaryDirectory() as scratch:
        os.environ.setdefault("ZOO_REGISTRY_URL", f"sqlite:///{scratch}/registry.db")  # read before zoo imports
        work = Path(scratch) / "exports" if args.dry_run else args.work
        if args.prepare or args.dry_run:
            prepare(models, work)
        if args.prepare:
            return 0
        if args.dry_run:
            results = measure(models, work, args.precisions.split(","), device="cpu", iterations=2, warmup=1)
        else:
            from zoo.runtime import cuda_device_count

            if not cuda_device_count():
                print("gpu_deploy: no GPU here (the CUDA driver reports none); --prepare and --dry-run run on the CPU",
                      file=sys.stderr)
                return 2
            results = measure(models, work, args.precisions.split(","), device="cuda", iterations=args.iterations,
                              warmup=args.warmup)
    args.out.mkdir(parents=True, exist_ok=True)
    name = "gpu_deploy_dry_run" if args.dry_run else "gpu_deploy"
    (args.out / f"{name}.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    (args.out / f"{name}.md").write_text(markdown(results))
    print(markdown(results))
    return 0


def prepare(models: dict[str, tuple[int, ...]], work: Path) -> None:
    """Each model exported (fp32, random weights seeded, a dynamic batch where the task has one) into `work`."""
    from zoo.export import export_onnx

    work.mkdir(parents=True, exist_ok=True)
    for model in models:
        target = work / f"{model}.onnx"
        if not target.is_file():
            export_onnx(model, target, record=False)
            print(f"exported {model} to {target}", flush=True)


def measure(models: dict[str, tuple[int, ...]], work: Path, precisions: list[str], *, device: str, iterations: int,
            warmup: int) -> dict[str, Any]:
    """`bench` of each model on `device`, and ONNX Runtime's outputs checked against eager's."""
    from zoo.tools.bench import bench

    out: dict[str, Any] = {"device": device, "models": {}}
    for model, batches in models.items():
        path = work / f"{model}.onnx"
        result = bench(path, batches=batches, precisions=precisions, device=device, int8=False,
                       compile=device == "cuda", iterations=iterations, warmup=warmup)
        out["machine"] = result.machine
        out["models"][model] = {"rows": [r.__dict__ for r in result.rows], "notes": result.notes,
                                "agreement": {p: agreement(path, p, device) for p in precisions}}
        print(result.table(), flush=True)
    return out


def agreement(path: Path, precision: str, device: str) -> dict[str, Any]:
    """ONNX Runtime (the export; fp16: converted at load) against eager PyTorch fp32 on one input, by the task's
    comparison at the precision's tolerance."""
    import numpy as np
    import torch

    from zoo.errors import ZooError, first_line
    from zoo.export import read_metadata
    from zoo.export.plan import make_plan
    from zoo.runtime import Predictor

    meta = read_metadata(path)
    shape = tuple(meta["inputs"][0]["export_shape"])
    plan = make_plan(meta["model"], weights=meta.get("weights"), input_shape=shape, dynamic_batch=None,
                     dynamic_image_size=None, opset=None, rtol=None, atol=None, builder_kwargs=None)
    task, module = plan.adapter, plan.module.to(device)  # as the export built it: the same seeded weights
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    with torch.inference_mode():
        expected = module(torch.from_numpy(x).to(device))
    expected = [t.float().cpu().numpy() for t in (expected.values() if isinstance(expected, dict) else expected
                                                   if isinstance(expected, (tuple, list)) else [expected])]
    try:
        predictor = Predictor(path, providers=device, fp16=precision == "fp16")
    except ZooError as exc:  # bench noted it too
        return {"passed": None, "why": first_line(exc)}
    got = predictor.run(x)
    rtol, atol = task.float16_tolerance if precision == "fp16" else task.tolerance
    checks = task.compare(predictor.output_names, expected, [got[n] for n in predictor.output_names], shape, rtol, atol)
    return {"passed": all(c.passed for c in checks), "rtol": rtol, "atol": atol,
            "max_abs_error": max(c.max_abs_error for c in checks), "providers": predictor.providers}


def markdown(results: dict[str, Any]) -> str:
    """The tables: per model, precision and batch, images/s of each engine, ONNX Runtime's best over eager and over
    torch.compile, p50/p99 of that best, GPU memory."""
    machine = results.get("machine", {})
    lines = [f"# Deployment on {machine.get('gpu', results['device'])}", "",
             f"CPU {machine.get('cpu')}; torch {machine.get('torch')}, onnxruntime {machine.get('onnxruntime')}. "
             "Images/s, host to host; 'best ORT' is the fastest of ONNX Runtime plain, IO binding and CUDA graph.", ""]
    verdicts = []
    for model, data in results["models"].items():
        lines += [f"## {model}", "",
                  "| precision | batch | eager | compile | ORT | ORT IO binding | ORT CUDA graph | best ORT / eager "
                  "| best ORT / compile | best p50 / p99 ms | GPU MB (eager / best ORT) | within tolerance |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        rows = data["rows"]
        for precision, batch in dict.fromkeys((r["precision"], r["batch"]) for r in rows):
            at = {r["engine"]: r for r in rows if (r["precision"], r["batch"]) == (precision, batch)}
            ort = [at[e] for e in ORT_ENGINES if e in at]
            if not ort:
                lines.append(f"| {precision} | {batch} | {_rate(at.get('eager'))} | {_rate(at.get('compile'))} | "
                             "- | - | - | no ONNX Runtime row (see the notes) | - | - | - | - |")
                continue
            best = max(ort, key=lambda r: r["throughput"])
            eager, compiled = at.get("eager"), at.get("compile")
            vs_eager = best["throughput"] / eager["throughput"] if eager else None
            vs_compile = best["throughput"] / compiled["throughput"] if compiled else None
            verdicts.append((model, precision, batch, vs_eager))
            agree = data["agreement"][precision]
            lines.append("| " + " | ".join([
                precision, str(batch), *(_rate(at.get(e)) for e in ("eager", "compile", *ORT_ENGINES)),
                _ratio(vs_eager), _ratio(vs_compile), f"{best['p50_ms']:.2f} / {best['p99_ms']:.2f}",
                f"{_mb(eager)} / {_mb(best)}",
                "-" if agree["passed"] is None else
                f"{'yes' if agree['passed'] else 'NO'} ({agree['max_abs_error']:.2g})"]) + " |")
        lines += [""] + [f"- note: {n}" for n in data["notes"]] + [""]
    slower = [v for v in verdicts if v[3] is not None and v[3] < 1]
    lines.append("ONNX Runtime's best is at least as fast as eager everywhere." if not slower else
                 "ONNX Runtime's best is slower than eager at: "
                 + ", ".join(f"{m} {p} batch {b} ({r:.2f}x)" for m, p, b, r in slower) + ".")
    return "\n".join(lines) + "\n"


def _rate(row: dict[str, Any] | None) -> str:
    return "-" if row is None else f"{row['throughput']:.0f}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _mb(row: dict[str, Any] | None) -> str:
    return "-" if row is None or row.get("gpu_memory_mb") is None else f"{row['gpu_memory_mb']:.0f}"


if __name__ == "__main__":
    sys.exit(main())

"""timm sweep: one model of every timm family built, run, re-headed and exported through the zoo.

For each model (by default the smallest architecture of each timm module, by the
parameter counts zoo-timm ships; ``test_*`` models left out) a child process checks,
with random weights and no network: `zoo.get_model` builds it; a forward pass on one
image of the model's declared input size gives a finite output of one row;
``num_classes=7`` gives 7 logits; `zoo.export_onnx` writes it and verifies it against
PyTorch. Rows go to ``benchmarks/results/timm_sweep.jsonl`` and the table to
``benchmarks/results/timm_sweep.md``.

    .venv/bin/python benchmarks/timm_sweep.py [NAME...] [--timeout S] [--jobs N]

The catalog is the one ``$ZOO_REGISTRY_URL`` names, with the timm plugin loaded.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import math
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from zoo_timm import family

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_TIMEOUT_S = 900
COLUMNS = ("family", "model", "built", "forward", "num_classes_7", "exported", "verified", "max_abs_error", "seconds")
#: The head the sweep asks for, a width no pretrained config has.
NEW_CLASSES = 7


def family_sample() -> list[str]:
    """The smallest architecture of each timm module (``test_*`` models aside: they exist for timm's CI),
    by qualified name (``timm/vgg11``: torchvision's plugin may answer the bare one)."""
    import timm
    from zoo_timm.params import load_counts

    counts = load_counts(timm.__version__)
    sample = []
    for module in timm.list_modules():
        archs = [a for a in timm.list_models(module=module) if not a.startswith("test_")]
        if archs:
            sample.append(f"timm/{min(archs, key=lambda a: (counts.get(a, math.inf), a))}")
    return sorted(sample)


def check_model(name: str, work: Path) -> dict[str, Any]:
    """Build, run, re-head and export `name` (random weights); one row of the table, failures included."""
    import torch

    import zoo
    from zoo.errors import first_line

    record = zoo.describe(name)
    row: dict[str, Any] = {"family": record["tags"][0], "model": name, "built": False, "forward": False,
                           "num_classes_7": False, "exported": False, "verified": False, "max_abs_error": None}
    start = time.perf_counter()
    try:
        torch.manual_seed(0)
        image = torch.rand(1, *record["input_size"])
        with torch.no_grad():
            model = zoo.get_model(name).eval()
            row["built"] = True
            out = model(image)
            row["forward"] = out.shape[0] == 1 and bool(torch.isfinite(out).all())
            row["num_classes_7"] = tuple(zoo.get_model(name, num_classes=NEW_CLASSES).eval()(image).shape) == (
                1, NEW_CLASSES)
        result = zoo.export_onnx(name, work / f"{name.replace('/', '__')}.onnx", record=False)
        row["exported"] = True
        row["verified"] = bool(result.verification) and all(c.passed for c in result.verification)
        row["max_abs_error"] = max(c.max_abs_error for c in result.verification)
        result.path.unlink()
    except Exception as exc:  # noqa: BLE001 - one model's failure is its row
        row["error"] = f"{type(exc).__name__}: {first_line(exc)}"[:300]
    row["seconds"] = round(time.perf_counter() - start, 1)
    return row


def run_child(name: str, timeout: float) -> dict[str, Any]:
    """`check_model` in a child process (each model's memory returned, a hang cut at `timeout`)."""
    try:
        done = subprocess.run([sys.executable, __file__, "--one", name], capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"family": family(name.rpartition("/")[2]), "model": name,
                "error": f"timed out after {timeout:.0f} s", "seconds": timeout}
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"family": family(name.rpartition("/")[2]), "model": name,
                "error": f"child exited {done.returncode}: {tail}"[:300]}
    return json.loads(lines[-1])


def render(rows: Sequence[dict[str, Any]]) -> str:
    """The markdown table: a summary line, then one row per model."""
    passed = sum(all(r.get(c) for c in COLUMNS[2:7]) for r in rows)
    lines = ["# timm sweep: one model per family, random weights\n",
             f"{passed} of {len(rows)} models pass every step.\n",
             "| " + " | ".join(COLUMNS) + " | error |", "|" + "---|" * (len(COLUMNS) + 1)]
    for r in rows:
        cells = [_cell(r.get(c)) for c in COLUMNS] + [_cell(r.get("error", "")).replace("|", "/")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.2g}"
    return "" if value is None else str(value)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", help="timm model names (default: one per family)")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # the child: check one model, print its row
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds per model")
    parser.add_argument("--jobs", type=int, default=1, help="models checked at a time")
    parser.add_argument("--results", type=Path, default=RESULTS / "timm_sweep.jsonl")
    parser.add_argument("--table", type=Path, default=RESULTS / "timm_sweep.md")
    args = parser.parse_args(argv)
    if args.one:
        with tempfile.TemporaryDirectory() as work:
            print(json.dumps(check_model(args.one, Path(work))))
        return 0
    names = args.models or family_sample()
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(lambda n: run_child(n, args.timeout), names))
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text("".join(json.dumps(r) + "\n" for r in rows))
    args.table.write_text(render(rows))
    failed = [r["model"] for r in rows if not all(r.get(c) for c in COLUMNS[2:7])]
    print(f"{len(rows) - len(failed)} of {len(rows)} pass; table: {args.table}" +
          (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

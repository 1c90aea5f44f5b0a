"""Export coverage: every catalog model exported to ONNX with random weights, one child process each.

For each selected model a fresh child process runs `zoo.export_onnx` (so the memory
of one model is returned before the next), re-runs the full ONNX checker on the
written file, measures it and deletes it; the parent records the child's wall time
and peak RSS (``wait4``) and appends one JSON row per model to
``benchmarks/results/export_coverage.jsonl``. ``--render`` turns the latest row of
each model into ``benchmarks/results/export_coverage.md``: a summary per task and
the full table (exported, checker, shape inference complete, verified, exporter,
seconds, file size).

The script has no task branches: what differs between tasks (wrapping, default
shapes, verification) is the task adapter's (`zoo.export.tasks`), inside `zoo.export_onnx`.
A model is changed only through its own builder arguments, as torchvision's tests
do: a model whose class takes ``min_size``/``max_size`` (the detection models) is built
for 320-pixel images (SSD models resize to their own fixed size), and one that takes a
score threshold gets 0, because with random weights no score reaches the default cut
and verification would compare empty outputs. A model whose weights take clips
(layout ``CTHW``) gets a clip of 16 frames (or its ``min_temporal_size``) at its crop size.

    .venv/bin/python benchmarks/export_coverage.py [PATTERN...] [--task T]... [--chunk I/N] [--resume]
    .venv/bin/python benchmarks/export_coverage.py --render

Chunks (``--chunk 2/4``: the second quarter of the sorted selection) and ``--resume``
(skip models that already have a row) split the sweep into runs that each fit the
machine; the children run at ``--nice`` (default 10) and ``--jobs`` at a time.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import datetime
import fnmatch
import importlib.metadata
import inspect
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import typing
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_ROWS = RESULTS / "export_coverage.jsonl"
DEFAULT_TABLE = RESULTS / "export_coverage.md"
DEFAULT_TIMEOUT_S = 1500
#: Given to each builder that takes them (through its model class; torchvision's detection
#: models do): 320-pixel images, as torchvision's own tests shrink detection models (the
#: export stays dynamic in H, W), and no score cut (R-CNNs: box_score_thresh; RetinaNet,
#: FCOS, SSD: score_thresh), so that random weights still detect up to the per-image limit.
SMALL_BUILDER_KWARGS = {"min_size": 320, "max_size": 320, "box_score_thresh": 0.0, "score_thresh": 0.0}
#: torchvision's video models are trained and evaluated on 16-frame clips.
VIDEO_FRAMES = 16
VERSIONED = ("torch", "torchvision", "onnx", "onnxruntime")
ERROR_PREFIX = "export_coverage: error: "
#: torch.export colours its messages; the table wants plain text
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


# -- choosing models --------------------------------------------------------------------


def select_models(patterns: Sequence[str], tasks: Sequence[str]) -> list[dict[str, Any]]:
    """The catalog summaries of the models matching any pattern (all without one) and any task.

    A pattern that matches no model is a mistake (a typo), not an empty sweep.
    """
    import zoo

    records = zoo.summarize_models(list(patterns) or None)
    names = [r["name"] for r in records]
    unmatched = [p for p in patterns if not fnmatch.filter([n.lower() for n in names], p.lower())]
    if unmatched:
        raise SystemExit(f"{ERROR_PREFIX}no model matches {', '.join(map(repr, unmatched))}; see `zoo list`")
    chosen = [r for r in records if not tasks or r["task"] in tasks]
    if not chosen:
        raise SystemExit(f"{ERROR_PREFIX}no model of task {', '.join(tasks)} matches; see `zoo list --task`")
    return chosen


def parse_chunk(text: str) -> tuple[int, int]:
    """``"I/N"`` as (I, N), 1 <= I <= N."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not I/N, e.g. 2/4") from None
    if not 1 <= index <= count:
        raise argparse.ArgumentTypeError(f"chunk {text!r} needs 1 <= I <= N")
    return index, count


def chunk_of(items: Sequence[Any], index: int, count: int) -> list[Any]:
    """The `index`-th (1-based) of `count` contiguous, near-equal slices of `items`."""
    return list(items[len(items) * (index - 1) // count: len(items) * index // count])


# -- the child: one model -----------------------------------------------------------------


def export_arguments(name: str) -> dict[str, Any]:
    """The export_onnx arguments that fit this model: a clip shape for clips, the `SMALL_BUILDER_KWARGS`
    its builder takes; none for most (the task adapter's defaults)."""
    import zoo

    record = zoo.describe(name)
    entry = next((w for w in record["weights"] if w["is_default"]), None) or {}
    arguments: dict[str, Any] = {}
    if (entry.get("transforms") or {}).get("layout") == "CTHW":
        arguments["input_shape"] = clip_shape(entry)
    accepted = builder_parameters(zoo.get_model_builder(name))
    if accepted & set(SMALL_BUILDER_KWARGS):
        arguments["builder_kwargs"] = {k: v for k, v in SMALL_BUILDER_KWARGS.items() if k in accepted}
    return arguments


def clip_shape(entry: Mapping[str, Any]) -> tuple[int, ...]:
    """(1, 3, T, H, W): 16 frames (or the weights' minimum) at the crop size of the weights `entry`."""
    spec, meta = entry.get("transforms") or {}, entry.get("meta") or {}
    frames = max(VIDEO_FRAMES, meta.get("min_temporal_size") or 0)
    height, width = spec.get("crop_size") or (112, 112)
    return (1, 3, frames, height, width)


def builder_parameters(builder: Any) -> set[str]:
    """Keyword names a builder accepts: its own and, where it forwards ``**kwargs``, its model class's.

    torchvision's detection builders pass ``**kwargs`` on to the class they annotate as
    their return type; SSD's fixes the size itself, so its class takes no ``min_size``.
    """
    parameters = inspect.signature(builder).parameters
    names = {p.name for p in parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD}
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        model_class = typing.get_type_hints(builder).get("return")
        if isinstance(model_class, type):
            names |= set(inspect.signature(model_class).parameters)
    return names


def export_one(name: str, work: Path) -> dict[str, Any]:
    """Export `name` into `work`, check and measure the file, delete it: the row's export fields."""
    from zoo.errors import ZooError, first_line
    from zoo.export import ExportVerificationError, export_onnx

    arguments = export_arguments(name)
    row: dict[str, Any] = {
        "input_shape": list(arguments.get("input_shape", [])) or None,
        "builder_kwargs": arguments.get("builder_kwargs"),
        "exported": False, "checker": None, "shape_inference_complete": None, "verified": False,
    }
    path = work / f"{name}.onnx"
    start = time.perf_counter()
    try:
        result = export_onnx(name, path, weights=None, **arguments)
    except ExportVerificationError as exc:
        # the graph was exported and checked, then differed from PyTorch; no file was left
        fields = verification_fields(exc.checks)
        row.update(exported=True, input_shape=(fields["checked_shapes"] or [None])[0], error=first_line(exc),
                   **fields)
    except ZooError as exc:
        row["error"] = first_line(exc)
    except Exception as exc:  # noqa: BLE001 - a crash of one model is that model's row
        row["error"] = f"{type(exc).__name__}: {first_line(exc)}"
    else:
        row.update(
            exported=True,
            checker=checker_passes(result.path),
            shape_inference_complete=result.shape_inference_complete,
            intermediate_tensors=result.intermediate_tensors,
            tensors_without_shape=len(result.tensors_without_shape),
            input_shape=list(result.input_shape),
            exporter=result.exporter,
            fallback_reason=result.fallback_reason,
            opset=result.opset,
            file_size=result.size,
            **verification_fields(result.verification),
        )
        remove_export(result.path, result.external_data)
    row["seconds"] = round(time.perf_counter() - start, 2)
    return row


def verification_fields(checks: Sequence[Any]) -> dict[str, Any]:
    """Whether every comparison passed, the largest error, and per verification input its shape
    and (detection models) how many detections PyTorch made on it."""
    # one check per output per input, outputs in the same order for every input
    per_input = [c for c in checks if c.name == checks[0].name] if checks else []
    return {
        "verified": bool(checks) and all(c.passed for c in checks),
        "max_abs_error": max((c.max_abs_error for c in checks), default=None),
        "checked_shapes": [list(c.input_shape) for c in per_input],
        "detections": [c.detections for c in per_input] if any(c.detections is not None for c in per_input) else None,
    }


def checker_passes(path: Path) -> bool:
    """The full ONNX checker on the written file, by path (so external data is found)."""
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception:  # noqa: BLE001 - a failure is the answer
        return False
    return True


def remove_export(path: Path, external_data: Path | None) -> None:
    path.unlink(missing_ok=True)
    if external_data is not None:
        external_data.unlink(missing_ok=True)


def run_child(name: str, row_file: Path, work: Path) -> None:
    """The ``--one`` mode: export one model and write its row fields to `row_file`."""
    row = export_one(name, work)
    row_file.write_text(json.dumps(row))


# -- the parent: children, rows, the table -------------------------------------------------------


def versions() -> dict[str, str | None]:
    """Installed versions of the libraries that decide the outcome, read without importing them.

    By import name: onnxruntime may come from the ``onnxruntime-gpu`` distribution.
    """
    distributions = importlib.metadata.packages_distributions()
    return {module: importlib.metadata.version(distributions[module][0]) if module in distributions else None
            for module in VERSIONED}


def run_model(record: Mapping[str, Any], timeout: float, work: Path) -> dict[str, Any]:
    """One model in a child process: its row, including the child's wall time and peak RSS."""
    name = record["name"]
    row_file = work / f"{name}.row.json"
    log_file = work / f"{name}.log"
    start = time.perf_counter()
    with log_file.open("w") as log:
        child = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--one", name, "--row-file", str(row_file),
             "--work", str(work)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        timer = threading.Timer(timeout, _kill_group, (child.pid,))
        timer.start()
        try:
            _, status, usage = os.wait4(child.pid, 0)
        finally:
            timer.cancel()
        child.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    row: dict[str, Any] = {"name": name, "task": record["task"], "params": record["num_params"]}
    if child.returncode == 0 and row_file.is_file():
        row.update(json.loads(row_file.read_text()))
    else:
        row.update(exported=False, checker=None, shape_inference_complete=None, verified=False,
                   error=child_failure(child.returncode, wall, timeout, log_file))
    finished = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    row.update(wall_seconds=round(wall, 1), peak_rss_mb=round(usage.ru_maxrss / 1024, 1),  # Linux: KiB
               versions=versions(), finished=finished)
    for leftover in (row_file, log_file):
        leftover.unlink(missing_ok=True)
    return row


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def child_failure(returncode: int, wall: float, timeout: float, log_file: Path) -> str:
    """One line on why a child left no row: its timeout, its signal, or the last line it printed."""
    if returncode < 0 and wall >= timeout:
        return f"timed out after {timeout:g} s"
    if returncode == -signal.SIGKILL:
        return "child killed by SIGKILL (out of memory?)"
    lines = [line for line in log_file.read_text(errors="replace").splitlines() if line.strip()]
    how = f"signal {signal.Signals(-returncode).name}" if returncode < 0 else f"exit code {returncode}"
    return f"child ended with {how}" + (f": {lines[-1].strip()}" if lines else "")


def append_row(rows_file: Path, row: Mapping[str, Any], lock: threading.Lock) -> None:
    """One JSON line, appended in one write (so concurrent runs on one file do not interleave)."""
    with lock, rows_file.open("a") as out:
        out.write(json.dumps(row) + "\n")


def read_rows(rows_file: Path) -> dict[str, dict[str, Any]]:
    """The latest row of each model (a re-run supersedes the earlier row)."""
    latest: dict[str, dict[str, Any]] = {}
    if rows_file.is_file():
        for line in rows_file.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                latest[row["name"]] = row
    return latest


def progress_line(done: int, total: int, row: Mapping[str, Any]) -> str:
    if row["verified"]:
        outcome = f"verified ({row.get('exporter')}, {row.get('file_size', 0) / 1e6:.1f} MB)"
    else:
        outcome = f"{'exported, ' if row['exported'] else ''}FAILED: {row.get('error')}"
    return (f"[{done}/{total}] {row['name']}: {outcome}; export {row.get('seconds', '-')} s, "
            f"wall {row['wall_seconds']} s, peak RSS {row['peak_rss_mb']:.0f} MB")


def sweep(records: Sequence[Mapping[str, Any]], rows_file: Path, jobs: int, timeout: float) -> None:
    """Run every model in a child, `jobs` at a time, appending each row as it finishes."""
    rows_file.parent.mkdir(parents=True, exist_ok=True)
    lock = threading.Lock()
    with tempfile.TemporaryDirectory(prefix="export_coverage.") as tmp, \
            concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(run_model, record, timeout, Path(tmp)) for record in records]
        for done, future in enumerate(concurrent.futures.as_completed(futures), 1):
            row = future.result()
            append_row(rows_file, row, lock)
            print(progress_line(done, len(records), row), flush=True)


# -- the markdown table -----------------------------------------------------------------------


COLUMNS = ("model", "params", "input", "builder args", "exported", "checker", "shapes (without/all)",
           "verified", "max abs err", "exporter", "s", "MB", "peak RSS MB", "error / fallback")


def render(rows: Mapping[str, Mapping[str, Any]], catalog: Sequence[Mapping[str, Any]]) -> str:
    """The markdown report: versions, a summary line per task, then one table row per model."""
    tasks = sorted({r["task"] for r in catalog} | {r["task"] for r in rows.values()}, key=str)
    lines = ["# ONNX export coverage", "",
             "Every catalog model exported by `zoo.export_onnx` with random weights, one child process each "
             "(`benchmarks/export_coverage.py`). Made from `export_coverage.jsonl`; "
             f"versions: {version_text(rows.values())}.", ""]
    lines += [summary_line(task, [r for r in catalog if r["task"] == task],
                           [row for row in rows.values() if row["task"] == task]) for task in tasks]
    lines += ["", "| task | " + " | ".join(COLUMNS) + " |", "|" + "---|" * (len(COLUMNS) + 1)]
    for row in sorted(rows.values(), key=lambda r: (str(r["task"]), r["name"])):
        lines.append("| " + " | ".join([str(row["task"]), *table_cells(row)]) + " |")
    return "\n".join(lines) + "\n"


def summary_line(task: str, models: Sequence[Mapping[str, Any]], rows: Sequence[Mapping[str, Any]]) -> str:
    def count(key: str) -> int:
        return sum(1 for r in rows if r.get(key))

    total = len(models) or len(rows)
    return (f"- **{task}**: {count('exported')}/{total} exported, {count('verified')}/{total} verified, "
            f"{count('shape_inference_complete')}/{total} with complete shape inference"
            + (f" ({total - len(rows)} not run yet)" if len(rows) < total else ""))


def table_cells(row: Mapping[str, Any]) -> list[str]:
    """The `COLUMNS` of one row, as markdown cells."""
    def flag(value: Any) -> str:
        return "-" if value is None else ("yes" if value else "**no**")

    shapes = (f"{flag(row['shape_inference_complete'])} ({row['tensors_without_shape']}/{row['intermediate_tensors']})"
              if row.get("intermediate_tensors") is not None else flag(row.get("shape_inference_complete")))
    note = ANSI_ESCAPE.sub("", row.get("error") or row.get("fallback_reason") or "")
    return [
        row["name"],
        human_count(row.get("params")),
        "x".join(map(str, row["input_shape"])) if row.get("input_shape") else "-",
        ", ".join(f"{k}={v}" for k, v in (row.get("builder_kwargs") or {}).items()) or "-",
        flag(row["exported"]),
        flag(row["checker"]),
        shapes,
        verified_cell(row),
        f"{row['max_abs_error']:.1e}" if row.get("max_abs_error") is not None else "-",
        row.get("exporter") or "-",
        f"{row['seconds']:.0f}" if row.get("seconds") is not None else "-",
        f"{row['file_size'] / 1e6:.1f}" if row.get("file_size") else "-",
        f"{row['peak_rss_mb']:.0f}",
        note.replace("|", "\\|")[:160],
    ]


def verified_cell(row: Mapping[str, Any]) -> str:
    """yes/no, with the detections per verification image where the model detects (0 means little was compared)."""
    if not row["exported"]:
        return "-"
    detections = row.get("detections")
    counts = f" ({'/'.join(map(str, detections))} det.)" if detections else ""
    return ("yes" if row["verified"] else "**no**") + counts


def human_count(count: int | None) -> str:
    if not count:
        return "-"
    return f"{count / 1e6:.1f}M" if count >= 1e6 else f"{count / 1e3:.0f}k"


def version_text(rows: Iterable[Mapping[str, Any]]) -> str:
    """Each library's versions across the rows (more than one means the table mixes runs)."""
    seen: dict[str, set[str]] = {}
    for row in rows:
        for package, version in (row.get("versions") or {}).items():
            seen.setdefault(package, set()).add(str(version))
    return ", ".join(f"{p} {'/'.join(sorted(v))}" for p, v in seen.items()) or "none"


def write_table(rows_file: Path, table_file: Path) -> None:
    import zoo

    table_file.write_text(render(read_rows(rows_file), zoo.summarize_models()))
    print(f"wrote {table_file}")


# -- command line -------------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("patterns", nargs="*", metavar="PATTERN", help="fnmatch patterns of model names, as `zoo list`")
    p.add_argument("--task", action="append", default=[], help="only models of this task (repeatable)")
    p.add_argument("--chunk", type=parse_chunk, metavar="I/N", help="only the I-th of N chunks of the sorted selection")
    p.add_argument("--resume", action="store_true", help="skip models that already have a row in the results")
    p.add_argument("--jobs", type=int, default=1, help="children at a time (default 1)")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds per model (default %(default)s)")
    p.add_argument("--nice", type=int, default=10, help="run at least this nice (default %(default)s)")
    p.add_argument("--results", type=Path, default=DEFAULT_ROWS, help="JSON lines file (default %(default)s)")
    p.add_argument("--table", type=Path, default=DEFAULT_TABLE, help="markdown file (default %(default)s)")
    p.add_argument("--render", action="store_true", help="only write the markdown table from the results")
    p.add_argument("--one", metavar="NAME", help=argparse.SUPPRESS)  # the child's mode
    p.add_argument("--row-file", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.one:
        run_child(args.one, args.row_file, args.work)
        return 0
    if args.render:
        write_table(args.results, args.table)
        return 0
    os.nice(max(0, args.nice - os.nice(0)))
    records = select_models(args.patterns, args.task)
    if args.chunk:
        records = chunk_of(records, *args.chunk)
    if args.resume:
        done = read_rows(args.results)
        records = [r for r in records if r["name"] not in done]
    print(f"{len(records)} model(s) to export into {args.results}", flush=True)
    sweep(records, args.results, args.jobs, args.timeout)
    write_table(args.results, args.table)
    return 0


if __name__ == "__main__":
    sys.exit(main())

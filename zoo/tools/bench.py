"""Latency and throughput of one model across engines, measured in one process.

`bench` times, at each batch size, eager PyTorch, ONNX Runtime on the float model,
ONNX Runtime on an int8 model (`zoo.tools.quantize.quantize_int8`, calibrated on real
photographs) and, on CUDA, ONNX Runtime in FP16 with IO binding. To keep the
comparison fair, all engines run in this process with the same thread count
(``torch.set_num_threads`` and ONNX Runtime's intra-op threads), on the same input,
warmed up, and timed in interleaved rounds (a block of iterations per engine per
round, engine order rotating) so that a busy spell of the machine falls on every
engine alike. Each call is timed with ``time.perf_counter_ns``.
"""

from __future__ import annotations

import os
import platform
import time
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from zoo.errors import UsageError, ZooError, excerpt, first_line
from zoo.outputs import scratch_folder
from zoo.progress import bar, status
from zoo.shapes import check_size, dims_text
from zoo.text import table

__all__ = ["BenchResult", "BenchRow", "bench", "compare_onnx", "parse_batches", "sample_photographs",
           "SAMPLE_PHOTOGRAPHS"]

#: scikit-image's bundled sample photographs (no download) used to calibrate int8 when available.
SAMPLE_PHOTOGRAPHS = ("astronaut", "camera", "chelsea", "coffee", "coins", "hubble_deep_field",
                      "immunohistochemistry", "rocket")
#: Timed iterations are spread over this many interleaved rounds (fewer when there are fewer iterations).
ROUNDS = 5
_CPU = "CPUExecutionProvider"
_CUDA = "CUDAExecutionProvider"


@dataclass(frozen=True)
class BenchRow:
    """One engine at one batch size. Latencies are per call (one batch), in milliseconds."""

    engine: str  # "eager", "onnxruntime", "int8" or "fp16"
    provider: str  # ONNX Runtime's execution provider, or "torch-cpu" / "torch-cuda"
    batch: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    min_ms: float
    throughput: float  # images per second: batch * calls / total time of the timed calls
    speedup: float | None  # images/s over eager's at the same batch (the throughput column's ratio); None without eager


@dataclass(frozen=True)
class BenchResult:
    """Every row of one benchmark run, and what it ran on and with."""

    model: str
    source: str  # the catalog name or the .onnx path given
    rows: list[BenchRow]
    machine: dict[str, Any]
    settings: dict[str, Any]  # threads, warmup, iterations, rounds, input shape
    calibration: dict[str, Any] | None  # what the int8 model was calibrated on
    notes: list[str] = field(default_factory=list)  # engines skipped, and why

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def table(self) -> str:
        """The rows as an aligned text table, with the machine, settings and notes above it."""
        headers = ["engine", "provider", "batch", "p50 ms", "p90 ms", "p99 ms", "images/s", "vs eager"]
        body = [[r.engine, r.provider, str(r.batch), f"{r.p50_ms:.2f}", f"{r.p90_ms:.2f}", f"{r.p99_ms:.2f}",
                 f"{r.throughput:.1f}", "-" if r.speedup is None else f"{r.speedup:.2f}x"] for r in self.rows]
        lines = [f"model: {self.model} ({self.source})", f"machine: {_machine_text(self.machine)}",
                 f"settings: {_settings_text(self.settings)}"]
        if self.calibration is not None:
            c = self.calibration
            shown = ", ".join(c["images"][:8]) + (", ..." if c["count"] > 8 else "")
            lines.append(f"int8 calibration: {c['count']} images from {c['source']}: {shown}")
        lines += [f"note: {n}" for n in self.notes]
        lines += ["", *table(headers, body, right=range(2, len(headers)))]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


@dataclass
class _Engine:
    name: str
    provider: str
    make: Callable[[np.ndarray], Callable[[], None]]  # input batch -> one timed call


def parse_batches(batches: str | int | Sequence[int]) -> tuple[int, ...]:
    """Batch sizes from ``"1,8,32"``, an int or a sequence of ints; one line says what is wrong."""
    if isinstance(batches, str):
        parts = [p.strip() for p in batches.split(",")]
        if not all(p.isdigit() for p in parts):
            raise UsageError(f"batch sizes {excerpt(batches)} are not comma-separated positive integers; use e.g. 1,8,32")
        batches = [int(p) for p in parts]
    elif isinstance(batches, int):
        batches = [batches]
    values = list(batches)
    if not values or not all(isinstance(b, int) and not isinstance(b, bool) and b > 0 for b in values):
        raise UsageError(f"batch sizes must be positive integers, e.g. 1,8,32, not {excerpt(batches)}")
    return tuple(dict.fromkeys(values))


def sample_photographs() -> tuple[list[np.ndarray], list[str]]:
    """scikit-image's bundled sample photographs and their names; none when scikit-image is not installed."""
    try:
        from skimage import data
    except ImportError:
        return [], []
    images, names = [], []
    for name in SAMPLE_PHOTOGRAPHS:
        try:
            images.append(getattr(data, name)())
        except Exception:  # noqa: BLE001 - an image this version lacks or would download is left out
            continue
        names.append(name)
    return images, names


def bench(
    name_or_onnx: str | os.PathLike[str],
    *,
    batches: str | int | Sequence[int] = (1,),
    providers: str | Sequence[str] | None = None,
    warmup: int = 5,
    iterations: int = 50,
    int8: bool = True,
    fp16: bool | None = None,
    weights: Any = None,
    threads: int | None = None,
    calibration: Sequence[str | os.PathLike[str]] | None = None,
) -> BenchResult:
    """Time `name_or_onnx` (a catalog name, or an exported ``.onnx`` file) on every engine at every batch size.

    A name is exported with `zoo.export.export_onnx` (random weights unless `weights`)
    to a temporary folder, ``zoo-bench-XXXXXXXX`` (`zoo.outputs.scratch_folder`: removed
    afterwards, or by the next run when a run is killed); a file is benchmarked as it is, with
    eager PyTorch only when its metadata names a catalog model. `providers` picks ONNX
    Runtime's execution providers (`zoo.runtime.select_providers`; default CUDA
    when available, else CPU). int8 is calibrated on the images at `calibration`
    when given, else on scikit-image's sample photographs, and is skipped (with a
    note) when there are neither. `fp16` defaults to on exactly when the provider is
    CUDA. `threads` defaults to the cores this process may use.
    """
    batch_sizes = parse_batches(batches)
    _check_count("warmup", warmup, 0)
    _check_count("iterations", iterations, 1)
    threads = _threads(threads)
    chosen = _providers(providers, fp16)
    images, calibration_info = _calibration_images(calibration) if int8 else ([], None)
    notes: list[str] = []

    with scratch_folder("zoo-bench") as work:
        float_path, source = _float_model(name_or_onnx, weights, work)
        meta = _metadata(float_path)
        engines = _engines(float_path, meta, chosen, weights, threads, int8, images, fp16, work, notes)
        shape = _input_shape(float_path, meta)
        with _torch_threads(threads), _timing(engines, len(batch_sizes), warmup, iterations) as timing:
            rows = [row for batch in batch_sizes
                    for row in _measure(engines, (batch, *shape[1:]), warmup, iterations, timing.update)]
    settings = {"threads": threads, "warmup": warmup, "iterations": iterations, "rounds": min(ROUNDS, iterations),
                "input_shape": ["N", *shape[1:]], "batches": list(batch_sizes), "providers": chosen}
    return BenchResult(
        model=meta.get("model", float_path.stem), source=source, rows=rows, machine=_machine(threads, rows),
        settings=settings, calibration=calibration_info if any(e.name == "int8" for e in engines) else None,
        notes=notes,
    )


def compare_onnx(
    models: dict[str, str | os.PathLike[str]],
    *,
    batch: int = 1,
    providers: str | Sequence[str] | None = None,
    warmup: int = 5,
    iterations: int = 50,
    threads: int | None = None,
) -> list[BenchRow]:
    """Time several ``.onnx`` files of one input shape against each other, interleaved, one row each.

    `models` maps a label (the rows' engine) to a file, e.g. quantisation variants of
    one model; the first file's input shape is used at `batch`.
    """
    if not models:
        raise UsageError("compare_onnx needs at least one model")
    (batch,) = parse_batches(batch)
    _check_count("warmup", warmup, 0)
    _check_count("iterations", iterations, 1)
    threads = _threads(threads)
    chosen = _providers(providers, None)
    engines = [_ort_engine(label, Path(path), chosen, threads) for label, path in models.items()]
    first = Path(next(iter(models.values())))
    shape = _input_shape(first, _metadata(first))
    with _timing(engines, 1, warmup, iterations) as timing:
        return _measure(engines, (batch, *shape[1:]), warmup, iterations, timing.update)


# -- arguments ------------------------------------------------------------------------


def _check_count(name: str, value: Any, least: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < least:
        raise UsageError(f"{name} must be an integer of at least {least}, not {value!r}")


def _threads(threads: int | None) -> int:
    if threads is None:
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    _check_count("threads", threads, 1)
    return threads


def _providers(requested: str | Sequence[str] | None, fp16: bool | None) -> list[str]:
    from zoo.runtime import select_providers

    chosen = list(select_providers(requested))
    if fp16 and chosen[0] != _CUDA:
        raise UsageError(f"fp16 runs on CUDAExecutionProvider only; the provider here is {chosen[0]}")
    return chosen


def _calibration_images(paths: Sequence[str | os.PathLike[str]] | None) -> tuple[list[Any], dict[str, Any] | None]:
    """Images to calibrate int8 on, and a record of where they came from."""
    if paths:
        from zoo.runtime import open_image

        record = {"source": "calibration paths", "count": len(paths), "images": [os.fspath(p) for p in paths]}
        return [open_image(p) for p in paths], record
    images, names = sample_photographs()
    if not images:
        return [], None
    return images, {"source": "scikit-image sample photographs", "count": len(images), "images": names}


# -- engines --------------------------------------------------------------------------


def _float_model(name_or_onnx: str | os.PathLike[str], weights: Any, work: Path) -> tuple[Path, str]:
    """The float ``.onnx`` file to time, exported into `work` when given a catalog name."""
    text = os.fspath(name_or_onnx)
    if text.endswith(".onnx") or Path(text).is_file():
        if weights is not None:
            raise UsageError("weights= applies to a catalog name; an .onnx file carries its own")
        if not Path(text).is_file():
            raise UsageError(f"no ONNX file at {text}")
        return Path(text), text
    from zoo.export import export_onnx
    from zoo.registry import describe

    record = describe(text)  # an unknown name raises UnknownModelError (one line)
    _check_timeable(record["task"], record["name"])
    exported = export_onnx(record["name"], work / f"{record['name']}.onnx", weights=weights, record=False)
    return exported.path, text


def _metadata(path: Path) -> dict[str, Any]:
    from zoo.export import read_metadata

    meta = read_metadata(path)
    if meta.get("task") is not None:
        _check_timeable(meta["task"], meta.get("model") or path.name)
    return meta


def _check_timeable(task: str, model: str) -> None:
    """`task`'s models take one batch tensor, which is what bench feeds, or one line says they do not."""
    from zoo.export.tasks import adapter

    found = adapter(task)
    if not found.batched or len(found.input_names) != 1:
        takes = (f"{len(found.input_names)} inputs ({', '.join(found.input_names)})" if found.batched
                 else "one image per call")
        raise UsageError(f"bench times models that take one batch tensor; {model} is a model of task {task}, "
                         f"which takes {takes}")


def _engines(float_path: Path, meta: dict[str, Any], providers: list[str], weights: Any, threads: int, int8: bool,
             images: list[Any], fp16: bool | None, work: Path, notes: list[str]) -> list[_Engine]:
    """The engines to time, in row order; each one left out adds a note saying why."""
    float_engine = _ort_engine("onnxruntime", float_path, providers, threads)
    on_cuda = float_engine.provider == _CUDA  # what the session got, not what was asked for
    engines = [*_eager(meta, weights, on_cuda, notes), float_engine]
    if int8:
        engines += _int8(float_path, meta, images, threads, work, notes)
    if on_cuda and fp16 is not False:
        engines.append(_fp16_engine(float_path, providers, threads))
    elif not on_cuda:
        notes.append(f"fp16 skipped: it runs on CUDAExecutionProvider only; this run is on {float_engine.provider}")
    return engines


def _eager(meta: dict[str, Any], weights: Any, on_cuda: bool, notes: list[str]) -> list[_Engine]:
    """The eager PyTorch engine of the catalog model the file was exported from, if there is one."""
    model_name = meta.get("model")
    try:
        import torch

        from zoo.registry import get_model

        with status(f"building {model_name} for eager PyTorch"):
            model = get_model(model_name, weights=weights) if model_name else None
    except ImportError:
        notes.append("eager skipped: torch is not installed")
        return []
    except ZooError as exc:
        notes.append(f"eager skipped: {first_line(exc)}")
        return []
    if model is None:
        notes.append("eager skipped: the model's metadata names no catalog model")
        return []
    device = torch.device("cuda" if on_cuda and torch.cuda.is_available() else "cpu")
    model = model.eval().to(device)

    def make(x: np.ndarray) -> Callable[[], None]:
        host = torch.from_numpy(x)

        def call() -> None:
            # host to host, as ONNX Runtime's run() takes and returns numpy arrays
            with torch.inference_mode():
                model(host.to(device)).cpu()

        return call

    return [_Engine("eager", f"torch-{device.type}", make)]


def _ort_engine(name: str, path: Path, providers: list[str], threads: int) -> _Engine:
    from zoo.runtime import create_session

    session = create_session(path, providers=providers, threads=threads)
    input_name = session.get_inputs()[0].name

    def make(x: np.ndarray) -> Callable[[], None]:
        return lambda: session.run(None, {input_name: x})

    return _Engine(name, session.get_providers()[0], make)


def _int8(float_path: Path, meta: dict[str, Any], images: list[Any], threads: int, work: Path,
          notes: list[str]) -> list[_Engine]:
    """The int8 engine (ONNX Runtime on CPU: the quantised kernels are CPU kernels)."""
    if not images:
        notes.append("int8 skipped: no calibration images (install scikit-image or pass calibration= paths)")
        return []
    if not meta.get("preprocessing"):
        notes.append("int8 skipped: the model carries no preprocessing metadata to calibrate with")
        return []
    from zoo.tools.quantize import quantize_int8

    with status(f"quantizing {float_path.name} to int8, calibrated on {len(images)} images"):
        result = quantize_int8(float_path, work / f"{float_path.stem}.int8.onnx", images)
    return [_ort_engine("int8", result.path, [_CPU], threads)]


def _fp16_engine(path: Path, providers: list[str], threads: int) -> _Engine:
    from zoo.runtime import Predictor

    predictor = Predictor(path, providers=providers, threads=threads, fp16=True, io_binding=True)

    def make(x: np.ndarray) -> Callable[[], None]:
        return lambda: predictor.run(x)

    return _Engine("fp16", predictor.providers[0], make)


def _input_shape(path: Path, meta: dict[str, Any]) -> tuple[int, ...]:
    """The model's input shape: fixed dimensions from the graph, the others from the export's example."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    initializers = {t.name for t in graph.initializer}
    dims = next(v for v in graph.input if v.name not in initializers).type.tensor_type.shape.dim
    example = next(iter(meta.get("inputs") or []), {}).get("export_shape") or []
    shape = [d.dim_value or (example[i] if i < len(example) else 0) for i, d in enumerate(dims)]
    if not all(shape[1:]):
        raise UsageError(f"{path.name} has an input of unknown size {shape}; export it with a fixed image size")
    return tuple(shape)


# -- timing ---------------------------------------------------------------------------


@contextmanager
def _torch_threads(threads: int) -> Iterator[None]:
    """PyTorch on `threads` intra-op threads, as ONNX Runtime, while timing; restored afterwards."""
    torch = sys.modules.get("torch")  # imported by the eager engine; without it there is nothing to set
    if torch is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _timing(engines: list[_Engine], batches: int, warmup: int, iterations: int) -> Any:
    """The progress bar over the calls `_measure` makes (warm-up and timed) at `batches` batch sizes."""
    return bar(len(engines) * batches * (warmup + iterations), "timing", unit="call")


def _measure(engines: list[_Engine], shape: tuple[int, ...], warmup: int, iterations: int,
             done: Callable[[int], object]) -> list[BenchRow]:
    """Rows for every engine at one batch size: warm up each, then time them in interleaved rounds; `done` counts
    the calls made (outside the timed ones)."""
    check_size(shape, what="benchmark input")
    x = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
    calls = {e.name: e.make(x) for e in engines}
    for call in calls.values():
        for _ in range(warmup):
            call()
        done(warmup)
    times: dict[str, list[int]] = {e.name: [] for e in engines}
    rounds = min(ROUNDS, iterations)
    for r in range(rounds):
        per_round = iterations // rounds + (r < iterations % rounds)
        for e in engines[r % len(engines):] + engines[: r % len(engines)]:
            calls[e.name]()  # untimed: the engine's threads and caches take over from the last engine's
            times[e.name] += _timed(calls[e.name], per_round)
            done(per_round)
    rows = [_row(e, shape[0], times[e.name]) for e in engines]
    # "vs eager": images/s over eager's (the same figure as the images/s column, so the two never disagree)
    eager = next((row.throughput for row in rows if row.engine == "eager"), None)
    return [replace(row, speedup=row.throughput / eager if eager else None) for row in rows]


def _timed(call: Callable[[], None], count: int) -> list[int]:
    out = []
    for _ in range(count):
        start = time.perf_counter_ns()
        call()
        out.append(time.perf_counter_ns() - start)
    return out


def _row(engine: _Engine, batch: int, nanoseconds: list[int]) -> BenchRow:
    ms = np.asarray(nanoseconds, dtype=np.float64) / 1e6
    p50, p90, p99 = (float(v) for v in np.percentile(ms, [50, 90, 99]))
    return BenchRow(
        engine=engine.name, provider=engine.provider, batch=batch, p50_ms=p50, p90_ms=p90, p99_ms=p99,
        mean_ms=float(ms.mean()), min_ms=float(ms.min()), throughput=batch * len(ms) * 1000 / float(ms.sum()),
        speedup=None,
    )


# -- the machine ----------------------------------------------------------------------


def _machine(threads: int, rows: list[BenchRow]) -> dict[str, Any]:
    """What the numbers were measured on: CPU, cores, library versions, GPU when used."""
    import onnxruntime

    info: dict[str, Any] = {
        "cpu": _cpu_name(),
        "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "threads": threads,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "onnxruntime": onnxruntime.__version__,
    }
    try:
        import torch
    except ImportError:
        return info
    info["torch"] = torch.__version__
    if any(r.provider in (_CUDA, "torch-cuda") for r in rows):
        info["gpu"] = torch.cuda.get_device_name()
    return info


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _machine_text(m: dict[str, Any]) -> str:
    versions = ", ".join(f"{k} {m[k]}" for k in ("torch", "onnxruntime") if k in m)
    gpu = f", GPU {m['gpu']}" if "gpu" in m else ""
    return f"{m['cpu']}, {m['usable_cores']} of {m['logical_cores']} cores{gpu}; {versions}"


def _settings_text(s: dict[str, Any]) -> str:
    return (f"{s['threads']} threads, {s['warmup']} warm-up and {s['iterations']} timed calls per engine and "
            f"batch in {s['rounds']} interleaved rounds, input {dims_text(s['input_shape'])}")

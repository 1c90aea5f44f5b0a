"""Latency and throughput of one model across engines, measured in one process.

`bench` times, at each batch size and precision (``fp32``, ``fp16``), eager PyTorch
(``fp16``: under ``torch.autocast``), ``torch.compile`` (when asked, or on CUDA; mode
``max-autotune`` there), ONNX Runtime on the float model (``fp16``: converted at load by
`zoo.runtime.float16_model`), on CUDA also through IO binding and in a CUDA graph, and
ONNX Runtime on an int8 model (`zoo.tools.quantize.quantize_int8`, calibrated on real
photographs; fp32 rows only). On CUDA each row has the GPU memory its engine used. To keep the
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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from zoo.errors import UsageError, ZooError, excerpt, first_line
from zoo.outputs import scratch_folder
from zoo.progress import bar, status
from zoo.shapes import check_size, dims_text
from zoo.text import table

__all__ = ["BenchResult", "BenchRow", "bench", "compare_onnx", "parse_batches", "parse_precisions",
           "sample_photographs", "SAMPLE_PHOTOGRAPHS", "PRECISIONS", "DEVICES"]

#: scikit-image's bundled sample photographs (no download) used to calibrate int8 when available.
SAMPLE_PHOTOGRAPHS = ("astronaut", "camera", "chelsea", "coffee", "coins", "hubble_deep_field",
                      "immunohistochemistry", "rocket")
#: Timed iterations are spread over this many interleaved rounds (fewer when there are fewer iterations).
ROUNDS = 5
_CPU = "CPUExecutionProvider"
_CUDA = "CUDAExecutionProvider"
#: Precisions bench times (``--precision``); bf16 is refused in one line, as `zoo.export` refuses it.
PRECISIONS = ("fp32", "fp16")
#: Devices bench runs on (``--device``), and the ONNX Runtime provider each means.
DEVICES = {"cpu": _CPU, "cuda": _CUDA}


@dataclass(frozen=True)
class BenchRow:
    """One engine at one batch size. Latencies are per call (one batch), in milliseconds."""

    engine: str  # "eager", "compile", "onnxruntime", "iobinding", "cudagraph" or "int8"
    provider: str  # ONNX Runtime's execution provider, or "torch-cpu" / "torch-cuda"
    batch: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    min_ms: float
    throughput: float  # images per second: batch * calls / total time of the timed calls
    speedup: float | None  # images/s over eager's at the same batch (the throughput column's ratio); None without eager
    precision: str = "fp32"  # what the engine computes in; "vs eager" compares with eager at the same precision
    gpu_memory_mb: float | None = None  # CUDA only: torch's peak allocation, or the device memory ONNX Runtime took


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
        memory = any(r.gpu_memory_mb is not None for r in self.rows)
        headers = ["engine", "precision", "provider", "batch", "p50 ms", "p90 ms", "p99 ms", "images/s", "vs eager",
                   *(["GPU MB"] if memory else [])]
        body = [[r.engine, r.precision, r.provider, str(r.batch), f"{r.p50_ms:.2f}", f"{r.p90_ms:.2f}",
                 f"{r.p99_ms:.2f}", f"{r.throughput:.1f}", "-" if r.speedup is None else f"{r.speedup:.2f}x",
                 *(["-" if r.gpu_memory_mb is None else f"{r.gpu_memory_mb:.0f}"] if memory else [])]
                for r in self.rows]
        lines = [f"model: {self.model} ({self.source})", f"machine: {_machine_text(self.machine)}",
                 f"settings: {_settings_text(self.settings)}"]
        if self.calibration is not None:
            c = self.calibration
            shown = ", ".join(c["images"][:8]) + (", ..." if c["count"] > 8 else "")
            lines.append(f"int8 calibration: {c['count']} images from {c['source']}: {shown}")
        lines += [f"note: {n}" for n in self.notes]
        lines += ["", *table(headers, body, right=range(3, len(headers)))]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


@dataclass
class _Engine:
    name: str
    provider: str
    make: Callable[[np.ndarray], Callable[[], None]]  # input batch -> one timed call
    precision: str = "fp32"
    memory: Callable[[], float] | None = None  # CUDA: MB used since the last call of it (it resets)

    @property
    def key(self) -> str:
        return f"{self.name}/{self.precision}"


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


def parse_precisions(precisions: str | Sequence[str]) -> tuple[str, ...]:
    """Precisions from ``"fp32,fp16"`` or a sequence; one line says what is wrong."""
    values = [p.strip() for p in precisions.split(",")] if isinstance(precisions, str) else list(precisions)
    if "bf16" in values:
        raise UsageError("precision bf16 is not benchmarked: zoo does not export bf16 (ONNX Runtime ships no "
                         "bfloat16 converter); use fp32,fp16")
    if not values or not all(v in PRECISIONS for v in values):
        raise UsageError(f"precisions {excerpt(precisions)} are not a comma-separated list of {', '.join(PRECISIONS)}")
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
    weights: Any = None,
    threads: int | None = None,
    calibration: Sequence[str | os.PathLike[str]] | None = None,
    precisions: str | Sequence[str] = ("fp32",),
    device: str | None = None,
    compile: bool | None = None,
) -> BenchResult:
    """Time `name_or_onnx` (a catalog name, or an exported ``.onnx`` file) on every engine at every batch size.

    A name is exported with `zoo.export.export_onnx` (random weights unless `weights`)
    to a temporary folder, ``zoo-bench-XXXXXXXX`` (`zoo.outputs.scratch_folder`: removed
    afterwards, or by the next run when a run is killed); a file is benchmarked as it is, with
    eager PyTorch only when its metadata names a catalog model. `providers` picks ONNX
    Runtime's execution providers (`zoo.runtime.select_providers`; default CUDA
    when available, else CPU). int8 is calibrated on the images at `calibration`
    when given, else on scikit-image's sample photographs, and is skipped (with a
    note) when there are neither. `precisions` are those of `PRECISIONS` to time
    (``"fp32,fp16"``). `device` (``cpu`` or ``cuda``, refused in one line where CUDA is not
    usable) picks the provider and PyTorch's device together, instead of `providers`.
    `compile` adds ``torch.compile`` (default: on CUDA only; a model it cannot build gets a
    note). `threads` defaults to the cores this process may use.
    """
    batch_sizes = parse_batches(batches)
    chosen_precisions = parse_precisions(precisions)
    _check_count("warmup", warmup, 0)
    _check_count("iterations", iterations, 1)
    threads = _threads(threads)
    chosen = _providers(providers, device)
    images, calibration_info = _calibration_images(calibration) if int8 else ([], None)
    notes: list[str] = []

    with scratch_folder("zoo-bench") as work:
        float_path, source = _float_model(name_or_onnx, weights, work, batch_sizes)
        meta = _metadata(float_path, batch_sizes)
        engines = _engines(float_path, meta, chosen, weights, threads, int8, images, chosen_precisions, compile,
                           work, notes)
        shape = _input_shape(float_path, meta)
        with _torch_threads(threads), _timing(engines, len(batch_sizes), warmup, iterations) as timing:
            rows = [row for batch in batch_sizes
                    for row in _measure(engines, (batch, *shape[1:]), warmup, iterations, timing.update)]
    settings = {"threads": threads, "warmup": warmup, "iterations": iterations, "rounds": min(ROUNDS, iterations),
                "input_shape": ["N", *shape[1:]], "batches": list(batch_sizes), "providers": chosen,
                "precisions": list(chosen_precisions)}
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
    shape = _input_shape(first, _metadata(first, (batch,)))
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


def _providers(requested: str | Sequence[str] | None, device: str | None) -> list[str]:
    """The providers `select_providers` resolves from `requested`, or from `device` (one line when CUDA is not
    usable here, or when both are given)."""
    from zoo.runtime import select_providers

    if device is None:
        return list(select_providers(requested))
    if device not in DEVICES:
        raise UsageError(f"unknown device {excerpt(device)}; use {' or '.join(DEVICES)}")
    if requested is not None:
        raise UsageError("give a device or providers, not both: device cuda means providers cuda (then cpu)")
    if device == "cuda" and _cuda_missing():
        raise UsageError("device cuda needs an NVIDIA GPU that both PyTorch and ONNX Runtime can use; here "
                         + _cuda_missing() + "; use device cpu")
    return list(select_providers(device))


def _cuda_missing() -> str:
    """Why CUDA is not usable here, or ''."""
    import onnxruntime

    from zoo.runtime import cuda_device_count

    if not cuda_device_count():
        return "the CUDA driver reports no GPU"
    if _CUDA not in onnxruntime.get_available_providers():
        return "this onnxruntime has no CUDAExecutionProvider (pip install onnxruntime-gpu)"
    return ""


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


def _float_model(name_or_onnx: str | os.PathLike[str], weights: Any, work: Path,
                 batches: Sequence[int]) -> tuple[Path, str]:
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
    _check_timeable(record["task"], record["name"], batches)
    exported = export_onnx(record["name"], work / f"{record['name']}.onnx", weights=weights, record=False)
    return exported.path, text


def _metadata(path: Path, batches: Sequence[int] = (1,)) -> dict[str, Any]:
    from zoo.export import read_metadata

    meta = read_metadata(path)
    if meta.get("task") is not None:
        _check_timeable(meta["task"], meta.get("model") or path.name, batches)
    return meta


def _check_timeable(task: str, model: str, batches: Sequence[int]) -> None:
    """`task`'s models take one tensor, which is what bench feeds, in batches (or one image at a time, at batch 1),
    or one line says they do not."""
    from zoo.export.tasks import adapter

    found = adapter(task)
    if len(found.input_names) != 1:
        raise UsageError(f"bench times models that take one batch tensor; {model} is a model of task {task}, which "
                         f"takes {len(found.input_names)} inputs ({', '.join(found.input_names)})")
    if not found.batched and set(batches) != {1}:
        raise UsageError(f"{model} is a model of task {task}, which takes one image per call: bench it at batch 1")


def _engines(float_path: Path, meta: dict[str, Any], providers: list[str], weights: Any, threads: int, int8: bool,
             images: list[Any], precisions: Sequence[str], compile: bool | None, work: Path,
             notes: list[str]) -> list[_Engine]:
    """The engines to time, in row order (by precision); each one left out adds a note saying why."""
    engines: list[_Engine] = []
    for precision in precisions:
        ort_engines = _ort_engines(float_path, providers, threads, precision, notes)
        # what the session got, not what was asked for (a default CUDA that did not start runs on the CPU)
        on_cuda = ort_engines[0].provider == _CUDA if ort_engines else providers[0] == _CUDA
        engines += [*_torch_engines(meta, weights, on_cuda, precision, compile, notes), *ort_engines]
        if int8 and precision == "fp32":
            engines += _int8(float_path, meta, images, threads, work, notes)
    return engines


def _torch_engines(meta: dict[str, Any], weights: Any, on_cuda: bool, precision: str, compile: bool | None,
                   notes: list[str]) -> list[_Engine]:
    """Eager PyTorch (under autocast in fp16) on the catalog model the file was exported from, if there is one,
    and ``torch.compile`` of it when asked (default: on CUDA)."""
    model_name = meta.get("model")
    try:
        import torch

        from zoo.export.plan import make_plan

        with status(f"building {model_name} for eager PyTorch"):
            # as the export built it: seeded random weights (no backbone download), wrapped by its task
            model = make_plan(model_name, weights=weights, input_shape=tuple(_example_shape(meta)), dynamic_batch=None,
                              dynamic_image_size=None, opset=None, rtol=None, atol=None,
                              builder_kwargs=meta.get("builder_kwargs")).module if model_name else None
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
    engines = [_torch_engine("eager", model, device, precision)]
    if compile if compile is not None else device.type == "cuda":
        mode = "max-autotune" if device.type == "cuda" else None
        compiled = torch.compile(model, mode=mode)
        engine = _torch_engine("compile", compiled, device, precision)
        try:
            with status(f"compiling {model_name} with torch.compile (mode {mode or 'default'})"):
                engine.make(np.zeros((1, *_example_shape(meta)[1:]), np.float32))()
        except Exception as exc:  # noqa: BLE001 - inductor and its compilers raise anything
            notes.append(f"compile ({precision}) skipped: torch.compile did not build it: {first_line(exc)[:200]}")
        else:
            engines.append(engine)
    return engines


def _torch_engine(name: str, model: Any, device: Any, precision: str) -> _Engine:
    import torch

    def make(x: np.ndarray) -> Callable[[], None]:
        host = torch.from_numpy(x)

        def call() -> None:
            # host to host, as ONNX Runtime's run() takes and returns numpy arrays
            with torch.inference_mode(), torch.autocast(device.type, dtype=torch.float16,
                                                        enabled=precision == "fp16"):
                out = model(host.to(device))
                for tensor in out.values() if isinstance(out, dict) else out if isinstance(out, (tuple, list)) \
                        else [out]:  # a detector's boxes, labels and scores
                    tensor.cpu()

        return call

    return _Engine(name, f"torch-{device.type}", make, precision,
                   _torch_memory if device.type == "cuda" else None)


def _torch_memory() -> float:
    """MB PyTorch allocated at its peak since the last call (which resets the peak)."""
    import torch

    peak = torch.cuda.max_memory_allocated() / 2**20
    torch.cuda.reset_peak_memory_stats()
    return peak


def _example_shape(meta: dict[str, Any]) -> list[int]:
    return list(next(iter(meta.get("inputs") or []), {}).get("export_shape") or [1])


def _ort_engines(path: Path, providers: list[str], threads: int, precision: str, notes: list[str]) -> list[_Engine]:
    """ONNX Runtime on the file (``fp16``: converted at load), plain; on CUDA also through IO binding and in a CUDA
    graph (a note says why not, where it cannot)."""
    try:
        plain = _ort_engine("onnxruntime", path, providers, threads, fp16=precision == "fp16")
    except ZooError as exc:  # a model the float16 converter breaks (a detector's subgraphs)
        if precision == "fp32":
            raise
        notes.append(f"onnxruntime ({precision}) skipped: {first_line(exc)[:300]}")
        return []
    plain.precision = precision
    if plain.provider != _CUDA:
        return [plain]
    engines = [plain]
    for name, options in (("iobinding", {"io_binding": True}), ("cudagraph", {"cuda_graph": True})):
        try:
            engines.append(_predictor_engine(name, path, providers, threads, precision, options))
        except ZooError as exc:
            notes.append(f"{name} ({precision}) skipped: {first_line(exc)}")
    return engines


def _ort_engine(name: str, path: Path, providers: list[str], threads: int, fp16: bool = False) -> _Engine:
    from zoo.runtime import create_session

    session = create_session(path, providers=providers, threads=threads, fp16=fp16)
    input_name = session.get_inputs()[0].name

    def make(x: np.ndarray) -> Callable[[], None]:
        return lambda: session.run(None, {input_name: x})

    return _Engine(name, session.get_providers()[0], make,
                   memory=_DeviceMemory() if session.get_providers()[0] == _CUDA else None)


def _predictor_engine(name: str, path: Path, providers: list[str], threads: int, precision: str,
                      options: dict[str, bool]) -> _Engine:
    """ONNX Runtime through `zoo.runtime.Predictor`'s IO binding (and CUDA graph): a new one per batch size, as a
    CUDA graph replays one input shape."""
    from zoo.runtime import Predictor

    def predictor() -> Any:
        return Predictor(path, providers=providers, threads=threads, fp16=precision == "fp16", **options)

    first = predictor()  # a CUDA graph that cannot be made is refused here, before any timing

    def make(x: np.ndarray) -> Callable[[], None]:
        runner = predictor() if options.get("cuda_graph") else first
        runner.run(x)  # a CUDA graph is captured at this shape
        return lambda: runner.run(x)

    return _Engine(name, providers[0], make, precision, _DeviceMemory())


class _DeviceMemory:
    """MB of device memory taken since the last call: what ONNX Runtime's arena grew by (PyTorch's allocator
    is not told), read from the driver through PyTorch."""

    def __init__(self) -> None:
        self.used = self._used()

    @staticmethod
    def _used() -> float:
        import torch

        free, total = torch.cuda.mem_get_info()
        return (total - free) / 2**20

    def __call__(self) -> float:
        now = self._used()
        grown, self.used = max(0.0, now - self.used), now
        return grown


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
    calls: dict[str, Callable[[], None]] = {}
    memory: dict[str, float | None] = {}
    for e in engines:  # warm-up, not timed; on CUDA it is where each engine takes its memory
        if e.memory is not None:
            e.memory()
        calls[e.key] = e.make(x)
        for _ in range(warmup):
            calls[e.key]()
        memory[e.key] = e.memory() if e.memory is not None else None
        done(warmup)
    times: dict[str, list[int]] = {e.key: [] for e in engines}
    rounds = min(ROUNDS, iterations)
    for r in range(rounds):
        per_round = iterations // rounds + (r < iterations % rounds)
        for e in engines[r % len(engines):] + engines[: r % len(engines)]:
            calls[e.key]()  # untimed: the engine's threads and caches take over from the last engine's
            times[e.key] += _timed(calls[e.key], per_round)
            done(per_round)
    # "vs eager": images/s over eager's at the same precision (the images/s column's ratio, so they never disagree)
    eager = {e.precision: _throughput(shape[0], times[e.key]) for e in engines if e.name == "eager"}
    return [_row(e, shape[0], times[e.key], memory[e.key], eager.get(e.precision)) for e in engines]


def _timed(call: Callable[[], None], count: int) -> list[int]:
    out = []
    for _ in range(count):
        start = time.perf_counter_ns()
        call()
        out.append(time.perf_counter_ns() - start)
    return out


def _throughput(batch: int, nanoseconds: list[int]) -> float:
    """Images per second of timed calls on batches of `batch` images."""
    return batch * len(nanoseconds) * 1e9 / float(sum(nanoseconds))


def _row(engine: _Engine, batch: int, nanoseconds: list[int], gpu_memory_mb: float | None,
         eager_throughput: float | None) -> BenchRow:
    """The row of `engine`'s timed calls; its speedup over `eager_throughput` (None without an eager row)."""
    ms = np.asarray(nanoseconds, dtype=np.float64) / 1e6
    p50, p90, p99 = (float(v) for v in np.percentile(ms, [50, 90, 99]))
    throughput = _throughput(batch, nanoseconds)
    return BenchRow(
        engine=engine.name, provider=engine.provider, batch=batch, p50_ms=p50, p90_ms=p90, p99_ms=p99,
        mean_ms=float(ms.mean()), min_ms=float(ms.min()), throughput=throughput,
        speedup=throughput / eager_throughput if eager_throughput is not None else None, precision=engine.precision,
        gpu_memory_mb=gpu_memory_mb,
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

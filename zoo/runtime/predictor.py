"""The deployment runtime: run an exported model with ONNX Runtime, numpy and Pillow alone.

`create_session` is the one place sessions are made (execution providers, threads,
graph optimisation, a cache of the optimised model, FP16, CUDA graphs);
`select_providers` resolves what to ask ONNX Runtime for, and `float16_model` converts a
model to float16 (for a session, and for ``zoo export --precision fp16``). A `Predictor` reads the
zoo provenance that `zoo.export.export_onnx` writes into the model (task,
preprocessing, categories) through ONNX Runtime itself, preprocesses images with
`zoo.preprocessing.preprocess_image`, runs the session, and turns its outputs into
one result per image with the task's adapter (`zoo.runtime.tasks.adapter`): top-k classes,
detections, a per-pixel class mask, a feature vector, an optical flow, or whatever a
plugin's task decodes. `draw` draws a result over its image (`zoo.runtime.drawing`), and
`make_grid` puts several drawings in one picture.

CUDA is used when it can really run: the default asks for it only when the CUDA
driver reports a GPU, so that a CPU-only machine gets no error output from ONNX
Runtime's attempt to load its CUDA libraries. Importing this module imports
neither torch, torchvision nor ``onnx``.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import io
import math
import mmap
import os
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar, Union

import numpy as np
import onnxruntime as ort
from PIL import Image

from zoo import metadata
from zoo.runtime.drawing import make_grid
from zoo.errors import UsageError, excerpt, first_line
from zoo.outputs import png_info, staged_output
from zoo.preprocessing import (IMAGES_PER_CALL, MAX_IMAGE_PIXELS, MAX_SIDE, PreprocessSpec, check_image_size,
                               preprocess_image, to_8bit)
from zoo.shapes import onnx_shape_text
from zoo.runtime.tasks import BUILTIN, DecodeOptions, Result, RuntimeTask, adapter, known_tasks
from zoo.runtime.tasks.classification import ClassificationResult as Classification
from zoo.runtime.tasks.detection import Detections
from zoo.runtime.tasks.embedding import EmbeddingResult as Embedding
from zoo.runtime.tasks.optical_flow import Flow
from zoo.runtime.tasks.segmentation import SegmentationResult as Segmentation

__all__ = [
    "CUDA_OPTIONS", "PROVIDERS", "OPTIMIZATION_LEVELS", "TASKS", "Classification", "Detections", "Embedding", "Flow",
    "Predictor", "Result", "Segmentation", "create_session", "cuda_device_count", "draw", "file_metadata",
    "float16_model", "image_files", "make_grid", "open_image", "predict",
    "published_export", "save_drawings",
    "select_providers", "session_metadata",
]

_CPU, _CUDA, _TENSORRT = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"
#: Short provider names users type, and the ONNX Runtime names they stand for.
PROVIDERS = {"cpu": _CPU, "cuda": _CUDA, "tensorrt": _TENSORRT}
_GPU_PROVIDERS = (_CUDA, _TENSORRT)
OPTIMIZATION_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
#: The built-in tasks, each read by its adapter (`zoo.runtime.tasks`); plugins add others
#: (`zoo.runtime.tasks.known_tasks`). Video is refused by its adapter: a `Predictor` feeds images, not clips.
TASKS = tuple(BUILTIN)
#: ``grid.png`` of `save_drawings`: at most this many drawings, this many to a row, each fit into a
#: square of this side (a folder of large photographs makes a grid of a few megapixels, not gigapixels).
GRID_MOST, GRID_COLUMNS, GRID_SIDE = 64, 8, 512
#: Largest batch of images sent to a session with a dynamic batch in one call.
_MAX_BATCH = 32
#: Most class names a model file may list, and the longest name (ImageNet-21k has 21,843).
MAX_CATEGORIES = 100_000
MAX_LABEL_CHARS = 1000
#: Most values of a model input whose sizes are fixed (a batch of 64 images of 3 x 1024 x 1024 is 2**28).
MAX_INPUT_VALUES = 1 << 28
#: CUDAExecutionProvider options a session takes (``provider_options=``), and the values each accepts.
CUDA_OPTIONS = {
    "prefer_nhwc": ("0", "1"),
    "cudnn_conv_algo_search": ("EXHAUSTIVE", "HEURISTIC", "DEFAULT"),
    "cudnn_conv_use_max_workspace": ("0", "1"),
    "enable_cuda_graph": ("0", "1"),
    "do_copy_in_default_stream": ("0", "1"),
    "use_tf32": ("0", "1"),
}
#: What a CUDA session of a float16 model gets unless ``provider_options`` says otherwise: NHWC convolutions,
#: which cuDNN's float16 tensor-core kernels take natively. Float32 models keep ONNX Runtime's defaults.
FLOAT16_CUDA_OPTIONS = {"prefer_nhwc": "1"}
#: ONNX Runtime's CPU optimiser that crashed (segmentation fault) on a float16 ViT-B/16 in onnxruntime 1.31.1:
#: left out of CPU sessions of float16 models (it reorders float32 convolutions only, which they lack).
_FLOAT16_CPU_UNSAFE = ["NchwcTransformer"]
#: numpy types of the ONNX tensor types a CUDA graph's preallocated outputs can have.
_NUMPY_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int64)": np.int64}
_ACCEPTED_IMAGES = "image files Pillow can read (PNG, JPEG, ...), PIL images or numpy arrays"

ImageLike = Union[str, "os.PathLike[str]", Image.Image, np.ndarray]
_T = TypeVar("_T")


# -- execution providers --------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def cuda_device_count() -> int:
    """How many GPUs the CUDA driver reports; 0 where there is no driver.

    Asks the driver library directly (``cuInit``, ``cuDeviceGetCount``): silent, and
    it needs no CUDA toolkit, unlike letting ONNX Runtime try and log its failure.
    """
    try:
        driver = ctypes.CDLL("nvcuda.dll" if sys.platform == "win32" else "libcuda.so.1")
    except OSError:
        return 0
    count = ctypes.c_int(0)
    if driver.cuInit(0) != 0 or driver.cuDeviceGetCount(ctypes.byref(count)) != 0:
        return 0
    return count.value


def select_providers(requested: str | Sequence[str] | None = None) -> list[str]:
    """The execution providers to ask ONNX Runtime for, best first, always ending with CPU.

    `requested` is a name or a list of names: ``"cpu"``, ``"cuda"``, ``"tensorrt"``
    or ONNX Runtime's full names (``"CUDAExecutionProvider"``); TensorRT brings CUDA
    along for the nodes TensorRT does not take. None means CUDA when a GPU is
    usable, else CPU. Raises `UsageError` for an unknown name, a provider this
    onnxruntime build lacks, or a GPU provider on a machine without a GPU.
    """
    if requested is None:
        return [_CUDA, _CPU] if _CUDA in ort.get_available_providers() and cuda_device_count() else [_CPU]
    names = [requested] if isinstance(requested, str) else list(requested)
    if not names:
        raise UsageError(f"no execution provider given; use {_provider_choices()}")
    chosen = [_provider_name(name) for name in names]
    if _TENSORRT in chosen and _CUDA not in chosen:
        chosen.insert(chosen.index(_TENSORRT) + 1, _CUDA)
    available = ort.get_available_providers()
    for name in chosen:
        if name not in available:
            raise UsageError(f"this onnxruntime build has no {name}; available: {', '.join(available)}")
    gpu = [name for name in chosen if name in _GPU_PROVIDERS]
    if gpu and not cuda_device_count():
        raise UsageError(f"{gpu[0]} needs an NVIDIA GPU and the CUDA driver reports none here; use provider 'cpu'")
    return list(dict.fromkeys([*chosen, _CPU]))


def _provider_name(name: Any) -> str:
    if not isinstance(name, str):
        raise UsageError(f"execution provider names are strings, not {type(name).__name__}")
    if name.lower() in PROVIDERS:
        return PROVIDERS[name.lower()]
    if name.endswith("ExecutionProvider") and name in ort.get_all_providers():
        return name
    raise UsageError(f"unknown execution provider {name!r}; use {_provider_choices()}")


def _provider_choices() -> str:
    return ", ".join(PROVIDERS) + " or an ONNX Runtime name such as CUDAExecutionProvider"


@functools.lru_cache(maxsize=None)
def _preload_cuda_libraries() -> None:
    """Load CUDA and cuDNN from pip's nvidia-* packages, where they are, before a CUDA session.

    Its messages about libraries it did not find go nowhere: when CUDA then fails to
    start, ONNX Runtime's own error names the library that is missing.
    """
    if hasattr(ort, "preload_dlls"):
        with contextlib.redirect_stdout(io.StringIO()):
            ort.preload_dlls()


# -- sessions -------------------------------------------------------------------------


def create_session(
    path: str | os.PathLike[str],
    *,
    providers: str | Sequence[str] | None = None,
    threads: int | None = None,
    optimization: str = "all",
    optimized_model_path: str | os.PathLike[str] | None = None,
    fp16: bool = False,
    cuda_graph: bool = False,
    provider_options: Mapping[str, Any] | None = None,
) -> ort.InferenceSession:
    """An ONNX Runtime session for the model at `path`.

    `providers` as `select_providers` takes them (default: CUDA when a GPU is
    usable, else CPU). `threads` sets the threads of one operator (default: ONNX
    Runtime's, one per core). `optimization` is the graph optimisation level, one of
    `OPTIMIZATION_LEVELS`; `optimized_model_path` saves the optimised model there, to
    load instead next time. `fp16` converts the weights and computation to float16
    with float32 inputs and outputs (meant for CUDA; it needs the ``onnx`` package
    while converting). `cuda_graph` captures the model in a CUDA graph on its first
    run (CUDA only; inputs must keep one shape, run through `Predictor`'s IO binding).
    `provider_options` are CUDAExecutionProvider options (`CUDA_OPTIONS`: ``prefer_nhwc``,
    ``cudnn_conv_algo_search``, ...), refused in one line when the session has no CUDA. A
    float16 model (`fp16`, or a file whose zoo metadata says so, read by `file_metadata`)
    gets `FLOAT16_CUDA_OPTIONS` under them on CUDA, and on CPU runs without the optimiser
    that crashed on one (``NchwcTransformer``).

    What the session really runs on is ``session.get_providers()``. When explicitly
    requested providers did not start, raises `UsageError`; when the default CUDA
    did not, warns and runs on CPU.
    """
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"no ONNX file at {path}")
    chosen = select_providers(providers)
    if cuda_graph and _CUDA not in chosen:
        raise UsageError("cuda_graph runs on CUDAExecutionProvider only; ask for provider 'cuda'")
    asked = _cuda_options(provider_options, chosen)
    if _CUDA in chosen:
        _preload_cuda_libraries()
    options = _session_options(threads, optimization, optimized_model_path)
    half = fp16 or file_precision(path) == "fp16"
    cuda = {**(FLOAT16_CUDA_OPTIONS if half else {}), **asked}
    graph = cuda_graph or cuda.get("enable_cuda_graph") == "1"
    try:
        session = ort.InferenceSession(_float16_model(path) if fp16 else str(path), options,
                                       providers=_with_options(chosen, cuda_graph, cuda),
                                       disabled_optimizers=_FLOAT16_CPU_UNSAFE if half and _CUDA not in chosen else None)
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own unrelated types
        why = " (a CUDA graph needs every node on CUDAExecutionProvider: make it without cuda_graph)" if graph else ""
        raise UsageError(f"onnxruntime cannot load {path}{why}: {first_line(exc)}") from exc
    _check_started(session, chosen, explicit=providers is not None)
    return session


def _session_options(threads: int | None, optimization: str,
                     optimized_model_path: str | os.PathLike[str] | None) -> ort.SessionOptions:
    if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
        raise UsageError(f"threads must be a positive integer, not {threads!r}")
    if optimization not in OPTIMIZATION_LEVELS:
        raise UsageError(f"unknown optimization level {optimization!r}; use {', '.join(OPTIMIZATION_LEVELS)}")
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: warnings about unused initialisers are noise to a user
    options.graph_optimization_level = OPTIMIZATION_LEVELS[optimization]
    if threads is not None:
        options.intra_op_num_threads = threads
    if optimized_model_path is not None:
        options.optimized_model_filepath = os.fspath(optimized_model_path)
    return options


def _with_options(providers: list[str], cuda_graph: bool,
                  cuda: Mapping[str, str] | None = None) -> list[str | tuple[str, dict[str, str]]]:
    """`providers` as ONNX Runtime takes them, CUDA with its options (`cuda`, and a CUDA graph) when it has any.

    Only options that differ from the defaults are passed: since ONNX Runtime 1.26 any
    ``device_id``, even the default 0, makes it look for a plugin execution provider
    and log "No registered plugin EP device found" at every CUDA session.
    """
    options = {**(cuda or {}), **({"enable_cuda_graph": "1"} if cuda_graph else {})}
    if not options:
        return list(providers)
    return [(name, dict(options)) if name == _CUDA else name for name in providers]


def _cuda_options(options: Mapping[str, Any] | None, chosen: list[str]) -> dict[str, str]:
    """`options` checked against `CUDA_OPTIONS`, as ONNX Runtime takes them (strings; True is "1"), or one line
    saying what is wrong: an unknown option or value, or any option for a session without CUDA."""
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise UsageError(f"provider_options is a mapping of CUDA options ({', '.join(CUDA_OPTIONS)}), "
                         f"not {excerpt(options)}")
    out: dict[str, str] = {}
    for key, value in options.items():
        text = str(int(value)) if isinstance(value, bool) else str(value)
        if key not in CUDA_OPTIONS:
            raise UsageError(f"unknown provider option {excerpt(key)}; CUDA options: {', '.join(CUDA_OPTIONS)}")
        if text not in CUDA_OPTIONS[key]:
            raise UsageError(f"provider option {key} takes {', '.join(CUDA_OPTIONS[key])}, not {excerpt(value)}")
        out[key] = text
    if out and _CUDA not in chosen:
        raise UsageError(f"provider options {', '.join(out)} are CUDAExecutionProvider options and this session "
                         f"runs on {', '.join(chosen)}; give them with provider 'cuda' on a machine with a GPU")
    return out


def float16_model(model: Any, *, keep_io_types: bool = True) -> Any:
    """`model` (an ``onnx.ModelProto`` or a path to one) converted to float16 by ONNX Runtime's converter
    (``onnxruntime.transformers.float16``); inputs and outputs stay float32 with `keep_io_types`.

    The converter's default block list (NonMaxSuppression, RoiAlign, TopK, ...) stays float32. It names the
    cast it puts before a blocked node after the tensor cast, so a tensor read by two blocked nodes gets two
    identical casts, which ONNX Runtime refuses as duplicate node names: the second is dropped here.
    Needs the ``onnx`` package; a one-line `UsageError` says so.
    """
    try:
        import onnx
        from onnxruntime.transformers.float16 import convert_float_to_float16
    except ImportError as exc:
        raise UsageError(f"fp16 conversion needs the onnx package ({first_line(exc)}); "
                         "pip install onnx, or convert once elsewhere and deploy the converted file") from exc
    proto = onnx.load(os.fspath(model)) if isinstance(model, (str, os.PathLike)) else model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the converter warns about values it clamps to float16's range
        converted = convert_float_to_float16(proto, keep_io_types=keep_io_types)
    seen: set[tuple[str, ...]] = set()
    nodes = []
    for node in converted.graph.node:
        key = (node.op_type, node.name, *node.input, "->", *node.output)
        if node.op_type != "Cast" or key not in seen:
            nodes.append(node)
        seen.add(key)
    del converted.graph.node[:]
    converted.graph.node.extend(_topological(nodes))
    return converted


def _topological(nodes: list[Any]) -> list[Any]:
    """`nodes` with each after the nodes that make its inputs (the converter appends its casts at the end;
    the ONNX checker wants the order), otherwise in their order."""
    producer = {output: i for i, node in enumerate(nodes) for output in node.output}
    order: list[Any] = []
    placed: set[int] = set()
    for start in range(len(nodes)):
        stack = [start]
        while stack:
            i = stack[-1]
            if i in placed:
                stack.pop()
                continue
            waiting = [producer[name] for name in nodes[i].input
                       if name in producer and producer[name] not in placed and producer[name] != i]
            if waiting and waiting[0] not in stack:
                stack.append(waiting[0])
                continue
            placed.add(i)
            order.append(nodes[i])
            stack.pop()
    return order


def _float16_model(path: Path) -> bytes:
    """The model at `path` in float16, inputs and outputs kept float32, serialised."""
    return float16_model(path).SerializeToString()


def file_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The zoo provenance in the ONNX file at `path`, read without ONNX Runtime or the ``onnx`` package.

    Only the model's top-level protobuf fields are walked (memory-mapped); its graph, weights included, is
    skipped by its length, so a 1 GB model costs what a 1 MB one does. What a session is made with is chosen
    from it before the session exists. A file that is not a model gives what it read before it stopped making
    sense, usually {}.
    """
    props: list[tuple[str, str]] = []
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            return {}
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            position = 0
            try:
                while position < len(data):
                    tag, position = _varint(data, position)
                    if tag & 7 == 0:
                        position = _varint(data, position)[1]
                    elif tag & 7 in (1, 5):
                        position += 8 if tag & 7 == 1 else 4
                    elif tag & 7 == 2:
                        length, position = _varint(data, position)
                        if tag >> 3 == 14:  # ModelProto.metadata_props: StringStringEntryProto
                            props.append(_string_pair(data[position:position + length]))
                        position += length
                    else:
                        break
            except (IndexError, UnicodeDecodeError):
                pass
    return metadata.decode(props, os.fspath(path))


def file_precision(path: str | os.PathLike[str]) -> str:
    """What the export at `path` computes in, from its zoo metadata: "fp16", or "fp32" (every file without it)."""
    precision = file_metadata(path).get("precision")
    return precision.get("compute", "fp32") if isinstance(precision, dict) else "fp32"


def _varint(data: Any, position: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80 or shift > 63:
            return value, position
        shift += 7


def _string_pair(data: bytes) -> tuple[str, str]:
    """The key and value of one serialised ``StringStringEntryProto`` (fields 1 and 2)."""
    found = {1: "", 2: ""}
    position = 0
    while position < len(data):
        tag, position = _varint(data, position)
        length, position = _varint(data, position)
        found[tag >> 3] = bytes(data[position:position + length]).decode("utf-8")
        position += length
    return found[1], found[2]


def _check_started(session: ort.InferenceSession, chosen: list[str], explicit: bool) -> None:
    """Raise (asked for) or warn (default) when a GPU provider did not start."""
    missing = [name for name in chosen if name in _GPU_PROVIDERS and name not in session.get_providers()]
    if not missing:
        return
    message = (f"{missing[0]} did not start (see onnxruntime's error above for the missing library); "
               f"the session runs on {session.get_providers()[0]}")
    if explicit:
        raise UsageError(message)
    warnings.warn(message, RuntimeWarning, stacklevel=3)


def session_metadata(session: ort.InferenceSession, source: str = "model") -> dict[str, Any]:
    """The zoo provenance in the session's model: `zoo.export.read_metadata`, read by ONNX Runtime.

    `source` names the model file in the one-line error about a value too large to read.
    """
    return metadata.decode(session.get_modelmeta().custom_metadata_map.items(), source)


# -- results --------------------------------------------------------------------------


def draw(result: Result, image: ImageLike) -> Image.Image:
    """A new RGB image: `result` drawn over `image`, the picture it was predicted from, by its task's adapter.

    `image` is a path, a PIL image or a uint8 array. Boxes, masks and keypoints are
    drawn where the model saw them, so give the image as it was given to `predict`.
    """
    if not isinstance(result, Result):
        raise UsageError(f"draw takes a result of Predictor.predict, not {type(result).__name__}")
    picture = open_image(image) if isinstance(image, (str, os.PathLike)) else _pil(image)
    return adapter(result.task).draw(result, picture.convert("RGB"))


def save_drawings(results: Sequence[Result], folder: str | os.PathLike[str], *,
                  overwrite: bool = False) -> list[Path]:
    """Draw each result over its source image into ``folder/<image name>.png``, and, for more than
    one, all of them in ``folder/grid.png`` (`make_grid`: the first `GRID_MOST` drawings, each scaled
    to fit `GRID_SIDE` pixels); the paths written, grid last.

    `folder` is made if missing. Files are written as `zoo.outputs.staged_output` writes
    them: regular files only, atomically, an existing file replaced only with `overwrite`.
    A result without a source file (an in-memory image) cannot be drawn: one line says so.
    """
    folder = Path(folder)
    names = [Path(r.source).stem + ".png" if r.source is not None else None for r in results]
    if None in names:
        raise UsageError("drawing needs each result's image file; these results came from images in memory: "
                         "draw them with zoo.runtime.draw(result, image)")
    reserved = ["grid.png"] if len(results) > 1 else []
    repeated = sorted({n for n in names if names.count(n) > 1 or n in reserved})
    if repeated:
        raise UsageError(f"drawings are named after their images, and {repeated[0]} would be written twice; "
                         "give images with distinct names (and none named grid)")
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"cannot draw into {folder}: it is not a directory; give a folder")
    folder.mkdir(parents=True, exist_ok=True)
    written, thumbnails = [], []
    for result, name in zip(results, names):
        drawing = draw(result, result.source)
        written.append(_save_png(drawing, folder / name, overwrite))
        if len(thumbnails) < GRID_MOST:
            drawing.thumbnail((GRID_SIDE, GRID_SIDE))
            thumbnails.append(np.asarray(drawing))
    if reserved:
        grid = make_grid(thumbnails, nrow=min(len(thumbnails), GRID_COLUMNS))
        written.append(_save_png(Image.fromarray(grid), folder / "grid.png", overwrite))
    return written


def _save_png(image: Image.Image, path: Path, overwrite: bool) -> Path:
    with staged_output(path, overwrite=overwrite, what="drawing") as work:
        image.save(work / path.name, format="PNG", pnginfo=png_info())
    return path


def image_files(paths: Sequence[str | os.PathLike[str]]) -> list[str]:
    """`paths` with each folder replaced by its image files (by Pillow's extensions), in name order.

    Files are kept as given, whatever their name (`open_image` says what is wrong with one);
    a folder without image files is one line.
    """
    Image.init()
    extensions = {ext.lower() for ext in Image.registered_extensions()}
    found: list[str] = []
    for path in map(Path, paths):
        if not path.is_dir():
            found.append(os.fspath(path))
            continue
        inside = sorted(os.fspath(p) for p in path.iterdir() if p.suffix.lower() in extensions and p.is_file())
        if not inside:
            raise UsageError(f"folder {path} has no image files ({', '.join(sorted(extensions)[:6])}, ...)")
        found += inside
    return found


# -- the predictor --------------------------------------------------------------------


def published_export(model: str, weights: str) -> Path:
    """The file of the newest export of `model` with `weights` published with ``zoo publish export``.

    With a registry service (``ZOO_REGISTRY_URL=http://...``, `zoo.service.client`) it is fetched
    into the weights cache and verified by its SHA-256 (``$ZOO_OFFLINE`` and the mirror
    apply), with neither torch nor SQLAlchemy; else it is the local artifact store's.
    """
    from zoo.context import current

    catalog = current().catalog
    record = catalog.find_export(model, weights)
    found = catalog.export_file(record).path if record is not None else None
    if found is None:
        raise UsageError(f"no export of {model} with weights {weights} is published; publish one with "
                         f"`zoo publish export FILE.onnx`")
    return found


class Predictor:
    """An exported model ready to run on images: its session, preprocessing and output reading.

    Task, preprocessing and categories come from the model's zoo metadata; `task`,
    `categories` and `preprocessing` (a `PreprocessSpec` or its JSON) override them,
    and are how a model exported by other tools is given them. The task's adapter
    (`zoo.runtime.tasks.adapter`) says how outputs are checked and decoded and whether images
    go in batches. Session keywords are `create_session`'s (`provider_options`: CUDA's, over
    what the export and device choose). `io_binding` runs through ONNX Runtime's IO
    binding, the inputs copied to the provider's device first and outputs left there
    until read (default: on CUDA; always on with a CUDA graph).

    A model of several inputs (the adapter's `input_names`: optical flow takes two)
    is run on consecutive images: frames 0 and 1, 1 and 2, ...; N images give N - 1
    results, each with the first image of its pair as its source.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        providers: str | Sequence[str] | None = None,
        threads: int | None = None,
        optimization: str = "all",
        optimized_model_path: str | os.PathLike[str] | None = None,
        fp16: bool = False,
        io_binding: bool | None = None,
        cuda_graph: bool = False,
        provider_options: Mapping[str, Any] | None = None,
        task: str | None = None,
        categories: Sequence[str] | None = None,
        preprocessing: PreprocessSpec | Mapping[str, Any] | None = None,
    ) -> None:
        self.path = Path(path)
        self.session = create_session(path, providers=providers, threads=threads, optimization=optimization,
                                      optimized_model_path=optimized_model_path, fp16=fp16, cuda_graph=cuda_graph,
                                      provider_options=provider_options)
        self.metadata = session_metadata(self.session, str(self.path))
        self.task = _task(task) if task is not None else self._from_file("task", _task)
        self.adapter: RuntimeTask | None = adapter(self.task) if self.task is not None else None
        self.categories = (_categories(categories) if categories is not None
                           else self._from_file("categories", _categories))
        self.preprocessing = (_spec(preprocessing) if preprocessing is not None
                              else self._from_file("preprocessing", _spec))
        model_inputs = self.session.get_inputs()
        self.input_names = [i.name for i in model_inputs]
        self.input_name = self.input_names[0]
        self.input_shape: list[int | str | None] = _input_shape(self.path, model_inputs[0].shape)
        self.output_names = [o.name for o in self.session.get_outputs()]
        #: inputs of an export with float16 inputs (``io_precision="fp16"``): `run` takes float32 and casts
        self._half_inputs = {i.name for i in model_inputs if i.type == "tensor(float16)"}
        self._check_model()
        on_cuda = self.session.get_providers()[0] in _GPU_PROVIDERS
        graph = cuda_graph or (provider_options or {}).get("enable_cuda_graph") in ("1", 1, True)
        binding = on_cuda if io_binding is None else io_binding
        self._binding = _Binding(self.session, graph) if binding or graph else None

    @classmethod
    def from_registry(cls, model: str, weights: str, **options: Any) -> Predictor:
        """A predictor for the newest published export of `model` with `weights` (a weights name, or a published
        spec such as ``acme/defects@production``): see `published_export`. `options` are the constructor's."""
        return cls(published_export(model, weights), **options)

    def _check_model(self) -> None:
        """The task's inputs and outputs and the preprocessing fit the model, or one line says how not.

        Task and preprocessing may come from the file's metadata, which is untrusted.
        """
        if self.adapter is not None:
            self.adapter.check_outputs(str(self.path), {o.name: list(o.shape) for o in self.session.get_outputs()})
            wanted = self.adapter.input_names
            if len(wanted) != len(self.input_names):
                raise UsageError(f"{self.path}: a {self.task} model takes {len(wanted)} input(s) "
                                 f"({', '.join(wanted)}); this model takes {len(self.input_names)}")
            spec = self.preprocessing
            if spec is not None and IMAGES_PER_CALL[spec.kind] != len(wanted):
                raise UsageError(f"{self.path}: its preprocessing of kind {spec.kind!r} makes "
                                 f"{IMAGES_PER_CALL[spec.kind]} image(s) per call; a {self.task} model takes "
                                 f"{len(wanted)}")
        for model_input in self.session.get_inputs()[1:]:
            if model_input.shape != self.session.get_inputs()[0].shape:
                raise UsageError(f"{self.path}: zoo predicts with inputs of one shape; this model's are "
                                 + ", ".join(onnx_shape_text(i.shape) for i in self.session.get_inputs())[:200])
        spec, channels = self.preprocessing, self.input_shape[1]
        if spec is not None and isinstance(channels, int) and channels != len(spec.channel_order):
            raise UsageError(f"{self.path}: its preprocessing makes {spec.channel_order} images of "
                             f"{len(spec.channel_order)} channel(s); its input takes {channels}")

    def _from_file(self, name: str, parse: Callable[[Any], _T]) -> _T:
        """The model file's metadata field `name`, checked by `parse`; a one-line error names the file."""
        try:
            return parse(self.metadata.get(name))
        except UsageError as exc:
            raise UsageError(f"{self.path}: metadata zoo.{name} is not accepted: {exc}") from None

    @property
    def providers(self) -> list[str]:
        """The execution providers the session really got, best first."""
        return self.session.get_providers()

    def run(self, *batches: np.ndarray) -> dict[str, np.ndarray]:
        """The model's outputs by name on preprocessed float32 batches, one per input, in one session call."""
        if len(batches) != len(self.input_names):
            raise UsageError(f"{self.path.name} takes {len(self.input_names)} input batch(es) "
                             f"({', '.join(self.input_names)}), got {len(batches)}")
        for batch in batches:
            self._check_batch(batch)
        feeds = {name: batch.astype(np.float16) if name in self._half_inputs else batch
                 for name, batch in zip(self.input_names, batches)}
        outputs = (self._binding.run(feeds) if self._binding is not None
                   else dict(zip(self.output_names, self.session.run(self.output_names, feeds))))
        # float16 outputs (io_precision="fp16") are read as float32, as the task's decoding expects
        return {name: v.astype(np.float32) if v.dtype == np.float16 else v for name, v in outputs.items()}

    def predict(self, images: ImageLike | Sequence[ImageLike], *, topk: int = 5,
                score_threshold: float = 0.5) -> list[Result]:
        """One result per image (per consecutive pair, for two inputs), in order: `topk`
        classes, detections scoring at least `score_threshold`, a class mask, ..., as the
        model's task decodes them.

        `images` is one image or a list: file paths, PIL images, uint8 H x W (x C)
        arrays, or already preprocessed float32 C x H x W arrays (or an N x C x H x W
        batch of them).
        """
        model_adapter = self._check_ready()
        if not isinstance(topk, int) or isinstance(topk, bool) or topk < 1:
            raise UsageError(f"topk must be a positive integer, not {topk!r}")
        options = DecodeOptions(categories=self.categories, topk=topk, score_threshold=score_threshold)
        sources, outputs = self._outputs(images)
        return [model_adapter.decode(out, source, options) for source, out in zip(sources, outputs)]

    def outputs(self, images: ImageLike | Sequence[ImageLike]) -> list[dict[str, np.ndarray]]:
        """Each image's (pair's) outputs by name, before decoding: what `predict` decodes (a classifier's
        logits, a detector's boxes...), from the same preprocessing and session calls. `images` as `predict`'s."""
        return self._outputs(images)[1]

    def _outputs(self, images: ImageLike | Sequence[ImageLike]) -> tuple[list[str | None], list[dict[str, np.ndarray]]]:
        """Each image's source (its path, if any) and outputs (`outputs`)."""
        model_adapter = self._check_ready()
        sources, samples = self._samples(images)
        span = len(self.input_names)
        if len(samples) < span:
            raise UsageError(f"{self.path.name} runs on {span} consecutive images at a time ({self.task}); "
                             f"got {len(samples)}")
        calls = [tuple(samples[i:i + span]) for i in range(len(samples) - span + 1)]
        if model_adapter.batched:
            return sources, self._run_batches(calls)
        # exported for one image (or pair) of any size: one session call each
        return sources, [self.run(*(x[None] for x in call)) for call in calls]

    # -- inputs

    def _check_ready(self) -> RuntimeTask:
        """The task's adapter, when everything `predict` needs is known; else one line names the keywords
        that give it."""
        missing = [name for name, value in (("task", self.task), ("preprocessing", self.preprocessing))
                   if value is None]
        if missing or self.adapter is None:
            raise UsageError(f"{self.path.name} has no zoo metadata for {' and '.join(missing)}; pass "
                             + ", ".join(f"{m}=" for m in missing)
                             + f" to Predictor (task: one of {', '.join(known_tasks())}; categories= names "
                               "the classes)")
        return self.adapter

    def _samples(self, images: ImageLike | Sequence[ImageLike]) -> tuple[list[str | None], list[np.ndarray]]:
        """Each image's source (its path, if any) and preprocessed C x H x W float32 array."""
        sources: list[str | None] = []
        samples: list[np.ndarray] = []
        for image in _as_list(images):
            if isinstance(image, np.ndarray) and image.dtype != np.uint8:
                batch = image if image.ndim == len(self.input_shape) else image[None]
                self._check_batch(batch, given=image, any_size=True)
                sources += [None] * len(batch)
                samples += list(batch)
                continue
            source = os.fspath(image) if isinstance(image, (str, os.PathLike)) else None
            sources.append(source)
            samples.append(self._preprocess(open_image(image) if source is not None else image))
        return sources, samples

    def _preprocess(self, image: Image.Image | np.ndarray) -> np.ndarray:
        """The spec's preprocessing; where the model takes one fixed size and that gives
        another (e.g. a shorter-side resize of a non-square image), a resize to it."""
        assert self.preprocessing is not None  # _check_ready
        sample = preprocess_image(self.preprocessing, image)
        size = tuple(self.input_shape[-2:])
        if all(isinstance(d, int) for d in size) and sample.shape[-2:] != size:
            sample = preprocess_image(_resized_to(self.preprocessing, size), image)
        self._check_batch(sample[None], any_size=True)
        return sample

    def _check_batch(self, batch: np.ndarray, given: np.ndarray | None = None, any_size: bool = False) -> None:
        """A float32 batch that the session's inputs take, or one line with the shape they take
        and what was `given` (the batch itself, unless it was one sample).

        `any_size` accepts any batch size: `predict` regroups samples into batches itself.
        """
        expected = [None, *self.input_shape[1:]] if any_size else self.input_shape
        fits = (isinstance(batch, np.ndarray) and batch.dtype == np.float32 and batch.ndim == len(expected)
                and all(not isinstance(d, int) or d == n for d, n in zip(expected, batch.shape)))
        if not fits:
            given = batch if given is None else given
            got = f"{given.dtype} of shape {given.shape}" if isinstance(given, np.ndarray) else type(given).__name__
            raise UsageError(f"{self.path.name} expected float32 of shape {onnx_shape_text(self.input_shape)} "
                             f"(or a uint8 image to preprocess), got {got}")

    def _run_batches(self, calls: list[tuple[np.ndarray, ...]]) -> list[dict[str, np.ndarray]]:
        """Each call's outputs (each output's row of it), from as few session calls as the input's batch allows.

        Calls of one shape go together; a fixed batch is filled up with zeros, the filler dropped.
        """
        fixed = self.input_shape[0] if isinstance(self.input_shape[0], int) else None
        out: list[dict[str, np.ndarray]] = []
        for group in _groups(calls, fixed or _MAX_BATCH):
            batches = [np.stack(column) for column in zip(*group)]
            if fixed is not None and len(group) < fixed:
                filler = np.zeros((fixed - len(group), *batches[0].shape[1:]), np.float32)
                batches = [np.concatenate([b, filler]) for b in batches]
            outputs = self.run(*batches)
            out += [{name: value[i] for name, value in outputs.items()} for i in range(len(group))]
        return out


class _Binding:
    """Runs a session through IO binding on its provider's device.

    The inputs are copied to the device once per run and the outputs stay there until
    read. With a CUDA graph, the graph replays on the buffers it was captured with,
    so the inputs are copied into the same buffers each time and outputs are allocated
    once, at shapes that follow from the inputs'.
    """

    def __init__(self, session: ort.InferenceSession, cuda_graph: bool) -> None:
        self.session = session
        self.device = "cuda" if session.get_providers()[0] in _GPU_PROVIDERS else "cpu"
        self.cuda_graph = cuda_graph
        self.binding = session.io_binding()
        self.inputs: dict[str, ort.OrtValue] = {}

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.cuda_graph and self.inputs:
            for name, batch in feeds.items():
                bound = self.inputs[name]
                if list(batch.shape) != bound.shape():
                    raise UsageError(f"a CUDA graph replays one input shape, {tuple(bound.shape())}, "
                                     f"not {batch.shape}; make a Predictor without cuda_graph for other shapes")
                bound.update_inplace(batch)
        else:
            self._bind(feeds)
        self.session.run_with_iobinding(self.binding)
        outputs = self.binding.copy_outputs_to_cpu()
        return dict(zip([o.name for o in self.session.get_outputs()], outputs))

    def _bind(self, feeds: Mapping[str, np.ndarray]) -> None:
        symbols: dict[str, int] = {}
        for model_input in self.session.get_inputs():
            batch = feeds[model_input.name]
            self.inputs[model_input.name] = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(batch),
                                                                             self.device, 0)
            self.binding.bind_ortvalue_input(model_input.name, self.inputs[model_input.name])
            symbols.update({d: n for d, n in zip(model_input.shape, batch.shape) if isinstance(d, str)})
        for output in self.session.get_outputs():
            if self.cuda_graph:
                shape = [symbols.get(d, d) for d in output.shape]
                if not all(isinstance(d, int) for d in shape):
                    raise UsageError(f"a CUDA graph needs output shapes known from the input; {output.name} "
                                     f"has {output.shape}")
                value = ort.OrtValue.ortvalue_from_shape_and_type(shape, _NUMPY_TYPES[output.type], self.device, 0)
                self.binding.bind_ortvalue_output(output.name, value)
            else:
                self.binding.bind_output(output.name, self.device, 0)


def predict(path: str | os.PathLike[str], images: ImageLike | Sequence[ImageLike], *, topk: int = 5,
            score_threshold: float = 0.5, providers: str | Sequence[str] | None = None,
            threads: int | None = None) -> list[Result]:
    """`Predictor(path).predict(images)`: one result per image, for ``zoo predict``."""
    predictor = Predictor(path, providers=providers, threads=threads)
    return predictor.predict(images, topk=topk, score_threshold=score_threshold)


# -- helpers --------------------------------------------------------------------------


def _task(task: Any) -> str | None:
    """`task`, if a task adapter reads it (`zoo.runtime.tasks.adapter`: built in, or a plugin's)."""
    if task is None:
        return None
    if isinstance(task, str):
        try:
            adapter(task)
            return task
        except UsageError:
            pass
    raise UsageError(f"cannot predict with a {excerpt(task)} model; tasks: {', '.join(known_tasks())}")


def _categories(categories: Any) -> list[str] | None:
    if categories is None:
        return None
    fits = (isinstance(categories, (list, tuple)) and len(categories) <= MAX_CATEGORIES
            and all(isinstance(c, str) and len(c) <= MAX_LABEL_CHARS for c in categories))
    if not fits:
        raise UsageError(f"categories must be a list of at most {MAX_CATEGORIES} class names (strings of at most "
                         f"{MAX_LABEL_CHARS} characters), index = class id; got {excerpt(categories)}")
    return list(categories)


def _spec(spec: PreprocessSpec | Mapping[str, Any] | None) -> PreprocessSpec | None:
    if spec is None:
        return None
    if not isinstance(spec, (PreprocessSpec, Mapping)):
        raise UsageError(f"preprocessing spec: expected a JSON object of PreprocessSpec fields, "
                         f"got {type(spec).__name__} {excerpt(spec)}")
    spec = spec if isinstance(spec, PreprocessSpec) else PreprocessSpec.from_json(dict(spec))
    if spec.kind not in IMAGES_PER_CALL:
        raise UsageError(f"preprocessing spec: kind {spec.kind!r} takes a clip; a Predictor preprocesses "
                         f"images ({', '.join(IMAGES_PER_CALL)})")
    return spec


def _input_shape(path: Path, shape: Sequence[Any]) -> list[int | str | None]:
    """The model's first input's shape, if `predict` can fill it: at most `MAX_INPUT_VALUES` values."""
    fixed = [d for d in shape if isinstance(d, int)]
    sides = [d for d in shape[-2:] if isinstance(d, int)]
    if (len(shape) < 3 or any(d < 1 for d in fixed) or any(d > MAX_SIDE for d in sides)
            or math.prod(fixed) > MAX_INPUT_VALUES):
        raise UsageError(f"{path}: its input has shape {onnx_shape_text(shape)[:80]}; zoo predicts with inputs "
                         f"N x C x ... x H x W of fixed sizes from 1 up, H and W at most {MAX_SIDE}, "
                         f"at most {MAX_INPUT_VALUES} values in all")
    return list(shape)


def _resized_to(spec: PreprocessSpec, size: tuple[int, int]) -> PreprocessSpec:
    """`spec` resizing straight to `size` (height, width) instead of its own resize and crop."""
    return replace(spec, resize_size=size, resize_mode="exact", crop_size=None, pad_fill=None,
                   interpolation=spec.interpolation or "bilinear",
                   antialias=True if spec.antialias is None else spec.antialias)


def _as_list(images: ImageLike | Sequence[ImageLike]) -> list[ImageLike]:
    if isinstance(images, (str, os.PathLike, Image.Image, np.ndarray)):
        return [images]
    if isinstance(images, Sequence):
        return list(images)
    raise UsageError(f"expected an image or a list of images ({_ACCEPTED_IMAGES}), got {type(images).__name__}")


def open_image(path: str | os.PathLike[str]) -> Image.Image:
    """The image at `path`, opened with Pillow, read and brought to 8 bits per channel (`to_8bit`).

    A one-line `UsageError` names a file that is not an image, a truncated or corrupt
    one, and one whose header declares more than `MAX_IMAGE_PIXELS` (checked before
    the pixels are decoded; Pillow's own decompression-bomb guard stays on, its
    warning an error).
    """
    name = os.fspath(path)
    if not Path(path).is_file():
        raise UsageError(f"no image file at {name}; give {_ACCEPTED_IMAGES}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                check_image_size(image.width, image.height)
                image.load()
                return to_8bit(image)
    except UsageError as exc:
        raise UsageError(f"{name}: {exc}") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise UsageError(f"{name}: {first_line(exc)} zoo reads images of at most {MAX_IMAGE_PIXELS} pixels "
                         f"({MAX_SIDE} x {MAX_SIDE})") from None
    except Exception as exc:  # noqa: BLE001 - Pillow's decoders raise OSError, SyntaxError, ValueError, ...
        raise UsageError(f"{name} is not an image Pillow can read ({first_line(exc)}); "
                         f"give {_ACCEPTED_IMAGES}") from None


def _groups(calls: list[tuple[np.ndarray, ...]], size: int) -> Iterator[list[tuple[np.ndarray, ...]]]:
    """Consecutive runs of calls whose inputs have one shape, at most `size` long."""
    group: list[tuple[np.ndarray, ...]] = []
    for call in calls:
        if group and (len(group) == size or [x.shape for x in call] != [x.shape for x in group[0]]):
            yield group
            group = []
        group.append(call)
    if group:
        yield group


def _pil(image: Any) -> Image.Image:
    """A PIL image, or a uint8 H x W (x C) array as one; else one line says what `draw` takes."""
    if isinstance(image, Image.Image):
        return image
    if isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim in (2, 3):
        return Image.fromarray(image[..., 0] if image.ndim == 3 and image.shape[2] == 1 else image)
    described = f"{image.dtype} array of shape {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
    raise UsageError(f"draw takes the image as a path, a PIL image or a uint8 H x W (x C) array, not {described}")

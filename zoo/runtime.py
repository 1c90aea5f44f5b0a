"""The deployment runtime: run an exported model with ONNX Runtime, numpy and Pillow alone.

`create_session` is the one place sessions are made (execution providers, threads,
graph optimisation, a cache of the optimised model, FP16, CUDA graphs);
`select_providers` resolves what to ask ONNX Runtime for. A `Predictor` reads the
zoo provenance that `zoo.export.export_onnx` writes into the model (task,
preprocessing, categories) through ONNX Runtime itself, preprocesses images with
`zoo.preprocessing.preprocess_numpy`, runs the session, and turns its outputs into
one result per image: top-k classes, detections, or a per-pixel class mask.

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
import os
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar, Union

import numpy as np
import onnxruntime as ort
from PIL import Image

from zoo import metadata
from zoo.errors import UsageError, excerpt, first_line
from zoo.preprocessing import (MAX_IMAGE_PIXELS, MAX_SIDE, PreprocessSpec, check_image_size, preprocess_numpy,
                               to_8bit)
from zoo.specs import DETECTION_TASKS

__all__ = [
    "PROVIDERS", "OPTIMIZATION_LEVELS", "TASKS", "Classification", "Detections", "Predictor", "Segmentation",
    "create_session", "cuda_device_count", "open_image", "predict", "select_providers", "session_metadata",
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
#: The tasks whose outputs a `Predictor` knows how to read.
TASKS = ("classification", "segmentation", *DETECTION_TASKS)
#: Largest batch of images sent to a session with a dynamic batch in one call.
_MAX_BATCH = 32
#: Preprocessing kinds of one image, which is what a `Predictor` preprocesses.
_IMAGE_KINDS = ("classification", "detection", "segmentation")
#: The outputs a detection model's results are read from, by their rank; `_REQUIRED` always.
_DETECTION_OUTPUTS = {"boxes": 2, "labels": 1, "scores": 1, "masks": 4, "keypoints": 3, "keypoints_scores": 2}
_REQUIRED = ("boxes", "labels", "scores")
#: The rank of the main output (N x classes, N x classes x H x W) of the other tasks.
_TASK_OUTPUT_RANKS = {"classification": 2, "segmentation": 4}
#: Most class names a model file may list, and the longest name (ImageNet-21k has 21,843).
MAX_CATEGORIES = 100_000
MAX_LABEL_CHARS = 1000
#: Most values of a model input whose sizes are fixed (a batch of 64 images of 3 x 1024 x 1024 is 2**28).
MAX_INPUT_VALUES = 1 << 28
#: torchvision's instance-segmentation masks are probabilities; a pixel belongs above this.
_MASK_THRESHOLD = 0.5
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
    if _CUDA in chosen:
        _preload_cuda_libraries()
    options = _session_options(threads, optimization, optimized_model_path)
    model = _float16_model(path) if fp16 else str(path)
    try:
        session = ort.InferenceSession(model, options, providers=_with_options(chosen, cuda_graph))
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own unrelated types
        raise UsageError(f"onnxruntime cannot load {path}: {first_line(exc)}") from exc
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


def _with_options(providers: list[str], cuda_graph: bool) -> list[str | tuple[str, dict[str, str]]]:
    """`providers` as ONNX Runtime takes them, CUDA with its options when it has any.

    Only options that differ from the defaults are passed: since ONNX Runtime 1.26 any
    ``device_id``, even the default 0, makes it look for a plugin execution provider
    and log "No registered plugin EP device found" at every CUDA session.
    """
    if not cuda_graph:
        return list(providers)
    return [(name, {"enable_cuda_graph": "1"}) if name == _CUDA else name for name in providers]


def _float16_model(path: Path) -> bytes:
    """The model at `path` in float16, inputs and outputs kept float32, serialised."""
    try:
        import onnx
        from onnxruntime.transformers.float16 import convert_float_to_float16
    except ImportError as exc:
        raise UsageError(f"fp16 conversion needs the onnx package ({first_line(exc)}); "
                         "pip install onnx, or convert once elsewhere and deploy the converted file") from exc
    return convert_float_to_float16(onnx.load(str(path)), keep_io_types=True).SerializeToString()


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


@dataclass(frozen=True)
class Classification:
    """The `topk` most probable classes of one image, most probable first."""

    source: str | None  # the image's path, if it came from a file
    labels: list[str]
    indices: list[int]
    probabilities: list[float]  # softmax of the logits

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "task": "classification",
                "top": [{"label": label, "index": index, "probability": p}
                        for label, index, p in zip(self.labels, self.indices, self.probabilities)]}

    def __str__(self) -> str:
        top = ", ".join(f"{label} {p:.1%}" for label, p in zip(self.labels, self.probabilities))
        return f"{self.source or 'image'}: {top}"


@dataclass(frozen=True)
class Detections:
    """The objects found in one image at or above the score threshold, by descending score."""

    source: str | None
    boxes: np.ndarray  # (K, 4) float32: x1, y1, x2, y2 in the image's pixels
    labels: list[str]
    label_ids: np.ndarray  # (K,) int64, index into the categories
    scores: np.ndarray  # (K,) float32
    masks: np.ndarray | None = None  # instance segmentation: (K, H, W) bool
    keypoints: np.ndarray | None = None  # keypoints: (K, J, 3) x, y, visibility
    keypoint_scores: np.ndarray | None = None  # keypoints: (K, J)

    def to_json(self) -> dict[str, Any]:
        """Plain data; a mask is summarised by its pixel count (`masks` has the pixels)."""
        objects = []
        for i, label in enumerate(self.labels):
            item: dict[str, Any] = {"label": label, "label_id": int(self.label_ids[i]),
                                    "score": float(self.scores[i]), "box": [float(v) for v in self.boxes[i]]}
            if self.masks is not None:
                item["mask_pixels"] = int(self.masks[i].sum())
            if self.keypoints is not None:
                item["keypoints"] = self.keypoints[i].tolist()
            objects.append(item)
        return {"source": self.source, "task": "detection", "detections": objects}

    def __str__(self) -> str:
        lines = [f"{self.source or 'image'}: {len(self.labels)} detection(s)"]
        lines += [f"  {label} {score:.1%} at ({', '.join(f'{v:.0f}' for v in box)})"
                  for label, score, box in zip(self.labels, self.scores, self.boxes)]
        return "\n".join(lines)


@dataclass(frozen=True)
class Segmentation:
    """One image's per-pixel classes, at the resolution the model ran at."""

    source: str | None
    mask: np.ndarray  # (H, W) int64 class index per pixel: argmax of the logits
    classes: list[str]  # names of the classes present, by index
    pixels: list[int] = field(default_factory=list)  # how many pixels each of `classes` has

    def to_json(self) -> dict[str, Any]:
        """Plain data; the mask is summarised by the pixels of each class present."""
        return {"source": self.source, "task": "segmentation", "shape": list(self.mask.shape),
                "classes": [{"label": c, "pixels": n} for c, n in zip(self.classes, self.pixels)]}

    def __str__(self) -> str:
        total = self.mask.size
        present = ", ".join(f"{c} {n / total:.1%}" for c, n in zip(self.classes, self.pixels))
        return f"{self.source or 'image'} ({self.mask.shape[0]}x{self.mask.shape[1]}): {present}"


Result = Union[Classification, Detections, Segmentation]


# -- the predictor --------------------------------------------------------------------


class Predictor:
    """An exported model ready to run on images: its session, preprocessing and output reading.

    Task, preprocessing and categories come from the model's zoo metadata; `task`,
    `categories` and `preprocessing` (a `PreprocessSpec` or its JSON) override them,
    and are how a model exported by other tools is given them. Session keywords are
    `create_session`'s. `io_binding` runs through ONNX Runtime's IO binding, the
    input copied to the provider's device first and outputs left there until read
    (always on with `cuda_graph`).
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
        io_binding: bool = False,
        cuda_graph: bool = False,
        task: str | None = None,
        categories: Sequence[str] | None = None,
        preprocessing: PreprocessSpec | Mapping[str, Any] | None = None,
    ) -> None:
        self.path = Path(path)
        self.session = create_session(path, providers=providers, threads=threads, optimization=optimization,
                                      optimized_model_path=optimized_model_path, fp16=fp16, cuda_graph=cuda_graph)
        self.metadata = session_metadata(self.session, str(self.path))
        self.task = _task(task) if task is not None else self._from_file("task", _task)
        self.categories = (_categories(categories) if categories is not None
                           else self._from_file("categories", _categories))
        self.preprocessing = (_spec(preprocessing) if preprocessing is not None
                              else self._from_file("preprocessing", _spec))
        model_input = self.session.get_inputs()[0]
        self.input_name = model_input.name
        self.input_shape: list[int | str | None] = _input_shape(self.path, model_input.shape)
        self.output_names = [o.name for o in self.session.get_outputs()]
        self._check_model()
        self._binding = _Binding(self.session, cuda_graph) if io_binding or cuda_graph else None

    def _check_model(self) -> None:
        """The task's outputs and the preprocessing's channels fit the model, or one line says how not.

        Task and preprocessing may come from the file's metadata, which is untrusted.
        """
        if self.task is not None:
            _check_outputs(self.path, self.task, {o.name: list(o.shape) for o in self.session.get_outputs()})
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

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """The model's outputs by name on one preprocessed float32 batch, in one session call."""
        self._check_batch(batch)
        if self._binding is not None:
            return self._binding.run(self.input_name, batch)
        return dict(zip(self.output_names, self.session.run(self.output_names, {self.input_name: batch})))

    def predict(self, images: ImageLike | Sequence[ImageLike], *, topk: int = 5,
                score_threshold: float = 0.5) -> list[Result]:
        """One result per image, in order: `topk` classes, detections scoring at least
        `score_threshold`, or a class mask, by the model's task.

        `images` is one image or a list: file paths, PIL images, uint8 H x W (x C)
        arrays, or already preprocessed float32 C x H x W arrays (or an N x C x H x W
        batch of them).
        """
        self._check_ready()
        if not isinstance(topk, int) or isinstance(topk, bool) or topk < 1:
            raise UsageError(f"topk must be a positive integer, not {topk!r}")
        sources, samples = self._samples(images)
        if self.task in DETECTION_TASKS:
            # exported for one image of any size: one session call per image
            return [self._detections(source, self.run(x[None]), score_threshold)
                    for source, x in zip(sources, samples)]
        outputs = self._run_batches(samples)
        if self.task == "classification":
            return [self._classification(s, logits, topk) for s, logits in zip(sources, outputs)]
        return [self._segmentation(s, logits) for s, logits in zip(sources, outputs)]

    # -- inputs

    def _check_ready(self) -> None:
        """Everything `predict` needs is known, or one line names the keywords that give it."""
        missing = [name for name, value in (("task", self.task), ("preprocessing", self.preprocessing))
                   if value is None]
        if missing:
            raise UsageError(f"{self.path.name} has no zoo metadata for {' and '.join(missing)}; pass "
                             + ", ".join(f"{m}=" for m in missing)
                             + f" to Predictor (task: one of {', '.join(TASKS)}; categories= names the classes)")

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
        sample = preprocess_numpy(self.preprocessing, image)
        size = tuple(self.input_shape[-2:])
        if all(isinstance(d, int) for d in size) and sample.shape[-2:] != size:
            sample = preprocess_numpy(_resized_to(self.preprocessing, size), image)
        self._check_batch(sample[None], any_size=True)
        return sample

    def _check_batch(self, batch: np.ndarray, given: np.ndarray | None = None, any_size: bool = False) -> None:
        """A float32 batch that the session's input takes, or one line with the shape it takes
        and what was `given` (the batch itself, unless it was one sample).

        `any_size` accepts any batch size: `predict` regroups samples into batches itself.
        """
        expected = [None, *self.input_shape[1:]] if any_size else self.input_shape
        fits = (isinstance(batch, np.ndarray) and batch.dtype == np.float32 and batch.ndim == len(expected)
                and all(not isinstance(d, int) or d == n for d, n in zip(expected, batch.shape)))
        if not fits:
            given = batch if given is None else given
            got = f"{given.dtype} of shape {given.shape}" if isinstance(given, np.ndarray) else type(given).__name__
            raise UsageError(f"{self.path.name} expected float32 of shape {_shape_text(self.input_shape)} "
                             f"(or a uint8 image to preprocess), got {got}")

    def _run_batches(self, samples: list[np.ndarray]) -> list[np.ndarray]:
        """The main output (a segmentation model's "out", not "aux") per sample.

        Samples of one shape go together, as many as the input's batch allows.
        """
        fixed = self.input_shape[0] if isinstance(self.input_shape[0], int) else None
        main = "out" if "out" in self.output_names else self.output_names[0]
        out: list[np.ndarray] = []
        for group in _groups(samples, fixed or _MAX_BATCH):
            batch = np.stack(group)
            if fixed is not None and len(group) < fixed:  # a fixed batch is filled up, the filler dropped
                batch = np.concatenate([batch, np.zeros((fixed - len(group), *batch.shape[1:]), np.float32)])
            out += list(self.run(batch)[main][: len(group)])
        return out

    # -- outputs

    def _label(self, index: int) -> str:
        return self.categories[index] if self.categories and 0 <= index < len(self.categories) else str(index)

    def _classification(self, source: str | None, logits: np.ndarray, topk: int) -> Classification:
        probabilities = _softmax(logits.astype(np.float64))
        top = np.argsort(-probabilities, kind="stable")[:topk]
        return Classification(source, [self._label(int(i)) for i in top], [int(i) for i in top],
                              [float(probabilities[i]) for i in top])

    def _segmentation(self, source: str | None, logits: np.ndarray) -> Segmentation:
        mask = logits.argmax(0).astype(np.int64)
        present, counts = np.unique(mask, return_counts=True)
        return Segmentation(source, mask, [self._label(int(i)) for i in present], [int(n) for n in counts])

    def _detections(self, source: str | None, outputs: dict[str, np.ndarray], threshold: float) -> Detections:
        scores = outputs["scores"]
        keep = np.flatnonzero(scores >= threshold)
        keep = keep[np.argsort(-scores[keep], kind="stable")]
        label_ids = outputs["labels"][keep].astype(np.int64)
        masks = outputs.get("masks")
        keypoints = outputs.get("keypoints")
        keypoint_scores = outputs.get("keypoints_scores")
        return Detections(
            source=source,
            boxes=outputs["boxes"][keep].astype(np.float32),
            labels=[self._label(int(i)) for i in label_ids],
            label_ids=label_ids,
            scores=scores[keep].astype(np.float32),
            masks=masks[keep, 0] > _MASK_THRESHOLD if masks is not None else None,
            keypoints=keypoints[keep] if keypoints is not None else None,
            keypoint_scores=keypoint_scores[keep] if keypoint_scores is not None else None,
        )


class _Binding:
    """Runs a session through IO binding on its provider's device.

    The input is copied to the device once per run and the outputs stay there until
    read. With a CUDA graph, the graph replays on the buffers it was captured with,
    so the input is copied into the same buffer each time and outputs are allocated
    once, at shapes that follow from the input's.
    """

    def __init__(self, session: ort.InferenceSession, cuda_graph: bool) -> None:
        self.session = session
        self.device = "cuda" if session.get_providers()[0] in _GPU_PROVIDERS else "cpu"
        self.cuda_graph = cuda_graph
        self.binding = session.io_binding()
        self.input: ort.OrtValue | None = None

    def run(self, name: str, batch: np.ndarray) -> dict[str, np.ndarray]:
        if self.cuda_graph and self.input is not None:
            if list(batch.shape) != self.input.shape():
                raise UsageError(f"a CUDA graph replays one input shape, {tuple(self.input.shape())}, "
                                 f"not {batch.shape}; make a Predictor without cuda_graph for other shapes")
            self.input.update_inplace(batch)
        else:
            self._bind(name, batch)
        self.session.run_with_iobinding(self.binding)
        outputs = self.binding.copy_outputs_to_cpu()
        return dict(zip([o.name for o in self.session.get_outputs()], outputs))

    def _bind(self, name: str, batch: np.ndarray) -> None:
        self.input = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(batch), self.device, 0)
        self.binding.bind_ortvalue_input(name, self.input)
        symbols = {d: n for d, n in zip(self.session.get_inputs()[0].shape, batch.shape) if isinstance(d, str)}
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
    if task is not None and not (isinstance(task, str) and task in TASKS):
        raise UsageError(f"cannot predict with a {excerpt(task)} model; tasks: {', '.join(TASKS)}")
    return task


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
    if spec.kind not in _IMAGE_KINDS:
        raise UsageError(f"preprocessing spec: kind {spec.kind!r} takes a clip or a pair of images; "
                         f"a Predictor preprocesses one image ({', '.join(_IMAGE_KINDS)})")
    return spec


def _check_outputs(path: Path, task: str, shapes: Mapping[str, list[Any]]) -> None:
    """The model's outputs (name: shape) are what `task`'s results are read from, or one line says why not."""
    if task in DETECTION_TASKS:
        needed = {name: rank for name, rank in _DETECTION_OUTPUTS.items() if name in shapes or name in _REQUIRED}
    else:
        needed = {"out" if "out" in shapes else next(iter(shapes)): _TASK_OUTPUT_RANKS[task]}
    wrong = [name for name, rank in needed.items() if len(shapes.get(name, ())) != rank]
    if wrong:
        given = ", ".join(f"{name} {_shape_text(shape)}" for name, shape in shapes.items())
        expected = ", ".join(f"{name} of rank {rank}" for name, rank in needed.items())
        raise UsageError(f"{path}: a {task} model's outputs are {expected}; this model's are {given[:200]}")


def _input_shape(path: Path, shape: Sequence[Any]) -> list[int | str | None]:
    """The model's first input's shape, if `predict` can fill it: at most `MAX_INPUT_VALUES` values."""
    fixed = [d for d in shape if isinstance(d, int)]
    sides = [d for d in shape[-2:] if isinstance(d, int)]
    if (len(shape) < 3 or any(d < 1 for d in fixed) or any(d > MAX_SIDE for d in sides)
            or math.prod(fixed) > MAX_INPUT_VALUES):
        raise UsageError(f"{path}: its input has shape {_shape_text(shape)[:80]}; zoo predicts with inputs "
                         f"N x C x ... x H x W of fixed sizes from 1 up, H and W at most {MAX_SIDE}, "
                         f"at most {MAX_INPUT_VALUES} values in all")
    return list(shape)


def _resized_to(spec: PreprocessSpec, size: tuple[int, int]) -> PreprocessSpec:
    """`spec` resizing straight to `size` (height, width) instead of its own resize and crop."""
    return replace(spec, resize_size=size, resize_mode="exact", crop_size=None,
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


def _groups(samples: list[np.ndarray], size: int) -> Iterator[list[np.ndarray]]:
    """Consecutive runs of samples of one shape, at most `size` long."""
    group: list[np.ndarray] = []
    for sample in samples:
        if group and (len(group) == size or sample.shape != group[0].shape):
            yield group
            group = []
        group.append(sample)
    if group:
        yield group


def _softmax(logits: np.ndarray) -> np.ndarray:
    exp = np.exp(logits - logits.max())
    return exp / exp.sum()


def _shape_text(shape: Sequence[Any]) -> str:
    """(N, 1, 8, 8): fixed sizes as numbers, a symbolic batch as N, other symbols by name."""
    names = [str(d) if isinstance(d, int) else ("N" if i == 0 else str(d or "?")) for i, d in enumerate(shape)]
    return f"({', '.join(names)})"

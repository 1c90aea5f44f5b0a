"""INT8 static quantisation of an exported model, for ONNX Runtime on CPU.

`quantize_int8` calibrates a float ``.onnx`` file (as `zoo.export.export_onnx` writes
it) on a few real images, put through the model's own preprocessing from its
metadata, and writes an int8 model with ONNX Runtime's quantisation tools:

- QDQ format (QuantizeLinear/DequantizeLinear pairs around each Conv, Gemm and Add),
  which ONNX Runtime's CPU provider fuses into its integer kernels when it loads the
  model, and which other runtimes can read too;
- weights int8 per output channel, activations uint8 (u8s8: the fast path of
  ONNX Runtime's integer GEMM on x86 with VNNI), MinMax calibration;
- 7-bit weights (``reduce_range``) by default, so that the file gives the same answers
  on every x86 CPU: without VNNI (AVX2 only), ONNX Runtime's u8s8 kernel adds pairs of
  8-bit products in saturating 16-bit sums, which cost the digits model 1.75 points
  of accuracy (7 of 400 images) on such a machine and none with 7-bit weights; pass
  ``reduce_range=False`` for a model that only runs on VNNI CPUs;
- no ``quant_pre_process``: zoo's exports already have BatchNorm folded into the
  convolutions and every shape inferred, so it changed nothing measurable and costs
  seconds on large models.

Measured on ResNet-50, batch 1, 2 threads of an AVX512-VNNI EPYC (ONNX Runtime
1.31): int8 about 3x faster than float in QDQ and in QOperator alike (ONNX Runtime
fuses QDQ into the same integer kernels), per-tensor weights no faster than
per-channel, ``reduce_range`` slightly slower, and int8 activations (s8s8) about 3x
slower than uint8 (u8s8). QDQ is kept for being the portable format.

The file keeps every ``zoo.*`` metadata entry of its source and adds
``zoo.quantization`` (how it was made and, given an evaluation set, float and int8
accuracy and their top-1 agreement). It appears at its path only once written and
loaded by ONNX Runtime. Importing or running this module does not import torch.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np

from zoo import metadata
from zoo.errors import UsageError, ZooError, first_line
from zoo.export import read_metadata
from zoo.fetch import sha256_of
from zoo.outputs import staged_output
from zoo.preprocessing import IMAGES_PER_CALL, PreprocessSpec, preprocess_numpy
from zoo.export.tasks import DecodeOptions, TaskAdapter, adapter

if TYPE_CHECKING:
    import onnxruntime
    from PIL import Image

__all__ = ["QuantizeResult", "QuantEvaluation", "quantize_int8", "QUANT_FORMATS"]

#: An image as zoo's preprocessing takes it, or a file to open with Pillow.
ImageLike = Union[str, "os.PathLike[str]", "Image.Image", np.ndarray]
QUANT_FORMATS = ("qdq", "qoperator")
_FORMAT_NAMES = {"qdq": "QDQ", "qoperator": "QOperator"}
#: Images per calibration and evaluation run: enough to amortise a run, small enough for memory.
BATCH = 32


@dataclass(frozen=True)
class QuantEvaluation:
    """Float and int8 top-1 accuracy on one labelled set, and how often their top-1 agree."""

    samples: int
    float_accuracy: float  # in [0, 1]
    int8_accuracy: float
    accuracy_drop: float  # float_accuracy - int8_accuracy
    top1_agreement: float  # fraction of samples where both models predict the same class


@dataclass(frozen=True)
class QuantizeResult:
    """One quantised model: where it is, how it was made, and how it compares with its source."""

    path: Path
    source: Path
    size: int  # bytes
    source_size: int
    quant_format: str  # "QDQ" or "QOperator"
    per_channel: bool
    reduce_range: bool
    calibration_images: int
    evaluation: QuantEvaluation | None
    metadata: dict[str, Any]  # the zoo.quantization entry, decoded

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(path=str(self.path), source=str(self.source))
        return data


def quantize_int8(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    calibration_images: Sequence[ImageLike],
    *,
    evaluation: tuple[Sequence[ImageLike], Sequence[int]] | None = None,
    preprocessing: PreprocessSpec | Mapping[str, Any] | None = None,
    quant_format: str = "qdq",
    per_channel: bool = True,
    reduce_range: bool = True,
    overwrite: bool = False,
) -> QuantizeResult:
    """Quantise the float model at `src` to int8 at `dst`, calibrated on `calibration_images`.

    Images are paths, PIL images or uint8 arrays; they go through `preprocessing`,
    by default the spec in `src`'s metadata. `evaluation` is ``(images, labels)`` for a
    model whose results name a class (`zoo.export.tasks.Result.top_class`, as a classifier's
    do): both models are then scored on it and the figures are stored in the file.
    `quant_format` is "qdq" (default) or "qoperator".
    `dst` is written as `zoo.outputs.staged_output` writes: only a regular file, replacing
    an existing one only if zoo wrote it (or `overwrite`) and it is not write-protected
    (unless `overwrite`). Raises `UsageError` for bad arguments; nothing is left at `dst`
    on failure.
    """
    src, dst = Path(src), Path(dst)
    metadata = read_metadata(src)  # raises UsageError for a missing or non-ONNX file
    if quant_format not in QUANT_FORMATS:
        raise UsageError(f"quant_format must be one of {', '.join(QUANT_FORMATS)}, not {quant_format!r}")
    if isinstance(calibration_images, (str, os.PathLike)) or len(calibration_images) == 0:
        raise UsageError("int8 calibration needs at least one image (a list of paths, PIL images or uint8 arrays)")
    spec = _spec(src, metadata, preprocessing)
    if evaluation is not None:  # the float model first: a task whose results name no class is refused here
        _check_evaluation(evaluation)
        task = adapter(metadata.get("task") or "classification")
        samples, truth = _preprocessed(spec, evaluation[0]), np.asarray(evaluation[1]).astype(np.int64)
        float_top1 = _top1(_session(src), samples, task)

    with staged_output(dst, overwrite=overwrite, what="quantisation output") as work:
        calibration = _preprocessed(spec, calibration_images)
        staged = work / dst.name
        _quantize(src, staged, calibration, quant_format, per_channel, reduce_range)
        info = _info(src, quant_format, per_channel, reduce_range, len(calibration))
        scored = _scores(truth, float_top1, _top1(_session(staged), samples, task)) if evaluation is not None else None
        if scored is not None:
            info["evaluation"] = asdict(scored)
        _write_metadata(src, staged, info)
        _load_check(staged, calibration[:1])
    return QuantizeResult(
        path=dst, source=src, size=dst.stat().st_size, source_size=src.stat().st_size,
        quant_format=info["format"], per_channel=per_channel, reduce_range=reduce_range,
        calibration_images=len(calibration), evaluation=scored, metadata=info,
    )


# -- inputs ---------------------------------------------------------------------------


def _spec(src: Path, metadata: Mapping[str, Any], given: PreprocessSpec | Mapping[str, Any] | None) -> PreprocessSpec:
    """The preprocessing to calibrate with: the explicit one, else the model's own."""
    if given is None:
        given = metadata.get("preprocessing")
        if not given:
            raise UsageError(f"{src} carries no preprocessing metadata; pass preprocessing= (a PreprocessSpec)")
    spec = given if isinstance(given, PreprocessSpec) else PreprocessSpec.from_json(dict(given))
    if IMAGES_PER_CALL.get(spec.kind) != 1:
        raise UsageError(f"int8 calibration takes single images; {spec.kind} preprocessing is not supported")
    return spec


def _check_evaluation(evaluation: Any) -> None:
    if not (isinstance(evaluation, (tuple, list)) and len(evaluation) == 2):
        raise UsageError("evaluation must be a pair (images, labels)")
    images, labels = evaluation
    if len(images) == 0 or len(images) != len(labels):
        raise UsageError(f"evaluation needs as many labels as images, at least one; got {len(images)} images "
                         f"and {len(labels)} labels")


def _preprocessed(spec: PreprocessSpec, images: Sequence[ImageLike]) -> list[np.ndarray]:
    """Each image as the model's input sample (C x H x W float32)."""
    from zoo.runtime import open_image

    out = []
    for image in images:
        if isinstance(image, (str, os.PathLike)):
            image = open_image(image)
        out.append(preprocess_numpy(spec, image))
    return out


def _batches(samples: Sequence[np.ndarray], size: int) -> Iterator[np.ndarray]:
    """Consecutive samples stacked `size` at a time; a change of shape starts a new batch."""
    run: list[np.ndarray] = []
    for sample in samples:
        if run and (len(run) == size or sample.shape != run[0].shape):
            yield np.stack(run)
            run = []
        run.append(sample)
    if run:
        yield np.stack(run)


# -- quantisation ---------------------------------------------------------------------


def _reader(input_name: str, samples: Sequence[np.ndarray], batch: int) -> Any:
    """An ONNX Runtime `CalibrationDataReader` over preprocessed samples, `batch` at a time."""
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._feeds = ({input_name: b} for b in _batches(samples, batch))

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._feeds, None)

    return Reader()


def _quantize(src: Path, dst: Path, samples: Sequence[np.ndarray], quant_format: str, per_channel: bool,
              reduce_range: bool) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    name, batch = _input(src)
    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.ERROR)  # the tools warn on the root logger about pre-processing we chose to skip
    try:
        quantize_static(
            str(src), str(dst), _reader(name, samples, batch or BATCH),
            quant_format=QuantFormat.QDQ if quant_format == "qdq" else QuantFormat.QOperator,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            per_channel=per_channel, reduce_range=reduce_range, calibrate_method=CalibrationMethod.MinMax,
        )
    except ZooError:
        raise
    except Exception as exc:
        raise ZooError(f"int8 quantisation of {src} failed: {type(exc).__name__}: {first_line(exc)}") from exc
    finally:
        logger.setLevel(level)


def _input(path: Path) -> tuple[str, int | None]:
    """The model's one graph input: its name, and 1 when its batch is fixed at 1 (None: dynamic)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    initializers = {t.name for t in graph.initializer}
    inputs = [v for v in graph.input if v.name not in initializers]
    if len(inputs) != 1:
        raise UsageError(f"int8 calibration needs a model with one input; {path} has {len(inputs)}")
    dims = inputs[0].type.tensor_type.shape.dim
    fixed = dims[0].dim_value if dims else 0
    if fixed > 1:
        raise UsageError(f"{path} has a fixed batch of {fixed}; export it with a dynamic batch (or batch 1) "
                         "to calibrate it")
    return inputs[0].name, fixed or None


def _info(src: Path, quant_format: str, per_channel: bool, reduce_range: bool, count: int) -> dict[str, Any]:
    """The ``zoo.quantization`` entry: how the model was quantised, and from which file."""
    import onnxruntime

    return {
        "method": "static",
        "tool": "onnxruntime.quantization.quantize_static",
        "format": _FORMAT_NAMES[quant_format],
        "activation_type": "uint8",
        "weight_type": "int8",
        "per_channel": per_channel,
        "reduce_range": reduce_range,
        "calibration_method": "MinMax",
        "calibration_images": count,
        "source_sha256": sha256_of(src),
        "versions": {"onnxruntime": onnxruntime.__version__},
    }


def _write_metadata(src: Path, staged: Path, info: Mapping[str, Any]) -> None:
    """Give `staged` all of `src`'s ``zoo.*`` metadata plus ``zoo.quantization``."""
    import onnx

    source = onnx.load(str(src), load_external_data=False)
    proto = onnx.load(str(staged))
    kept = [(p.key, p.value) for p in source.metadata_props if p.key.startswith(metadata.PREFIX)]
    del proto.metadata_props[:]
    for key, value in [*kept, *metadata.encode({"quantization": info}).items()]:
        proto.metadata_props.add(key=key, value=value)
    onnx.save_model(proto, str(staged))


# -- checks ---------------------------------------------------------------------------


def _session(path: Path) -> onnxruntime.InferenceSession:
    from zoo.runtime import create_session

    return create_session(path, providers=["CPUExecutionProvider"])


def _load_check(path: Path, samples: Sequence[np.ndarray]) -> None:
    """ONNX Runtime loads the quantised model and its outputs on a calibration image are finite."""
    session = _session(path)
    outputs = session.run(None, {session.get_inputs()[0].name: np.stack(samples)})
    if not all(np.isfinite(o).all() for o in outputs if np.issubdtype(np.asarray(o).dtype, np.floating)):
        raise ZooError(f"the int8 model of {path.name} gives non-finite outputs; no file written")


def _scores(truth: np.ndarray, float_top1: np.ndarray, int8_top1: np.ndarray) -> QuantEvaluation:
    float_accuracy, int8_accuracy = float((float_top1 == truth).mean()), float((int8_top1 == truth).mean())
    return QuantEvaluation(
        samples=len(truth), float_accuracy=float_accuracy, int8_accuracy=int8_accuracy,
        accuracy_drop=float_accuracy - int8_accuracy, top1_agreement=float((float_top1 == int8_top1).mean()),
    )


def _top1(session: onnxruntime.InferenceSession, samples: Sequence[np.ndarray], task: TaskAdapter) -> np.ndarray:
    """Each sample's top class (`Result.top_class`) as `task`'s adapter decodes the outputs; a task
    whose results name no class is one line. A fixed batch, or an unbatched task, runs one sample at a time."""
    model_input = session.get_inputs()[0]
    names = [o.name for o in session.get_outputs()]
    per_call = BATCH if task.batched and not isinstance(model_input.shape[0], int) else 1
    options = DecodeOptions(topk=1)
    top: list[int | None] = []
    for batch in _batches(samples, per_call):
        outputs = dict(zip(names, session.run(names, {model_input.name: batch})))
        rows = ([{name: value[i] for name, value in outputs.items()} for i in range(len(batch))]
                if task.batched else [outputs])
        top += [task.decode(row, None, options).top_class for row in rows]
        if None in top:
            raise UsageError(f"evaluation scores top-1 accuracy; the results of a {task.name} model name no class")
    return np.asarray(top, dtype=np.int64)

"""ONNX export: one verified ``.onnx`` file per model, with its provenance inside.

`export_onnx` builds a catalog model (or takes an ``nn.Module``), exports it with
PyTorch's ``torch.export``-based exporter (``dynamo=True``) and falls back to the
TorchScript exporter when that fails, then, before the file appears at its path:

- runs ONNX shape inference and stores the result, so that every intermediate
  tensor carries its shape (``value_info``), and runs the full ONNX checker;
- runs the file in ONNX Runtime (CPU) and compares every output with eager PyTorch
  (eval mode, inference mode) at the export batch size and, with a dynamic batch,
  at another one; a mismatch raises `ExportVerificationError` and leaves no file;
- writes the provenance (model, weights and their SHA-256, preprocessing spec,
  categories, task, input/output names and layouts, library versions, exporter,
  opset, verification) into the model's ``metadata_props``.

`read_metadata` reads that provenance back with the ``onnx`` package alone.
Importing this module does not import torch.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import io
import logging
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo import metadata
from zoo.errors import UsageError, ZooError, excerpt, first_line
from zoo.fetch import sha256_of
from zoo.outputs import staged_output
from zoo.shapes import check_size, parse_shape
from zoo.specs import DETECTION_TASKS

if TYPE_CHECKING:
    import torch

__all__ = ["ExportResult", "ExportVerificationError", "OutputCheck", "export_onnx", "read_metadata",
           "default_opset", "TOLERANCES"]

#: (rtol, atol) per task for float32; passing means |onnx - torch| <= atol + rtol * |torch|
#: everywhere. Classification: torchvision's test_onnx (rtol 1e-3, atol 1e-5). For an
#: image or class output atol is per unit of the output's scale (its largest magnitude,
#: when above 1): float32 sums round in proportion to the values summed, so a randomly
#: initialised deeplabv3_resnet101, whose logits reach 2e3, differs by 2.6e-3 near its
#: zero crossings while agreeing to 1e-6 of its scale.
#: Segmentation keeps rtol and loosens atol to 1e-4: its outputs are full-resolution
#: maps made by bilinear upsampling of low-resolution logits, so many elements sit
#: near zero between logits of opposite sign, where rtol gives no room and the
#: differently ordered float32 sums of the two runtimes show up as absolute error.
#: 1e-4 is still far below anything that changes a per-pixel argmax.
#: Detection models run two stages (proposals, then RoIAlign on the regressed boxes),
#: so float differences compound: on fasterrcnn_resnet50_fpn boxes differ by up to
#: 1.3e-3 relative (0.02 px) and scores by 3e-4, hence rtol 5e-3, atol 1e-3.
TOLERANCES: dict[str, tuple[float, float]] = {
    "classification": (1e-3, 1e-5),
    "segmentation": (1e-3, 1e-4),
    "video": (1e-3, 1e-5),
    **dict.fromkeys(("detection", "instance_segmentation", "keypoints"), (5e-3, 1e-3)),
}
_DEFAULT_TOLERANCE = (1e-3, 1e-5)
#: The batch size of the second verification run when the batch is dynamic.
SECOND_BATCH = 5
#: Above this many bytes of parameters and buffers, tensors go to external data
#: (``<name>.data`` next to the file): protobuf cannot serialise 2 GiB.
_EXTERNAL_DATA_BYTES = 1_800_000_000
#: The lowest opset torch.onnx writes (torch.onnx._constants.ONNX_MIN_OPSET; not imported: it needs torch).
_MIN_OPSET = 7
_UNSUPPORTED_TASKS = {
    "optical_flow": "optical flow export is not supported yet (the model takes two images)",
}
_INPUT_NAME = "input"
_OUTPUT_LAYOUTS = {"classification": "NC", "segmentation": "NCHW", "video": "NC"}
#: Per output of a detection model; K counts detections, J keypoints.
_DETECTION_LAYOUTS = {
    "boxes": "K4 (x1, y1, x2, y2 in input pixels)", "labels": "K", "scores": "K", "masks": "K1HW",
    "keypoints": "KJ3 (x, y, visibility)", "keypoints_scores": "KJ",
}


class ExportVerificationError(ZooError):
    """The exported model does not reproduce PyTorch's outputs; no file was left."""

    def __init__(self, message: str, checks: Sequence[OutputCheck]) -> None:
        super().__init__(message)
        self.checks = list(checks)


@dataclass(frozen=True)
class OutputCheck:
    """One output compared at one input shape: ONNX Runtime against eager PyTorch."""

    name: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    max_abs_error: float
    max_rel_error: float  # |onnx - torch| / |torch|, over elements where |torch| > atol
    rtol: float
    atol: float
    passed: bool  # every element: |onnx - torch| <= atol * scale + rtol * |torch|
    detections: int | None = None  # detection models: how many PyTorch found in this image
    unmatched: int | None = None  # detection models: kept by one runtime only, at the score cut
    scale: float = 1.0  # image and class outputs: max(1, max |torch|), the unit of atol

    def to_json(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


@dataclass(frozen=True)
class ExportResult:
    """Everything about one export: the file, how it was made, and how it was checked."""

    path: Path
    sha256: str  # of the .onnx file
    size: int  # bytes, .onnx plus external data
    external_data: Path | None
    model: str
    task: str | None
    weights: str | None
    opset: int
    ir_version: int
    exporter: str  # "dynamo" or "torchscript"
    fallback_reason: str | None  # why the dynamo exporter was not used
    input_names: list[str]
    output_names: list[str]
    input_shape: tuple[int, ...]
    dynamic_axes: dict[str, dict[int, str]]
    shape_inference_complete: bool
    intermediate_tensors: int
    tensors_without_shape: list[str]
    verification: list[OutputCheck] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    reused: bool = False  # an earlier export with the same request, still valid, was returned

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ExportResult:
        """The inverse of `to_json`."""
        return cls(**{
            **data,
            "path": Path(data["path"]),
            "external_data": Path(data["external_data"]) if data["external_data"] else None,
            "input_shape": tuple(data["input_shape"]),
            "dynamic_axes": {k: {int(a): n for a, n in v.items()} for k, v in data["dynamic_axes"].items()},
            "verification": [OutputCheck(**{**c, "input_shape": tuple(c["input_shape"]),
                                            "output_shape": tuple(c["output_shape"])})
                             for c in data["verification"]],
        })

    @property
    def max_abs_error(self) -> float:
        return max((c.max_abs_error for c in self.verification), default=0.0)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(
            path=str(self.path),
            external_data=str(self.external_data) if self.external_data else None,
            input_shape=list(self.input_shape),
            dynamic_axes={k: {str(a): n for a, n in v.items()} for k, v in self.dynamic_axes.items()},
            verification=[c.to_json() for c in self.verification],
        )
        return data


# -- opset ----------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _onnxruntime_limits() -> tuple[int, int]:
    """The highest default-domain opset and IR version the installed ONNX Runtime loads.

    ONNX Runtime has no API for these, so one tiny Relu model is loaded per candidate,
    from what the installed ``onnx`` knows downwards (a few milliseconds).
    """
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    def loads(opset: int, ir: int) -> bool:
        graph = helper.make_graph(
            [helper.make_node("Relu", ["x"], ["y"])], "probe",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        model.ir_version = ir
        options = ort.SessionOptions()
        options.log_severity_level = 4
        try:
            ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
            return True
        except Exception:
            return False

    ir = next((v for v in range(onnx.IR_VERSION, 6, -1) if loads(7, v)), 7)
    opset = next((v for v in range(onnx.defs.onnx_opset_version(), 6, -1) if loads(v, ir)), 7)
    return opset, ir


def _exporter_max_opset(exporter: str) -> int:
    from torch.onnx import _constants

    if exporter == "torchscript":
        return getattr(_constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", 20)
    return _constants.ONNX_MAX_OPSET


def default_opset(exporter: str = "dynamo") -> int:
    """The highest opset that `exporter`, the installed ``onnx`` and ONNX Runtime all support."""
    import onnx

    return min(_exporter_max_opset(exporter), _onnxruntime_limits()[0], onnx.defs.onnx_opset_version())


# -- the export -----------------------------------------------------------------------


def export_onnx(
    model_or_name: str | torch.nn.Module,
    path: str | os.PathLike[str],
    *,
    weights: Any = None,
    input_shape: Sequence[int] | None = None,
    dynamic_batch: bool | None = None,
    dynamic_image_size: bool | None = None,
    opset: int | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    builder_kwargs: Mapping[str, Any] | None = None,
    record: bool = True,
    overwrite: bool = False,
) -> ExportResult:
    """Export a catalog model (by name, with `weights`) or an ``nn.Module`` to ONNX at `path`, verified.

    `input_shape` (N, C, H, W) defaults, for a catalog model, to the one size its
    architecture takes (``image_size``, as ViT declares it), else to the preprocessing of
    its weights (or of its default weights when `weights` is None): the crop size,
    else the resize size, else the weights' ``min_size``, batch 1; a detection model
    defaults to a square of its own ``min_size``. `dynamic_batch` (default: yes, except
    detection models, which take one image) makes the batch dimension symbolic, and
    `dynamic_image_size` (default: only for detection models) height and width.
    `opset` defaults to `default_opset`. `rtol`/`atol` default to `TOLERANCES` of the
    model's task. `builder_kwargs` go to the model's builder (e.g. ``min_size`` of a
    detection model). Without weights the random initialisation is seeded, so the
    same request exports the same model. `record=False` keeps a throwaway export (a
    benchmark's temporary file) out of the catalog's exports table.

    The file appears at `path` only once it is checked and verified; on any failure
    nothing is left there. It is written as `zoo.outputs.staged_output` writes: only a
    regular file, replacing an existing file only if it is an earlier zoo export (or
    `overwrite`) and not write-protected (unless `overwrite`). The opset recorded is
    the one the file holds; an explicit `opset` the exporters cannot write is an error.
    Raises `UsageError` for bad arguments or unsupported models
    and `ExportVerificationError` (a `ZooError`) when ONNX Runtime's outputs differ
    from PyTorch's beyond the tolerances.
    """
    path = Path(path)
    if opset is not None and (not isinstance(opset, int) or isinstance(opset, bool) or opset < _MIN_OPSET):
        raise UsageError(f"opset must be an integer of at least {_MIN_OPSET}, not {excerpt(opset)}")
    if opset is not None and opset > _onnxruntime_limits()[0]:  # before building: some builders are slow
        raise UsageError(f"opset {excerpt(opset)} is above {_onnxruntime_limits()[0]}, the highest the installed "
                         "onnxruntime runs")
    for name, value in (("rtol", rtol), ("atol", atol)):
        if value is not None and (not isinstance(value, (int, float)) or value < 0):
            raise UsageError(f"{name} must be a non-negative number, not {value!r}")
    if builder_kwargs is not None and not isinstance(builder_kwargs, Mapping):
        raise UsageError(f"builder_kwargs must be a mapping of builder arguments, not {builder_kwargs!r}")
    shape = parse_shape(input_shape, what="input_shape", min_rank=2) if input_shape is not None else None
    with staged_output(path, overwrite=overwrite, what="export path") as work:
        request = None
        if isinstance(model_or_name, str) and record:
            request = _request(model_or_name, weights, shape, dynamic_batch, dynamic_image_size, opset, rtol, atol,
                               builder_kwargs)
            earlier = _reusable(path, request)
            if earlier is not None:
                return earlier
        result = _export_staged(model_or_name, work, path, weights=weights, shape=shape, dynamic_batch=dynamic_batch,
                                dynamic_image_size=dynamic_image_size, opset=opset, rtol=rtol, atol=atol,
                                builder_kwargs=dict(builder_kwargs or {}))
    if request is not None:
        _record(result, request)
    return result


def _export_staged(model_or_name: str | torch.nn.Module, work: Path, path: Path, *, weights: Any,
                   shape: tuple[int, ...] | None, dynamic_batch: bool | None, dynamic_image_size: bool | None,
                   opset: int | None, rtol: float | None, atol: float | None,
                   builder_kwargs: dict[str, Any]) -> ExportResult:
    """Build, export, check and verify into the folder `work`, as ``work / path.name``, to be moved to `path`."""
    import torch

    info = _model_info(model_or_name, weights, builder_kwargs)
    detection = info["task"] in DETECTION_TASKS
    dynamic_batch = not detection if dynamic_batch is None else dynamic_batch
    dynamic_image_size = detection if dynamic_image_size is None else dynamic_image_size
    model = info.pop("module")
    model.eval()
    if detection:
        if dynamic_batch:
            raise UsageError(f"{info['name']} is a {info['task']} model: it is exported for one image at a time "
                             "and cannot have a dynamic batch; drop dynamic_batch")
        model = _one_image(model)
    shape = shape or _default_shape(info, model)
    check_size(shape)  # a default from the builder's arguments (min_size=...) is bounded too
    if detection and shape[0] != 1:
        raise UsageError(f"{info['name']} takes one image: input_shape must start with 1, not {shape[0]}")

    inputs = _verification_inputs(shape, detection, dynamic_batch, dynamic_image_size)
    example = inputs[0]
    with torch.inference_mode():
        try:
            eager = model(example)
        except Exception as exc:
            raise UsageError(f"{info['name']} cannot run on an input of shape {_shape_text(shape)}: "
                             f"{first_line(exc)}") from exc
    output_names, flatten = _output_names(eager)
    wrapped = _make_flat(model, flatten)
    rtol_, atol_ = TOLERANCES.get(info["task"], _DEFAULT_TOLERANCE)
    rtol = rtol_ if rtol is None else float(rtol)
    atol = atol_ if atol is None else float(atol)
    large = _tensor_bytes(model) > _EXTERNAL_DATA_BYTES

    raw = work / "exported.onnx"
    exporter, reason = _export(wrapped, example, raw, output_names, dynamic_batch, dynamic_image_size, detection,
                               opset)
    inferred = work / "inferred.onnx"
    import onnx

    onnx.shape_inference.infer_shapes_path(str(raw), str(inferred), check_type=True, data_prop=True)
    proto = onnx.load(str(inferred), load_external_data=True)
    used_opset = _opset_of(proto)  # what the file holds is what is recorded
    ir_version = min(proto.ir_version, _onnxruntime_limits()[1])
    proto.ir_version = ir_version
    intermediate, missing = _shape_coverage(proto)
    dynamic_axes = _dynamic_axes(proto)
    wanted = ([0] if dynamic_batch else []) + ([len(shape) - 2, len(shape) - 1] if dynamic_image_size else [])
    static = [axis for axis in wanted if axis not in dynamic_axes.get(_INPUT_NAME, {})]
    if static:
        raise ZooError(f"the {exporter} exporter made input axes {static} of {info['name']} static")

    meta = _provenance(info, shape, output_names, exporter, used_opset, reason)
    staged = work / path.name
    _save(proto, staged, large, meta)
    onnx.checker.check_model(str(staged), full_check=True)

    checks = _verify(model, staged, inputs, output_names, flatten, detection, rtol, atol)
    if not all(c.passed for c in checks):
        worst = [c for c in checks if not c.passed]
        detail = "; ".join(
            f"{c.name} at {_shape_text(c.input_shape)}: max abs error {c.max_abs_error:.3g}, "
            f"max rel error {c.max_rel_error:.3g}"
            + (f", {c.unmatched} of {c.detections} detections unmatched" if c.unmatched else "")
            for c in worst)
        raise ExportVerificationError(
            f"exported {info['name']} does not match PyTorch (rtol={rtol:g}, atol={atol:g}): {detail}; "
            f"no file written", checks)

    meta.update(metadata.encode({"verification": [c.to_json() for c in checks]}))
    _save(proto, staged, large, meta)
    data_file = staged.with_name(staged.name + ".data")
    return ExportResult(
        path=path,
        sha256=sha256_of(staged),
        size=staged.stat().st_size + (data_file.stat().st_size if data_file.exists() else 0),
        external_data=path.with_name(data_file.name) if data_file.exists() else None,
        model=info["name"],
        task=info["task"],
        weights=info["weights"],
        opset=used_opset,
        ir_version=ir_version,
        exporter=exporter,
        fallback_reason=reason,
        input_names=[_INPUT_NAME],
        output_names=output_names,
        input_shape=shape,
        dynamic_axes=dynamic_axes,
        shape_inference_complete=not missing,
        intermediate_tensors=intermediate,
        tensors_without_shape=missing,
        verification=checks,
        metadata=read_metadata(staged),
    )


def list_exports() -> list[dict[str, Any]]:
    """The catalog's record of every verified export of a catalog model, newest first, as plain data."""
    from sqlalchemy import select

    from zoo.catalog.fingerprint import ensure_current
    from zoo.catalog.tables import exports

    with ensure_current().connect() as conn:
        rows = conn.execute(select(exports).order_by(exports.c.created_at.desc())).all()
    return [
        {
            "path": row.path, "model": row.model, "weights": row.weights, "sha256": row.sha256, "size": row.size,
            "opset": row.opset, "exporter": row.exporter, "dynamic_axes": row.dynamic_axes,
            "verification": row.verification, "created_at": row.created_at.isoformat(),
            "exists": Path(row.path).is_file(),
        }
        for row in rows
    ]


def _request(name: str, weights: Any, shape: tuple[int, ...] | None, dynamic_batch: bool | None,
             dynamic_image_size: bool | None, opset: int | None, rtol: float | None, atol: float | None,
             builder_kwargs: Mapping[str, Any] | None) -> dict[str, Any]:
    """What an export of a catalog model was asked for, resolved to canonical names."""
    from zoo.registry import describe, get_weight

    member = get_weight(weights, model=name)
    return {
        "model": describe(name)["name"],
        "weights": f"{type(member).__name__}.{member.name}" if member is not None else None,
        "input_shape": list(shape) if shape else None,
        "dynamic_batch": dynamic_batch, "dynamic_image_size": dynamic_image_size, "opset": opset,
        "rtol": rtol, "atol": atol, "builder_kwargs": dict(builder_kwargs or {}),
    }


def _reusable(path: Path, request: dict[str, Any]) -> ExportResult | None:
    """The recorded export at `path` if it was made for the same request and its file is unchanged."""
    from sqlalchemy import select

    from zoo.catalog.fingerprint import ensure_current
    from zoo.catalog.tables import exports

    with ensure_current().connect() as conn:
        row = conn.execute(select(exports).where(exports.c.path == str(path.resolve()))).first()
    if row is None or row.options != request or not path.is_file() or sha256_of(path) != row.sha256:
        return None
    earlier = ExportResult.from_json(row.result)
    if earlier.external_data is not None and not earlier.external_data.is_file():
        return None
    return replace(earlier, reused=True)


def _record(result: ExportResult, request: dict[str, Any]) -> None:
    from datetime import datetime, timezone

    from sqlalchemy import delete

    from zoo.catalog.engine import remember
    from zoo.catalog.fingerprint import ensure_current
    from zoo.catalog.tables import exports

    key = str(result.path.resolve())

    def write(conn: Any) -> None:
        conn.execute(delete(exports).where(exports.c.path == key))
        conn.execute(exports.insert().values(
            path=key, model=result.model, weights=result.weights, sha256=result.sha256, size=result.size,
            opset=result.opset, exporter=result.exporter, dynamic_axes=result.to_json()["dynamic_axes"],
            verification=[c.to_json() for c in result.verification], options=request, result=result.to_json(),
            created_at=datetime.now(timezone.utc),
        ))

    remember(ensure_current(), "the export record", write)


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The zoo provenance in an exported model's ``metadata_props``, JSON values decoded.

    Keys without the ``zoo.`` prefix: model, weights, weights_sha256, task,
    preprocessing, categories, inputs, outputs, versions, exporter, opset, verification.
    Needs only the ``onnx`` package; external data is not read.
    """
    import onnx

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"no ONNX file at {path}")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise UsageError(f"{path} is not an ONNX model: {first_line(exc)}") from exc
    return metadata.decode((prop.key, prop.value) for prop in proto.metadata_props)


# -- helpers --------------------------------------------------------------------------


def _model_info(model_or_name: Any, weights: Any, builder_kwargs: dict[str, Any]) -> dict[str, Any]:
    """The module to export and what the catalog says about it."""
    import torch

    if isinstance(model_or_name, torch.nn.Module):
        if weights is not None or builder_kwargs:
            raise UsageError("weights= and builder_kwargs= apply to a model name; build the module yourself")
        return {"module": model_or_name, "name": type(model_or_name).__name__, "task": None, "weights": None,
                "sha256": None, "categories": None, "spec": None, "min_size": None, "input_size": None}
    if not isinstance(model_or_name, str):
        raise UsageError(f"export_onnx takes a model name or a torch.nn.Module, not {type(model_or_name).__name__}")

    from zoo.registry import describe, get_model, get_model_builder, get_weight

    record = describe(model_or_name)  # unknown names raise UnknownModelError (one line)
    task = record["task"]
    if task in _UNSUPPORTED_TASKS:  # before building: some builders are slow
        raise UsageError(f"cannot export {record['name']}: {_UNSUPPORTED_TASKS[task]}")
    member = get_weight(weights, model=record["name"])
    if member is not None:
        entry = next((w for w in record["weights"] if w["member"] == member.name), None)
    else:
        entry = next((w for w in record["weights"] if w["is_default"]), None)
    parameters = inspect.signature(get_model_builder(record["name"])).parameters
    if member is None and "weights_backbone" in parameters:
        builder_kwargs.setdefault("weights_backbone", None)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        try:
            module = get_model(record["name"], weights=member, **builder_kwargs)
        except (TypeError, ValueError) as exc:
            raise UsageError(f"cannot build {record['name']} with {builder_kwargs}: {first_line(exc)}") from exc
    meta = (entry or {}).get("meta") or {}
    return {
        "module": module,
        "name": record["name"],
        "task": task,
        "weights": entry["name"] if member is not None and entry else None,
        "sha256": entry["sha256"] if member is not None and entry else None,
        "categories": meta.get("categories") if member is not None else None,
        "spec": (entry or {}).get("transforms"),
        "min_size": meta.get("min_size"),
        "input_size": record["input_size"],
    }


def _default_shape(info: Mapping[str, Any], model: Any) -> tuple[int, ...]:
    spec, min_size = info["spec"], info["min_size"]
    if info["task"] in DETECTION_TASKS:
        # the model resizes every image itself (shorter side to transform.min_size);
        # the weights' min_size is only the smallest image it accepts
        side = max(model.model.transform.min_size)
        return (1, 3, side, side)
    if info["task"] == "video" or (spec and spec.get("layout") == "CTHW"):
        raise UsageError(f"{info['name']} takes video clips: pass input_shape, e.g. (1, 3, 16, 112, 112)")
    channels = 1 if spec and spec.get("channel_order") == "L" else 3
    fixed = getattr(model, "image_size", None)
    if isinstance(fixed, int) and not isinstance(fixed, bool):
        # the architecture takes one size only (ViT): built without weights it may not
        # be the size of its default weights (vit_h_14: 224, its SWAG weights 518)
        return (1, channels, fixed, fixed)
    if spec and spec.get("crop_size"):
        size = spec["crop_size"]
    elif spec and spec.get("resize_size"):
        # exact: (h, w); shorter side n: a square n x n stands for any image it makes
        size = spec["resize_size"] * (1 if spec.get("resize_mode") == "exact" else 2)
    elif min_size:
        size = min_size
    elif info["input_size"]:  # the size the plugin declares its architecture takes
        channels, *size = info["input_size"]
    else:
        raise UsageError(f"{info['name']} declares no input size: pass input_shape, e.g. (1, 3, 224, 224)")
    return (1, channels, int(size[0]), int(size[1]))


def _verification_inputs(shape: tuple[int, ...], detection: bool, dynamic_batch: bool,
                         dynamic_image_size: bool) -> list[torch.Tensor]:
    """The inputs both runtimes see: the export input first, then one per dynamic axis.

    Detection models get images in [0, 1]: the export size, another size, and a
    blank grey image, on which a detector finds nothing (an empty output is where
    variable-length graphs break). The grey is dithered between two adjacent 8-bit
    levels, as a camera records a blank wall: on a perfectly uniform image shifted
    anchors score exactly alike, and which of them survives the top-k and NMS is
    arbitrary, so the runtimes may keep different ones.
    """
    import torch

    def sample(size: Sequence[int], seed: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed)
        return torch.rand(size, generator=generator) if detection else torch.randn(size, generator=generator)

    height, width = shape[-2:]
    other_size = (*shape[:-2], max(1, height * 3 // 4), width)
    inputs = [sample(shape, 0)]
    if dynamic_batch:
        inputs.append(sample((SECOND_BATCH if shape[0] != SECOND_BATCH else 2, *shape[1:]), 1))
    if dynamic_image_size:
        inputs.append(sample(other_size, 2))
    if detection:
        levels = torch.randint(127, 129, shape, generator=torch.Generator().manual_seed(3))
        inputs.append(levels.float() / 255)
    return inputs


def _output_names(eager: Any) -> tuple[list[str], Any]:
    """Output names and how to flatten the model's output into a tuple of tensors."""
    import torch

    if isinstance(eager, torch.Tensor):
        return ["output"], None
    if isinstance(eager, Mapping) and all(isinstance(v, torch.Tensor) for v in eager.values()):
        return [str(k) for k in eager], list(eager)
    if isinstance(eager, (tuple, list)) and all(isinstance(v, torch.Tensor) for v in eager):
        return [f"output_{i}" for i in range(len(eager))], len(eager)
    raise UsageError(f"cannot export a model whose output is {type(eager).__name__}: "
                     "expected a tensor, or a tuple or dict of tensors")


def _flatten(out: Any, flatten: Any) -> tuple[Any, ...]:
    if flatten is None:
        return (out,)
    if isinstance(flatten, list):
        return tuple(out[k] for k in flatten)
    return tuple(out)


def _make_flat(model: Any, flatten: Any) -> Any:
    import torch

    class Flat(torch.nn.Module):
        """The model with its output as a plain tuple of tensors (dict outputs by key order)."""

        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input: torch.Tensor) -> tuple[torch.Tensor, ...]:  # noqa: A002
            return _flatten(self.model(input), flatten)

    return Flat().eval()


def _one_image(model: Any) -> Any:
    import torch

    class OneImage(torch.nn.Module):
        """A detection model on a (1, C, H, W) tensor, returning that image's dict of outputs."""

        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input: torch.Tensor) -> dict[str, torch.Tensor]:  # noqa: A002
            return self.model([input[0]])[0]

    return OneImage().eval()


def _export(model: Any, example: Any, target: Path, output_names: list[str], dynamic_batch: bool,
            dynamic_image_size: bool, detection: bool, opset: int | None) -> tuple[str, str | None]:
    """Export with the dynamo exporter, else TorchScript: (exporter, why dynamo was not used).

    An explicit `opset` is what the file must hold: the dynamo exporter writes opset 18
    or above and keeps 18 when its version converter cannot go lower, so a file in
    another opset than asked counts as its failure, and TorchScript (opsets 7 to 20)
    is used instead.
    """
    import warnings

    import torch

    kwargs = dict(input_names=[_INPUT_NAME], output_names=output_names, external_data=True)
    dynamo_opset = opset or default_opset("dynamo")
    height_axis, width_axis = example.dim() - 2, example.dim() - 1
    try:
        axes: dict[int, Any] = {}
        traced = example
        if dynamic_batch:
            axes[0] = torch.export.Dim("batch", min=1)
            if example.shape[0] == 1:
                # torch.export specialises a size-1 dimension to the constant 1 ("0/1
                # specialisation") and then rejects it as dynamic: trace at batch 2
                traced = torch.cat([example, example])
        if dynamic_image_size:
            axes[height_axis] = torch.export.Dim("height", min=2)
            axes[width_axis] = torch.export.Dim("width", min=2)
        # when torch.export fails it logs each failed guard and prints the traced
        # graph (thousands of lines) before raising; the reason is recorded below
        with warnings.catch_warnings(), _quiet():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (traced,), str(target), dynamo=True, opset_version=dynamo_opset,
                              dynamic_shapes=(axes,) if axes else None, optimize=True, verify=False,
                              verbose=False, **kwargs)
        written = _opset_of(target)
        if opset is None or written == opset:
            return "dynamo", None
        reason = f"it wrote opset {written}, not {opset} (it cannot convert this model to that opset)"
    except Exception as exc:  # noqa: BLE001 - any failure moves to the other exporter
        reason = _failure_reason(exc)
    for leftover in target.parent.iterdir():
        if leftover.is_file():
            leftover.unlink()

    ts_max = min(_exporter_max_opset("torchscript"), default_opset("torchscript"))
    if opset is not None and opset > ts_max:
        raise UsageError(f"opset {opset} needs the dynamo exporter (the TorchScript exporter stops at "
                         f"{ts_max}), which failed: {reason}")
    ts_opset = opset or ts_max
    kwargs.pop("external_data")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (example,), str(target), dynamo=False, opset_version=ts_opset,
                              dynamic_axes=_torchscript_axes(output_names, example.dim(), dynamic_batch,
                                                             dynamic_image_size, detection) or None,
                              do_constant_folding=True, **kwargs)
    except Exception as exc:
        raise ZooError(f"ONNX export failed with both exporters: dynamo: {reason}; "
                       f"torchscript: {type(exc).__name__}: {first_line(exc)}") from exc
    written = _opset_of(target)
    if opset is not None and written != opset:
        raise UsageError(f"cannot export at opset {opset}: the TorchScript exporter wrote opset {written}, "
                         f"and the dynamo exporter failed: {reason}")
    return "torchscript", reason


def _opset_of(model: Any) -> int:
    """The default-domain (ai.onnx) opset of an ONNX model, a ``ModelProto`` or a path: the one it is written in."""
    import onnx

    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model), load_external_data=False)
    return max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)


def _failure_reason(exc: BaseException) -> str:
    """The root cause of an exporter failure, on one short line without terminal colours.

    torch.onnx wraps the error of torch.export in a generic "Failed to export" with
    advice; the exception it chains from says what in the model stopped it.
    """
    while exc.__cause__ is not None:
        exc = exc.__cause__
    text = re.sub(r"\x1b\[[0-9;]*m", "", first_line(exc))
    return f"{type(exc).__name__}: {text if len(text) <= 200 else text[:200] + '...'}"


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """No logging and no output on stdout or stderr while inside."""
    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        logging.disable(previous)


def _torchscript_axes(output_names: list[str], rank: int, dynamic_batch: bool, dynamic_image_size: bool,
                      detection: bool) -> dict[str, dict[int, str]]:
    """Names for the TorchScript exporter's dynamic axes (it makes any other output axis symbolic itself)."""
    image = {rank - 2: "height", rank - 1: "width"} if dynamic_image_size else {}
    axes = {_INPUT_NAME: ({0: "batch"} if dynamic_batch else {}) | image}
    for name in output_names:
        if detection:
            axes[name] = {0: "detections"} | ({2: "height", 3: "width"} if name == "masks" and image else {})
        elif dynamic_batch:
            axes[name] = {0: "batch"}
    return {name: named for name, named in axes.items() if named}


def _shape_coverage(proto: Any) -> tuple[int, list[str]]:
    """How many intermediate tensors there are, and which lack a full (static or symbolic) shape."""
    graph = proto.graph
    graph_io = {v.name for v in graph.input} | {v.name for v in graph.output} | {t.name for t in graph.initializer}
    shaped = set()
    for value in graph.value_info:
        t = value.type.tensor_type
        if t.HasField("shape") and all(d.HasField("dim_value") or d.HasField("dim_param") for d in t.shape.dim):
            shaped.add(value.name)
    intermediate = [o for node in graph.node for o in node.output if o and o not in graph_io]
    return len(intermediate), [name for name in intermediate if name not in shaped]


def _dynamic_axes(proto: Any) -> dict[str, dict[int, str]]:
    axes: dict[str, dict[int, str]] = {}
    for value in [*proto.graph.input, *proto.graph.output]:
        dims = {i: d.dim_param for i, d in enumerate(value.type.tensor_type.shape.dim) if d.HasField("dim_param")}
        if dims:
            axes[value.name] = dims
    return axes


def _provenance(info: Mapping[str, Any], shape: tuple[int, ...], output_names: list[str], exporter: str,
                opset: int, reason: str | None) -> dict[str, str]:
    import onnx
    import onnxruntime
    import torch
    import torchvision

    spec = info["spec"]
    layout = "N" + (spec or {}).get("layout", "CHW") if len(shape) in (4, 5) else None
    detection = info["task"] in DETECTION_TASKS
    out_layout = _OUTPUT_LAYOUTS.get(info["task"] or "")
    values: dict[str, Any] = {
        "model": info["name"],
        "weights": info["weights"],
        "weights_sha256": info["sha256"],
        "task": info["task"],
        "preprocessing": spec,
        "categories": info["categories"],
        "inputs": [{"name": _INPUT_NAME, "layout": layout, "export_shape": list(shape)}],
        "outputs": [{"name": n, "layout": _DETECTION_LAYOUTS.get(n) if detection else out_layout}
                    for n in output_names],
        "versions": {"torch": torch.__version__, "torchvision": torchvision.__version__,
                     "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__},
        "exporter": exporter,
        "fallback_reason": reason,
        "opset": opset,
    }
    return metadata.encode(values)


def _save(proto: Any, target: Path, large: bool, meta: Mapping[str, str]) -> None:
    import onnx

    del proto.metadata_props[:]
    for key, value in meta.items():
        proto.metadata_props.add(key=key, value=value)
    if large:
        onnx.save_model(proto, str(target), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=target.name + ".data", size_threshold=1024)
    else:
        onnx.save_model(proto, str(target))


def _verify(model: Any, onnx_path: Path, inputs: list[torch.Tensor], output_names: list[str], flatten: Any,
            detection: bool, rtol: float, atol: float) -> list[OutputCheck]:
    """Every output of ONNX Runtime (CPU) against eager PyTorch, on each of `inputs`."""
    import onnxruntime as ort
    import torch

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    checks: list[OutputCheck] = []
    for x in inputs:
        with torch.inference_mode():
            expected = [t.detach().numpy() for t in _flatten(model(x), flatten)]
        got = session.run(output_names, {_INPUT_NAME: x.numpy()})
        if detection:
            checks += _compare_detections(output_names, expected, got, tuple(x.shape), rtol, atol)
        else:
            checks += [_compare(n, want, have, tuple(x.shape), rtol, atol,
                                scale=max(1.0, float(abs(want).max(initial=0.0))))
                       for n, want, have in zip(output_names, expected, got)]
    return checks


def _compare(name: str, want: Any, have: Any, input_shape: tuple[int, ...], rtol: float, atol: float,
             scale: float = 1.0) -> OutputCheck:
    import numpy as np

    want = np.asarray(want, dtype=np.float64)
    have = np.asarray(have, dtype=np.float64)
    if want.shape != have.shape:
        return OutputCheck(name, input_shape, tuple(have.shape), float("inf"), float("inf"), rtol, atol, False,
                           scale=scale)
    diff = np.abs(have - want)
    large = np.abs(want) > atol * scale  # near zero, only atol means anything
    rel = float((diff[large] / np.abs(want[large])).max()) if large.any() else 0.0
    passed = bool(np.all(diff <= atol * scale + rtol * np.abs(want)))  # NaN anywhere fails
    return OutputCheck(name, input_shape, tuple(have.shape), float(diff.max(initial=0.0)), rel, rtol, atol, passed,
                       scale=scale)


def _compare_detections(names: list[str], expected: list[Any], got: list[Any], input_shape: tuple[int, ...],
                        rtol: float, atol: float) -> list[OutputCheck]:
    """Detections paired across the runtimes (same label; twin boxes, then overlap), then compared pair by pair.

    The runtimes may list detections in another order, and which detections survive
    the cut (the score threshold, or the per-image limit among tied scores) can differ
    by float noise. A detection found by one runtime only, or a pair that differs, is
    tolerated (and counted as unmatched) only where its scores sit at that cut; any
    other difference fails.
    """
    import numpy as np

    want, have = dict(zip(names, expected)), dict(zip(names, got))
    want_at_cut, have_at_cut = _at_cut(want["scores"], rtol, atol), _at_cut(have["scores"], rtol, atol)
    pairs = [(i, j) for i, j in _match_detections(want, have, rtol, atol)
             if not (want_at_cut[i] and have_at_cut[j])
             or all(np.allclose(have[n][j], want[n][i], rtol=rtol, atol=atol) for n in names)]
    lost = np.ones(len(want["scores"]), bool)
    extra = np.ones(len(have["scores"]), bool)
    lost[[i for i, _ in pairs]] = False
    extra[[j for _, j in pairs]] = False
    tolerated = bool(want_at_cut[lost].all() and have_at_cut[extra].all())
    rows, cols = [i for i, _ in pairs], [j for _, j in pairs]
    checks = [(_compare_masks if n == "masks" else _compare)(n, want[n][rows], have[n][cols], input_shape, rtol, atol)
              for n in names]
    return [replace(c, output_shape=tuple(have[c.name].shape), passed=c.passed and tolerated,
                    detections=len(want["scores"]), unmatched=int(lost.sum() + extra.sum())) for c in checks]


def _compare_masks(name: str, want: Any, have: Any, input_shape: tuple[int, ...], rtol: float,
                   atol: float) -> OutputCheck:
    """Instance masks (K, 1, H, W) compared up to a one-pixel move of their edges.

    A mask is pasted into its box at a whole number of pixels (torchvision rounds the
    box), so a box that differs by float noise can move a mask's edge by a pixel. Each
    ONNX Runtime pixel must lie within the range of PyTorch's values in its 3x3
    neighbourhood, within tolerance; the reported errors are the plain differences.
    """
    import numpy as np

    check = _compare(name, want, have, input_shape, rtol, atol)
    if check.passed or want.shape != have.shape:
        return check
    want = np.asarray(want, np.float64)
    padded = np.pad(want, [(0, 0)] * (want.ndim - 2) + [(1, 1), (1, 1)], mode="edge")
    height, width = want.shape[-2:]
    low, high = want.copy(), want.copy()
    for dy in range(3):
        for dx in range(3):
            shifted = padded[..., dy:dy + height, dx:dx + width]
            np.minimum(low, shifted, out=low)
            np.maximum(high, shifted, out=high)
    slack = atol + rtol * np.maximum(np.abs(low), np.abs(high))
    return replace(check, passed=bool(np.all((have >= low - slack) & (have <= high + slack))))


def _at_cut(scores: Any, rtol: float, atol: float) -> Any:
    """Which detections score as low as the lowest one kept, within tolerance."""
    import numpy as np

    if not len(scores):
        return np.zeros(0, bool)
    low = float(scores.min())
    return scores <= low + atol + rtol * abs(low)


def _match_detections(want: Mapping[str, Any], have: Mapping[str, Any], rtol: float,
                      atol: float) -> list[tuple[int, int]]:
    """(PyTorch index, ONNX Runtime index) pairs of one label: twins first, then by overlap.

    Twins are boxes whose corners agree within tolerance; they pair closest first,
    because IoU cannot pair them when they have no area (a random head's boxes often
    have x1 == x2). The rest pair by overlap (IoU of at least 0.5), best first, so a
    detection one runtime lacks cannot take its neighbour's twin; those pairs are the
    ones that then fail the comparison, with their measured error.
    """
    import numpy as np

    a, b = np.asarray(want["boxes"], np.float64), np.asarray(have["boxes"], np.float64)
    gap = np.abs(a[:, None, :] - b[None, :, :])
    twin = (gap <= atol + rtol * np.abs(a[:, None, :])).all(-1)
    distance = gap.max(-1, initial=0.0)
    # twins rank in (1, 2], nearest first; other pairs by their IoU in [0, 1]
    affinity = np.where(twin, 2.0 - distance / (1.0 + distance), _box_iou(a, b))
    affinity[want["labels"][:, None] != have["labels"][None, :]] = 0.0
    used_want, used_have = set(), set()
    pairs = []
    for flat in np.argsort(-affinity, axis=None, kind="stable"):
        i, j = divmod(int(flat), affinity.shape[1])
        if affinity[i, j] < 0.5:
            break
        if i not in used_want and j not in used_have:
            pairs.append((i, j))
            used_want.add(i)
            used_have.add(j)
    return pairs


def _box_iou(a: Any, b: Any) -> Any:
    """Intersection over union of every (x1, y1, x2, y2) box in `a` with every one in `b`."""
    import numpy as np

    def area(boxes: Any) -> Any:
        return (boxes[:, 2] - boxes[:, 0]).clip(0) * (boxes[:, 3] - boxes[:, 1]).clip(0)

    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (bottom_right - top_left).clip(0).prod(-1)
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def _tensor_bytes(model: Any) -> int:
    return sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])


def _shape_text(shape: Sequence[int]) -> str:
    return "x".join(str(d) for d in shape)

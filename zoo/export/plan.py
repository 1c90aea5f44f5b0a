"""What to export, resolved once: the arguments checked, the catalog asked, the model built and wrapped.

`check_arguments` refuses bad arguments before anything is written or built;
`ExportRequest` is what an export of a catalog model was asked for, in canonical
names (the key under which it is recorded and reused); `make_plan` builds the model
and resolves everything else (task adapter, weights, preprocessing, input shape and
names, dynamic axes, tolerances) into one `ExportPlan`. What differs between tasks
comes from the task's adapter (`zoo.export.tasks`); a bare ``nn.Module`` gets the defaults
of `TaskAdapter`, which are those of classification.
Importing this module does not import torch.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from zoo.context import current
from zoo.errors import UsageError, excerpt, first_line
from zoo.export.exporters import MIN_OPSET, onnxruntime_limits
from zoo.shapes import check_size, parse_shape
from zoo.export.tasks import TaskAdapter, adapter

if TYPE_CHECKING:
    import torch

__all__ = ["ExportRequest", "ExportPlan", "check_arguments", "make_plan"]


#: What an export computes in (``precision=``), and the precisions its inputs and outputs may have.
PRECISIONS = ("fp32", "fp16")
IO_PRECISIONS = ("fp32", "fp16")


def check_arguments(*, input_shape: Sequence[int] | str | None, opset: int | None, rtol: float | None,
                    atol: float | None, builder_kwargs: Any, precision: str = "fp32",
                    io_precision: str = "fp32") -> tuple[int, ...] | None:
    """One-line `UsageError`s for bad arguments, before anything is built; the parsed input shape."""
    if precision == "bf16":
        raise UsageError("precision bf16 is not offered: ONNX Runtime ships no bfloat16 converter, and ONNX's Conv "
                         "takes bfloat16 only from opset 22, which this machine cannot verify; use fp16")
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {excerpt(precision)}; use {' or '.join(PRECISIONS)}")
    if io_precision not in IO_PRECISIONS or (io_precision == "fp16" and precision == "fp32"):
        raise UsageError(f"io_precision {excerpt(io_precision)} is not accepted with precision {precision}; use fp32 "
                         "(inputs and outputs as given), or fp16 with precision fp16")
    if opset is not None and (not isinstance(opset, int) or isinstance(opset, bool) or opset < MIN_OPSET):
        raise UsageError(f"opset must be an integer of at least {MIN_OPSET}, not {excerpt(opset)}")
    if opset is not None and opset > onnxruntime_limits()[0]:  # before building: some builders are slow
        raise UsageError(f"opset {excerpt(opset)} is above {onnxruntime_limits()[0]}, the highest the installed "
                         "onnxruntime runs")
    for name, value in (("rtol", rtol), ("atol", atol)):
        if value is not None and (not isinstance(value, (int, float)) or value < 0):
            raise UsageError(f"{name} must be a non-negative number, not {value!r}")
    if builder_kwargs is not None and not isinstance(builder_kwargs, Mapping):
        raise UsageError(f"builder_kwargs must be a mapping of builder arguments, not {builder_kwargs!r}")
    return parse_shape(input_shape, what="input_shape", min_rank=2) if input_shape is not None else None


@dataclass(frozen=True)
class ExportRequest:
    """What an export of a catalog model was asked for, resolved to canonical names."""

    model: str
    weights: str | None  # "Enum.MEMBER", or published weights' "NAMESPACE/NAME:VERSION"
    input_shape: tuple[int, ...] | None
    dynamic_batch: bool | None
    dynamic_image_size: bool | None
    opset: int | None
    rtol: float | None
    atol: float | None
    builder_kwargs: Mapping[str, Any]
    precision: str = "fp32"
    io_precision: str = "fp32"

    @classmethod
    def resolve(cls, name: str, weights: Any, *, input_shape: tuple[int, ...] | None, dynamic_batch: bool | None,
                dynamic_image_size: bool | None, opset: int | None, rtol: float | None, atol: float | None,
                builder_kwargs: Mapping[str, Any] | None, precision: str = "fp32",
                io_precision: str = "fp32") -> ExportRequest:
        """The request for catalog model `name` with `weights` (any spelling the registry accepts)."""
        from zoo.registry import describe, weights_or_published

        member, published = weights_or_published(weights, name)
        named = published.spec if published is not None else (
            f"{type(member).__name__}.{member.name}" if member is not None else None)
        return cls(describe(name)["name"], named,
                   input_shape, dynamic_batch, dynamic_image_size, opset, rtol, atol, dict(builder_kwargs or {}),
                   precision, io_precision)

    def to_json(self) -> dict[str, Any]:
        """As the catalog's exports table stores it (``options``)."""
        return {
            "model": self.model, "weights": self.weights,
            "input_shape": list(self.input_shape) if self.input_shape else None,
            "dynamic_batch": self.dynamic_batch, "dynamic_image_size": self.dynamic_image_size, "opset": self.opset,
            "rtol": self.rtol, "atol": self.atol, "builder_kwargs": dict(self.builder_kwargs),
            # only when not float32, so that the records of exports made before precisions existed still match
            **({"precision": self.precision, "io_precision": self.io_precision} if self.precision != "fp32" else {}),
        }


@dataclass(frozen=True, eq=False)
class ExportPlan:
    """Everything one export needs, resolved: the module to export and what is recorded about it."""

    name: str  # the catalog name, or the module's class name
    task: str | None  # None for a bare module
    adapter: TaskAdapter
    module: torch.nn.Module  # built, in eval mode, wrapped by the adapter
    weights: str | None  # the weights entry's name; None for random weights
    weights_sha256: str | None
    categories: list[str] | None
    preprocessing: dict[str, Any] | None  # the weights' PreprocessSpec as JSON
    input_shape: tuple[int, ...]  # of each input
    input_names: tuple[str, ...]
    dynamic_batch: bool
    dynamic_image_size: bool
    opset: int | None  # None: the highest the exporter writes
    rtol: float  # the file's tolerance, at its precision
    atol: float
    builder_kwargs: Mapping[str, Any]  # what the builder was given beyond the catalog's own arguments
    precision: str = "fp32"  # what the file computes in (`PRECISIONS`)
    io_precision: str = "fp32"  # what its inputs and outputs are

    @property
    def input_layout(self) -> str | None:
        """The layout of each input, e.g. ``NCHW`` (images and clips only)."""
        layout = (self.preprocessing or {}).get("layout", "CHW")
        return "N" + layout if len(self.input_shape) in (4, 5) else None

    def output_layout(self, output: str) -> str | None:
        """The layout the task gives `output`, recorded in the file's metadata."""
        layouts = self.adapter.output_layouts
        return layouts.get(output, layouts.get("*"))


@dataclass(frozen=True)
class _Built:
    """A model built from the catalog, and what the catalog says about it."""

    module: Any
    name: str
    task: str | None
    weights: str | None
    sha256: str | None
    categories: list[str] | None
    preprocessing: dict[str, Any] | None
    min_size: Sequence[int] | None
    input_size: Sequence[int] | None


def make_plan(model_or_name: str | torch.nn.Module, *, weights: Any, input_shape: tuple[int, ...] | None,
              dynamic_batch: bool | None, dynamic_image_size: bool | None, opset: int | None, rtol: float | None,
              atol: float | None, builder_kwargs: Mapping[str, Any] | None, precision: str = "fp32",
              io_precision: str = "fp32") -> ExportPlan:
    """Build the model (random weights seeded) and resolve the export: defaults from its task's adapter."""
    built = _build(model_or_name, weights, dict(builder_kwargs or {}))
    task = adapter(built.task) if built.task else TaskAdapter()
    model = built.module.eval()
    batched = task.batched
    if not batched and dynamic_batch:
        raise UsageError(f"{built.name} is a {built.task} model: it is exported for one image at a time "
                         "and cannot have a dynamic batch; drop dynamic_batch")
    shape = input_shape or task.default_shape(model, name=built.name, preprocessing=built.preprocessing,
                                              min_size=built.min_size, input_size=built.input_size)
    check_size(shape)  # a default from the builder's arguments (min_size=...) is bounded too
    if not batched and shape[0] != 1:
        raise UsageError(f"{built.name} takes one image: input_shape must start with 1, not {shape[0]}")
    default_rtol, default_atol = task.float16_tolerance if precision == "fp16" else task.tolerance
    return ExportPlan(
        name=built.name, task=built.task, adapter=task, module=task.wrap(model).eval(), weights=built.weights,
        weights_sha256=built.sha256, categories=built.categories, preprocessing=built.preprocessing,
        input_shape=tuple(shape), input_names=tuple(task.input_names),
        dynamic_batch=batched if dynamic_batch is None else dynamic_batch,
        dynamic_image_size=task.dynamic_image_size if dynamic_image_size is None else dynamic_image_size,
        opset=opset, rtol=default_rtol if rtol is None else float(rtol),
        atol=default_atol if atol is None else float(atol), builder_kwargs=dict(builder_kwargs or {}),
        precision=precision, io_precision=io_precision,
    )


def _build(model_or_name: Any, weights: Any, builder_kwargs: dict[str, Any]) -> _Built:
    """The module to export and what the catalog says about it."""
    import torch

    if isinstance(model_or_name, torch.nn.Module):
        if weights is not None or builder_kwargs:
            raise UsageError("weights= and builder_kwargs= apply to a model name; build the module yourself")
        return _Built(model_or_name, type(model_or_name).__name__, None, None, None, None, None, None, None)
    if not isinstance(model_or_name, str):
        raise UsageError(f"export_onnx takes a model name or a torch.nn.Module, not {type(model_or_name).__name__}")

    from zoo.catalog.api import weights_source
    from zoo.registry import get_model, get_model_builder, weights_or_published

    catalog = current().catalog
    record = catalog.describe(model_or_name)  # unknown names raise UnknownModelError (one line)
    adapter(record.task)  # a task without an adapter is refused before building: some builders are slow
    member, published = weights_or_published(weights, record.name)
    pretrained = member is not None or published is not None
    parameters = inspect.signature(get_model_builder(record.name)).parameters
    if not pretrained and "weights_backbone" in parameters:
        builder_kwargs.setdefault("weights_backbone", None)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        try:
            module = get_model(record.name, weights=published.spec if published is not None else member,
                               **builder_kwargs)
        except (TypeError, ValueError) as exc:
            raise UsageError(f"cannot build {record.name} with {builder_kwargs}: {first_line(exc)}") from exc
    # after the build: a file first fetched by it taught the catalog its hash (zoo.registry)
    source = weights_source(catalog, record, published.spec if published is not None else member) \
        if pretrained else None
    default = next((w for w in record.weights if w.is_default), None)  # random weights: its preprocessing
    return _Built(
        module=module, name=record.name, task=record.task,
        weights=source.name if source is not None else None, sha256=source.sha256 if source is not None else None,
        categories=source.categories if source is not None else None,
        preprocessing=source.preprocessing if source is not None else default.transforms if default else None,
        min_size=(source.meta if source is not None else default.meta if default else {}).get("min_size"),
        input_size=record.input_size,
    )

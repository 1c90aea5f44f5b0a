"""The two exporters: PyTorch's ``torch.export``-based one (``dynamo=True``), and TorchScript as the fallback.

`export_model` writes one ONNX file from a wrapped module and its example inputs (one
tensor per input name), with the batch and image axes asked for made symbolic; when
the dynamo exporter fails, writes another opset than asked, or makes an axis static
that was asked to be dynamic, the TorchScript exporter is used and the reason kept.
`default_opset` is the highest opset the exporter, ``onnx`` and ONNX Runtime share.
Importing this module does not import torch (only calling its functions does).
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo.errors import UsageError, ZooError, first_line
from zoo.progress import status

if TYPE_CHECKING:
    import torch

    from zoo.export.tasks import TaskAdapter

__all__ = ["MIN_OPSET", "default_opset", "onnxruntime_limits", "export_model", "opset_of", "dynamic_axes_of",
           "output_structure", "flatten_output", "flat_module"]

#: The lowest opset torch.onnx writes (torch.onnx._constants.ONNX_MIN_OPSET; not imported: it needs torch).
MIN_OPSET = 7
#: torch's loggers that report every failed guard and print traced graphs while an
#: export fails; quieted by name (with their children) while exporting.
QUIET_LOGGERS = ("torch.export", "torch._export", "torch.onnx", "torch._dynamo", "torch.fx", "torch._subclasses",
                 "torch.utils._sympy", "onnxscript")


@functools.lru_cache(maxsize=None)
def onnxruntime_limits() -> tuple[int, int]:
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

    return min(_exporter_max_opset(exporter), onnxruntime_limits()[0], onnx.defs.onnx_opset_version())


def export_model(model: torch.nn.Module, example: tuple[torch.Tensor, ...], target: Path, *,
                 adapter: TaskAdapter, input_names: Sequence[str], output_names: list[str], dynamic_batch: bool,
                 dynamic_image_size: bool, opset: int | None) -> tuple[str, str | None]:
    """Export `model` (a `flat_module`) with the dynamo exporter, else TorchScript: (exporter, why dynamo was not used).

    An explicit `opset` is what the file must hold: the dynamo exporter writes opset 18
    or above and keeps 18 when its version converter cannot go lower, so a file in
    another opset than asked counts as its failure, and TorchScript (opsets 7 to 20)
    is used instead. `adapter` names the outputs' dynamic axes for TorchScript.
    """
    import torch

    kwargs = dict(input_names=list(input_names), output_names=output_names, external_data=True)
    rank = example[0].dim()
    wanted = ([0] if dynamic_batch else []) + ([rank - 2, rank - 1] if dynamic_image_size else [])
    try:
        axes: dict[int, Any] = {}
        traced = example
        if dynamic_batch:
            axes[0] = torch.export.Dim("batch", min=1)
            if example[0].shape[0] == 1:
                # torch.export specialises a size-1 dimension to the constant 1 ("0/1
                # specialisation") and then rejects it as dynamic: trace at batch 2
                traced = tuple(torch.cat([x, x]) for x in example)
        if dynamic_image_size:
            axes[rank - 2] = torch.export.Dim("height", min=2)
            axes[rank - 1] = torch.export.Dim("width", min=2)
        # when torch.export fails it logs each failed guard and prints the traced
        # graph (thousands of lines) before raising; the reason is recorded below
        with warnings.catch_warnings(), _quiet():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, traced, str(target), dynamo=True, opset_version=opset or default_opset("dynamo"),
                              dynamic_shapes=(tuple(axes for _ in example),) if axes else None, optimize=True,
                              verify=False, verbose=False, **kwargs)
        written, static = opset_of(target), static_axes(target, input_names, wanted)
        if static:
            # it may specialise an axis silently (RAFT's batch) instead of failing
            reason = f"it made input axes {static} static"
        elif opset is None or written == opset:
            return "dynamo", None
        else:
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
    kwargs.pop("external_data")
    image = {rank - 2: "height", rank - 1: "width"} if dynamic_image_size else {}
    named = {name: ({0: "batch"} if dynamic_batch else {}) | image for name in input_names}
    named |= {name: adapter.output_axes(name, dynamic_batch=dynamic_batch, dynamic_image_size=dynamic_image_size)
              for name in output_names}  # TorchScript makes any other output axis symbolic itself
    try:
        with status("exporting with TorchScript: the dynamo exporter could not"), warnings.catch_warnings(), _quiet():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, example, str(target), dynamo=False, opset_version=opset or ts_max,
                              dynamic_axes={k: v for k, v in named.items() if v} or None,
                              do_constant_folding=True, **kwargs)
    except Exception as exc:
        raise ZooError(f"ONNX export failed with both exporters: dynamo: {reason}; "
                       f"torchscript: {type(exc).__name__}: {first_line(exc)}") from exc
    written = opset_of(target)
    if opset is not None and written != opset:
        raise UsageError(f"cannot export at opset {opset}: the TorchScript exporter wrote opset {written}, "
                         f"and the dynamo exporter failed: {reason}")
    static = static_axes(target, input_names, wanted)
    if static:
        raise ZooError(f"the torchscript exporter made input axes {static} static, and the dynamo exporter "
                       f"failed: {reason}")
    return "torchscript", reason


def opset_of(model: Any) -> int:
    """The default-domain (ai.onnx) opset of an ONNX model, a ``ModelProto`` or a path: the one it is written in."""
    import onnx

    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model), load_external_data=False)
    return max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)


def dynamic_axes_of(model: Any) -> dict[str, dict[int, str]]:
    """The symbolic axes of each input and output of an ONNX model (a ``ModelProto`` or a path)."""
    import onnx

    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model), load_external_data=False)
    axes: dict[str, dict[int, str]] = {}
    for value in [*model.graph.input, *model.graph.output]:
        dims = {i: d.dim_param for i, d in enumerate(value.type.tensor_type.shape.dim) if d.HasField("dim_param")}
        if dims:
            axes[value.name] = dims
    return axes


def static_axes(model: Any, input_names: Sequence[str], wanted: Sequence[int]) -> dict[str, list[int]]:
    """The `wanted` axes of each input that the exported model made static (empty: all symbolic)."""
    axes = dynamic_axes_of(model)
    found = {name: [a for a in wanted if a not in axes.get(name, {})] for name in input_names}
    return {name: missing for name, missing in found.items() if missing}


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
    """torch's own loggers (`QUIET_LOGGERS` and their children) silenced, and nothing on stdout
    or stderr, while inside; every other logger of the process keeps logging."""
    names = [name for name in [*QUIET_LOGGERS, *logging.root.manager.loggerDict]
             if any(name == q or name.startswith(q + ".") for q in QUIET_LOGGERS)]
    loggers = [logging.getLogger(name) for name in dict.fromkeys(names)]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL + 1)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def output_structure(eager: Any) -> tuple[list[str], Any]:
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


def flatten_output(out: Any, flatten: Any) -> tuple[Any, ...]:
    if flatten is None:
        return (out,)
    if isinstance(flatten, list):
        return tuple(out[k] for k in flatten)
    return tuple(out)


def flat_module(model: Any, flatten: Any) -> Any:
    import torch

    class Flat(torch.nn.Module):
        """The model with its output as a plain tuple of tensors (dict outputs by key order).

        It takes its inputs as ``*inputs``: `export_model` gives their dynamic shapes so."""

        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
            return flatten_output(self.model(*inputs), flatten)

    return Flat().eval()

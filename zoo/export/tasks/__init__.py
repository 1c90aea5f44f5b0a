"""Tasks, export side: everything exporting and verifying a model of each task needs (torch, imported
inside the methods).

`TaskAdapter` extends the task's runtime side (`zoo.runtime.tasks.RuntimeTask`: outputs,
decoding, drawing) with how the model is wrapped for export, its example inputs and
dynamic axes, its default input shape, and how PyTorch's and ONNX Runtime's outputs
are compared. `export_onnx`, ``zoo bench``, `zoo.quantize_int8` and the summary look
the adapter up with `adapter(task)` and carry no task branches of their own. The
built-in adapters live in this package, one module per task family, each extending
its runtime class; plugins add or extend tasks through the ``zoo_register_tasks``
hook (`zoo.hookspecs`), returning instances of `TaskAdapter` subclasses, which serve
the runtime too. Importing this package imports neither torch nor SQLAlchemy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from zoo.errors import UsageError
from zoo.runtime.tasks import BUILTIN as RUNTIME_BUILTIN
from zoo.runtime.tasks import DecodeOptions, Result, RuntimeTask, check_ranks, find_adapter, known_tasks, main_output

if TYPE_CHECKING:
    import numpy as np
    import torch

    from zoo.export.verify import OutputCheck

__all__ = ["TaskAdapter", "Result", "DecodeOptions", "adapter", "for_module", "known_tasks", "check_ranks",
           "main_output"]

#: The batch size of the second verification run of an export with a dynamic batch.
SECOND_BATCH = 5


class TaskAdapter(RuntimeTask):
    """What the zoo knows about one task, both sides. Subclass it (or a built-in adapter), set `name`,
    override what differs."""

    #: (rtol, atol) for float32 verification: |onnx - torch| <= atol * scale + rtol * |torch|
    #: everywhere, as `compare` applies it. The default is torchvision's test_onnx (rtol
    #: 1e-3, atol 1e-5). The default `compare` counts atol per unit of the output's scale
    #: (its largest magnitude, when above 1): float32 sums round in proportion to the
    #: values summed, so a randomly initialised deeplabv3_resnet101, whose logits reach
    #: 2e3, differs by 2.6e-3 near its zero crossings while agreeing to 1e-6 of its scale.
    tolerance: ClassVar[tuple[float, float]] = (1e-3, 1e-5)
    #: (rtol, atol) for a float16 export (``precision="fp16"``), against the same float32 eager PyTorch:
    #: float16 keeps 11 significant bits (a relative step of 9.8e-4) and rounds every weight and, on a GPU,
    #: every sum; 2e-2 of the output's scale leaves room for that through a few dozen layers. A float16
    #: resnet18 (random weights) differed by 2.0e-3 from float32 on ONNX Runtime's CPU provider.
    float16_tolerance: ClassVar[tuple[float, float]] = (2e-2, 2e-2)
    #: Whether exports have symbolic height and width unless asked otherwise.
    dynamic_image_size: ClassVar[bool] = False

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """The module that is exported: it takes `input_names` tensors and returns a
        tensor, or a tuple or dict of tensors."""
        return model

    def default_shape(self, model: torch.nn.Module, *, name: str, preprocessing: Mapping[str, Any] | None,
                      min_size: Sequence[int] | None, input_size: Sequence[int] | None) -> tuple[int, ...]:
        """The export input shape when none is given (of each input), from the weights'
        preprocessing or the size the model declares; a `UsageError` says what to pass.

        `model` is the built model, before `wrap`. By default: the one size the
        architecture takes (``image_size``, as ViT declares it: built without weights it
        may not be the size of its default weights, vit_h_14 224, its SWAG weights 518),
        else the crop size, else the resize size, else the weights' `min_size`, else the
        plugin's declared `input_size` (C, H, W); batch 1.
        """
        spec = preprocessing or {}
        if spec.get("layout") == "CTHW":
            raise UsageError(f"{name} takes video clips: pass input_shape, e.g. (1, 3, 16, 112, 112)")
        channels = 1 if spec.get("channel_order") == "L" else 3
        fixed = getattr(model, "image_size", None)
        if isinstance(fixed, int) and not isinstance(fixed, bool):
            return (1, channels, fixed, fixed)
        if spec.get("crop_size"):
            size = spec["crop_size"]
        elif spec.get("resize_size"):
            # exact: (h, w); shorter side n: a square n x n stands for any image it makes
            size = spec["resize_size"] * (1 if spec.get("resize_mode") == "exact" else 2)
        elif min_size:
            size = min_size
        elif input_size:
            channels, *size = input_size
        else:
            raise UsageError(f"{name} declares no input size: pass input_shape, e.g. (1, 3, 224, 224)")
        return (1, channels, int(size[0]), int(size[1]))

    def sample(self, size: Sequence[int], generator: torch.Generator) -> torch.Tensor:
        """One random verification input of `size`: standard normal values by default."""
        import torch

        return torch.randn(size, generator=generator)

    def verification_inputs(self, shape: tuple[int, ...], *, dynamic_batch: bool,
                            dynamic_image_size: bool) -> list[tuple[torch.Tensor, ...]]:
        """The inputs both runtimes see, one tuple (one tensor per input name) per run: the
        export example first, then one per dynamic axis (batch `SECOND_BATCH`; height 3/4)."""
        import torch

        def run(size: Sequence[int], seed: int) -> tuple[torch.Tensor, ...]:
            generator = torch.Generator().manual_seed(seed)
            return tuple(self.sample(size, generator) for _ in self.input_names)

        height, width = shape[-2:]
        runs = [run(shape, 0)]
        if dynamic_batch:
            runs.append(run((SECOND_BATCH if shape[0] != SECOND_BATCH else 2, *shape[1:]), 1))
        if dynamic_image_size:
            runs.append(run((*shape[:-2], max(1, height * 3 // 4), width), 2))
        return runs

    def output_axes(self, output: str, *, dynamic_batch: bool, dynamic_image_size: bool) -> dict[int, str]:
        """Names of `output`'s symbolic axes, for the TorchScript exporter (it names any other itself)."""
        return {0: "batch"} if dynamic_batch else {}

    def compare(self, names: Sequence[str], expected: Sequence[np.ndarray], got: Sequence[np.ndarray],
                input_shape: tuple[int, ...], rtol: float, atol: float) -> list[OutputCheck]:
        """Each output of ONNX Runtime (`got`) against eager PyTorch (`expected`), at one input.

        By default elementwise, with atol in units of the output's scale
        (`zoo.export.verify.output_scale`).
        """
        from zoo.export.verify import compare, output_scale

        return [compare(n, want, have, input_shape, rtol, atol, scale=output_scale(want))
                for n, want, have in zip(names, expected, got)]

    def recognises(self, model: torch.nn.Module) -> bool:
        """Whether a bare module (no catalog name) is a model of this task, for the summary."""
        return False

    def call_inputs(self, model: torch.nn.Module, tensors: list[torch.Tensor]) -> list[Any]:
        """The positional arguments of ``model(*args)`` for N x C x ... tensors (the summary's example)."""
        return tensors


#: The built-in adapters: task name -> "module:class", each extending the runtime side of the same name
#: (`zoo.runtime.tasks.BUILTIN`) in the module of the same name here.
BUILTIN = {task: target.replace("zoo.runtime.tasks.", "zoo.export.tasks.", 1)
           for task, target in RUNTIME_BUILTIN.items()}
_adapters: dict[str, TaskAdapter] = {}


def adapter(task: str) -> TaskAdapter:
    """The export-capable adapter of `task`: a built-in one, else one a plugin registers; a `UsageError` names
    the known tasks."""
    return find_adapter(task, BUILTIN, _adapters, TaskAdapter)


def for_module(model: torch.nn.Module) -> TaskAdapter | None:
    """The adapter of the first task (built-in ones first) that `recognises` a bare module, if any."""
    return next((a for a in map(adapter, known_tasks()) if a.recognises(model)), None)

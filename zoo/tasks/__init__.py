"""Tasks: everything the zoo knows about one kind of model, in one adapter object per task.

A `TaskAdapter` holds both sides of a task:

- the export side (torch, imported inside its methods): how the model is wrapped
  for export, its example inputs and dynamic axes, its default input shape, and how
  PyTorch's and ONNX Runtime's outputs are compared;
- the runtime side (numpy and Pillow only): which outputs a model of the task has,
  how one image's raw outputs decode into a typed `Result`, and how that result is
  drawn over the image.

`export_onnx`, `Predictor`, ``zoo bench``, `zoo.quantize_int8` and the summary look
the adapter up with `adapter(task)` and carry no task branches of their own. The
built-in adapters live in this package, one module per task family; plugins add or
extend tasks through the ``zoo_register_tasks`` hook (`zoo.hookspecs`), returning
instances of `TaskAdapter` subclasses. Importing this package imports neither torch
nor SQLAlchemy.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from zoo.errors import UsageError

if TYPE_CHECKING:
    import numpy as np
    import torch
    from PIL import Image

    from zoo.export.verify import OutputCheck

__all__ = ["TaskAdapter", "Result", "DecodeOptions", "adapter", "for_module", "known_tasks"]


@dataclass(frozen=True)
class Result:
    """One image's prediction. Each task's result is a frozen dataclass deriving from this."""

    source: str | None  # the image's path, if it came from a file

    def to_json(self) -> dict[str, Any]:
        """Plain data for ``zoo predict --json``: includes ``source`` and ``task``."""
        raise NotImplementedError


@dataclass(frozen=True)
class DecodeOptions:
    """What `Predictor.predict` was asked for, as decoding needs it."""

    categories: Sequence[str] | None = None
    topk: int = 5
    score_threshold: float = 0.5

    def label(self, index: int) -> str:
        """The class name of `index`, or the index itself when the model names no classes."""
        cats = self.categories
        return cats[index] if cats and 0 <= index < len(cats) else str(index)


class TaskAdapter:
    """What the zoo knows about one task. Subclass it, set `name`, override what differs.

    The defaults describe a model that takes one batch tensor (N x C x H x W) named
    ``input`` and returns one tensor per image.
    """

    #: The task's name, as plugins write it in `ModelSpec.task` (lower_snake_case).
    name: ClassVar[str] = ""
    #: (rtol, atol) for float32 verification: |onnx - torch| <= atol + rtol * |torch|.
    tolerance: ClassVar[tuple[float, float]] = (1e-3, 1e-5)
    #: False: the model takes one image per call (detection); exported at batch 1, and
    #: a `Predictor` runs one image at a time.
    batched: ClassVar[bool] = True
    #: Whether exports have symbolic height and width unless asked otherwise.
    dynamic_image_size: ClassVar[bool] = False
    #: The exported model's input names, in the order the wrapped model takes them.
    input_names: ClassVar[tuple[str, ...]] = ("input",)
    #: Layout of each output by name, recorded in an export's metadata; ``"*"`` for any other.
    output_layouts: ClassVar[Mapping[str, str]] = {}

    # -- export side (torch) ----------------------------------------------------------

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """The module that is exported: it takes `input_names` tensors and returns a
        tensor, or a tuple or dict of tensors."""
        return model

    def default_shape(self, model: torch.nn.Module, *, name: str, preprocessing: Mapping[str, Any] | None,
                      min_size: Sequence[int] | None, input_size: Sequence[int] | None) -> tuple[int, ...]:
        """The export input shape when none is given (of the first input), from the weights'
        preprocessing or the size the model declares; a `UsageError` says what to pass."""
        raise NotImplementedError

    def verification_inputs(self, shape: tuple[int, ...], *, dynamic_batch: bool,
                            dynamic_image_size: bool) -> list[tuple[torch.Tensor, ...]]:
        """The inputs both runtimes see, one tuple (one tensor per input name) per run: the
        export example first, then one per dynamic axis."""
        raise NotImplementedError

    def compare(self, names: Sequence[str], expected: Sequence[np.ndarray], got: Sequence[np.ndarray],
                input_shape: tuple[int, ...], rtol: float, atol: float) -> list[OutputCheck]:
        """Each output of ONNX Runtime (`got`) against eager PyTorch (`expected`), at one input."""
        raise NotImplementedError

    def recognises(self, model: torch.nn.Module) -> bool:
        """Whether a bare module (no catalog name) is a model of this task, for the summary."""
        return False

    def call_inputs(self, model: torch.nn.Module, tensors: list[torch.Tensor]) -> list[Any]:
        """The positional arguments of ``model(*args)`` for N x C x ... tensors (the summary's example)."""
        return tensors

    # -- runtime side (numpy and Pillow) ------------------------------------------------

    def check_outputs(self, path: str, shapes: Mapping[str, list[Any]]) -> None:
        """The model's outputs (name: shape) are what this task's results are read from,
        or a one-line `UsageError` naming `path` says why not."""
        raise NotImplementedError

    def decode(self, outputs: Mapping[str, np.ndarray], source: str | None, options: DecodeOptions) -> Result:
        """One image's result from its raw outputs (for a batched task, each output's row of that image)."""
        raise NotImplementedError

    def draw(self, result: Result, image: Image.Image) -> Image.Image:
        """A new RGB image: `result` drawn over `image` (the picture it was predicted from)."""
        raise NotImplementedError


#: The built-in adapters: task name -> "module:class".
BUILTIN = {
    "classification": "zoo.tasks.classification:Classification",
    "embedding": "zoo.tasks.embedding:Embedding",
    "detection": "zoo.tasks.detection:Detection",
    "instance_segmentation": "zoo.tasks.detection:InstanceSegmentation",
    "keypoints": "zoo.tasks.detection:Keypoints",
    "segmentation": "zoo.tasks.segmentation:Segmentation",
    "video": "zoo.tasks.video:Video",
    "optical_flow": "zoo.tasks.optical_flow:OpticalFlow",
}
_adapters: dict[str, TaskAdapter] = {}


def adapter(task: str) -> TaskAdapter:
    """The adapter of `task`: a built-in one, else one a plugin registers; a `UsageError` names the known tasks."""
    if task not in _adapters:
        if task in BUILTIN:
            module, _, cls = BUILTIN[task].partition(":")
            _adapters[task] = getattr(importlib.import_module(module), cls)()
        else:
            from zoo.plugins import plugin_tasks

            for found in plugin_tasks():
                _adapters.setdefault(found.name, found)
    if task not in _adapters:
        raise UsageError(f"no adapter for task {task!r}; tasks: {', '.join(known_tasks())}")
    return _adapters[task]


def known_tasks() -> list[str]:
    """The built-in tasks, then those the installed plugins register."""
    from zoo.plugins import plugin_tasks

    return [*BUILTIN, *(t.name for t in plugin_tasks() if t.name not in BUILTIN)]


def for_module(model: torch.nn.Module) -> TaskAdapter | None:
    """The adapter of the first task (built-in ones first) that `recognises` a bare module, if any."""
    return next((a for a in map(adapter, known_tasks()) if a.recognises(model)), None)

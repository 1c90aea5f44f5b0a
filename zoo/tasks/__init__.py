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

import functools
import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from zoo.errors import UsageError
from zoo.shapes import onnx_shape_text

if TYPE_CHECKING:
    import numpy as np
    import torch
    from PIL import Image

    from zoo.verify import OutputCheck

__all__ = ["TaskAdapter", "Result", "DecodeOptions", "adapter", "for_module", "known_tasks", "check_ranks",
           "main_output", "captioned"]


@dataclass(frozen=True)
class Result:
    """One image's prediction. Each task's result is a frozen dataclass deriving from this."""

    source: str | None  # the image's path, if it came from a file
    #: The task whose adapter decoded this result and draws it (`zoo.runtime.draw`). A result
    #: class that several tasks share makes it a keyword-only field instead.
    task: ClassVar[str] = ""

    def to_json(self) -> dict[str, Any]:
        """Plain data for ``zoo predict --json``: includes ``source`` and ``task``."""
        raise NotImplementedError

    @property
    def top_class(self) -> int | None:
        """The index of the one class this result names first (a classifier's top-1), else None.

        What `zoo.quantize_int8` scores top-1 accuracy on, whatever the task.
        """
        return None


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


#: The batch size of the second verification run of an export with a dynamic batch.
SECOND_BATCH = 5


class TaskAdapter:
    """What the zoo knows about one task. Subclass it, set `name`, override what differs.

    The defaults describe a model that takes one batch tensor (N x C x H x W) named
    ``input`` and returns one tensor per image.
    """

    #: The task's name, as plugins write it in `ModelSpec.task` (lower_snake_case).
    name: ClassVar[str] = ""
    #: (rtol, atol) for float32 verification: |onnx - torch| <= atol * scale + rtol * |torch|
    #: everywhere, as `compare` applies it. The default is torchvision's test_onnx (rtol
    #: 1e-3, atol 1e-5). The default `compare` counts atol per unit of the output's scale
    #: (its largest magnitude, when above 1): float32 sums round in proportion to the
    #: values summed, so a randomly initialised deeplabv3_resnet101, whose logits reach
    #: 2e3, differs by 2.6e-3 near its zero crossings while agreeing to 1e-6 of its scale.
    tolerance: ClassVar[tuple[float, float]] = (1e-3, 1e-5)
    #: False: the model takes one image per call (detection); exported at batch 1, and
    #: a `Predictor` runs one image at a time.
    batched: ClassVar[bool] = True
    #: Whether exports have symbolic height and width unless asked otherwise.
    dynamic_image_size: ClassVar[bool] = False
    #: The exported model's input names, in the order the wrapped model takes them. A
    #: `Predictor` feeds a model of k inputs k consecutive images per result (optical flow:
    #: frames 0-1, 1-2, ...).
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
        (`zoo.verify.output_scale`).
        """
        from zoo.verify import compare, output_scale

        return [compare(n, want, have, input_shape, rtol, atol, scale=output_scale(want))
                for n, want, have in zip(names, expected, got)]

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
        """One image's result from its raw outputs (for a batched task, each output's row of that image).

        `source` is the image's path (the first image's, for several inputs), or None.
        """
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
            for found in plugin_tasks():
                _adapters.setdefault(found.name, found)
    if task not in _adapters:
        raise UsageError(f"no adapter for task {task!r}; tasks: {', '.join(known_tasks())}")
    return _adapters[task]


def known_tasks() -> list[str]:
    """The built-in tasks, then those the installed plugins register."""
    return [*BUILTIN, *(t.name for t in plugin_tasks() if t.name not in BUILTIN)]


@functools.cache
def plugin_tasks() -> tuple[TaskAdapter, ...]:
    """The task adapters the installed plugins register (``zoo_register_tasks``), once per process.

    A plugin that fails to import or returns something else is left out here: its
    failure is recorded when the catalog syncs it, and the task stays unknown.
    """
    import pluggy

    from zoo import hookspecs
    from zoo.plugins import installed_plugins
    from zoo.specs import TASK

    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    found: list[TaskAdapter] = []
    for info in installed_plugins():
        try:
            module = info.entry_point.load()
            manager.register(module, name=info.key)
            returned = [impl.function() for impl in manager.hook.zoo_register_tasks.get_hookimpls()
                        if impl.plugin_name == info.key]
        except Exception:  # noqa: BLE001 - a broken plugin is reported by sync, not by every lookup
            continue
        found += [a for adapters in returned for a in adapters or ()
                  if isinstance(a, TaskAdapter) and isinstance(a.name, str) and TASK.match(a.name)]
    return tuple(found)


def for_module(model: torch.nn.Module) -> TaskAdapter | None:
    """The adapter of the first task (built-in ones first) that `recognises` a bare module, if any."""
    return next((a for a in map(adapter, known_tasks()) if a.recognises(model)), None)


# -- runtime-side helpers the adapters share -------------------------------------------


def main_output(names: Sequence[str]) -> str:
    """The output a result is read from: ``out`` where there is one (a segmentation model's, not
    its ``aux``), else the first."""
    return "out" if "out" in names else names[0]


def check_ranks(path: str, task: str, shapes: Mapping[str, Sequence[Any]], needed: Mapping[str, int]) -> None:
    """Each output in `needed` (name: rank) has that rank, or one `UsageError` line names `path`,
    what a `task` model's outputs are and what this model's are."""
    wrong = [name for name, rank in needed.items() if len(shapes.get(name, ())) != rank]
    if wrong:
        given = ", ".join(f"{name} {onnx_shape_text(shape)}" for name, shape in shapes.items())
        expected = ", ".join(f"{name} of rank {rank}" for name, rank in needed.items())
        raise UsageError(f"{path}: a {task} model's outputs are {expected}; this model's are {given[:200]}")


def captioned(image: Image.Image, text: str) -> Image.Image:
    """A new RGB image: `image` above a white strip with `text` (one line or several) in Pillow's default font.

    For results that are numbers rather than places in the picture (an embedding, a count).
    """
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default()
    lines = text.splitlines() or [""]
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    boxes = [measure.textbbox((0, 0), line, font=font) for line in lines]
    line_height = max(b[3] for b in boxes) + 4
    width = max(image.width, max(b[2] for b in boxes) + 8)
    out = Image.new("RGB", (width, image.height + line_height * len(lines) + 4), "white")
    out.paste(image.convert("RGB"), (0, 0))
    draw = ImageDraw.Draw(out)
    for i, line in enumerate(lines):
        draw.text((4, image.height + 2 + i * line_height), line, fill="black", font=font)
    return out

"""Tasks, runtime side: which outputs a model of each task has, how they decode, how results are drawn.

A `RuntimeTask` holds what running an exported model needs, with numpy and Pillow
only: the model's input names and whether it takes batches, its outputs' layouts,
how one image's raw outputs decode into a typed `Result`, and how that result is
drawn over the image. `Predictor` looks the task up with `adapter(task)` and carries
no task branches of its own. The export side of each task (wrapping, example inputs,
verification) is `zoo.export.tasks.TaskAdapter`, a subclass: plugins register instances of
it through the ``zoo_register_tasks`` hook (`zoo.hookspecs`), and they serve both
sides. Importing this package imports neither torch nor SQLAlchemy.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from zoo.errors import UsageError
from zoo.shapes import onnx_shape_text

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

__all__ = ["RuntimeTask", "Result", "DecodeOptions", "adapter", "known_tasks", "check_ranks", "main_output",
           "captioned"]


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


class RuntimeTask:
    """What running a model of one task needs. Subclass `zoo.export.tasks.TaskAdapter` (which adds the export
    side), set `name`, override what differs.

    The defaults describe a model that takes one batch tensor (N x C x H x W) named
    ``input`` and returns one tensor per image.
    """

    #: The task's name, as plugins write it in `ModelSpec.task` (lower_snake_case).
    name: ClassVar[str] = ""
    #: False: the model takes one image per call (detection); exported at batch 1, and
    #: a `Predictor` runs one image at a time.
    batched: ClassVar[bool] = True
    #: The exported model's input names, in the order the wrapped model takes them. A
    #: `Predictor` feeds a model of k inputs k consecutive images per result (optical flow:
    #: frames 0-1, 1-2, ...).
    input_names: ClassVar[tuple[str, ...]] = ("input",)
    #: Layout of each output by name, recorded in an export's metadata; ``"*"`` for any other.
    output_layouts: ClassVar[Mapping[str, str]] = {}

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
    "classification": "zoo.runtime.tasks.classification:Classification",
    "embedding": "zoo.runtime.tasks.embedding:Embedding",
    "detection": "zoo.runtime.tasks.detection:Detection",
    "instance_segmentation": "zoo.runtime.tasks.detection:InstanceSegmentation",
    "keypoints": "zoo.runtime.tasks.detection:Keypoints",
    "segmentation": "zoo.runtime.tasks.segmentation:Segmentation",
    "video": "zoo.runtime.tasks.video:Video",
    "optical_flow": "zoo.runtime.tasks.optical_flow:OpticalFlow",
}
_adapters: dict[str, RuntimeTask] = {}


def adapter(task: str) -> RuntimeTask:
    """The runtime side of `task`: a built-in one, else one a plugin registers; a `UsageError` names the known
    tasks."""
    return find_adapter(task, BUILTIN, _adapters, RuntimeTask)


TaskT = TypeVar("TaskT", bound=RuntimeTask)


def find_adapter(task: str, builtin: Mapping[str, str], found: dict[str, TaskT], kind: type[TaskT]) -> TaskT:
    """The adapter of `task` kept in `found`: else made from `builtin`'s "module:class", else the first of
    the plugins' (`plugin_tasks`) that is a `kind`; a `UsageError` names the known tasks."""
    if task not in found:
        if task in builtin:
            module, _, cls = builtin[task].partition(":")
            found[task] = getattr(importlib.import_module(module), cls)()
        else:
            for registered in plugin_tasks():
                if isinstance(registered, kind):
                    found.setdefault(registered.name, registered)
    if task not in found:
        raise UsageError(f"no adapter for task {task!r}; tasks: {', '.join(known_tasks())}")
    return found[task]


def known_tasks() -> list[str]:
    """The built-in tasks, then those the installed plugins register."""
    return [*BUILTIN, *(t.name for t in plugin_tasks() if t.name not in BUILTIN)]


@functools.cache
def plugin_tasks() -> tuple[RuntimeTask, ...]:
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
    found: list[RuntimeTask] = []
    for info in installed_plugins():
        try:
            module = info.entry_point.load()
            manager.register(module, name=info.key)
            returned = [impl.function() for impl in manager.hook.zoo_register_tasks.get_hookimpls()
                        if impl.plugin_name == info.key]
        except Exception:  # noqa: BLE001 - a broken plugin is reported by sync, not by every lookup
            continue
        found += [a for adapters in returned for a in adapters or ()
                  if isinstance(a, RuntimeTask) and isinstance(a.name, str) and TASK.match(a.name)]
    return tuple(found)


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

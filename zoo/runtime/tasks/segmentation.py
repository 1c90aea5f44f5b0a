"""The segmentation task: the runtime side (see `zoo.runtime.tasks`; the export side is `zoo.export.tasks`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from zoo.runtime.tasks import DecodeOptions, Result, RuntimeTask, check_ranks, main_output

if TYPE_CHECKING:
    from PIL import Image


@dataclass(frozen=True)
class SegmentationResult(Result):
    """One image's per-pixel classes, at the resolution the model ran at. `zoo.runtime` names it `Segmentation`."""

    mask: np.ndarray  # (H, W) int64 class index per pixel: argmax of the logits
    classes: list[str]  # names of the classes present, by index
    pixels: list[int] = field(default_factory=list)  # how many pixels each of `classes` has
    task: ClassVar[str] = "segmentation"

    def to_json(self) -> dict[str, Any]:
        """Plain data; the mask is summarised by the pixels of each class present."""
        return {"source": self.source, "task": self.task, "shape": list(self.mask.shape),
                "classes": [{"label": c, "pixels": n} for c, n in zip(self.classes, self.pixels)]}

    def __str__(self) -> str:
        total = self.mask.size
        present = ", ".join(f"{c} {n / total:.1%}" for c, n in zip(self.classes, self.pixels))
        return f"{self.source or 'image'} ({self.mask.shape[0]}x{self.mask.shape[1]}): {present}"


class Segmentation(RuntimeTask):
    """Semantic segmentation: N x C x H x W in, N x classes x H x W logits out (``out``, maybe ``aux``)."""

    name = "segmentation"
    output_layouts = {"*": "NCHW"}

    def check_outputs(self, path: str, shapes: Mapping[str, list[Any]]) -> None:
        """The main output (``out``, else the first) is N x classes x H x W."""
        check_ranks(path, self.name, shapes, {main_output(list(shapes)): 4})

    def decode(self, outputs: Mapping[str, np.ndarray], source: str | None, options: DecodeOptions) -> Result:
        mask = outputs[main_output(list(outputs))].argmax(0).astype(np.int64)
        present, counts = np.unique(mask, return_counts=True)
        return SegmentationResult(source, mask, [options.label(int(i)) for i in present], [int(n) for n in counts])

    def draw(self, result: Result, image: Image.Image) -> Image.Image:
        """`image` with each pixel tinted in its class's colour and a legend of the classes present; the
        mask is scaled to the image (nearest neighbour) when the model ran at another size."""
        from PIL import Image

        from zoo.runtime.drawing import class_overlay

        assert isinstance(result, SegmentationResult), type(result)
        mask = result.mask
        if mask.shape != (image.height, image.width):
            scaled = Image.fromarray(mask.astype(np.int32)).resize(image.size, Image.Resampling.NEAREST)
            mask = np.asarray(scaled).astype(np.int64)
        ids = np.unique(result.mask)
        names = [str(i) for i in range(int(ids.max()) + 1)]
        for index, name in zip(ids, result.classes):
            names[int(index)] = name
        return Image.fromarray(class_overlay(image, mask, names))

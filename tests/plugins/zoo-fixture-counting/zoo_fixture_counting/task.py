"""The counting task's adapter and its result. Imports no torch at module level (torch only
inside the export-side method), as a task hook's module must."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from zoo.errors import UsageError
from zoo.shapes import onnx_shape_text
from zoo.export.tasks import DecodeOptions, Result, TaskAdapter, main_output


@dataclass(frozen=True)
class Count(Result):
    """How many things one image has."""

    count: float
    task: ClassVar[str] = "counting"

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "task": self.task, "count": self.count}

    def __str__(self) -> str:
        return f"{self.source or 'image'}: {self.count:.1f}"


class Counting(TaskAdapter):
    """A model that takes a batch of images and returns one count per image (N x 1)."""

    name = "counting"
    output_layouts = {"*": "N1 (count)"}

    # -- export side

    def sample(self, size: Sequence[int], generator: Any) -> Any:
        """Verification images like the real ones: values in [0, 1]."""
        import torch

        return torch.rand(size, generator=generator)

    # -- runtime side

    def check_outputs(self, path: str, shapes: Mapping[str, list[Any]]) -> None:
        shape = shapes[main_output(list(shapes))]
        if len(shape) != 2 or shape[1] != 1:
            raise UsageError(f"{path}: a counting model's output is N x 1; this one's is {onnx_shape_text(shape)}")

    def decode(self, outputs: Mapping[str, np.ndarray], source: str | None, options: DecodeOptions) -> Result:
        return Count(source, float(outputs[main_output(list(outputs))][0]))

    def draw(self, result: Result, image: Image.Image) -> Image.Image:
        """The count written in the image's top left corner, black on white."""
        assert isinstance(result, Count), type(result)
        out = image.convert("RGB")
        draw = ImageDraw.Draw(out)
        text = f"{result.count:.1f}"
        box = draw.textbbox((2, 2), text, font=ImageFont.load_default())
        draw.rectangle((0, 0, box[2] + 2, box[3] + 2), fill="white")
        draw.text((2, 2), text, fill="black", font=ImageFont.load_default())
        return out

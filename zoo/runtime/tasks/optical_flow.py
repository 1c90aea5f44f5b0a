"""The optical flow task: the runtime side (see `zoo.runtime.tasks`; the export side is `zoo.export.tasks`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from zoo.errors import UsageError
from zoo.runtime.tasks import DecodeOptions, Result, RuntimeTask, main_output
from zoo.shapes import onnx_shape_text

if TYPE_CHECKING:
    from PIL import Image


@dataclass(frozen=True)
class Flow(Result):
    """The optical flow from one image (`source`) to the next, at the resolution the model ran at."""

    flow: np.ndarray  # (H, W, 2) float32: dx, dy in pixels
    task: ClassVar[str] = "optical_flow"

    @property
    def magnitude(self) -> np.ndarray:
        """(H, W) float32: how far each pixel moves."""
        return np.hypot(self.flow[..., 0], self.flow[..., 1])

    def to_json(self) -> dict[str, Any]:
        """Plain data; the field is summarised by its mean and largest motion (`flow` has the vectors)."""
        magnitude = self.magnitude
        return {"source": self.source, "task": self.task, "shape": list(self.flow.shape[:2]),
                "mean_motion": float(magnitude.mean()), "max_motion": float(magnitude.max())}

    def __str__(self) -> str:
        magnitude = self.magnitude
        return (f"{self.source or 'image'} -> next ({self.flow.shape[0]}x{self.flow.shape[1]}): mean motion "
                f"{magnitude.mean():.2f} px, max {magnitude.max():.2f} px")


class OpticalFlow(RuntimeTask):
    """Optical flow (RAFT): two images in, the flow from the first to the second (N x 2 x H x W) out."""

    name = "optical_flow"
    input_names = ("image1", "image2")
    output_layouts = {"*": "N2HW (dx, dy in pixels)"}


    def check_outputs(self, path: str, shapes: Mapping[str, list[Any]]) -> None:
        """The main output is N x 2 x H x W."""
        main = main_output(list(shapes))
        shape = shapes[main]
        if len(shape) != 4 or isinstance(shape[1], int) and shape[1] != 2:
            raise UsageError(f"{path}: an optical_flow model's output {main} is N x 2 x H x W; "
                             f"this model's is {onnx_shape_text(shape)}")

    def decode(self, outputs: Mapping[str, np.ndarray], source: str | None, options: DecodeOptions) -> Result:
        """The flow of one pair, as H x W x 2."""
        return Flow(source, np.asarray(outputs[main_output(list(outputs))], np.float32).transpose(1, 2, 0))

    def draw(self, result: Result, image: Image.Image) -> Image.Image:
        """The flow on the standard colour wheel (hue: direction, saturation: speed), at the image's size."""
        from PIL import Image

        from zoo.runtime.drawing import flow_to_image

        assert isinstance(result, Flow), type(result)
        return Image.fromarray(flow_to_image(result.flow)).resize(image.size, Image.Resampling.BILINEAR)

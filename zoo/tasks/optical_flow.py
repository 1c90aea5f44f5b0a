"""The optical flow task: export side and runtime side (see `zoo.tasks`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from zoo.errors import UsageError
from zoo.tasks import DecodeOptions, Result, TaskAdapter, main_output
from zoo.shapes import onnx_shape_text

if TYPE_CHECKING:
    import torch
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


class OpticalFlow(TaskAdapter):
    """Optical flow (RAFT): two images in, the flow from the first to the second (N x 2 x H x W) out."""

    name = "optical_flow"
    input_names = ("image1", "image2")
    output_layouts = {"*": "N2HW (dx, dy in pixels)"}
    #: Classification's: RAFT refines the flow in 12 recurrent updates, so float
    #: differences compound, but atol counts in units of the flow's largest magnitude
    #: (`zoo.verify.output_scale`), and that is enough. Measured by `export_onnx`
    #: with random weights at 1x3x128x128 and batch 5 (TorchScript exporter, CPU):
    #: raft_small differs by up to 4.3e-5 px at a scale of 19.5 px (2.2e-6 of it),
    #: raft_large by 7.5e-6 px at 6.5 px (1.2e-6); rtol is no help where a flow component
    #: crosses zero. atol 1e-5 per unit of scale leaves a margin of 4.5 over the worst.
    tolerance = (1e-3, 1e-5)
    #: The flow is computed at 1/8 of the image size: height and width must be multiples of 8.
    STRIDE = 8
    #: The size exported when neither the weights nor the plugin declare one (RAFT's weights
    #: declare ``min_size`` 128 x 128).
    DEFAULT_SIZE = (3, 128, 128)

    # -- export side

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """The model on (image1, image2), returning only its final flow estimate as ``flow``
        (RAFT returns the estimate of every update)."""
        import torch

        class FinalFlow(torch.nn.Module):
            """RAFT's last flow estimate, N x 2 x H x W."""

            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, image1: torch.Tensor, image2: torch.Tensor) -> dict[str, torch.Tensor]:
                return {"flow": self.model(image1, image2)[-1]}

        return FinalFlow()

    def default_shape(self, model: torch.nn.Module, *, name: str, preprocessing: Mapping[str, Any] | None,
                      min_size: Sequence[int] | None, input_size: Sequence[int] | None) -> tuple[int, ...]:
        """Of each image: as `TaskAdapter.default_shape`, else `DEFAULT_SIZE`; height and width
        rounded up to multiples of `STRIDE`."""
        n, c, h, w = super().default_shape(model, name=name, preprocessing=preprocessing, min_size=min_size,
                                           input_size=input_size or self.DEFAULT_SIZE)
        return (n, c, -(-h // self.STRIDE) * self.STRIDE, -(-w // self.STRIDE) * self.STRIDE)

    def sample(self, size: Sequence[int], generator: torch.Generator) -> torch.Tensor:
        """An image in [-1, 1], as RAFT's preprocessing makes them."""
        import torch

        return torch.rand(size, generator=generator) * 2 - 1

    # -- runtime side

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

        from zoo.drawing import flow_to_image

        assert isinstance(result, Flow), type(result)
        return Image.fromarray(flow_to_image(result.flow)).resize(image.size, Image.Resampling.BILINEAR)

"""The optical flow task, export side: the runtime side (`zoo.runtime.tasks.optical_flow`) plus export and verification."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from zoo.runtime.tasks import optical_flow as runtime
from zoo.export.tasks import TaskAdapter

if TYPE_CHECKING:
    import torch


class OpticalFlow(TaskAdapter, runtime.OpticalFlow):
    """Optical flow: as `zoo.runtime.tasks.optical_flow.OpticalFlow`, exported and verified."""

    #: Classification's: RAFT refines the flow in 12 recurrent updates, so float
    #: differences compound, but atol counts in units of the flow's largest magnitude
    #: (`zoo.export.verify.output_scale`), and that is enough. Measured by `export_onnx`
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

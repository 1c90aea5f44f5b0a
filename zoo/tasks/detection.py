"""The detection tasks: export side and runtime side (see `zoo.tasks`)."""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

from zoo.errors import UsageError
from zoo.tasks import TaskAdapter

if TYPE_CHECKING:
    import torch


class Detection(TaskAdapter):
    """Object detection (torchvision's detection models): one image per call, a variable number of boxes, labels and scores out."""

    name = "detection"
    tolerance = (5e-3, 1e-3)
    batched = False
    dynamic_image_size = True

    def recognises(self, model: torch.nn.Module) -> bool:
        """torchvision's convention: ``forward(images, targets=None)`` on a list of C x H x W images
        (Faster/Mask/Keypoint R-CNN, RetinaNet, FCOS, SSD, and plugins' detectors that follow it)."""
        return list(inspect.signature(model.forward).parameters)[:2] == ["images", "targets"]

    def call_inputs(self, model: torch.nn.Module, tensors: list[torch.Tensor]) -> list[Any]:
        """Each N x C x H x W tensor as a list of N images."""
        if any(t.dim() != 4 for t in tensors):
            sizes = [list(t.shape) for t in tensors]
            raise UsageError(f"{type(model).__name__} takes images as N,C,H,W (e.g. 1,3,320,320), not {sizes}")
        return [list(t.unbind(0)) for t in tensors]


class InstanceSegmentation(Detection):
    """Detection plus one soft mask per object (Mask R-CNN)."""

    name = "instance_segmentation"


class Keypoints(Detection):
    """Detection plus keypoints per object (Keypoint R-CNN)."""

    name = "keypoints"

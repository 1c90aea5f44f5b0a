"""The video task: export side and runtime side (see `zoo.tasks`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from zoo.errors import UsageError
from zoo.tasks import DecodeOptions, Result, TaskAdapter, main_output
from zoo.tasks.classification import draw_classes, top_classes

if TYPE_CHECKING:
    import torch
    from PIL import Image


class Video(TaskAdapter):
    """Video classification: N x C x T x H x W clips in, N x classes logits out."""

    name = "video"
    output_layouts = {"*": "NC"}

    # -- export side

    def default_shape(self, model: torch.nn.Module, *, name: str, preprocessing: Mapping[str, Any] | None,
                      min_size: Sequence[int] | None, input_size: Sequence[int] | None) -> tuple[int, ...]:
        """None: how many frames a clip has is the caller's choice, so `input_shape` is required."""
        raise UsageError(f"{name} takes video clips: pass input_shape, e.g. (1, 3, 16, 112, 112)")

    # -- runtime side

    def check_outputs(self, path: str, shapes: Mapping[str, list[Any]]) -> None:
        """Refused: a `zoo.runtime.Predictor` feeds images, and a video model takes clips."""
        raise UsageError(f"{path}: cannot predict with a 'video' model: zoo predicts on images, and it takes "
                         "clips (N x C x T x H x W); run its session on preprocessed clips and decode the logits "
                         "with zoo.tasks.adapter('video').decode")

    def decode(self, outputs: Mapping[str, np.ndarray], source: str | None, options: DecodeOptions) -> Result:
        """The clip's top-k classes, as a classification result."""
        return top_classes(outputs[main_output(list(outputs))], source, options)

    def draw(self, result: Result, image: Image.Image) -> Image.Image:
        """`image` (a frame of the clip) with bars of the clip's classes."""
        return draw_classes(result, image)

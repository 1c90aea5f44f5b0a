"""The video task: the runtime side (see `zoo.runtime.tasks`; the export side is `zoo.export.tasks`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from zoo.errors import UsageError
from zoo.runtime.tasks import DecodeOptions, Result, RuntimeTask, main_output
from zoo.runtime.tasks.classification import draw_classes, top_classes

if TYPE_CHECKING:
    from PIL import Image


class Video(RuntimeTask):
    """Video classification: N x C x T x H x W clips in, N x classes logits out."""

    name = "video"
    output_layouts = {"*": "NC"}


    def check_outputs(self, path: str, shapes: Mapping[str, list[Any]]) -> None:
        """Refused: a `zoo.runtime.Predictor` feeds images, and a video model takes clips."""
        raise UsageError(f"{path}: cannot predict with a 'video' model: zoo predicts on images, and it takes "
                         "clips (N x C x T x H x W); run its session on preprocessed clips and decode the logits "
                         "with zoo.runtime.tasks.adapter('video').decode")

    def decode(self, outputs: Mapping[str, np.ndarray], source: str | None, options: DecodeOptions) -> Result:
        """The clip's top-k classes, as a classification result."""
        return top_classes(outputs[main_output(list(outputs))], source, options)

    def draw(self, result: Result, image: Image.Image) -> Image.Image:
        """`image` (a frame of the clip) with bars of the clip's classes."""
        return draw_classes(result, image)

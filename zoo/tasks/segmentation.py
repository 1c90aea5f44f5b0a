"""The segmentation task: export side and runtime side (see `zoo.tasks`)."""

from __future__ import annotations

from zoo.tasks import TaskAdapter


class Segmentation(TaskAdapter):
    """Semantic segmentation: N x C x H x W in, N x classes x H x W logits out (``out``, maybe ``aux``)."""

    name = "segmentation"
    tolerance = (1e-3, 1e-4)
    output_layouts = {"*": "NCHW"}

"""The classification task: export side and runtime side (see `zoo.tasks`)."""

from __future__ import annotations

from zoo.tasks import TaskAdapter


class Classification(TaskAdapter):
    """Image classification: N x C x H x W in, N x classes logits out; results are the top-k classes."""

    name = "classification"
    tolerance = (1e-3, 1e-5)
    output_layouts = {"*": "NC"}

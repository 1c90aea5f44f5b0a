"""The embedding task: export side and runtime side (see `zoo.tasks`)."""

from __future__ import annotations

from zoo.tasks import TaskAdapter


class Embedding(TaskAdapter):
    """Features without a classifier: N x C x H x W in, N x D (or N x D x ...) features out."""

    name = "embedding"
    output_layouts = {"*": "ND"}

"""The video task: export side and runtime side (see `zoo.tasks`)."""

from __future__ import annotations

from zoo.tasks import TaskAdapter


class Video(TaskAdapter):
    """Video classification: N x C x T x H x W clips in, N x classes logits out."""

    name = "video"
    output_layouts = {"*": "NC"}

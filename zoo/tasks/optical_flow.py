"""The optical flow task: export side and runtime side (see `zoo.tasks`)."""

from __future__ import annotations

from zoo.tasks import TaskAdapter


class OpticalFlow(TaskAdapter):
    """Optical flow (RAFT): two images in, the flow from the first to the second (N x 2 x H x W) out."""

    name = "optical_flow"
    input_names = ("image1", "image2")
    output_layouts = {"*": "N2HW (dx, dy in pixels)"}

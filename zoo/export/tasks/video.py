"""The video task, export side: the runtime side (`zoo.runtime.tasks.video`) plus export and verification."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from zoo.errors import UsageError
from zoo.runtime.tasks import video as runtime
from zoo.export.tasks import TaskAdapter

if TYPE_CHECKING:
    import torch


class Video(TaskAdapter, runtime.Video):
    """Video: as `zoo.runtime.tasks.video.Video`, exported and verified."""

    def default_shape(self, model: torch.nn.Module, *, name: str, preprocessing: Mapping[str, Any] | None,
                      min_size: Sequence[int] | None, input_size: Sequence[int] | None) -> tuple[int, ...]:
        """None: how many frames a clip has is the caller's choice, so `input_shape` is required."""
        raise UsageError(f"{name} takes video clips: pass input_shape, e.g. (1, 3, 16, 112, 112)")

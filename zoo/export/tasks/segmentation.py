"""The segmentation task, export side: the runtime side (`zoo.runtime.tasks.segmentation`) plus export and verification."""

from __future__ import annotations

from zoo.runtime.tasks import segmentation as runtime
from zoo.export.tasks import TaskAdapter


class Segmentation(TaskAdapter, runtime.Segmentation):
    """Segmentation: as `zoo.runtime.tasks.segmentation.Segmentation`, exported and verified."""

    #: rtol as classification, atol loosened to 1e-4: the outputs are full-resolution maps
    #: made by bilinear upsampling of low-resolution logits, so many elements sit near zero
    #: between logits of opposite sign, where rtol gives no room and the differently
    #: ordered float32 sums of the two runtimes show up as absolute error. 1e-4 is still
    #: far below anything that changes a per-pixel argmax.
    tolerance = (1e-3, 1e-4)

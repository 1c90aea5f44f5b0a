"""The classification task, export side: the runtime side (`zoo.runtime.tasks.classification`) plus export and verification."""

from __future__ import annotations

from zoo.runtime.tasks import classification as runtime
from zoo.export.tasks import TaskAdapter


class Classification(TaskAdapter, runtime.Classification):
    """Classification: as `zoo.runtime.tasks.classification.Classification`, exported and verified."""

    tolerance = (1e-3, 1e-5)

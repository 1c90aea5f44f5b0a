"""The embedding task, export side: the runtime side (`zoo.runtime.tasks.embedding`) plus export and verification."""

from __future__ import annotations

from zoo.runtime.tasks import embedding as runtime
from zoo.export.tasks import TaskAdapter


class Embedding(TaskAdapter, runtime.Embedding):
    """Embedding: as `zoo.runtime.tasks.embedding.Embedding`, exported and verified."""

"""The runtime tier: numpy, Pillow and ONNX Runtime only (no torch, no SQLAlchemy).

`zoo.runtime.predictor` runs exported models (`Predictor`, `predict`, `create_session`,
`draw`, ...), re-exported here on first use; `zoo.preprocessing` is
preprocessing as data (`PreprocessSpec`) with its numpy twin; `zoo.runtime.drawing`
draws predictions; `zoo.runtime.tasks` holds each task's runtime side (outputs,
decoding, drawing). Importing this package loads none of them.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "PROVIDERS", "OPTIMIZATION_LEVELS", "TASKS", "Classification", "Detections", "Embedding", "Flow", "Predictor",
    "Result", "Segmentation", "create_session", "cuda_device_count", "draw", "image_files", "make_grid", "open_image",
    "predict", "published_export", "save_drawings", "select_providers", "session_metadata",
]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'zoo.runtime' has no attribute {name!r}")
    value = getattr(importlib.import_module("zoo.runtime.predictor"), name)
    globals()[name] = value
    return value

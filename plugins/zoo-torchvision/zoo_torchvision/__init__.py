"""zoo plugin: every model in ``torchvision.models.list_models()``.

Classification, quantized classification, detection (with keypoints and instance
segmentation), semantic segmentation, video and optical flow, each with its weights
enum, metadata and transforms. Builders and enums stay torchvision's own.
"""

from __future__ import annotations

from collections.abc import Iterator

import zoo
from zoo.introspect import model_spec

# torchvision.models subpackage -> task; anything else is classification
_TASKS_BY_PACKAGE = {
    "detection": "detection",
    "segmentation": "segmentation",
    "video": "video",
    "optical_flow": "optical_flow",
    "quantization": "classification",
}
# detection builders whose outputs go beyond boxes
_TASKS_BY_FAMILY = {"keypoint_rcnn": "keypoints", "mask_rcnn": "instance_segmentation"}


@zoo.hookimpl
def zoo_register_models() -> Iterator[zoo.ModelSpec]:
    import torchvision.models as models

    for name in models.list_models():
        builder = models.get_model_builder(name)
        task, tags = _task_and_tags(builder.__module__)
        yield model_spec(name, builder, models.get_model_weights(name), task=task, tags=tags)


def _task_and_tags(module: str) -> tuple[str, list[str]]:
    """Task and tags from a builder's module, e.g. ``torchvision.models.quantization.resnet``."""
    parts = module.split(".")[2:]  # drop "torchvision.models"
    family = parts[-1]
    package = parts[0] if len(parts) > 1 else None
    task = _TASKS_BY_FAMILY.get(family) or _TASKS_BY_PACKAGE.get(package or "", "classification")
    tags = [family] + (["quantized"] if package == "quantization" else [])
    return task, tags

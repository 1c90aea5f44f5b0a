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
# classification family -> (output layers, main head first; first convolution), for
# num_classes= and in_channels= surgery. A test checks every entry against the models.
_HEADS_AND_STEMS = {
    "alexnet": (["classifier.6"], "features.0"),
    "convnext": (["classifier.2"], "features.0.0"),
    "densenet": (["classifier"], "features.conv0"),
    "efficientnet": (["classifier.1"], "features.0.0"),
    "googlenet": (["fc", "aux1.fc2", "aux2.fc2"], "conv1.conv"),
    "inception": (["fc", "AuxLogits.fc"], "Conv2d_1a_3x3.conv"),
    "maxvit": (["classifier.5"], "stem.0.0"),
    "mnasnet": (["classifier.1"], "layers.0"),
    "mobilenetv2": (["classifier.1"], "features.0.0"),
    "mobilenetv3": (["classifier.3"], "features.0.0"),
    "regnet": (["fc"], "stem.0"),
    "resnet": (["fc"], "conv1"),
    "shufflenetv2": (["fc"], "conv1.0"),
    "squeezenet": (["classifier.1"], "features.0"),
    "swin_transformer": (["head"], "features.0.0"),
    "vgg": (["classifier.6"], "features.0"),
    "vision_transformer": (["heads.head"], "conv_proj"),
}


@zoo.hookimpl
def zoo_register_models() -> Iterator[zoo.ModelSpec]:
    import torchvision.models as models

    for name in models.list_models():
        builder = models.get_model_builder(name)
        task, tags = _task_and_tags(builder.__module__)
        classifier, first_conv = _HEADS_AND_STEMS.get(builder.__module__.split(".", 2)[2], ((), None))
        yield model_spec(name, builder, models.get_model_weights(name), task=task, tags=tags,
                         classifier=classifier, first_conv=first_conv)


def _task_and_tags(module: str) -> tuple[str, list[str]]:
    """Task and tags from a builder's module, e.g. ``torchvision.models.quantization.resnet``."""
    parts = module.split(".")[2:]  # drop "torchvision.models"
    family = parts[-1]
    package = parts[0] if len(parts) > 1 else None
    task = _TASKS_BY_FAMILY.get(family) or _TASKS_BY_PACKAGE.get(package or "", "classification")
    tags = [family] + (["quantized"] if package == "quantization" else [])
    return task, tags

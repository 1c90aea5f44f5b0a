"""A newcomer plugin that claims names torchvision already has, and lists weights as data.

- `resnet50`, with its own weights enum class `ResNet50_Weights` (member A1_IN1K):
  installing it must not change what ``resnet50`` or ``ResNet50_Weights.*`` mean.
- `shadow_tagged`, built by one generic builder with arguments, whose weights are
  listed without an enum class under timm-style tags (``300ep_in1k``), one of them
  embedding-only.

Weights files live in ``$ZOO_FIXTURE_SHADOW_DIR`` (a test's folder).
"""

import os
from functools import partial
from pathlib import Path

import torch.nn as nn
from torchvision.transforms._presets import ImageClassification

import zoo
from zoo.introspect import model_spec
from zoo.preprocessing import PreprocessSpec
from zoo.modeling.weights import Weights, WeightsEnum

CATEGORIES = ["x", "y"]


def _url(name: str) -> str:
    return (Path(os.environ.get("ZOO_FIXTURE_SHADOW_DIR", "/nonexistent")) / name).as_uri()


class ResNet50_Weights(WeightsEnum):
    A1_IN1K = Weights(url=_url("resnet50.pth"), transforms=partial(ImageClassification, crop_size=4, resize_size=4),
                      meta={"categories": ["a", "b", "c"], "num_params": 147})
    DEFAULT = A1_IN1K


def resnet50(*, weights=None, progress=True, num_classes=3):
    weights = ResNet50_Weights.verify(weights)
    model = nn.Sequential(nn.Flatten(), nn.Linear(48, num_classes))
    if weights is not None:
        model.load_state_dict(weights.get_state_dict(progress=progress))
    return model


def mlp(width: int, num_classes: int = 2) -> nn.Sequential:
    """One builder for many models: its arguments come from the catalog."""
    head = nn.Linear(width, num_classes) if num_classes else nn.Identity()
    return nn.Sequential(nn.Flatten(), nn.Linear(48, width), nn.ReLU(), head)


PREPROCESS = PreprocessSpec(kind="classification", resize_size=(4, 4), resize_mode="exact", interpolation="bilinear",
                            antialias=True, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))


@zoo.hookimpl
def zoo_register_models():
    yield model_spec("resnet50", resnet50, ResNet50_Weights, task="classification", classifier=["1"])
    yield zoo.ModelSpec(
        name="shadow_tagged", builder="zoo_fixture_shadow:mlp", task="classification", builder_args={"width": 4},
        classifier=("3",), input_size=(3, 4, 4),
        weights=(
            zoo.WeightsSpec(member="300ep_in1k", url=_url("tagged-300ep.safetensors"), transforms=PREPROCESS,
                            meta={"categories": CATEGORIES}, is_default=True),
            zoo.WeightsSpec(member="clip", url=_url("tagged-clip.safetensors"), transforms=PREPROCESS,
                            builder_args={"num_classes": 0}, task="embedding"),
        ),
    )

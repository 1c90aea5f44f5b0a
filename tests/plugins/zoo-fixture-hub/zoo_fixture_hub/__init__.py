"""Registers `hub_a` and `hub_b`, whose weights files are both called ``model.safetensors``.

As on the Hugging Face hub, the files differ only by their repository's path:
``$ZOO_FIXTURE_HUB_URL/fixture/hub-a/resolve/main/model.safetensors`` and ``.../hub-b/...``
(a test's server on 127.0.0.1). `hub_a` declares its full SHA-256
(``$ZOO_FIXTURE_HUB_A_SHA256``); `hub_b` declares none, so the zoo learns it.
"""

import os
from functools import partial

import torch.nn as nn
from torchvision.transforms._presets import ImageClassification

import zoo
from zoo.introspect import model_spec
from zoo.modeling.weights import Weights, WeightsEnum

BASE = os.environ.get("ZOO_FIXTURE_HUB_URL", "http://127.0.0.1:9")


def _weights(repo: str, sha256: str | None) -> Weights:
    return Weights(
        url=f"{BASE}/fixture/{repo}/resolve/main/model.safetensors",
        transforms=partial(ImageClassification, crop_size=2, resize_size=2),
        meta={"categories": ["a", "b", "c"], "num_params": 15},
        sha256=sha256,
    )


class HubA_Weights(WeightsEnum):
    V1 = _weights("hub-a", os.environ.get("ZOO_FIXTURE_HUB_A_SHA256"))
    DEFAULT = V1


class HubB_Weights(WeightsEnum):
    V1 = _weights("hub-b", None)
    DEFAULT = V1


def _build(enum: type[WeightsEnum], weights, progress: bool, num_classes: int) -> nn.Module:
    """torchvision's builder pattern: the enum member loads its own state dict."""
    weights = enum.verify(weights)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, num_classes))
    if weights is not None:
        model.load_state_dict(weights.get_state_dict(progress=progress, check_hash=True))
    return model


def hub_a(*, weights=None, progress=True, num_classes=3):
    return _build(HubA_Weights, weights, progress, num_classes)


def hub_b(*, weights=None, progress=True, num_classes=3):
    return _build(HubB_Weights, weights, progress, num_classes)


@zoo.hookimpl
def zoo_register_models():
    return [model_spec("hub_a", hub_a, HubA_Weights, task="classification"),
            model_spec("hub_b", hub_b, HubB_Weights, task="classification")]

"""Registers `remote_net`, whose weights enum is torchvision's own kind, as torchvision's are.

Its weights URL comes from ``$ZOO_FIXTURE_REMOTE_URL`` (a test's server on 127.0.0.1)
and, like torchvision's, its file name carries only a hash prefix.
"""

import os
from functools import partial

import torch.nn as nn
from torchvision.models import Weights, WeightsEnum
from torchvision.transforms._presets import ImageClassification

import zoo
from zoo.introspect import model_spec


class RemoteNet_Weights(WeightsEnum):
    V1 = Weights(
        url=os.environ.get("ZOO_FIXTURE_REMOTE_URL", "http://127.0.0.1:9/remote_net-0123456789.pth"),
        transforms=partial(ImageClassification, crop_size=2, resize_size=2),
        meta={"categories": ["a", "b", "c"], "num_params": 15, "_metrics": {"fixture": {"acc@1": 50.0}}},
    )
    DEFAULT = V1


def remote_net(*, weights=None, progress=True, num_classes=3):
    """torchvision's builder pattern: the enum member loads its own state dict (through torch.hub)."""
    weights = RemoteNet_Weights.verify(weights)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, num_classes))
    if weights is not None:
        model.load_state_dict(weights.get_state_dict(progress=progress, check_hash=True))
    return model


@zoo.hookimpl
def zoo_register_models():
    return [model_spec("remote_net", remote_net, RemoteNet_Weights, task="classification")]

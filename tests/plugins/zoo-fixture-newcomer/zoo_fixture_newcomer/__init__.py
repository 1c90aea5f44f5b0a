"""Registers `resnet50` (a tiny model, not torchvision's) and `newcomer_net`: installing it must
not change what `resnet50` means."""

import zoo


def tiny(*, weights=None, num_classes: int = 2, **kwargs):
    import torch.nn as nn

    return nn.Sequential(nn.Flatten(), nn.Linear(3, num_classes))


@zoo.hookimpl
def zoo_register_models():
    return [
        zoo.ModelSpec(name="resnet50", builder="zoo_fixture_newcomer:tiny", task="classification", num_params=8),
        zoo.ModelSpec(name="newcomer_net", builder="zoo_fixture_newcomer:tiny", task="classification", num_params=8),
    ]

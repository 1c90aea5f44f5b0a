"""Registers `tiny_mlp`, a model with no weights, to show a third-party plugin loading."""

import zoo


def tiny_mlp(*, weights=None, num_classes: int = 3, **kwargs):
    import torch.nn as nn

    if weights is not None:
        raise ValueError("tiny_mlp has no pretrained weights")
    return nn.Sequential(nn.Flatten(), nn.Linear(4, num_classes))


@zoo.hookimpl
def zoo_register_models():
    return [zoo.ModelSpec(name="tiny_mlp", builder="zoo_fixture_good:tiny_mlp", task="classification",
                          tags=("fixture",), num_params=15)]

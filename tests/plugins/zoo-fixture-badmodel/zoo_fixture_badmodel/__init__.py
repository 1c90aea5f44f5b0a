"""Two good models and three bad ones: an invalid task, a deferred spec whose make raises
IndexError, and a name registered twice. The good ones must load; each bad one fails alone."""

import zoo


def tiny(*, weights=None, num_classes: int = 2, **kwargs):
    import torch.nn as nn

    return nn.Sequential(nn.Flatten(), nn.Linear(3, num_classes))


def first_conv_of(config: dict) -> str:
    return config["first_conv"][0]  # an empty list: IndexError, as timm's archs without first_conv gave


def deferred_spec() -> zoo.ModelSpec:
    return zoo.ModelSpec(name="bad_deferred", builder="zoo_fixture_badmodel:tiny", task="classification",
                         first_conv=first_conv_of({"first_conv": []}))


@zoo.hookimpl
def zoo_register_models():
    return [
        zoo.ModelSpec(name="good_one", builder="zoo_fixture_badmodel:tiny", task="classification"),
        zoo.ModelSpec(name="bad_task", builder="zoo_fixture_badmodel:tiny", task="Not A Task"),
        zoo.DeferredSpec(name="bad_deferred", make=deferred_spec),
        zoo.ModelSpec(name="good_two", builder="zoo_fixture_badmodel:tiny", task="classification"),
        zoo.ModelSpec(name="good_one", builder="zoo_fixture_badmodel:tiny", task="detection"),
    ]

"""zoo.modeling.optim.param_groups: every parameter gets exactly the lr and weight decay expected.

Checked by parameter identity, in the groups and again in the optimizers built from
them (torch.optim must keep each group's settings), on torchvision's resnet18 and on
the shipped digits model.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torchvision
from torch import nn

import zoo
from zoo.errors import UsageError
from zoo.modeling.freezing import freeze
from zoo.modeling.optim import param_groups


@pytest.fixture
def resnet() -> nn.Module:
    return torchvision.models.resnet18(num_classes=10)


@pytest.fixture(scope="module")
def digits(synced_catalog: str) -> nn.Module:
    return zoo.get_model("digits_cnn", weights="DEFAULT")


def settings(groups: list[dict]) -> dict[int, tuple[float, float]]:
    """id(parameter) -> (lr, weight_decay), checking that no parameter is in two groups."""
    found = {id(p): (group["lr"], group["weight_decay"]) for group in groups for p in group["params"]}
    assert len(found) == sum(len(group["params"]) for group in groups)
    return found


def check(model: nn.Module, groups: list[dict], expected: dict[str, tuple[float, float]]) -> None:
    """`groups` give exactly the named parameters in `expected` their (lr, weight_decay), here and in torch.optim."""
    named = dict(model.named_parameters())
    want = {id(named[name]): value for name, value in expected.items()}
    assert settings(groups) == want
    for group in groups:
        assert group["param_names"] == [next(n for n, p in named.items() if p is q) for q in group["params"]]
        assert isinstance(group["name"], str) and group["name"]
    for optimizer_class in (torch.optim.AdamW, torch.optim.SGD):
        optimizer = optimizer_class([dict(group) for group in groups], lr=0.5)  # the groups' lr must win
        assert settings(optimizer.param_groups) == want


def is_no_decay(model: nn.Module, name: str) -> bool:
    owner = model.get_submodule(name.rpartition(".")[0])
    return name.endswith(".bias") or isinstance(owner, (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm))


def test_per_pattern_rates_and_no_decay_on_resnet(resnet: nn.Module) -> None:
    groups = param_groups(resnet, {"fc": 1e-3, "*": 1e-4}, weight_decay=0.05)

    check(resnet, groups, {
        name: (1e-3 if name.startswith("fc.") else 1e-4, 0.0 if is_no_decay(resnet, name) else 0.05)
        for name, _ in resnet.named_parameters()
    })
    assert [g["name"] for g in groups] == ["*/decay", "*/no_decay", "fc/decay", "fc/no_decay"]
    assert groups[3]["param_names"] == ["fc.bias"]


def test_first_matching_pattern_wins_and_equal_settings_merge(resnet: nn.Module) -> None:
    groups = param_groups(resnet, {"layer4.1": 3e-3, "layer[34]*": 2e-3, "fc": 1e-3, "*": 1e-3})

    def rate(name: str) -> float:
        return 3e-3 if name.startswith("layer4.1.") else 2e-3 if name.startswith(("layer3", "layer4")) else 1e-3

    check(resnet, groups, {name: (rate(name), 0.0) for name, _ in resnet.named_parameters()})
    assert [g["name"] for g in groups] == ["* + fc", "layer[34]*", "layer4.1"]


def test_layer_decay_over_given_blocks_on_resnet(resnet: nn.Module) -> None:
    blocks = ["conv1", "layer1", "layer2", "layer3", "layer4", "fc"]

    groups = param_groups(resnet, 1e-2, weight_decay=1e-4, layer_decay=0.5, blocks=blocks)

    def block(name: str) -> int:
        top = name.split(".")[0]
        return blocks.index(top) if top in blocks else 0  # bn1 is in no block: the stem's

    check(resnet, groups, {
        name: (1e-2 * 0.5 ** (5 - block(name)), 0.0 if is_no_decay(resnet, name) else 1e-4)
        for name, _ in resnet.named_parameters()
    })
    assert "block5/decay" in [g["name"] for g in groups]


def test_layer_decay_default_blocks_are_top_level_children_and_freezing_moves_none(resnet: nn.Module) -> None:
    blocks = ["conv1", "bn1", "layer1", "layer2", "layer3", "layer4", "fc"]  # relu, maxpool, avgpool own nothing
    expected = {
        name: (1.0 * 0.8 ** (6 - blocks.index(name.split(".")[0])), 0.0)
        for name, _ in resnet.named_parameters()
    }
    check(resnet, param_groups(resnet, 1.0, layer_decay=0.8), expected)

    freeze(resnet, until="layer2")  # bn1 becomes a FrozenBatchNorm, without parameters

    trainable = {name: value for name, value in expected.items() if name.startswith(("layer3", "layer4", "fc"))}
    check(resnet, param_groups(resnet, 1.0, layer_decay=0.8), trainable)
    still_parameters = {name: expected[name] for name, _ in resnet.named_parameters()}
    check(resnet, param_groups(resnet, 1.0, layer_decay=0.8, include_frozen=True), still_parameters)


def test_frozen_parameters_are_left_out_unless_asked_for(resnet: nn.Module) -> None:
    freeze(resnet, except_=["fc"], norm="eval")

    check(resnet, param_groups(resnet, 0.1), {"fc.weight": (0.1, 0.0), "fc.bias": (0.1, 0.0)})
    everything = param_groups(resnet, 0.1, include_frozen=True)
    check(resnet, everything, {name: (0.1, 0.0) for name, _ in resnet.named_parameters()})


def test_digits_model_with_glob_blocks_and_a_real_step(digits: nn.Module) -> None:
    model = copy.deepcopy(digits)
    freeze(model, until="features.1")  # the first conv block
    # features.* stands for features.0 ... features.9; those without parameters are no block
    blocks = ["features.0", "features.1", "features.3", "features.4", "features.7", "features.8", "classifier"]

    groups = param_groups(model, 1e-3, weight_decay=0.01, layer_decay=0.5, blocks=["features.*", "classifier"])

    check(model, groups, {
        name: (1e-3 * 0.5 ** (6 - blocks.index(name.rpartition(".")[0])), 0.0 if is_no_decay(model, name) else 0.01)
        for name, p in model.named_parameters() if p.requires_grad
    })
    assert not any(name.startswith("features.0.") for g in groups for name in g["param_names"])
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = torch.optim.AdamW(groups)
    model.train()
    torch.nn.functional.cross_entropy(model(torch.randn(8, 1, 8, 8)), torch.arange(8)).backward()
    optimizer.step()
    changed = {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    assert changed == {name for name, p in model.named_parameters() if p.requires_grad}


class Tokens(nn.Module):
    """Parameters that are norm weights without being 1-d, and 1-d ones outside norm layers."""

    def __init__(self) -> None:
        super().__init__()
        self.pos = nn.Parameter(torch.zeros(4, 8))
        self.scale = nn.Parameter(torch.ones(8))
        self.norm = nn.LayerNorm([4, 8])
        self.group = nn.GroupNorm(2, 4)
        self.proj = nn.Linear(8, 8)


def test_no_decay_keywords_and_patterns() -> None:
    model = Tokens()

    def decays(no_decay: tuple[str, ...]) -> set[str]:
        groups = param_groups(model, 1.0, weight_decay=0.1, no_decay=no_decay)
        return {name for g in groups if g["weight_decay"] for name in g["param_names"]}

    assert decays(("bias", "norm", "1d")) == {"pos", "proj.weight"}
    assert decays(("bias", "norm")) == {"pos", "scale", "proj.weight"}
    assert decays(("bias",)) == {"pos", "scale", "norm.weight", "group.weight", "proj.weight"}
    assert decays(("pos", "norm")) == {"scale", "proj.weight", "proj.bias"}
    assert decays(()) == {name for name, _ in model.named_parameters()}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lr": {"fc": 1e-3}}, "lr: parameter 'conv1.weight' matches none of 'fc'; add '*' as a catch-all"),
        ({"lr": {"fc": 1e-3, "head*": 1e-4}}, "lr: 'head*' matches nothing in ResNet; its top-level modules: conv1, "),
        ({"lr": {"*": -1.0}}, "lr['*'] must be a number >= 0, not -1.0"),
        ({"lr": "1e-3"}, "lr must be a number >= 0, not '1e-3'"),
        ({"lr": 0.1, "weight_decay": -0.1}, "weight_decay must be a number >= 0, not -0.1"),
        ({"lr": 0.1, "blocks": ["layer1"]}, "blocks only matter with layer_decay; pass layer_decay= too"),
        ({"lr": 0.1, "layer_decay": 1.5}, "layer_decay must be in (0, 1], not 1.5"),
        ({"lr": 0.1, "layer_decay": 0.5, "blocks": ["layer1", "layer1.*"]},
         "blocks: 'layer1.0' is inside block 'layer1'; blocks must not overlap"),
        ({"lr": 0.1, "layer_decay": 0.5, "blocks": ["layer1", "layer5"]},
         "blocks: 'layer5' is not in ResNet; ResNet has: conv1, "),
        ({"lr": 0.1, "no_decay": ("bias", "bn")}, "no_decay: 'bn' is not in ResNet; ResNet has: conv1, "),
    ],
)
def test_mistakes_raise_one_line_usage_errors(resnet: nn.Module, kwargs: dict, message: str) -> None:
    with pytest.raises(UsageError) as error:
        param_groups(resnet, **kwargs)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_a_fully_frozen_model_is_a_usage_error(resnet: nn.Module) -> None:
    freeze(resnet)
    with pytest.raises(UsageError, match="^ResNet has no trainable parameters; unfreeze some or pass include_frozen"):
        param_groups(resnet, 0.1)

"""zoo.modeling.freezing: what freeze and unfreeze mark, and what one real optimizer step then changes.

A training step here is the real thing: model.train(), a forward pass, cross-entropy,
backward and SGD with momentum and weight decay over *all* parameters (frozen ones get
no gradient, so the optimizer must skip them). Tests compare the whole state dict,
parameters and BatchNorm statistics alike, bit for bit before and after.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import zoo
from zoo.errors import UsageError
from zoo.modeling.freezing import FrozenBatchNorm, GradualUnfreezer, freeze, unfreeze
from zoo.modeling.optim import param_groups
from zoo_digits.data import load_heldout

STATS = ("running_mean", "running_var", "num_batches_tracked")
Example = tuple[nn.Module, torch.Tensor, torch.Tensor]  # a model, inputs and targets


class NormZoo(nn.Module):
    """A small model with one of each normalisation layer the freezing code handles.

    Its SyncBatchNorm trains on CPU because no process group is initialised: torch then
    computes it as a plain BatchNorm, statistics included.
    """

    def __init__(self) -> None:
        super().__init__()
        self.seq = nn.Sequential(nn.Conv1d(3, 8, 3, padding=1), nn.BatchNorm1d(8))
        self.vol = nn.Sequential(nn.Conv3d(3, 8, 3, padding=1), nn.BatchNorm3d(8))
        self.img = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.SyncBatchNorm(8), nn.Conv2d(8, 8, 3), nn.GroupNorm(2, 8)
        )
        self.mix = nn.Sequential(nn.Linear(24, 16), nn.LayerNorm(16), nn.BatchNorm1d(16))
        self.head = nn.Linear(16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: N x 3 x 4 x 4 x 4
        features = [
            self.seq(x.flatten(2)).mean(2),
            self.vol(x).mean((2, 3, 4)),
            self.img(x.flatten(2, 3)).mean((2, 3)),
        ]
        return self.head(F.relu(self.mix(torch.cat(features, 1))))


BATCH_NORM_PATHS = {
    "seq.1": nn.BatchNorm1d, "vol.1": nn.BatchNorm3d, "img.1": nn.SyncBatchNorm, "mix.2": nn.BatchNorm1d
}
AFFINE_NORM_PATHS = ("img.3", "mix.1")


def norm_zoo() -> Example:
    torch.manual_seed(0)
    return NormZoo(), torch.randn(6, 3, 4, 4, 4), torch.randint(0, 5, (6,))


def resnet() -> Example:
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=10), torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))


@pytest.fixture(scope="module")
def digits(synced_catalog: str) -> Example:
    """The shipped digits model (catalog, SHA-256 checked weights) and its preprocessed held-out split."""
    model = zoo.get_model("digits_cnn", weights="DEFAULT")
    images, labels = load_heldout()
    inputs = zoo.get_weight("digits_cnn.DEFAULT").transforms()(torch.from_numpy(images).unsqueeze(1))
    return model, inputs, torch.from_numpy(labels)


def train_step(
    model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, optimizer: torch.optim.Optimizer | None = None
) -> set[str]:
    """One real step in train mode (by default SGD over all parameters); the state-dict keys it changed."""
    before = {key: value.clone() for key, value in model.state_dict().items()}
    model.train()
    if optimizer is None:
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    optimizer.zero_grad()
    F.cross_entropy(model(inputs), targets).backward()
    optimizer.step()
    return {key for key, value in model.state_dict().items() if not torch.equal(value, before[key])}


def names_under(model: nn.Module, *prefixes: str) -> set[str]:
    return {name for name, _ in model.named_parameters() if name.startswith(prefixes)}


def stats_of(paths: Iterable[str]) -> set[str]:
    return {f"{path}.{stat}" for path in paths for stat in STATS}


def test_freeze_until_layer3_freezes_stem_and_layer1_to_layer3_only() -> None:
    model, inputs, targets = resnet()
    total = sum(p.numel() for p in model.parameters())
    early = ("conv1.", "bn1.", "layer1.", "layer2.", "layer3.")

    report = freeze(model, until="layer3")

    late = names_under(model, "layer4.", "fc.")
    assert {name for name, p in model.named_parameters() if p.requires_grad} == late
    assert set(report.trainable) == late
    assert report.frozen and all(name.startswith(early) for name in report.frozen)
    assert report.frozen_count + report.trainable_count == total
    assert report.trainable_count == sum(p.numel() for p in model.parameters() if p.requires_grad)
    batch_norms = {
        path: type(m) for path, m in model.named_modules() if isinstance(m, (nn.BatchNorm2d, FrozenBatchNorm))
    }
    assert {path for path, kind in batch_norms.items() if kind is FrozenBatchNorm} == set(report.norm_layers)
    assert all(f"{path}.".startswith(early) for path in report.norm_layers)
    assert all(kind is nn.BatchNorm2d for path, kind in batch_norms.items() if path.startswith("layer4."))
    assert "conv1, bn1, layer1, layer2, layer3" in str(report)

    layer4_norms = [path for path, kind in batch_norms.items() if kind is nn.BatchNorm2d]
    assert train_step(model, inputs, targets) == late | stats_of(layer4_norms)


@pytest.mark.parametrize("norm", ["frozen", "eval", "train"])
def test_except_fc_on_resnet_with_each_norm_mode(norm: str) -> None:
    model, inputs, targets = resnet()
    batch_norms = [path for path, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)]

    freeze(model, except_=["fc"], norm=norm)

    bn_params = {f"{path}.{p}" for path in batch_norms for p in ("weight", "bias")}
    trainable = names_under(model, "fc.") | (bn_params if norm == "train" else set())
    assert {name for name, p in model.named_parameters() if p.requires_grad} == trainable
    expected = trainable | (stats_of(batch_norms) if norm == "train" else set())
    assert train_step(model, inputs, targets) == expected


@pytest.mark.parametrize("norm", ["frozen", "eval", "train"])
def test_every_kind_of_norm_layer_in_each_norm_mode(norm: str) -> None:
    model, inputs, targets = norm_zoo()

    report = freeze(model, except_="head", norm=norm)

    modules = dict(model.named_modules())
    for path, kind in BATCH_NORM_PATHS.items():
        if norm == "frozen":
            assert type(modules[path]) is FrozenBatchNorm and modules[path].kind is kind
            assert report.norm_layers[path] == f"{kind.__name__} -> FrozenBatchNorm"
        else:
            assert type(modules[path]) is kind
    if norm == "eval":
        pinned = {path: f"{kind.__name__} -> {kind.__name__} (eval)" for path, kind in BATCH_NORM_PATHS.items()}
        assert report.norm_layers == pinned
    norm_params = names_under(model, *(f"{path}." for path in [*BATCH_NORM_PATHS, *AFFINE_NORM_PATHS]))
    trainable = names_under(model, "head.") | (norm_params if norm == "train" else set())
    assert {name for name, p in model.named_parameters() if p.requires_grad} == trainable

    model.train()
    assert all(modules[path].training == (norm != "eval") for path in BATCH_NORM_PATHS if norm != "frozen")
    expected = trainable | (stats_of(BATCH_NORM_PATHS) if norm == "train" else set())
    assert train_step(model, inputs, targets) == expected
    model.eval()
    assert model(inputs).shape == (6, 5)


def test_frozen_batchnorm_keeps_outputs_and_checkpoints() -> None:
    model, inputs, targets = resnet()
    train_step(model, inputs, targets)  # statistics and affine away from their initial values
    model.eval()
    with torch.no_grad():
        expected = model(inputs)
    checkpoint = {key: value.clone() for key, value in model.state_dict().items()}

    freeze(model)

    assert list(model.state_dict()) == list(checkpoint)
    with torch.no_grad():
        assert torch.equal(model(inputs), expected)
        model.train()
        assert torch.equal(model(inputs), expected)  # frozen statistics in train mode too
    fresh = torchvision.models.resnet18(num_classes=10)
    fresh.load_state_dict(model.state_dict())  # a frozen checkpoint loads into a plain model
    fresh.eval()
    with torch.no_grad():
        assert torch.equal(fresh(inputs), expected)
    model.load_state_dict(checkpoint)  # and a plain one into the frozen model
    torchvision_style = {k: v for k, v in checkpoint.items() if not k.endswith("num_batches_tracked")}
    model.load_state_dict(torchvision_style)  # as torchvision's FrozenBatchNorm2d saves them


def test_unfreeze_restores_each_batchnorm_kind_with_its_values() -> None:
    model, inputs, targets = norm_zoo()
    checkpoint = {key: value.clone() for key, value in model.state_dict().items()}
    freeze(model)

    report = unfreeze(model)

    modules = dict(model.named_modules())
    assert {path: type(modules[path]) for path in BATCH_NORM_PATHS} == BATCH_NORM_PATHS
    assert report.norm_layers == {path: f"FrozenBatchNorm -> {k.__name__}" for path, k in BATCH_NORM_PATHS.items()}
    assert report.frozen == () and set(report.changed) == set(report.trainable)
    state = model.state_dict()
    assert list(state) == list(checkpoint) and all(torch.equal(state[k], v) for k, v in checkpoint.items())
    assert train_step(model, inputs, targets) == set(checkpoint)


def test_unfreeze_with_norm_frozen_trains_all_but_the_norm_layers() -> None:
    model, inputs, targets = resnet()
    freeze(model)

    unfreeze(model, norm="frozen")

    batch_norms = [path for path, m in model.named_modules() if isinstance(m, FrozenBatchNorm)]
    assert len(batch_norms) == 20
    assert train_step(model, inputs, targets) == {name for name, _ in model.named_parameters()}


def test_eval_pinning_survives_train_calls_and_deepcopy_until_unfrozen() -> None:
    model, inputs, targets = resnet()
    freeze(model, "layer1", norm="eval")
    pinned = model.layer1[0].bn1

    for candidate in (model, copy.deepcopy(model)):
        candidate.train()
        candidate.eval()
        candidate.train()
        assert not candidate.layer1[0].bn1.training and candidate.layer2[0].bn1.training

    report = unfreeze(model, "layer1")
    model.train()
    assert model.layer1[0].bn1 is pinned and pinned.training
    assert report.norm_layers["layer1.0.bn1"] == "BatchNorm2d (eval) -> BatchNorm2d"
    assert "layer1.0.bn1.running_mean" in train_step(model, inputs, targets)


def test_glob_patterns_select_modules_and_everything_under_them() -> None:
    model, _, _ = resnet()

    report = freeze(model, ["layer[12]", "*.downsample"], norm="train")

    downsample_convs = {"layer2.0.downsample.0.weight", "layer3.0.downsample.0.weight", "layer4.0.downsample.0.weight"}
    frozen = {n for n in names_under(model, "layer1.", "layer2.") if ".bn" not in n and "downsample.1" not in n}
    assert set(report.frozen) == frozen | downsample_convs
    assert report.norm_layers == {}


def test_digits_model_keeps_its_accuracy_and_trains_only_the_head(digits: Example) -> None:
    model, inputs, labels = digits
    model = copy.deepcopy(model)
    model.eval()
    with torch.no_grad():
        expected = model(inputs)

    report = freeze(model, except_=["classifier"])

    assert set(report.trainable) == {"classifier.weight", "classifier.bias"}
    assert set(report.norm_layers) == {"features.1", "features.4", "features.8"}
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(inputs), expected)
    assert (expected.argmax(1) == labels).sum() == 446  # the recorded held-out accuracy
    assert train_step(model, inputs, labels) == {"classifier.weight", "classifier.bias"}


def test_digits_freeze_until_a_nested_module(digits: Example) -> None:
    model = copy.deepcopy(digits[0])

    report = freeze(model, until="features.4")

    assert set(report.frozen) == {"features.0.weight", "features.1.weight", "features.1.bias",
                                  "features.3.weight", "features.4.weight", "features.4.bias"}
    assert "features.7.weight" in report.trainable and "classifier.weight" in report.trainable


def test_gradual_unfreezer_follows_its_schedule_with_one_optimizer() -> None:
    model, inputs, targets = resnet()
    unfreezer = GradualUnfreezer(model, {1: "layer4", 2: ["layer3"], 4: ["layer1", "layer2"]})
    optimizer = torch.optim.SGD(param_groups(model, 0.1, include_frozen=True), momentum=0.9)
    stem_and_head = names_under(model, "conv1.", "bn1.", "fc.")
    assert set(unfreezer.report.trainable) == stem_and_head

    def changed_by_a_step() -> set[str]:
        """The top-level modules whose parameters or statistics a step of the one optimizer changed."""
        return {key.split(".")[0] for key in train_step(model, inputs, targets, optimizer)}

    assert unfreezer.step(0) is None
    assert changed_by_a_step() == {"conv1", "bn1", "fc"}
    report = unfreezer.step(1)
    assert report is not None and set(report.changed) == names_under(model, "layer4.")
    assert changed_by_a_step() == {"conv1", "bn1", "layer4", "fc"}
    assert set(unfreezer.step(2).changed) == names_under(model, "layer3.")
    assert unfreezer.step(3) is None
    assert set(unfreezer.step(4).changed) == names_under(model, "layer1.", "layer2.")
    assert unfreezer.step(5) is None
    assert all(p.requires_grad for p in model.parameters())
    assert changed_by_a_step() == {"conv1", "bn1", "layer1", "layer2", "layer3", "layer4", "fc"}


def test_gradual_unfreezer_catches_up_when_resumed_late() -> None:
    model, _, _ = norm_zoo()
    unfreezer = GradualUnfreezer(model, [["head"], "mix", ["img", "vol"]], norm="frozen")
    assert unfreezer.report.trainable == ("seq.0.weight", "seq.0.bias", "seq.1.weight", "seq.1.bias")

    report = unfreezer.step(7)

    assert report is not None and report.frozen == ()
    assert unfreezer.step(8) is None


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda m: freeze(m, ["layer4.1.conv3"]),
         "modules: 'layer4.1.conv3' is not in ResNet; 'layer4.1' has: conv1, bn1, relu, conv2, bn2"),
        (lambda m: freeze(m, "layr*"),
         "modules: 'layr*' matches nothing in ResNet; its top-level modules: "
         "conv1, bn1, relu, maxpool, layer1, layer2, layer3, layer4, avgpool, fc"),
        (lambda m: freeze(m, except_=["head"]), "except_: 'head' is not in ResNet; ResNet has: conv1, bn1, relu, "),
        (lambda m: freeze(m, until="layer5"), "until: 'layer5' is not in ResNet; ResNet has: conv1, "),
        (lambda m: freeze(m, until="fc.weight"),
         "until: 'fc.weight' is a parameter of ResNet; until takes a module path"),
        (lambda m: freeze(m, until="layer3", modules=["fc"]), "freeze: pass modules or until, not both"),
        (lambda m: freeze(m, norm="fixed"), "norm must be one of 'frozen', 'eval', 'train', not 'fixed'"),
        (lambda m: freeze(m, [3]), "modules: patterns are strings (module paths or globs), not 3"),
        (lambda m: GradualUnfreezer(m, "layer4"), "GradualUnfreezer: stages is a list of stages or a mapping"),
        (lambda m: GradualUnfreezer(m, {-1: "fc"}), "GradualUnfreezer: epochs must be integers >= 0, not -1"),
        (lambda m: GradualUnfreezer(m, [["fc"], ["layer9"]]), "stages[1]: 'layer9' is not in ResNet"),
    ],
)
def test_mistakes_raise_one_line_usage_errors(call, message: str) -> None:
    model, _, _ = resnet()
    with pytest.raises(UsageError) as error:
        call(model)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)
    assert isinstance(error.value, ValueError)

"""Head and stem surgery from catalog data, module surgery by path, partial loading reports.

Pretrained torchvision weights cannot be downloaded here, so the tests serve random
state dicts of the real architectures from a mirror directory, with their full hashes
recorded in the catalog as a verified download would record them.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
import torchvision.models as tvm
from sqlalchemy import delete
from torch import nn

import zoo
from conftest import sweep
from zoo.modeling import surgery
from zoo.catalog.engine import open_engine, write_transaction
from zoo.catalog.published import note_change
from zoo.catalog.tables import weight_files
from zoo.context import current

# googlenet and inception_v3 announce a change of their default init on every build
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")

CLASSIFICATION = [n for n in tvm.list_models(module=tvm) if n in tvm.list_models()]
# The smallest model of every torchvision classification family.
FAMILY_REPRESENTATIVES = [
    "alexnet", "convnext_tiny", "densenet121", "efficientnet_b0", "googlenet", "inception_v3", "maxvit_t",
    "mnasnet0_5", "mobilenet_v2", "mobilenet_v3_small", "regnet_x_400mf", "resnet18", "shufflenet_v2_x0_5",
    "squeezenet1_1", "swin_t", "vgg11", "vit_b_32",
]


def build_on_meta(name: str, **kwargs) -> nn.Module:
    """The architecture without memory or init time; RegNet's constructor needs real tensors."""
    try:
        with torch.device("meta"):
            return zoo.get_model(name, **kwargs)
    except NotImplementedError:
        return zoo.get_model(name, **kwargs).to("meta")


def test_every_classifier_takes_num_classes_where_the_catalog_says(synced_catalog: str) -> None:
    assert len(CLASSIFICATION) >= 80
    for name in sweep([*CLASSIFICATION, "digits_cnn"]):
        record = zoo.describe(name)
        model = build_on_meta(name, weights=None, num_classes=7).eval()
        for path in record["classifier"]:
            head = surgery.get_submodule(model, path)
            assert getattr(head, "out_features", getattr(head, "out_channels", None)) == 7, (name, path)
        stem = surgery.get_submodule(model, record["first_conv"])
        assert stem is next(m for m in model.modules() if isinstance(m, nn.Conv2d)), name
        channels = stem.in_channels
        size = {"inception_v3": 299, "digits_cnn": 8}.get(name, 224)
        assert model(torch.zeros(2, channels, size, size, device="meta")).shape == (2, 7), name


def test_digits_head_swap_keeps_every_backbone_tensor(synced_catalog: str) -> None:
    pretrained = zoo.get_model("digits_cnn", weights="DEFAULT").state_dict()
    built = zoo.build_model("digits_cnn", weights="DEFAULT", num_classes=2)
    report = built.report
    head = {"classifier.weight", "classifier.bias"}
    assert set(report.loaded) == set(pretrained) - head
    assert report.mismatched == {"classifier.weight": ((10, 64), (2, 64)), "classifier.bias": ((10,), (2,))}
    assert report.missing == report.unexpected == [] and report.adapted == {}
    state = built.model.state_dict()
    assert all(torch.equal(state[k], pretrained[k]) for k in report.loaded)
    assert built.model(torch.zeros(3, 1, 8, 8)).shape == (3, 2)


def test_stem_adaptation_from_pretrained_weights(synced_catalog: str) -> None:
    original = zoo.get_model("digits_cnn", weights="DEFAULT").features[0].weight
    three = zoo.build_model("digits_cnn", weights="DEFAULT", in_channels=3)
    assert three.report.adapted == {"features.0.weight": "[16, 1, 3, 3] -> [16, 3, 3, 3]"}
    adapted = three.model.features[0].weight
    assert adapted.shape == (16, 3, 3, 3)
    # A grey image copied into three channels gives the pretrained response.
    assert torch.allclose(adapted.sum(dim=1, keepdim=True), original, atol=1e-6)
    assert three.model(torch.zeros(1, 3, 8, 8)).shape == (1, 10)

    rgb = torch.randn(8, 3, 3, 3)
    grey = surgery.adapt_conv_weight(rgb, torch.empty(8, 1, 3, 3))
    assert torch.equal(grey, rgb.sum(dim=1, keepdim=True))
    four = surgery.adapt_conv_weight(rgb, torch.empty(8, 4, 3, 3))
    assert torch.allclose(four, torch.cat([rgb, rgb[:, :1]], dim=1) * 3 / 4)


@pytest.fixture
def served_torchvision_weights(synced_catalog: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Offline, a mirror directory that will hold random weights of torchvision models."""
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("ZOO_WEIGHTS_MIRROR", str(mirror))
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    engine = open_engine(synced_catalog)

    def serve(name: str) -> dict[str, torch.Tensor]:
        member = zoo.get_weight(f"{name}.DEFAULT")
        torch.manual_seed(0)
        state = zoo.get_model(name, weights=None).state_dict()
        path = mirror / Path(member.url).name
        torch.save(state, path)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        current().catalog.learn_sha256(member.url, digest, path.stat().st_size)  # as a verified first download
        return state

    yield serve
    with write_transaction(engine) as conn:  # behind the zoo's back: noted, as the zoo's own writers do
        conn.execute(delete(weight_files))
        note_change(conn)


@pytest.mark.parametrize("name", FAMILY_REPRESENTATIVES)
def test_torchvision_head_swap_loads_every_backbone_tensor(served_torchvision_weights, name: str) -> None:
    served = served_torchvision_weights(name)
    built = zoo.build_model(name, weights="DEFAULT", num_classes=7)
    heads = [p for p in zoo.describe(name)["classifier"] if surgery.has_submodule(built.model, p)]
    head_keys = {f"{p}.{n}" for p in heads for n, _ in surgery.get_submodule(built.model, p).named_parameters()}
    report = built.report
    assert set(report.mismatched) == head_keys
    assert report.missing == report.unexpected == [] and report.adapted == {}
    state = built.model.state_dict()
    assert set(report.loaded) == set(state) - head_keys
    assert all(torch.equal(state[k], served[k]) for k in report.loaded)
    size = 299 if name == "inception_v3" else 224
    with torch.inference_mode():
        assert built.model.eval()(torch.zeros(1, 3, size, size)).shape == (1, 7)


def test_surgery_errors_are_clear(synced_catalog: str) -> None:
    with pytest.raises(zoo.UsageError, match="declares no classifier"):
        zoo.build_model("quantized_resnet18", weights="DEFAULT", num_classes=3)
    with pytest.raises(zoo.UsageError, match="num_classes must be a positive integer"):
        zoo.get_model("digits_cnn", weights="DEFAULT", num_classes=0)


def test_module_surgery_by_path() -> None:
    model = tvm.resnet18()
    x = torch.randn(1, 3, 64, 64)
    assert surgery.get_submodule(model, "layer4.1.conv2") is model.layer4[1].conv2
    with pytest.raises(zoo.UsageError, match=r"module path 'layer4.3.conv2': layer4 has no child '3'; its children: 0, 1"):
        surgery.get_submodule(model, "layer4.3.conv2")

    old = surgery.set_submodule(model, "layer4.1.conv2", nn.Conv2d(512, 512, 3, padding=1, bias=False))
    assert isinstance(old, nn.Conv2d) and model.layer4[1].conv2 is not old
    surgery.insert_submodule(model, "fc", nn.Dropout(0.5), before=True)
    assert isinstance(model.fc, nn.Sequential) and isinstance(model.fc[0], nn.Dropout)
    surgery.delete_submodule(model, "layer4.1")  # removed from its Sequential
    assert len(model.layer4) == 1
    surgery.delete_submodule(model, "avgpool")  # replaced by Identity: forward must then fail honestly
    assert isinstance(model.avgpool, nn.Identity)

    vgg = tvm.vgg11()
    surgery.insert_submodule(vgg, "classifier.6", nn.Softmax(dim=1))
    assert isinstance(vgg.classifier[7], nn.Softmax) and len(vgg.classifier) == 8
    surgery.delete_submodule(vgg, "classifier.7")
    assert vgg(torch.randn(1, 3, 64, 64)).shape == (1, 1000)

    trunk = surgery.truncate(tvm.resnet18(), "layer3")
    assert trunk(x).shape == (1, 256, 4, 4)
    with pytest.raises(zoo.UsageError, match="has no child 'layer9'"):
        surgery.truncate(tvm.resnet18(), "layer9")


def test_partial_loading_accounts_for_every_tensor() -> None:
    source = tvm.resnet18(num_classes=10).state_dict()
    source["extra.weight"] = torch.zeros(3)
    del source["layer1.0.bn1.running_mean"]
    target = tvm.resnet18(num_classes=5)
    target.conv1 = nn.Conv2d(1, 64, 7, 2, 3, bias=False)
    report = surgery.load_partial(target, source, {"conv1.weight": surgery.adapt_conv_weight})
    assert report.unexpected == ["extra.weight"]
    assert report.missing == ["layer1.0.bn1.running_mean"]
    assert report.mismatched == {"fc.weight": ((10, 512), (5, 512)), "fc.bias": ((10,), (5,))}
    assert report.adapted == {"conv1.weight": "[64, 3, 7, 7] -> [64, 1, 7, 7]"}
    model_keys = set(target.state_dict())
    assert set(report.loaded) | set(report.mismatched) | set(report.adapted) | set(report.missing) == model_keys
    assert set(report.loaded) | set(report.mismatched) | set(report.adapted) | set(report.unexpected) == set(source)
    assert torch.equal(target.layer4[1].conv2.weight, source["layer4.1.conv2.weight"])
    assert "kept the model's fc.weight: checkpoint has [10, 512], model [5, 512]" in str(report)
    assert report.to_json()["mismatched"]["fc.bias"] == {"checkpoint": [10], "model": [5]}

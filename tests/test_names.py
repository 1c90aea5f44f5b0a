"""Names mean one thing: PLUGIN/NAME, bare names, weights names, and torchvision's list_models.

A real pip-installed newcomer plugin (`zoo-fixture-shadow`) also registers
``resnet50`` and an enum class ``ResNet50_Weights``; torchvision's meaning of both
must survive it. Expected answers come from torchvision's own API and from the
files the tests write, not from the catalog.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import torch
import torchvision
import torchvision.models as tvm
from safetensors.torch import save_file

import zoo
from zoo.errors import UnknownWeightsError
from conftest import FIXTURES, pip_install, run_zoo


WEIGHTS_FILES = ("tagged-300ep.safetensors", "tagged-clip.safetensors", "resnet50.pth")


@pytest.fixture(scope="module")
def shadow_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    site = tmp_path_factory.mktemp("shadow-site")
    pip_install(FIXTURES / "zoo-fixture-shadow", site)
    return site


def write_weights(folder: Path) -> dict[str, dict[str, torch.Tensor]]:
    """The fixture's weights files, written by the test: what each must load."""
    generator = torch.Generator().manual_seed(0)
    tagged = {"1.weight": torch.randn(4, 48, generator=generator), "1.bias": torch.randn(4, generator=generator),
              "3.weight": torch.randn(2, 4, generator=generator), "3.bias": torch.randn(2, generator=generator)}
    clip = {"1.weight": torch.randn(4, 48, generator=generator), "1.bias": torch.randn(4, generator=generator)}
    resnet = {"1.weight": torch.randn(3, 48, generator=generator), "1.bias": torch.randn(3, generator=generator)}
    save_file(tagged, folder / WEIGHTS_FILES[0])
    save_file(clip, folder / WEIGHTS_FILES[1])
    torch.save(resnet, folder / WEIGHTS_FILES[2])
    return {"tagged": tagged, "clip": clip, "resnet": resnet}


@pytest.fixture(scope="module")
def shadow_catalog(shadow_site: Path, tmp_path_factory: pytest.TempPathFactory):
    """A catalog synced with torchvision and the newcomer, and the newcomer's weights files."""
    folder = tmp_path_factory.mktemp("shadow")
    return f"sqlite:///{folder / 'registry.db'}", folder, write_weights(folder)


def use_shadow(monkeypatch: pytest.MonkeyPatch, site: Path, folder: Path, url: str, plugins: str) -> None:
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    monkeypatch.setenv("ZOO_FIXTURE_SHADOW_DIR", str(folder))
    monkeypatch.delenv("ZOO_PREFER", raising=False)
    monkeypatch.setenv("ZOO_REGISTRY_URL", url)
    monkeypatch.setenv("ZOO_LOAD_PLUGINS", plugins)


@pytest.fixture
def shadowed(shadow_site: Path, shadow_catalog, monkeypatch: pytest.MonkeyPatch) -> dict[str, dict[str, torch.Tensor]]:
    url, folder, files = shadow_catalog
    use_shadow(monkeypatch, shadow_site, folder, url, "torchvision,shadow")
    return files


def test_a_newcomer_leaves_torchvision_names_alone(shadowed) -> None:
    record = zoo.describe("resnet50")
    assert record["plugin"]["namespace"] == "torchvision"
    assert record["builder"] == "torchvision.models.resnet:resnet50"
    assert record["providers"] == ["shadow/resnet50", "torchvision/resnet50"]
    assert zoo.describe("shadow/resnet50")["name"] == "shadow/resnet50"
    assert zoo.describe("torchvision/resnet50")["name"] == "resnet50"
    assert zoo.list_models(plugin="torchvision") == tvm.list_models()
    assert zoo.list_models("resnet50") == ["resnet50", "shadow/resnet50"]
    assert zoo.list_models("shadow/*") == ["shadow/resnet50", "shadow_tagged"]
    assert zoo.get_model_builder("resnet50") is tvm.resnet50
    assert zoo.get_weight("ResNet50_Weights.IMAGENET1K_V2") is tvm.ResNet50_Weights.IMAGENET1K_V2
    assert zoo.get_weight("resnet50.DEFAULT") is tvm.ResNet50_Weights.DEFAULT


def test_zoo_plugins_shows_the_names_plugins_share_and_who_answers(shadowed, shadow_site: Path) -> None:
    records = {p["namespace"]: p for p in zoo.list_plugins()}
    assert records["shadow"]["shared"] == [{"name": "resnet50", "answered_by": "torchvision"}]
    assert records["torchvision"]["shared"] == [{"name": "resnet50", "answered_by": "torchvision"}]
    shown = run_zoo("plugins", "--verbose", env={"PYTHONPATH": str(shadow_site)}).stdout
    assert "plugin shadow shares 1 name(s)" in shown and "resnet50 -> torchvision/resnet50" in shown


def test_a_newcomers_enum_of_the_same_name_is_reached_only_by_its_namespace(shadowed) -> None:
    with pytest.raises(UnknownWeightsError):
        zoo.get_weight("ResNet50_Weights.A1_IN1K")  # torchvision's enum has no such member
    member = zoo.get_weight("shadow/ResNet50_Weights.A1_IN1K")
    assert type(member).__module__ == "zoo_fixture_shadow" and member.name == "A1_IN1K"
    assert zoo.get_weight("shadow/resnet50.A1_IN1K") is member
    model = zoo.get_model("shadow/resnet50", weights="shadow/resnet50.DEFAULT")
    assert torch.equal(model[1].weight, shadowed["resnet"]["1.weight"])


def test_zoo_prefer_chooses_who_answers_a_bare_name(shadowed, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZOO_PREFER", "shadow")
    assert zoo.describe("resnet50")["plugin"]["namespace"] == "shadow"
    assert zoo.list_models("resnet50") == ["resnet50", "torchvision/resnet50"]
    assert type(zoo.get_weight("ResNet50_Weights.A1_IN1K")).__module__ == "zoo_fixture_shadow"


def test_weights_listed_as_data_build_verify_and_transform(shadowed) -> None:
    member = zoo.get_weight("shadow_tagged.300ep_in1k")
    assert member.name == "300ep_in1k" and member.meta["categories"] == ["x", "y"]
    assert zoo.get_weight("shadow_tagged.DEFAULT") is member
    model = zoo.get_model("shadow_tagged", weights="300ep_in1k")
    for key, value in shadowed["tagged"].items():
        assert torch.equal(model.state_dict()[key], value)
    image = torch.randint(0, 256, (3, 9, 7), dtype=torch.uint8)
    assert member.transforms()(image).shape == (3, 4, 4)
    built = zoo.build_model("shadow_tagged", weights="shadow_tagged.300ep_in1k", num_classes=5)
    assert built.model[3].out_features == 5 and torch.equal(built.model[1].weight, shadowed["tagged"]["1.weight"])
    embedding = zoo.get_model("shadow_tagged", weights="shadow_tagged.clip")
    assert isinstance(embedding[3], torch.nn.Identity)
    assert embedding(torch.rand(2, 3, 4, 4)).shape == (2, 4)
    headed = zoo.build_model("shadow_tagged", weights="shadow_tagged.clip", num_classes=3)
    assert headed.model[3].out_features == 3 and torch.equal(headed.model[1].weight, shadowed["clip"]["1.weight"])
    assert sorted(headed.report.missing) == ["3.bias", "3.weight"] and not headed.report.mismatched
    assert zoo.list_models(task="embedding") == ["shadow_tagged"]
    record = zoo.describe("shadow_tagged")
    assert [w["name"] for w in record["weights"]] == ["shadow_tagged.300ep_in1k", "shadow_tagged.clip"]
    assert [w["task"] for w in record["weights"]] == ["classification", "embedding"]
    assert record["input_size"] == [3, 4, 4]


def test_weights_that_do_not_fit_are_refused_in_one_line(shadow_site: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    write_weights(tmp_path)
    save_file({"1.weight": torch.zeros(4, 48)}, tmp_path / WEIGHTS_FILES[0])
    use_shadow(monkeypatch, shadow_site, tmp_path, f"sqlite:///{tmp_path / 'registry.db'}", "shadow")
    with pytest.raises(zoo.WeightsError, match="do not fit"):
        zoo.get_model("shadow_tagged", weights="shadow_tagged.300ep_in1k")


@pytest.mark.parametrize("module", [tvm, tvm.detection, tvm.segmentation, tvm.video, tvm.optical_flow,
                                    tvm.quantization])
def test_list_models_takes_a_module_as_torchvision_does(module, synced_catalog: str) -> None:
    assert zoo.list_models(module) == torchvision.models.list_models(module)
    assert zoo.list_models(module, include="*resnet*", exclude="*50*") == torchvision.models.list_models(
        module, include="*resnet*", exclude="*50*")

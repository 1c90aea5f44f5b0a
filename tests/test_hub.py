"""torch.hub compatibility: ``hubconf.py`` offers every registered model, built as the zoo builds it."""

from __future__ import annotations

import importlib.util
import inspect
from pathlib import Path

import torch

import zoo
from conftest import ROOT, sweep


def hub_load(name: str, **kwargs):
    return torch.hub.load(str(ROOT), name, source="local", **kwargs)


def test_hub_offers_every_registered_model(synced_catalog: str, isolated_cache: Path) -> None:
    """torch.hub.list, as torch has it (no ``source``: GitHub repositories only), on this repository as torch.hub
    keeps a downloaded one: in its cache as OWNER_REPO_REF (no network with the ref given and the copy there)."""
    hub = Path(torch.hub.get_dir())
    hub.mkdir(parents=True)
    (hub / "someone_zoo_main").symlink_to(ROOT, target_is_directory=True)
    entries = torch.hub.list("someone/zoo:main", trust_repo=True, verbose=False)
    assert sorted(entries) == zoo.list_models() and "resnet50" in entries and "digits_cnn" in entries
    assert torch.hub.help("someone/zoo:main", "resnet50", trust_repo=True).startswith("resnet50 from the zoo")
    spec = importlib.util.spec_from_file_location("hubconf", ROOT / "hubconf.py")
    hubconf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hubconf)
    assert hubconf.dependencies == ["torch", "torchvision", "zoo"]


def test_hub_and_zoo_build_the_same_model_for_every_name(synced_catalog: str) -> None:
    for name in sweep(zoo.list_models()):
        # No backbone download: these machines have no model hub.
        params = inspect.signature(zoo.get_model_builder(name)).parameters
        config = {"weights_backbone": None} if "weights_backbone" in params else {}
        try:
            with torch.device("meta"):  # architecture only, no memory or init time
                models = [hub_load(name, **config), zoo.get_model(name, **config)]
        except NotImplementedError:  # RegNet's constructor reads tensor values: build for real
            models = []
            for build in (hub_load, zoo.get_model):
                torch.manual_seed(0)
                models.append(build(name, **config))
            hub_state, zoo_state = (m.state_dict() for m in models)
            assert all(torch.equal(hub_state[k], zoo_state[k]) for k in zoo_state), name
        hub_model, zoo_model = models
        assert type(hub_model) is type(zoo_model), name
        assert [(k, v.shape) for k, v in hub_model.state_dict().items()] == [
            (k, v.shape) for k, v in zoo_model.state_dict().items()], name


def test_hub_loads_the_same_pretrained_weights(synced_catalog: str) -> None:
    for weights in ("DEFAULT", "DigitsCNN_Weights.SKLEARN_DIGITS_V1", zoo.get_weight("digits_cnn.DEFAULT")):
        hub_state = hub_load("digits_cnn", weights=weights).state_dict()
        zoo_state = zoo.get_model("digits_cnn", weights=weights).state_dict()
        assert hub_state.keys() == zoo_state.keys()
        assert all(torch.equal(hub_state[k], zoo_state[k]) for k in zoo_state)

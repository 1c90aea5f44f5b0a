"""timm's keywords with pretrained weights, through the zoo, equal to timm's own loading; timm's name forms.

For a seeded sample of timm families (the smallest architecture of each), random weights
are saved into a local mirror as the file of the default tag, and loaded as
"pretrained" through the zoo and through ``timm.create_model(..., pretrained=True,
pretrained_cfg_overlay=dict(file=...))`` with features_only, num_classes=0 (with and
without global_pool), num_classes=7, in_chans=1 and, for models with position embeddings,
img_size: the models must be equal tensor for tensor and output for output
(`benchmarks/timm_pretrained.py`, which runs every architecture).
"""

from __future__ import annotations

import importlib.util
import math
import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
import timm
import torch

import zoo
from conftest import FULL_SWEEP_ENV, ROOT, run_zoo
from zoo.errors import UnknownModelError, UsageError

#: How many families the CI sample checks, and how big their smallest model may be.
SAMPLE_SIZE = 16
SAMPLE_MAX_PARAMS = 8_000_000
SAMPLE_SEED = 25


def load_benchmark():
    """benchmarks/timm_pretrained.py, whose `check_architecture` compares the zoo's loading with timm's."""
    spec = importlib.util.spec_from_file_location("timm_pretrained", ROOT / "benchmarks" / "timm_pretrained.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BENCHMARK = load_benchmark()


def family_sample() -> list[str]:
    """The smallest architecture (with a pretrained file) of each timm module, then a seeded sample of
    `SAMPLE_SIZE` of those under `SAMPLE_MAX_PARAMS` parameters; every one with ``ZOO_FULL_SWEEP=1``."""
    from zoo_timm.params import load_counts

    counts = load_counts(timm.__version__)
    smallest = []
    for module in timm.list_modules():
        archs = [a for a in timm.list_models(module=module, pretrained=True, include_tags=False) if not a.startswith("test_")]
        if archs:
            smallest.append(min(archs, key=lambda a: (counts.get(a, math.inf), a)))
    smallest = [a for a in smallest if BENCHMARK.default_tag(a) is not None]
    if os.environ.get(FULL_SWEEP_ENV) == "1":
        return sorted(smallest)
    small = sorted(a for a in smallest if counts.get(a, math.inf) <= SAMPLE_MAX_PARAMS)
    return sorted(random.Random(SAMPLE_SEED).sample(small, SAMPLE_SIZE))


@pytest.fixture(scope="module")
def timm_catalog(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A catalog of the timm plugin alone, a weights cache and a mirror of the module's own, offline."""
    work = tmp_path_factory.mktemp("timm-pretrained")
    with pytest.MonkeyPatch.context() as mp:
        for key, value in BENCHMARK.environment(work).items():
            mp.setenv(key, value)
        run_zoo("sync")
        yield work


@pytest.mark.parametrize("arch", family_sample())
def test_pretrained_keywords_load_as_timm_loads_them(arch: str, timm_catalog: Path, tmp_path: Path) -> None:
    row = BENCHMARK.check_architecture(arch, timm_catalog / "mirror", tmp_path)
    assert not {"error", "skipped"} & row.keys(), row
    assert {"features_only", "num_classes=0", "num_classes=7", "in_chans=1"} <= row["variants"].keys()
    assert row["variants"]["plain"] == "same"
    # the same model, or (a keyword the architecture does not take, e.g. img_size for CaiT) both refuse
    assert all(outcome in ("same", "both refuse") for outcome in row["variants"].values()), row["variants"]


def test_the_sample_spans_families_and_resamples_position_embeddings() -> None:
    sample = family_sample()
    assert len(sample) >= SAMPLE_SIZE
    families = {zoo_family(a) for a in sample}
    assert len(families) == len(sample)
    assert any(a.startswith(("vit_", "deit", "eva")) for a in sample), sample


def zoo_family(arch: str) -> str:
    from zoo_timm import family

    return family(arch)


# -- the report, and the name forms --------------------------------------------------------------------


@pytest.fixture(scope="module")
def vit_tiny(timm_catalog: Path) -> str:
    """The default tag of vit_tiny_patch16_224, random weights in the mirror."""
    tag = BENCHMARK.default_tag("vit_tiny_patch16_224")
    torch.manual_seed(0)
    model = timm.create_model(tag)
    from safetensors.torch import save_file

    target = BENCHMARK.mirror_file(timm_catalog / "mirror", tag)
    target.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().clone() for k, v in model.state_dict().items()}, str(target))
    return tag


def test_the_report_says_what_timm_adapted(vit_tiny: str) -> None:
    report = zoo.build_model(f"timm/{vit_tiny}", img_size=160, in_chans=1, num_classes=7).report
    assert report.adapted == {"pos_embed": "[1, 197, 192] -> [1, 101, 192] by the builder",
                              "patch_embed.proj.weight": "[192, 3, 16, 16] -> [192, 1, 16, 16] by the builder"}
    assert report.mismatched == {"head.weight": ((1000, 192), (7, 192)), "head.bias": ((1000,), (7,))}
    assert not report.missing and not report.unexpected
    pooled = zoo.build_model(f"timm/{vit_tiny}", num_classes=0).report
    assert sorted(pooled.unexpected) == ["head.bias", "head.weight"] and not pooled.adapted


def test_timm_name_forms_mean_the_model_with_those_weights(vit_tiny: str) -> None:
    arch, _, tag = vit_tiny.partition(".")
    expected = timm.create_model(vit_tiny, pretrained=True, pretrained_cfg_overlay={
        "file": str(BENCHMARK.mirror_file(Path(os.environ["ZOO_WEIGHTS_MIRROR"]), vit_tiny))}).state_dict()
    repo = timm.models.get_pretrained_cfg(vit_tiny).hf_hub_id
    for name, keywords in ((f"timm/{vit_tiny}", {}), (vit_tiny, {}), (f"hf-hub:{repo}", {}),
                           (f"timm/{arch}", {"pretrained": True}), (f"timm/{arch}", {"weights": f"{arch}.{tag}"})):
        state = zoo.get_model(name, **keywords).state_dict()
        assert all(torch.equal(state[k], expected[k]) for k in expected), name


def test_timm_name_forms_without_pretrained_build_random_models_as_timm_does(vit_tiny: str) -> None:
    torch.manual_seed(1)
    ours = zoo.get_model(f"timm/{vit_tiny}", pretrained=False).state_dict()
    torch.manual_seed(1)
    theirs = timm.create_model(vit_tiny).state_dict()
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)
    file = BENCHMARK.mirror_file(Path(os.environ["ZOO_WEIGHTS_MIRROR"]), vit_tiny)
    from safetensors.torch import load_file

    assert not torch.equal(ours["pos_embed"], load_file(str(file))["pos_embed"])


def test_contradictory_or_unknown_names_are_one_line_errors(vit_tiny: str) -> None:
    with pytest.raises(UsageError, match="names its weights already"):
        zoo.get_model(f"timm/{vit_tiny}", weights="DEFAULT")
    with pytest.raises(UsageError, match="contradicts"):
        zoo.get_model("timm/vit_tiny_patch16_224", weights="DEFAULT", pretrained=False)
    with pytest.raises(UnknownModelError, match="vit_tiny_patch16_224.no_such_tag"):
        zoo.get_model("timm/vit_tiny_patch16_224.no_such_tag")
    with pytest.raises(UnknownModelError):
        zoo.get_model("hf-hub:timm/no_such_repo")
    with pytest.raises(UsageError, match=r"num_classes must be 0 \(no head: pooled features\) or a positive integer, not -1"):
        zoo.get_model("timm/vit_tiny_patch16_224", num_classes=-1)


def test_timm_api_through_the_zoo(vit_tiny: str) -> None:
    from zoo_timm import compat

    for kwargs in ({}, {"pretrained": True}, {"filter": "resnet1*", "pretrained": True}, {"module": "convnext"},
                   {"filter": ["vit_*", "deit*"], "exclude_filters": "*in21k*", "pretrained": True},
                   {"pretrained": True, "include_tags": False}, {"name_matches_cfg": True}):
        assert compat.list_models(**kwargs) == timm.list_models(**kwargs), kwargs
    assert compat.list_pretrained("vit_tiny*") == timm.list_pretrained("vit_tiny*")
    torch.manual_seed(0)
    ours = compat.create_model(vit_tiny, pretrained=True, num_classes=0)
    assert ours.num_classes == 0 and ours(torch.zeros(1, 3, 224, 224)).shape == (1, 192)
    with pytest.raises(UsageError, match="checkpoint_path"):
        compat.create_model(vit_tiny, checkpoint_path="/some/file.pth")


def test_timm_name_forms_in_client_mode(vit_tiny: str, timm_catalog: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A registry service answers the name forms (its catalog resolves them); the weights come verified from
    this machine's mirror."""
    from zoo.testing import serving

    repo = timm.models.get_pretrained_cfg(vit_tiny).hf_hub_id
    local = zoo.get_model(f"hf-hub:{repo}").state_dict()
    with serving(env={"ZOO_REGISTRY_URL": os.environ["ZOO_REGISTRY_URL"]}) as served:
        monkeypatch.setenv("ZOO_REGISTRY_URL", served.url)
        for name in (f"hf-hub:{repo}", f"timm/{vit_tiny}"):
            remote = zoo.get_model(name).state_dict()
            assert all(torch.equal(remote[k], local[k]) for k in local), name
        with pytest.raises(UnknownModelError):
            zoo.get_model("hf-hub:timm/no_such_repo")

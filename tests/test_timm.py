"""The bundled zoo-timm plugin: every timm architecture and pretrained tag, and models built from them.

The spec tests call the plugin's hook as the zoo does and compare what it declares
with timm's own configs and transforms; the catalog tests run the ``zoo`` command
line and `zoo.get_model` / `zoo.export_onnx` on the installed plugin (editable,
entry point ``timm``), with random weights: these machines have no model hub.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import timm
import torch
from PIL import Image
from timm.data import ImageNetInfo, create_transform, resolve_data_config
from timm.models import get_pretrained_cfg

import zoo_timm
from conftest import FULL_SWEEP_ENV, ROOT, run_zoo
from zoo.modeling.transforms import to_torchvision
from zoo.preprocessing import preprocess_numpy
from zoo.specs import MODEL_NAME, DeferredSpec, ModelSpec
from zoo_timm.params import count, load_counts

#: One small model from each of four families: CNNs and a vision transformer.
FAMILY_SAMPLE = ("timm/resnet10t", "timm/vit_tiny_patch16_224", "timm/convnext_atto", "timm/mobilenetv3_small_050")


def load_sweep():
    """benchmarks/timm_sweep.py, whose `check_model` is the build-run-export check of one model."""
    spec = importlib.util.spec_from_file_location("timm_sweep", ROOT / "benchmarks" / "timm_sweep.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def specs() -> dict[str, ModelSpec]:
    """Every spec the hook gives, made and checked as the zoo's loader does."""
    made = {}
    for deferred in zoo_timm.zoo_register_models():
        assert isinstance(deferred, DeferredSpec)
        spec = deferred.make()
        spec.check()
        assert spec.name == deferred.name
        made[spec.name] = spec
    return made


def test_every_architecture_is_a_model_and_every_tag_its_weights(specs: dict[str, ModelSpec]) -> None:
    assert sorted(specs) == sorted(timm.list_models())
    assert all(MODEL_NAME.match(name) for name in specs)
    tagged = {f"{name}.{w.member}" for name, spec in specs.items() for w in spec.weights}
    assert tagged == set(timm.list_models(pretrained=True))
    for name, spec in specs.items():
        assert (spec.builder, spec.builder_args, spec.weights_enum) == ("zoo_timm.build:create", {"model_name": name}, None)
        assert spec.input_size == get_pretrained_cfg(name).input_size
        assert spec.tags == (timm.models.model_entrypoint(name).__module__.split(".")[-1],)
        for w in spec.weights:
            assert w.builder_args == {"model_name": f"{name}.{w.member}"}
        defaults = [w.member for w in spec.weights if w.is_default]
        assert defaults == ([get_pretrained_cfg(name).tag] if spec.weights else [])


def test_a_tag_builds_the_head_its_file_fits() -> None:
    # the weights' builder arguments alone give the tag's head: 11821 classes for in12k
    model = timm.create_model(**zoo_timm.model_spec("resnet18").builder_args, pretrained=False)
    assert model.num_classes == 1000
    spec = zoo_timm.model_spec("convnext_nano")
    entry = next(w for w in spec.weights if w.member == "in12k")
    assert entry.meta["num_classes"] == 11821
    with torch.device("meta"):
        assert timm.create_model(**entry.builder_args, pretrained=False).get_classifier().out_features == 11821


def test_weights_urls_are_the_files_timm_loads(specs: dict[str, ModelSpec]) -> None:
    urls = {f"{n}.{w.member}": w.url for n, s in specs.items() for w in s.weights}
    assert urls["resnet50.a1_in1k"] == "https://huggingface.co/timm/resnet50.a1_in1k/resolve/main/model.safetensors"
    # a config with no Hugging Face repo: timm downloads its URL
    assert urls["legacy_seresnet18.in1k"] == get_pretrained_cfg("legacy_seresnet18.in1k").url
    assert urls["legacy_seresnet18.in1k"].startswith("https://github.com/")
    assert all(u.startswith("https://") for u in urls.values())
    # tags share a file only where timm's configs do: the QuickGELU variant of a CLIP tower
    # (same tensors, another activation) names its plain twin's repo
    by_url: dict[str, set[str]] = {}
    for name, url in urls.items():
        by_url.setdefault(url, set()).add(name.replace("_quickgelu", ""))
    assert all(len(names) == 1 for names in by_url.values())
    assert len(by_url) < len(urls)


def test_categories_task_and_heads_come_from_the_configs(specs: dict[str, ModelSpec]) -> None:
    imagenet = ImageNetInfo("imagenet-1k").label_descriptions()
    entries = {f"{n}.{w.member}": w for n, s in specs.items() for w in s.weights}
    resnet = entries["resnet50.a1_in1k"]
    assert resnet.meta["categories"] == imagenet and resnet.meta["categories"][0] == "tench, Tinca tinca"
    assert (resnet.task, resnet.meta["num_classes"], resnet.meta["license"]) == ("classification", 1000, "apache-2.0")
    assert len(entries["vit_base_patch16_224.augreg_in21k"].meta["categories"]) == 21843
    # every entry whose head is a known label set has one category per class; the lists are shared
    known = [w for w in entries.values() if "categories" in w.meta]
    assert all(len(w.meta["categories"]) == w.meta["num_classes"] for w in known)
    assert len({id(w.meta["categories"]) for w in known}) == 6
    # no classifier: an embedding, without categories
    embedding = [w for w in entries.values() if w.meta["num_classes"] == 0]
    assert embedding and all(w.task == "embedding" and "categories" not in w.meta for w in embedding)
    assert entries["vit_base_patch14_dinov2.lvd142m"].task == "embedding"
    # heads and stems as timm's configs list them; none or several stems: nothing to adapt
    assert specs["deit_base_distilled_patch16_224"].classifier == ("head", "head_dist")
    assert (specs["resnet50"].classifier, specs["resnet50"].first_conv) == (("fc",), "conv1")
    assert specs["csatv2"].first_conv is None  # its config's first_conv is []
    assert specs["repvgg_a0"].first_conv is None  # two parallel stem convolutions
    assert specs["qwen3_vit_88m_enc"].classifier == ()


@pytest.mark.parametrize(("tag", "expected"), [
    ("resnet50.a1_in1k", ("center", "bicubic", (224, 224))),
    ("resnet50.tv2_in1k", ("center", "bilinear", (176, 176))),
    ("dm_nfnet_f0.dm_in1k", ("squash", "bicubic", (192, 192))),
    ("vit_base_patch16_sapiens2.fb", ("squash", "bilinear", (1024, 768))),
    ("volo_d4_448.sail_in1k", ("center", "bicubic", (448, 448))),  # crop_pct > 1: the crop pads
    ("inception_v3.tf_adv_in1k", ("center", "bicubic", (299, 299))),
])
@pytest.mark.parametrize("photo", ["astronaut", "chelsea"])
def test_preprocessing_equals_timms_eval_transform(tag: str, expected: tuple, photo: str) -> None:
    cfg = vars(get_pretrained_cfg(tag))
    data = resolve_data_config({}, pretrained_cfg=cfg)
    assert (data["crop_mode"], data["interpolation"], data["input_size"][1:]) == expected
    image = Image.fromarray(getattr(skimage.data, photo)())
    reference = create_transform(**data)(image).numpy()
    spec = zoo_timm.timm_preprocessing(cfg)
    np.testing.assert_allclose(preprocess_numpy(spec, image), reference, rtol=0, atol=1e-6)
    np.testing.assert_allclose(to_torchvision(spec)(image).numpy(), reference, rtol=0, atol=1e-6)


#: The tags whose eval transform is timm's border crop (the six deepseek_vit_412m* tags of timm 1.0.31).
BORDER_TAGS = sorted(tag for tag in timm.list_models(pretrained=True) if get_pretrained_cfg(tag).crop_mode == "border")


def _photographs() -> dict[str, Image.Image]:
    """Three photographs, a tall and a wide crop of one (each pads on another axis) and a small one."""
    astronaut = skimage.data.astronaut()  # 512 x 512
    images = {"astronaut": astronaut, "coffee": skimage.data.coffee(), "chelsea": skimage.data.chelsea(),
              "tall": astronaut[:, 150:330], "wide": astronaut[180:300], "small": astronaut[200:231, 240:263]}
    return {name: Image.fromarray(image) for name, image in images.items()}


def _assert_equals_timm(cfg: dict, images: dict[str, Image.Image]) -> None:
    """Both paths of the config's spec give timm's own eval transform's output, within float32 rounding."""
    transform = create_transform(**resolve_data_config({}, pretrained_cfg=cfg))
    spec = zoo_timm.timm_preprocessing(cfg)
    for name, image in images.items():
        reference = transform(image).numpy()
        np.testing.assert_allclose(preprocess_numpy(spec, image), reference, rtol=0, atol=1e-6, err_msg=name)
        np.testing.assert_allclose(to_torchvision(spec)(image).numpy(), reference, rtol=0, atol=1e-6, err_msg=name)


def test_border_crop_tags_have_their_preprocessing(specs: dict[str, ModelSpec]) -> None:
    entries = {f"{n}.{w.member}": w for n, s in specs.items() for w in s.weights}
    assert len(BORDER_TAGS) >= 6 and set(BORDER_TAGS) <= set(entries)
    for tag in BORDER_TAGS:
        cfg = get_pretrained_cfg(tag)
        spec = entries[tag].transforms
        assert (spec.resize_mode, spec.resize_size, spec.crop_size) == ("contain", cfg.input_size[1:], cfg.input_size[1:])
        assert spec.pad_fill == (128, 128, 128) == tuple(round(255 * m) for m in cfg.mean)  # mean 0.5: 127.5
    # every tag now has its preprocessing, and none is flagged
    assert all(w.transforms is not None and "preprocessing_unsupported" not in w.meta for w in entries.values())


@pytest.mark.parametrize("tag", BORDER_TAGS)
def test_border_preprocessing_equals_timms_eval_transform(tag: str) -> None:
    """Resize the longer side keeping the ratio, pad the rest with the mean colour: exact on both paths."""
    cfg = vars(get_pretrained_cfg(tag))
    assert resolve_data_config({}, pretrained_cfg=cfg)["crop_mode"] == "border"
    photographs = _photographs()
    reference = create_transform(**resolve_data_config({}, pretrained_cfg=cfg))(photographs["tall"]).numpy()
    # the tall crop's sides are padded with the mean colour, (128 / 255 - 0.5) / 0.5
    np.testing.assert_allclose(reference[:, :, 0], 128 / 255 * 2 - 1, rtol=0, atol=1e-6)
    _assert_equals_timm(cfg, photographs)


@pytest.mark.parametrize(("crop_mode", "input_size", "crop_pct", "mean"), [
    ("border", (3, 224, 288), 0.875, (0.485, 0.456, 0.406)),  # pads one axis and crops the other
    ("border", (3, 320, 240), 1.1, (0.481, 0.458, 0.408)),  # a crop larger than the box
    ("center", (3, 224, 288), 0.875, (0.485, 0.456, 0.406)),  # non-square: timm resizes to cover the box
    ("center", (3, 384, 256), 1.0, (0.5, 0.5, 0.5)),
])
def test_non_square_and_border_preprocessing_of_any_config_equals_timms(crop_mode, input_size, crop_pct,
                                                                       mean) -> None:
    """Configs no timm 1.0.31 tag has, made from resnet50.a1_in1k's (bicubic)."""
    cfg = {**vars(get_pretrained_cfg("resnet50.a1_in1k")), "crop_mode": crop_mode, "input_size": input_size,
           "crop_pct": crop_pct, "mean": mean}
    _assert_equals_timm(cfg, _photographs())


def test_parameter_counts_are_shipped_for_the_installed_timm(specs: dict[str, ModelSpec]) -> None:
    counts = load_counts(timm.__version__)
    assert set(counts) == set(timm.list_models()) | set(timm.list_models(pretrained=True))
    assert all(spec.num_params == counts[name] for name, spec in specs.items())
    # the meta-device count is the count of the real model
    for name in ("resnet18", "vit_tiny_patch16_224.augreg_in21k"):
        assert count(name) == counts[name] == sum(p.numel() for p in timm.create_model(name).parameters())
    assert counts["vit_tiny_patch16_224.augreg_in21k"] != counts["vit_tiny_patch16_224"]  # its 21843-class head
    assert load_counts("0.0.0-unknown") == {}


def test_zoo_lists_every_timm_model_and_tag(sqlite_url: str, use_catalog) -> None:
    use_catalog(sqlite_url, "timm")
    listed = json.loads(run_zoo("list", "--plugin", "timm", "--json").stdout)
    assert len(listed) >= len(timm.list_models())
    tags = {w for m in listed for w in m["weights"]}
    assert tags >= set(timm.list_models(pretrained=True))


@pytest.mark.parametrize("first", ["torchvision", "timm,torchvision"])
def test_bare_name_stays_torchvisions_when_timm_arrives(first: str, sqlite_url: str, use_catalog) -> None:
    """torchvision's names keep their meaning whether timm comes later or in the same first sync."""
    use_catalog(sqlite_url, first)
    run_zoo("sync")
    use_catalog(sqlite_url, "timm,torchvision")
    bare = json.loads(run_zoo("show", "resnet50", "--json").stdout)
    assert (bare["plugin"]["name"], bare["builder"]) == ("torchvision", "torchvision.models.resnet:resnet50")
    assert "timm/resnet50" in bare["providers"]
    qualified = json.loads(run_zoo("show", "timm/resnet50", "--json").stdout)
    assert (qualified["plugin"]["name"], qualified["builder_args"]) == ("timm", {"model_name": "resnet50"})
    assert qualified["default_weights"] == "timm/resnet50.a1_in1k"


def sample() -> list[str]:
    """The models the build-and-export test runs: the CI sample, or every family with ``ZOO_FULL_SWEEP=1``."""
    if os.environ.get(FULL_SWEEP_ENV) == "1":
        return load_sweep().family_sample()
    return list(FAMILY_SAMPLE)


def test_family_sample_builds_runs_takes_seven_classes_and_exports(sqlite_url: str, use_catalog,
                                                                    tmp_path: Path) -> None:
    use_catalog(sqlite_url, "timm")
    sweep = load_sweep()
    rows = [sweep.check_model(name, tmp_path) for name in sample()]
    failed = [r for r in rows if not all(r[c] for c in ("built", "forward", "num_classes_7", "exported", "verified"))]
    assert not failed, failed

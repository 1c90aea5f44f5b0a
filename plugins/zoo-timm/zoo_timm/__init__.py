"""zoo plugin: every architecture in ``timm.list_models()``, every pretrained tag as its weights.

One builder, ``timm.create_model`` (`zoo_timm.build.create`), builds every model: an
architecture passes ``model_name=ARCH``, and its weights ``model_name=ARCH.TAG``, with
which timm sizes the head and the input for that tag's file; the zoo fetches the file
and verifies it, and timm loads the verified tensors as it loads its own downloads,
adapting them to the keywords given (``features_only``, ``num_classes``, ``in_chans``,
``img_size``, the model's checkpoint filter). `zoo_timm.compat` is timm's own API
(``create_model``, ``list_models``, ``list_pretrained``) answered by the zoo. Everything else comes from timm's pretrained configs, read
without building a model: preprocessing (`timm_preprocessing`), categories,
heads, licence and papers. Parameter counts come from the file that
``python -m zoo_timm.params`` made for the installed timm version.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from functools import cache, partial
from pathlib import Path
from typing import Any

import zoo
from zoo.preprocessing import PreprocessSpec
from zoo.specs import DeferredSpec, ModelSpec, WeightsSpec
from zoo_timm.params import load_counts

#: timm.create_model, loading the zoo's verified tensors as timm loads pretrained weights (`zoo_timm.build`).
BUILDER = "zoo_timm.build:create"
#: The file timm loads from a Hugging Face repo that names none (`load_state_dict_from_hf`
#: tries it first, as safetensors).
HF_FILE = "model.safetensors"
#: Fields of a pretrained cfg copied into the metadata as they are.
META_FIELDS = ("license", "paper_ids", "paper_name", "origin_url", "notes")


@zoo.hookimpl
def zoo_register_models() -> Iterator[DeferredSpec]:
    """One deferred spec per architecture: a config timm cannot read fails that model alone."""
    import timm

    for arch in timm.list_models():
        yield DeferredSpec(arch, partial(model_spec, arch))


def model_spec(arch: str) -> ModelSpec:
    """The spec of `arch`: its default config's heads and input size, each pretrained tag as weights."""
    import timm
    from timm.models import get_arch_pretrained_cfgs

    # the configs' fields as dicts, as timm's own readers take them (vars: no second deep copy)
    cfgs = [vars(cfg) for cfg in get_arch_pretrained_cfgs(arch).values()]
    default = cfgs[0] if cfgs else {}  # timm lists the default tag first
    counts = load_counts(timm.__version__)
    weights = tuple(
        weights_spec(cfg, is_default=cfg is default, num_params=counts.get(f"{arch}.{cfg['tag']}"))
        for cfg in cfgs
        if cfg.get("tag") and weights_url(cfg)  # timm's pretrained tags: those with a file
    )
    return ModelSpec(
        name=arch,
        builder=BUILDER,
        builder_args={"model_name": arch},
        task=_task(default),
        weights=weights,
        tags=(family(arch),),
        num_params=counts.get(arch),
        metadata=_meta(default),
        classifier=_paths(default.get("classifier")),
        first_conv=_first_conv(default.get("first_conv")),
        input_size=tuple(default.get("input_size") or (3, 224, 224)),
    )


def family(arch: str) -> str:
    """The timm module that defines `arch`, e.g. ``resnet``: the model's tag."""
    from timm.models import model_entrypoint

    return model_entrypoint(arch).__module__.rpartition(".")[2]


def weights_spec(cfg: dict[str, Any], *, is_default: bool, num_params: int | None) -> WeightsSpec:
    """The weights of one pretrained config (``cfg["architecture"]`` . ``cfg["tag"]``)."""
    name = f"{cfg['architecture']}.{cfg['tag']}"
    num_classes = cfg.get("num_classes")
    meta: dict[str, Any] = {**_meta(cfg), "num_classes": num_classes}
    if num_params is not None:
        meta["num_params"] = num_params
    categories = _categories(cfg)
    if categories is not None:
        meta["categories"] = categories
    return WeightsSpec(
        member=cfg["tag"],
        url=weights_url(cfg),
        meta=meta,
        transforms=timm_preprocessing(cfg),
        is_default=is_default,
        builder_args={"model_name": name},
        task=_task(cfg),
    )


def weights_url(cfg: dict[str, Any]) -> str:
    """The file timm's `load_pretrained` fetches, as a URL ("" for a config without weights).

    In timm's order (`_resolve_pretrained_source`): a local ``file``; the Hugging Face
    repo (huggingface_hub is installed with zoo-timm), its ``hf_hub_filename`` or else
    ``model.safetensors``, which timm tries first; the config's ``url``.
    """
    if cfg.get("file"):
        return Path(cfg["file"]).resolve().as_uri()
    repo = cfg.get("hf_hub_id")
    if repo:
        return f"https://huggingface.co/{repo}/resolve/main/{cfg.get('hf_hub_filename') or HF_FILE}"
    return cfg.get("url") or ""


def timm_preprocessing(cfg: dict[str, Any]) -> PreprocessSpec:
    """timm's eval transform for a pretrained config, as `transforms_imagenet_eval` builds it.

    The image is resized to the scale ``floor(side / crop_pct)`` of each side of the
    input size, then center-cropped to the input size. Center crop: the shorter side
    to the scale (a non-square scale: keeping the ratio, to cover it). Squash: to the
    scale. Border: keeping the ratio, to fit within the scale, the crop padded with
    the mean colour ``round(255 * mean)``.
    """
    from timm.data import resolve_data_config

    data = resolve_data_config({}, pretrained_cfg=cfg)
    channels, height, width = data["input_size"]
    scale = (math.floor(height / data["crop_pct"]), math.floor(width / data["crop_pct"]))
    border = data["crop_mode"] == "border"
    if data["crop_mode"] == "squash":
        resize, mode = scale, "exact"
    elif border:
        resize, mode = scale, "contain"
    elif scale[0] == scale[1]:  # timm's default, center
        resize, mode = scale[:1], "shorter_side"
    else:
        resize, mode = scale, "cover"
    return PreprocessSpec(
        kind="classification",
        resize_size=resize,
        resize_mode=mode,
        crop_size=(height, width),
        pad_fill=tuple(round(255 * v) for v in data["mean"]) if border else None,
        interpolation=data["interpolation"],
        antialias=True,  # timm resizes PIL images, which Pillow always antialiases
        mean=tuple(data["mean"]),
        std=tuple(data["std"]),
        channel_order={1: "L", 3: "RGB"}[channels],
    )


@cache
def imagenet_categories(subset: str) -> list[str]:
    """timm's label descriptions of an ImageNet subset, one list shared by every entry that uses it."""
    from timm.data import ImageNetInfo

    return ImageNetInfo(subset).label_descriptions()


def _categories(cfg: dict[str, Any]) -> list[str] | None:
    """The class names of a config's head, where timm knows its label set (by its width)."""
    from timm.data import infer_imagenet_subset

    subset = infer_imagenet_subset(cfg)
    return imagenet_categories(subset) if subset else None


def _task(cfg: dict[str, Any]) -> str:
    """``embedding`` for a config without a classifier (``num_classes == 0``), else classification."""
    return "embedding" if cfg.get("num_classes") == 0 else "classification"


def _meta(cfg: dict[str, Any]) -> dict[str, Any]:
    return {key: _plain(cfg[key]) for key in META_FIELDS if cfg.get(key)}


def _plain(value: Any) -> Any:
    """Tuples as lists, so that metadata is plain JSON as it will be read back."""
    return list(value) if isinstance(value, tuple) else value


def _paths(value: str | tuple[str, ...] | list[str] | None) -> tuple[str, ...]:
    """A cfg's ``classifier`` (one path, several, or none) as a tuple."""
    if not value:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def _first_conv(value: str | tuple[str, ...] | list[str] | None) -> str | None:
    """The one stem convolution to adapt for ``in_channels=``; None for none or several.

    Several (RepVGG's and MobileOne's parallel branches, CrossViT's two patch
    embeddings) all read the image: adapting one alone would break the model.
    """
    paths = _paths(value)
    return paths[0] if len(paths) == 1 else None

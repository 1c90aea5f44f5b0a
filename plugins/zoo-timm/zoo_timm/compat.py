"""timm's own API, answered by the zoo: ``import zoo_timm.compat as timm`` in a timm user's code.

`create_model` takes every name form timm takes (``resnet18``, ``resnet18.a1_in1k``,
``hf-hub:timm/resnet18.a1_in1k``) and every keyword, and builds through `zoo.build_model`:
``pretrained=True`` loads the verified weights of the name's tag (the architecture's
default tag for a bare name) from the zoo's cache, mirror or the file's URL, and timm
adapts them as it adapts its own downloads. `list_models` and `list_pretrained` list
the timm models and tags of the zoo's catalog, with timm's filters and order. Built on
`zoo.summarize_models`, so it works on a local catalog and against a registry service.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from typing import Any

import zoo
from zoo.errors import UsageError
from zoo.records import HF_HUB

#: The catalog namespace of the zoo-timm plugin's models.
NAMESPACE = "timm"


def create_model(model_name: str, pretrained: bool = False, **kwargs: Any) -> Any:
    """``timm.create_model(model_name, pretrained, **kwargs)``, built by the zoo with verified weights.

    timm's loading keywords that name other files or caches (``pretrained_cfg``,
    ``checkpoint_path``, ``cache_dir``) are refused: the zoo's weights are the catalog's.
    """
    refused = sorted({"pretrained_cfg", "checkpoint_path", "cache_dir"} & kwargs.keys())
    if refused:
        raise UsageError(f"zoo_timm.create_model does not take {', '.join(refused)}: weights come from the zoo's "
                         f"catalog (name them as MODEL.TAG, or publish a file and pass weights=)")
    name = model_name if model_name.startswith(HF_HUB) else f"{NAMESPACE}/{model_name}"
    return zoo.build_model(name, pretrained=bool(pretrained), **kwargs).model


def list_models(filter: str | Iterable[str] = "", module: str | Iterable[str] = "", pretrained: bool = False,
                exclude_filters: str | Iterable[str] = "", name_matches_cfg: bool = False,
                include_tags: bool | None = None) -> list[str]:
    """``timm.list_models``: the timm models of the zoo's catalog, as timm lists them.

    With `include_tags` (default: `pretrained`) each model is listed as its pretrained
    ``ARCH.TAG`` names, and a filter without a tag matches its tags too; `pretrained`
    keeps what has weights; `module` is timm's module (the model's family, e.g.
    ``resnet``); sorted naturally (``resnet2`` before ``resnet10``), as timm sorts.
    """
    import timm

    include_tags = pretrained if include_tags is None else include_tags
    summaries = zoo.summarize_models(plugin=NAMESPACE)
    if module or name_matches_cfg:  # timm's registry knows each architecture's module and configs
        known = set(timm.list_models(module=module, name_matches_cfg=name_matches_cfg))
        summaries = [s for s in summaries if _bare(s["qualified_name"]) in known]
    names: set[str] = set()
    for summary in summaries:
        tags = [_bare(w) for w in summary["weights"]]
        if include_tags:
            names.update(tags or ([] if pretrained else [_bare(summary["qualified_name"])]))
        elif tags or not pretrained:
            names.add(_bare(summary["qualified_name"]))
    include, exclude = _patterns(filter, include_tags), _patterns(exclude_filters, include_tags)
    if include:
        names = {n for n in names if any(fnmatch.fnmatch(n, p) for p in include)}
    names = {n for n in names if not any(fnmatch.fnmatch(n, p) for p in exclude)}
    return sorted(names, key=_natural_key)


def list_pretrained(filter: str | Iterable[str] = "", exclude_filters: str | Iterable[str] = "") -> list[str]:
    """``timm.list_pretrained``: every ``ARCH.TAG`` with weights, of the timm models of the zoo's catalog."""
    return list_models(filter, pretrained=True, exclude_filters=exclude_filters, include_tags=True)


def _bare(name: str) -> str:
    """A name without the plugin's namespace (``timm/resnet18.a1_in1k`` -> ``resnet18.a1_in1k``)."""
    return name.removeprefix(f"{NAMESPACE}/")


def _patterns(value: str | Iterable[str], with_tags: bool) -> list[str]:
    """timm's filters: none for ``""``; with tags, a filter without one also matches ``FILTER.*``."""
    patterns = [value] if isinstance(value, str) else list(value)
    patterns = [p for p in patterns if p]
    return [e for p in patterns for e in ((p, f"{p}.*") if with_tags and "." not in p else (p,))]


def _natural_key(name: str) -> list[int | str]:
    """timm's order: digits compared as numbers."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name.lower())]

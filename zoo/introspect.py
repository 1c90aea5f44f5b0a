"""Turning torchvision-style builders and weights enums into catalog records.

Plugins whose models follow torchvision's conventions (a builder taking ``weights=``,
a `torchvision.models.WeightsEnum` with url, transforms and meta) call `model_spec`
from their `zoo_register_models` hook instead of writing the records by hand.
Importing this module does not import torch; reading an enum does.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Iterable
from typing import Any

from zoo.modeling.transforms import spec_from_transforms
from zoo.specs import ModelSpec, WeightsSpec
from zoo.targets import target_of


def model_spec(
    name: str,
    builder: Callable[..., Any],
    weights_enum: type[enum.Enum] | None,
    *,
    task: str,
    tags: Iterable[str] = (),
    metadata: dict[str, Any] | None = None,
    classifier: Iterable[str] = (),
    first_conv: str | None = None,
) -> ModelSpec:
    """The record of one model; `num_params` comes from its default weights' meta.

    `classifier` (output layer paths, main head first) and `first_conv` tell the zoo
    where to cut for ``num_classes=`` and ``in_channels=`` (see `ModelSpec`).
    """
    weights = weights_specs(weights_enum) if weights_enum is not None else ()
    default = next((w for w in weights if w.is_default), None)
    return ModelSpec(
        name=name,
        builder=target_of(builder),
        task=task,
        weights_enum=target_of(weights_enum) if weights_enum is not None else None,
        weights=weights,
        tags=tuple(tags),
        num_params=default.meta.get("num_params") if default else None,
        metadata=metadata or {},
        classifier=tuple(classifier),
        first_conv=first_conv,
    )


def weights_specs(weights_enum: type[enum.Enum]) -> tuple[WeightsSpec, ...]:
    """One record per real member of `weights_enum` (aliases such as DEFAULT mark the default)."""
    default = getattr(weights_enum, "DEFAULT", None)
    return tuple(
        WeightsSpec(
            member=member.name,
            url=member.value.url,
            meta=to_json(member.value.meta),
            transforms=transforms_spec(member.value.transforms),
            sha256=getattr(member.value, "sha256", None),
            file_size=getattr(member.value, "file_size", None),
            is_default=member is default,
        )
        for member in weights_enum
    )


def transforms_spec(transforms: Callable[..., Any] | None) -> dict[str, Any] | None:
    """The preprocessing a weights entry declares, as `zoo.preprocessing.PreprocessSpec` JSON.

    `transforms` is a torchvision preset factory such as
    ``partial(ImageClassification, crop_size=224)``; anything else raises `UsageError`.
    """
    spec = spec_from_transforms(transforms)
    return spec.to_json() if spec is not None else None


def to_json(value: Any) -> Any:
    """`value` as plain JSON data: tuples become lists, enums their values, NaN None, the rest strings."""
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, enum.Enum):
        return to_json(value.value)
    if isinstance(value, float) and not math.isfinite(value):
        return None  # e.g. a metric never measured; JSON has no NaN
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)

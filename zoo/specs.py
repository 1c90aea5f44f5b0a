"""The records a plugin hands to the zoo: plain data, no torch.

A plugin's `zoo_register_models` hook returns `ModelSpec`s. Builders and weights enums
are named by import target (``"package.module:attribute"``) so that the catalog can
hold them and the zoo imports them only when a model is built.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from zoo.errors import PluginError

MODEL_NAME = re.compile(r"^[a-z0-9][a-z0-9_\-]*$")
IMPORT_TARGET = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
TASK = re.compile(r"^[a-z][a-z0-9_]*$")
MEMBER = re.compile(r"^[A-Za-z_]\w*$")
MODULE_PATH = re.compile(r"^\w+(\.\w+)*$")

#: Tasks the bundled plugins use; plugins may add others (any lower_snake_case word).
KNOWN_TASKS = (
    "classification",
    "detection",
    "instance_segmentation",
    "keypoints",
    "segmentation",
    "video",
    "optical_flow",
)
#: Tasks whose models take a list of images and return, per image, a dict of
#: variable-length tensors (boxes, labels, scores, and masks or keypoints).
DETECTION_TASKS = ("detection", "instance_segmentation", "keypoints")


@dataclass(frozen=True)
class WeightsSpec:
    """One member of a model's weights enum, e.g. ``ResNet50_Weights.IMAGENET1K_V2``.

    `meta` is the member's torchvision-style metadata (categories, num_params,
    ``_metrics``, ``_ops``, recipe, ...); `transforms` is its preprocessing as plain
    data, `zoo.preprocessing.PreprocessSpec.to_json()`.
    """

    member: str
    url: str
    meta: dict[str, Any] = field(default_factory=dict)
    transforms: dict[str, Any] | None = None
    sha256: str | None = None
    file_size: int | None = None
    is_default: bool = False

    def __post_init__(self) -> None:
        if not MEMBER.match(self.member):
            raise PluginError(f"weights member {self.member!r} is not a Python identifier")
        if self.sha256 is not None and not re.fullmatch(r"[0-9a-f]{64}", self.sha256):
            raise PluginError(f"weights {self.member}: sha256 must be 64 lowercase hex digits")
        _require_json(f"weights {self.member} meta", self.meta)
        _require_json(f"weights {self.member} transforms", self.transforms)


@dataclass(frozen=True)
class ModelSpec:
    """A model a plugin registers: its name, how to build it and what it was trained for.

    `builder` is called as ``builder(weights=<enum member or None>, **config)``, the
    torchvision convention. `weights_enum` names the enum class whose members are
    listed in `weights`. `classifier` lists the module paths of the model's output
    layers (main head first, then auxiliary heads) and `first_conv` the path of its
    first convolution: the zoo swaps them for ``num_classes=`` and ``in_channels=``.
    """

    name: str
    builder: str
    task: str
    weights_enum: str | None = None
    weights: tuple[WeightsSpec, ...] = ()
    tags: tuple[str, ...] = ()
    num_params: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    classifier: tuple[str, ...] = ()
    first_conv: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not MODEL_NAME.match(self.name):
            raise PluginError(
                f"model name {self.name!r} is invalid: use lowercase letters, digits, '_' and '-'"
            )
        for what, target in (("builder", self.builder), ("weights_enum", self.weights_enum)):
            if target is not None and not IMPORT_TARGET.match(target):
                raise PluginError(
                    f"model {self.name}: {what} {target!r} is not an import target 'module:attribute'"
                )
        if not TASK.match(self.task):
            raise PluginError(f"model {self.name}: task {self.task!r} is not a lower_snake_case word")
        if self.weights and self.weights_enum is None:
            raise PluginError(f"model {self.name}: lists weights but names no weights_enum")
        members = [w.member for w in self.weights]
        if len(set(members)) != len(members):
            raise PluginError(f"model {self.name}: a weights member is listed twice")
        if sum(w.is_default for w in self.weights) > 1:
            raise PluginError(f"model {self.name}: more than one weights entry is the default")
        _require_json(f"model {self.name} metadata", self.metadata)
        for path in (*self.classifier, *([self.first_conv] if self.first_conv else [])):
            if not MODULE_PATH.match(path):
                raise PluginError(f"model {self.name}: {path!r} is not a dotted module path such as 'classifier.6'")

    @property
    def weights_enum_name(self) -> str | None:
        """The enum's class name, e.g. ``ResNet50_Weights``."""
        return self.weights_enum.rpartition(":")[2].rpartition(".")[2] if self.weights_enum else None


def _require_json(what: str, value: Any) -> None:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise PluginError(f"{what} is not plain JSON data: {exc}") from None

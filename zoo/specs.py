"""The records a plugin hands to the zoo: plain data, no torch.

A plugin's `zoo_register_models` hook returns `ModelSpec`s (or `DeferredSpec`s).
Builders and weights enums are named by import target (``"package.module:attribute"``)
so that the catalog can hold them and the zoo imports them only when a model is
built. Making a spec never raises: the zoo checks each one when it loads the plugin
(`ModelSpec.check`), and a bad one fails that model alone, recorded with its name.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from zoo.errors import PluginError, UsageError

if TYPE_CHECKING:
    from zoo.preprocessing import PreprocessSpec

MODEL_NAME = re.compile(r"^[a-z0-9][a-z0-9_\-]*$")
IMPORT_TARGET = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
#: The keyword of a builder that loads pretrained tensors itself, adapting them to its config (`ModelSpec`).
ADAPTS_WEIGHTS = "pretrained_state_dict"
TASK = re.compile(r"^[a-z][a-z0-9_]*$")
#: A weights tag: a Python identifier (torchvision's ``IMAGENET1K_V2``) or a plugin's own
#: spelling (timm's ``a1_in1k``, ``300ep_in1k``); no dots, which separate NAME.TAG.
MEMBER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_\-]*$")
MODULE_PATH = re.compile(r"^\w+(\.\w+)*$")
#: Longest side a declared input size may have (as `zoo.preprocessing.MAX_SIDE`).
MAX_INPUT_SIDE = 8192

#: Tasks the bundled plugins use; plugins may add others (any lower_snake_case word).
KNOWN_TASKS = (
    "classification",
    "embedding",
    "detection",
    "instance_segmentation",
    "keypoints",
    "segmentation",
    "video",
    "optical_flow",
)


@dataclass(frozen=True)
class WeightsSpec:
    """One pretrained weights entry of a model, e.g. torchvision's ``ResNet50_Weights.IMAGENET1K_V2``
    or timm's ``resnet50.a1_in1k``.

    - `member`: the tag (an enum member's name, or the plugin's own tag spelling).
    - `meta`: torchvision-style metadata (categories, num_params, ``_metrics``, ``_ops``,
      recipe, ...); the catalog stores a category list shared by many entries once.
    - `transforms`: the preprocessing, a `zoo.preprocessing.PreprocessSpec` (or its JSON).
    - `sha256`, `file_size`: the file's full hash and size when known.
    - `builder_args`: extra builder arguments for the model these weights fit, e.g.
      ``{"num_classes": 11821}`` for weights trained with another head.
    - `task`: when these weights do another task than the model's, e.g. ``"embedding"``
      for weights without a classifier.
    """

    member: str
    url: str
    meta: dict[str, Any] = field(default_factory=dict)
    transforms: PreprocessSpec | dict[str, Any] | None = None
    sha256: str | None = None
    file_size: int | None = None
    is_default: bool = False
    builder_args: dict[str, Any] = field(default_factory=dict)
    task: str | None = None

    def check(self) -> None:
        """Raise `PluginError` naming what is wrong with this entry."""
        if not isinstance(self.member, str) or not MEMBER.match(self.member):
            raise PluginError(f"weights tag {self.member!r} is invalid: use letters, digits, '_' and '-' (no dots)")
        if not isinstance(self.url, str) or not self.url:
            raise PluginError(f"weights {self.member}: url must be a non-empty string")
        if self.sha256 is not None and not (isinstance(self.sha256, str) and re.fullmatch(r"[0-9a-f]{64}", self.sha256)):
            raise PluginError(f"weights {self.member}: sha256 must be 64 lowercase hex digits")
        if self.task is not None and not (isinstance(self.task, str) and TASK.match(self.task)):
            raise PluginError(f"weights {self.member}: task {self.task!r} is not a lower_snake_case word")
        _require_json(f"weights {self.member} meta", self.meta)
        _require_kwargs(f"weights {self.member} builder_args", self.builder_args)
        self.transforms_json()

    def transforms_json(self) -> dict[str, Any] | None:
        """`transforms` as checked `PreprocessSpec` JSON (None without preprocessing)."""
        if self.transforms is None:
            return None
        from zoo.preprocessing import PreprocessSpec

        try:
            spec = self.transforms if isinstance(self.transforms, PreprocessSpec) else PreprocessSpec.from_json(
                self.transforms)
        except (UsageError, TypeError) as exc:
            raise PluginError(f"weights {self.member}: {exc}") from None
        return spec.to_json()


@dataclass(frozen=True)
class ModelSpec:
    """A model a plugin registers: its name, how to build it and what it was trained for.

    `builder` is called as ``builder(**builder_args, **config)``; one function (such as
    ``zoo_timm.build:create`` with ``builder_args={"model_name": "resnet50"}``) can build
    many models. With a `weights_enum` (torchvision's convention) the builder also
    gets ``weights=<enum member or None>`` and loads them itself; without one, the
    zoo builds the model with the weights entry's `builder_args` and loads the
    verified state dict into it, or, for a builder that takes a
    ``pretrained_state_dict`` keyword (`ADAPTS_WEIGHTS`: timm's, which adapts
    pretrained tensors to ``features_only``, ``num_classes=0``, ``in_chans``, ``img_size``
    as timm does), passes it the verified state dict with the user's config and does
    no surgery of its own. `classifier` lists the module paths of the model's
    output layers (main head first, then auxiliary heads) and `first_conv` the path of
    its first convolution: the zoo swaps them for ``num_classes=`` and
    ``in_channels=``. `input_size` is the ``(C, H, W)`` the architecture is made for
    (export uses it when no weights' preprocessing says).
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
    builder_args: dict[str, Any] = field(default_factory=dict)
    input_size: tuple[int, ...] | None = None

    def check(self) -> None:
        """Raise `PluginError` naming what is wrong with this spec (the loader calls it per model)."""
        if not isinstance(self.name, str) or not MODEL_NAME.match(self.name):
            raise PluginError(f"model name {self.name!r} is invalid: use lowercase letters, digits, '_' and '-'")
        for what, target in (("builder", self.builder), ("weights_enum", self.weights_enum)):
            if target is not None and not (isinstance(target, str) and IMPORT_TARGET.match(target)):
                raise PluginError(f"{what} {target!r} is not an import target 'module:attribute'")
        if not isinstance(self.task, str) or not TASK.match(self.task):
            raise PluginError(f"task {self.task!r} is not a lower_snake_case word")
        for w in self.weights:
            if not isinstance(w, WeightsSpec):
                raise PluginError(f"weights entries must be zoo.WeightsSpec, not {type(w).__name__}")
            w.check()
        members = [w.member.lower() for w in self.weights]
        if len(set(members)) != len(members):
            raise PluginError("a weights tag is listed twice")
        if sum(bool(w.is_default) for w in self.weights) > 1:
            raise PluginError("more than one weights entry is the default")
        if self.num_params is not None and not (isinstance(self.num_params, int) and 0 <= self.num_params < 2**63):
            raise PluginError(f"num_params must be a whole number, not {self.num_params!r}")
        _require_json("metadata", self.metadata)
        _require_kwargs("builder_args", self.builder_args)
        for path in (*self.classifier, *([self.first_conv] if self.first_conv else [])):
            if not isinstance(path, str) or not MODULE_PATH.match(path):
                raise PluginError(f"{path!r} is not a dotted module path such as 'classifier.6'")
        size = self.input_size
        if size is not None and not (
            isinstance(size, (tuple, list)) and len(size) == 3
            and all(isinstance(s, int) and not isinstance(s, bool) and 0 < s <= MAX_INPUT_SIDE for s in size)
        ):
            raise PluginError(f"input_size {size!r} is not (C, H, W) of integers from 1 to {MAX_INPUT_SIDE}")

    @property
    def weights_enum_name(self) -> str | None:
        """The enum's class name, e.g. ``ResNet50_Weights``."""
        return self.weights_enum.rpartition(":")[2].rpartition(".")[2] if self.weights_enum else None


@dataclass(frozen=True)
class DeferredSpec:
    """A model whose spec the zoo computes when it loads the plugin, by calling `make()`.

    Whatever `make` raises fails that model only (recorded with `name`, the error and
    its traceback); the plugin's other models load. Use it when computing a spec runs
    code that may fail for one model (reading a third-party config, say).
    """

    name: str
    make: Callable[[], ModelSpec]


def _require_json(what: str, value: Any) -> None:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise PluginError(f"{what} is not plain JSON data: {exc}") from None


def _require_kwargs(what: str, value: Any) -> None:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) and k.isidentifier() for k in value):
        raise PluginError(f"{what} must map argument names to values")
    _require_json(what, dict(value))

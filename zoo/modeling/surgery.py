"""Cutting models for fine-tuning: submodules by dotted path, new heads and stems,
and loading a state dict into a changed model with a report of every tensor.

Paths are the names of `model.named_modules()`: ``"layer4.1.conv2"``,
``"classifier.6"``. A wrong path is a `UsageError` that names the path and lists the
children that exist where it went wrong.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from zoo.errors import UsageError
from zoo.modeling.features import features_model

#: An adapter turns a checkpoint tensor into one that fits the model's tensor.
Adapter = Callable[[Tensor, Tensor], Tensor]


def get_submodule(model: nn.Module, path: str) -> nn.Module:
    """The submodule at dotted `path` (``""`` is the model itself)."""
    module = model
    walked: list[str] = []
    for part in path.split(".") if path else []:
        children = dict(module.named_children())
        if part not in children:
            where = ".".join(walked) or "the model"
            names = ", ".join(children) or "none"
            raise UsageError(f"module path {path!r}: {where} has no child {part!r}; its children: {names}")
        module = children[part]
        walked.append(part)
    return module


def has_submodule(model: nn.Module, path: str) -> bool:
    """Whether a submodule exists at dotted `path`."""
    try:
        get_submodule(model, path)
    except UsageError:
        return False
    return True


def set_submodule(model: nn.Module, path: str, new: nn.Module) -> nn.Module:
    """Put `new` at `path` in place of what is there; returns the module it replaced."""
    parent, name = _parent(model, path)
    old = get_submodule(model, path)
    setattr(parent, name, new)  # also right for Sequential and ModuleList entries
    return old


def delete_submodule(model: nn.Module, path: str) -> nn.Module:
    """Remove the module at `path`; returns it.

    In an `nn.Sequential` the entry is removed (numbered entries after it move up
    one index); elsewhere it becomes `nn.Identity`, so the parent's forward still runs.
    """
    parent, name = _parent(model, path)
    old = get_submodule(model, path)
    if isinstance(parent, nn.Sequential) and name.isdigit():
        del parent[int(name)]
    elif isinstance(parent, nn.Sequential):
        delattr(parent, name)
    else:
        setattr(parent, name, nn.Identity())
    return old


def insert_submodule(model: nn.Module, path: str, new: nn.Module, *, before: bool = False) -> None:
    """Insert `new` right after (or `before`) the module at `path`.

    Inside a numbered `nn.Sequential` it becomes a new entry; elsewhere the module at
    `path` is wrapped as ``nn.Sequential(old, new)`` (or ``(new, old)``).
    """
    parent, name = _parent(model, path)
    old = get_submodule(model, path)
    if isinstance(parent, nn.Sequential) and all(key.isdigit() for key in parent._modules):
        index = int(name) + (0 if before else 1)
        modules = list(parent)
        modules.insert(index, new)
        for key in list(parent._modules):
            del parent._modules[key]
        for i, module in enumerate(modules):
            parent.add_module(str(i), module)
    else:
        setattr(parent, name, nn.Sequential(new, old) if before else nn.Sequential(old, new))


def truncate(model: nn.Module, after: str) -> nn.Module:
    """A model that runs `model` up to and including the module at `after` and returns its output.

    Traced with torch.fx (`zoo.modeling.features.features_model`), so the parts after `after`
    are gone, not just unused; the result shares its parameters with `model`.
    """
    get_submodule(model, after)  # a clear error for a wrong path
    return _FirstOutput(features_model(model, {after: "out"}))


class _FirstOutput(nn.Module):
    def __init__(self, extractor: nn.Module) -> None:
        super().__init__()
        self.extractor = extractor

    def forward(self, *args: Any) -> Any:
        return self.extractor(*args)["out"]


def replace_head(model: nn.Module, path: str, num_classes: int) -> nn.Module:
    """Put a freshly initialised head of `num_classes` outputs at `path` (a Linear or 1x1 Conv2d).

    The new layer keeps the old one's input size, bias and dtype; returns it.
    """
    old = get_submodule(model, path)
    if isinstance(old, nn.Linear):
        new: nn.Module = nn.Linear(old.in_features, num_classes, bias=old.bias is not None)
    elif isinstance(old, nn.Conv2d):
        new = nn.Conv2d(old.in_channels, num_classes, old.kernel_size, old.stride, old.padding,
                        bias=old.bias is not None)
    else:
        raise UsageError(f"head {path!r} is a {type(old).__name__}; a head must be nn.Linear or nn.Conv2d")
    new = new.to(device=old.weight.device, dtype=old.weight.dtype)
    set_submodule(model, path, new)
    return new


def replace_first_conv(model: nn.Module, path: str, in_channels: int) -> nn.Module:
    """Put a Conv2d taking `in_channels` at `path`, with the old one's other settings; returns it.

    Its weights are `adapt_conv_weight` of the old ones, so a pretrained stem stays pretrained.
    """
    old = get_submodule(model, path)
    if not isinstance(old, nn.Conv2d):
        raise UsageError(f"first convolution {path!r} is a {type(old).__name__}, not nn.Conv2d")
    new = nn.Conv2d(in_channels, old.out_channels, old.kernel_size, old.stride, old.padding, old.dilation,
                    old.groups, bias=old.bias is not None, padding_mode=old.padding_mode)
    new = new.to(device=old.weight.device, dtype=old.weight.dtype)
    with torch.no_grad():
        new.weight.copy_(adapt_conv_weight(old.weight, new.weight))
        if old.bias is not None:
            new.bias.copy_(old.bias)
    set_submodule(model, path, new)
    return new


def adapt_conv_weight(weight: Tensor, target: Tensor) -> Tensor:
    """A conv weight (out, in, kh, kw) changed to `target`'s input channels.

    One channel: the sum over the pretrained channels (a grey image stands for all of
    them). Otherwise the channels repeat cyclically, scaled by ``in / new_in`` so that
    activations keep their size for inputs of similar statistics.
    """
    old_in, new_in = weight.shape[1], target.shape[1]
    if weight.shape[0] != target.shape[0] or weight.shape[2:] != target.shape[2:]:
        raise UsageError(f"cannot adapt a conv weight of shape {tuple(weight.shape)} to {tuple(target.shape)}")
    if new_in == 1:
        return weight.sum(dim=1, keepdim=True)
    repeats = math.ceil(new_in / old_in)
    return weight.repeat(1, repeats, 1, 1)[:, :new_in] * (old_in / new_in)


@dataclass
class LoadReport:
    """What `load_partial` did with every tensor of the checkpoint and of the model.

    Each checkpoint key is in exactly one of `loaded`, `adapted`, `mismatched` or
    `unexpected`; each model key in exactly one of `loaded`, `adapted`, `mismatched`
    or `missing`. Mismatched and missing tensors keep the model's own values.
    """

    loaded: list[str] = field(default_factory=list)
    adapted: dict[str, str] = field(default_factory=dict)  # key -> how
    mismatched: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = field(default_factory=dict)  # (checkpoint, model)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "loaded": self.loaded,
            "adapted": self.adapted,
            "mismatched": {k: {"checkpoint": list(a), "model": list(b)} for k, (a, b) in self.mismatched.items()},
            "missing": self.missing,
            "unexpected": self.unexpected,
        }

    def __str__(self) -> str:
        lines = [f"loaded {len(self.loaded)} tensors"]
        lines += [f"adapted {k}: {how}" for k, how in self.adapted.items()]
        lines += [f"kept the model's {k}: checkpoint has {list(a)}, model {list(b)}"
                  for k, (a, b) in self.mismatched.items()]
        lines += [f"missing from the checkpoint: {k}" for k in self.missing]
        lines += [f"not in the model: {k}" for k in self.unexpected]
        return "\n".join(lines)


def load_partial(model: nn.Module, state_dict: Mapping[str, Tensor],
                 adapters: Mapping[str, Adapter] | None = None) -> LoadReport:
    """Load the tensors of `state_dict` that fit `model`, and report on every tensor.

    A tensor loads when its name and shape match; a name in `adapters` whose shape
    differs is converted by its adapter (e.g. `adapt_conv_weight` for a stem with new
    input channels) and reported as adapted. Nothing is dropped without a line in the report.
    """
    adapters = adapters or {}
    own = model.state_dict()
    report = fit_report(_shapes(own), _shapes(state_dict), adapters)
    to_load = {key: state_dict[key] for key in report.loaded}
    to_load.update((key, adapters[key](state_dict[key], own[key])) for key in report.adapted)
    # Modules read their saved version from the metadata (MNASNet refuses to load without it).
    loadable = OrderedDict(to_load)
    loadable._metadata = getattr(state_dict, "_metadata", None) or getattr(own, "_metadata", None)  # type: ignore[attr-defined]
    model.load_state_dict(loadable, strict=False)
    return report


def fit_report(own: Mapping[str, tuple[int, ...]], checkpoint: Mapping[str, tuple[int, ...]],
               adaptable: Collection[str] = ()) -> LoadReport:
    """The report `load_partial` gives for a checkpoint whose tensors have the shapes `checkpoint` (by name) and
    a model whose state dict has the shapes `own`, from their shapes alone: so a file can be checked against a
    model without reading its tensors (`zoo.modeling.weights.shapes_in`) or giving the model any."""
    report = LoadReport()
    for key, shape in checkpoint.items():
        if key not in own:
            report.unexpected.append(key)
        elif shape == own[key]:
            report.loaded.append(key)
        elif key in adaptable:
            report.adapted[key] = f"{list(shape)} -> {list(own[key])}"
        else:
            report.mismatched[key] = (shape, own[key])
    report.missing = [key for key in own if key not in checkpoint]
    return report


def builder_report(model: nn.Module, checkpoint: Mapping[str, Tensor], heads: Collection[str] = ()) -> LoadReport:
    """The report of a builder that loaded `checkpoint` into `model` itself, adapting it (`zoo.specs.ADAPTS_WEIGHTS`):
    `fit_report` over names and shapes. A tensor whose shape the builder changed was adapted by it (a stem for
    other input channels, position embeddings resampled), except in the `heads` (module paths), which it makes
    anew for another number of classes: those are reported as the model's own (mismatched).

    A feature wrapper's names are read as the checkpoint's: ``model.x`` (a wrapper holding the model) and
    ``a_b.x`` (a flattened ``a.b.x``), where the checkpoint has that name."""
    own = {_checkpoint_name(key, checkpoint): shape for key, shape in _shapes(model.state_dict()).items()}
    in_heads = tuple(f"{path}." for path in heads)
    report = fit_report(own, _shapes(checkpoint), adaptable=[key for key in own if not key.startswith(in_heads)])
    report.adapted = {key: f"{how} by the builder" for key, how in report.adapted.items()}
    return report


def _checkpoint_name(key: str, checkpoint: Mapping[str, Tensor]) -> str:
    """The checkpoint's name of the model's tensor `key` (see `builder_report`); `key` where there is none."""
    unwrapped = key.removeprefix("model.")
    head, dot, rest = unwrapped.partition(".")
    for name in (key, unwrapped, head.replace("_", ".", 1) + dot + rest):
        if name in checkpoint:
            return name
    return key


def model_shapes(build: Callable[[], nn.Module]) -> dict[str, tuple[int, ...]]:
    """The name and shape of every tensor in the state dict of the model `build` makes, built on the meta device:
    shapes without memory behind them, for `fit_report`. A builder that computes with its tensors' values while
    building (regnet reads its block widths from a tensor), which meta tensors do not have, builds on the CPU
    instead (the model's size, still nothing of a weights file's)."""
    try:
        with torch.device("meta"):
            model = build()
    except (NotImplementedError, RuntimeError):  # a meta tensor's value was asked for; a zoo error is neither
        model = build()
    return _shapes(model.state_dict())


def _shapes(state_dict: Mapping[str, Tensor]) -> dict[str, tuple[int, ...]]:
    return {key: tuple(tensor.shape) for key, tensor in state_dict.items()}


def _parent(model: nn.Module, path: str) -> tuple[nn.Module, str]:
    if not path:
        raise UsageError("module path is empty; name a submodule such as 'fc' or 'layer4.1.conv2'")
    parent_path, _, name = path.rpartition(".")
    get_submodule(model, path)  # a clear error for a wrong path
    return get_submodule(model, parent_path), name

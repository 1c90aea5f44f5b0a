"""Optimizer parameter groups for fine-tuning: learning rates per pattern and per block, weight decay where it helps.

`param_groups` returns plain dicts that any `torch.optim` optimizer takes. Patterns are
those of `zoo.modeling.freezing`: module or parameter paths and fnmatch globs over them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from fnmatch import fnmatchcase
from typing import Any

from torch import nn

from zoo.errors import UsageError
from zoo.modeling.freezing import check_patterns, is_norm_layer, parameter_states, selects

#: The `no_decay` entries that are not patterns.
NO_DECAY_KEYWORDS = ("bias", "norm", "1d")


def param_groups(
    model: nn.Module,
    lr: float | Mapping[str, float],
    *,
    weight_decay: float = 0.0,
    no_decay: Iterable[str] = NO_DECAY_KEYWORDS,
    layer_decay: float | None = None,
    blocks: Sequence[str] | None = None,
    include_frozen: bool = False,
) -> list[dict[str, Any]]:
    """Parameter groups for `torch.optim`, each with params, lr, weight_decay, name and param_names.

    `lr` is one rate or ``{pattern: rate}``: the first pattern that selects a parameter
    wins (``"*"`` is a catch-all), and a parameter none selects is an error.
    `weight_decay` applies to all but what `no_decay` names: ``"bias"`` (parameters named
    bias), ``"norm"`` (parameters of normalisation layers, by type), ``"1d"`` (parameters
    with one dimension, timm's rule), any other entry being a pattern.
    `layer_decay` multiplies rates by ``layer_decay ** (last block - block)`` over `blocks`,
    stem to head: module paths or globs (``"features.*"`` stands for each module it
    matches, outermost only), by default the model's top-level children. Blocks without
    parameters are skipped; parameters in no block belong to block 0, the stem (a ViT's
    class token).
    Frozen parameters are left out unless `include_frozen`: torch.optim skips parameters
    without gradients, so those train once unfrozen (see `zoo.modeling.freezing.GradualUnfreezer`).
    Groups with the same lr and weight decay are merged; `name` says what a group holds
    (``"fc/no_decay"``, ``"*/block3/decay"``). `param_names` is torch.optim's own key, so
    a group added to the optimizer later needs one too.
    """
    rates = _rates(model, lr)
    exempt = _exemption(model, no_decay)
    if blocks is not None and layer_decay is None:
        raise UsageError("blocks only matter with layer_decay; pass layer_decay= too")
    if layer_decay is not None and not 0 < _number(layer_decay, "layer_decay") <= 1:
        raise UsageError(f"layer_decay must be in (0, 1], not {layer_decay!r}")
    block_paths = _blocks(model, blocks) if layer_decay is not None else []
    last = max(len(block_paths) - 1, 0)
    decay_rate = _number(weight_decay, "weight_decay")

    groups: dict[tuple[float, float], dict[str, Any]] = {}
    seen: set[int] = set()
    for path, module in model.named_modules():
        for name, param in module.named_parameters(path, recurse=False):
            if id(param) in seen or not (param.requires_grad or include_frozen):
                continue
            seen.add(id(param))
            pattern, rate = _rate_of(rates, name)
            labels = [pattern] if isinstance(lr, Mapping) else []
            if layer_decay is not None:
                block = next((i for i, prefix in enumerate(block_paths) if selects(prefix, name)), 0)
                rate *= layer_decay ** (last - block)
                labels.append(f"block{block}")
            decay = 0.0 if exempt(name, param, module) else decay_rate
            if decay_rate:
                labels.append("decay" if decay else "no_decay")
            group = groups.setdefault((rate, decay), {"params": [], "param_names": [], "lr": rate,
                                                      "weight_decay": decay, "name": []})
            group["params"].append(param)
            group["param_names"].append(name)
            label = "/".join(labels) or "all"
            if label not in group["name"]:
                group["name"].append(label)
    if not groups:
        name = type(model).__name__
        raise UsageError(f"{name} has no trainable parameters; unfreeze some or pass include_frozen=True")
    return [{**group, "name": " + ".join(group["name"])} for group in groups.values()]


def _rates(model: nn.Module, lr: float | Mapping[str, float]) -> list[tuple[str, float]]:
    if not isinstance(lr, Mapping):
        return [("*", _number(lr, "lr"))]
    check_patterns(model, list(lr), "lr")
    return [(pattern, _number(rate, f"lr[{pattern!r}]")) for pattern, rate in lr.items()]


def _rate_of(rates: list[tuple[str, float]], name: str) -> tuple[str, float]:
    for pattern, rate in rates:
        if selects(pattern, name):
            return pattern, rate
    patterns = ", ".join(repr(pattern) for pattern, _ in rates)
    raise UsageError(f"lr: parameter {name!r} matches none of {patterns}; add '*' as a catch-all")


def _exemption(model: nn.Module, no_decay: Iterable[str]) -> Callable[[str, nn.Parameter, nn.Module], bool]:
    """Whether a parameter (name, tensor, owning module) goes without weight decay."""
    entries = [no_decay] if isinstance(no_decay, str) else list(no_decay)
    patterns = check_patterns(model, [e for e in entries if e not in NO_DECAY_KEYWORDS], "no_decay")

    def exempt(name: str, param: nn.Parameter, owner: nn.Module) -> bool:
        return (
            ("bias" in entries and name.rpartition(".")[2] == "bias")
            or ("norm" in entries and is_norm_layer(owner))
            or ("1d" in entries and param.ndim <= 1)
            or any(selects(pattern, name) for pattern in patterns)
        )

    return exempt


def _blocks(model: nn.Module, blocks: Sequence[str] | None) -> list[str]:
    """The module paths of the blocks, in order, each owning parameters."""
    if blocks is None:
        paths = [name for name, _ in model.named_children()]
    else:
        modules = [path for path, _ in model.named_modules() if path]
        paths = []
        for pattern in check_patterns(model, blocks, "blocks"):
            matched = [path for path in modules if fnmatchcase(path, pattern)]
            if not matched:
                raise UsageError(f"blocks: {pattern!r} selects no module of {type(model).__name__}, only parameters; "
                                 "parameters outside every block belong to block 0")
            paths += [path for path in matched if not any(path.startswith(outer + ".") for outer in matched)]
    # Frozen parameters count, FrozenBatchNorm's included, so that freezing moves no block.
    names = list(parameter_states(model))
    owning = [path for path in dict.fromkeys(paths) if any(selects(path, name) for name in names)]
    for path in owning:
        outer = next((other for other in owning if path.startswith(other + ".")), None)
        if outer is not None:
            raise UsageError(f"blocks: {path!r} is inside block {outer!r}; blocks must not overlap")
    return owning


def _number(value: Any, argument: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise UsageError(f"{argument} must be a number >= 0, not {value!r}")
    return float(value)

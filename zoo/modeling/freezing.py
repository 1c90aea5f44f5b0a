"""Freezing and unfreezing parts of a model for fine-tuning, normalisation layers included.

Parts are chosen by path (``"layer4"``, ``"layer4.1.conv2"``, ``"classifier.6"``, or a
parameter such as ``"fc.bias"``) or by fnmatch glob over paths (``"layer[12]*"``,
``"*.bn1"``); a pattern selects what it names and everything under it, and ``""`` or
``"*"`` the whole model. A pattern that selects nothing is a `UsageError` naming what
is there instead.

The `norm` argument of `freeze` and `unfreeze` is the state the normalisation layers
of the chosen part end up in, whatever happens to the other parameters:

- ``"frozen"``: statistics and affine fixed. BatchNorm1d/2d/3d and SyncBatchNorm become
  `FrozenBatchNorm` (same state_dict keys, same eval-mode output); the affine parameters
  of GroupNorm, LayerNorm, RMSNorm and InstanceNorm stop training.
- ``"eval"``: BatchNorm layers stay, pinned to eval mode: ``model.train()`` no longer
  reaches them, so their running statistics never update; their affine stops training.
- ``"train"``: normalisation layers train and update their statistics.

Freezing is in place: build the optimizer afterwards, since ``"frozen"`` replaces
BatchNorm modules (and their parameters) by new ones.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from functools import partial
from typing import Any, Literal, cast, get_args

import torch
from torch import nn
from torch.nn import functional as F
from torchvision.ops.misc import FrozenBatchNorm2d as TorchvisionFrozenBatchNorm2d

from zoo.errors import UsageError

Norm = Literal["frozen", "eval", "train"]
Patterns = str | Iterable[str]
Selection = Callable[[str], bool]

BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)
BatchNormKind = type[nn.BatchNorm1d | nn.BatchNorm2d | nn.BatchNorm3d | nn.SyncBatchNorm]
# Normalisation layers whose only state to freeze is their affine parameters.
AFFINE_NORMS = (nn.GroupNorm, nn.LayerNorm, nn.RMSNorm, nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)
_STATE = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


class FrozenBatchNorm(nn.Module):
    """BatchNorm with fixed statistics and affine, for inputs of any dimensionality.

    torchvision's FrozenBatchNorm2d for BatchNorm1d/2d/3d and SyncBatchNorm alike. Its
    state is buffers under BatchNorm's names, so state dicts load both ways, its output
    is the source layer's eval-mode output bit for bit, and `to_batchnorm` gives back a
    trainable layer of the source kind.
    """

    weight: torch.Tensor | None
    bias: torch.Tensor | None
    running_mean: torch.Tensor
    running_var: torch.Tensor
    num_batches_tracked: torch.Tensor | None

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        kind: BatchNormKind = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        self.num_features, self.eps, self.momentum, self.kind = num_features, eps, momentum, kind
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    @classmethod
    def from_module(cls, module: nn.Module) -> FrozenBatchNorm:
        """A frozen copy of a BatchNorm (with running statistics) or of torchvision's FrozenBatchNorm2d."""
        kind = nn.BatchNorm2d if isinstance(module, TorchvisionFrozenBatchNorm2d) else type(module)
        frozen = cls(len(module.running_mean), module.eps, getattr(module, "momentum", 0.1), kind)
        for name in _STATE:
            value = getattr(module, name, None)
            setattr(frozen, name, None if value is None else value.detach().clone())
        return frozen

    def to_batchnorm(self) -> nn.Module:
        """A trainable layer of the source kind with these values (SyncBatchNorm: default process group)."""
        tensor = self.running_mean
        bn = self.kind(self.num_features, self.eps, self.momentum, affine=self.weight is not None,
                       device=tensor.device, dtype=tensor.dtype)
        if self.bias is None:
            bn.bias = None
        with torch.no_grad():
            for name in _STATE:
                value = getattr(self, name)
                if value is not None:
                    getattr(bn, name).copy_(value)
        return bn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            training=False, momentum=0.0, eps=self.eps)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        # torchvision's FrozenBatchNorm2d saves no num_batches_tracked: keep ours.
        if self.num_batches_tracked is not None:
            state_dict.setdefault(prefix + "num_batches_tracked", self.num_batches_tracked)
        super()._load_from_state_dict(state_dict, prefix, *args)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, from={self.kind.__name__}"


FROZEN_BATCH_NORMS = (FrozenBatchNorm, TorchvisionFrozenBatchNorm2d)
NORM_LAYERS = BATCH_NORMS + AFFINE_NORMS + FROZEN_BATCH_NORMS


@dataclass(frozen=True)
class FreezeReport:
    """What a `freeze` or `unfreeze` call did, and the model's state after it.

    `frozen` and `trainable` name every parameter after the call (a frozen BatchNorm's
    weight and bias count as frozen parameters); `changed` those whose state the call
    switched; `norm_layers` maps each normalisation layer the call changed to what it
    did (``"BatchNorm2d -> FrozenBatchNorm"``, ``"BatchNorm2d -> BatchNorm2d (eval)"``).
    The counts are numbers of elements.
    """

    frozen: tuple[str, ...]
    trainable: tuple[str, ...]
    changed: tuple[str, ...]
    norm_layers: Mapping[str, str]
    frozen_count: int
    trainable_count: int

    def __str__(self) -> str:
        everything = self.frozen + self.trainable
        total = self.frozen_count + self.trainable_count
        share = self.frozen_count / total if total else 0.0
        lines = [
            f"{self.frozen_count:,} of {total:,} parameters frozen ({share:.1%}), {self.trainable_count:,} trainable",
            f"  frozen:    {_listing(_compact(self.frozen, everything))}",
            f"  trainable: {_listing(_compact(self.trainable, everything))}",
            f"  changed:   {_listing(_compact(self.changed, everything))}",
        ]
        for change, count in Counter(self.norm_layers.values()).items():
            paths = [path for path, done in self.norm_layers.items() if done == change]
            lines.append(f"  {change} [{count}]: {_listing(paths, 6)}")
        return "\n".join(lines)


def freeze(
    model: nn.Module,
    modules: Patterns | None = None,
    *,
    except_: Patterns | None = None,
    until: str | None = None,
    norm: Norm = "frozen",
) -> FreezeReport:
    """Freeze the parameters of `modules` (default: the whole model) minus `except_`.

    ``until="layer3"`` instead chooses every module registered before `until` ends, as
    timm and fast.ai do: for a ResNet conv1, bn1, layer1, layer2 and layer3; for a
    nested path (``"features.5"``) also the direct parameters of its ancestors, such
    as a ViT's class token. `norm` is the state normalisation layers in the chosen part
    end up in (see the module docstring): by default `FrozenBatchNorm`.
    """
    if modules is not None and until is not None:
        raise UsageError("freeze: pass modules or until, not both")
    chosen = _matcher(model, modules, "modules") if until is None else _up_to(model, until)
    return _apply(model, _without(model, chosen, except_), trainable=False, norm=_checked_norm(norm))


def unfreeze(
    model: nn.Module,
    modules: Patterns | None = None,
    *,
    except_: Patterns | None = None,
    norm: Norm = "train",
) -> FreezeReport:
    """Make the parameters of `modules` (default: the whole model) minus `except_` trainable.

    `norm` is the state normalisation layers in the chosen part end up in: by default
    trainable (a `FrozenBatchNorm` becomes its source kind again, pinned layers follow
    ``model.train()`` again); ``norm="frozen"`` unfreezes the rest but keeps them frozen.
    """
    chosen = _matcher(model, modules, "modules")
    return _apply(model, _without(model, chosen, except_), trainable=True, norm=_checked_norm(norm))


class GradualUnfreezer:
    """Unfreezes a model stage by stage on a schedule of epochs (ULMFiT's gradual unfreezing).

    `stages` is a list (stage i unfreezes at epoch i) or a mapping ``{epoch: stage}``; a
    stage is a pattern or a list of patterns. Construction freezes every stage (its
    report is `report`); what no stage names, typically the new head, trains from the
    start. Call `step(epoch)` at the start of every epoch. Frozen BatchNorm layers are
    pinned to eval (``norm="eval"``) rather than replaced, so parameter objects stay the
    same and an optimizer built with ``param_groups(..., include_frozen=True)`` trains
    each stage once it is unfrozen (torch.optim skips parameters without gradients).
    """

    def __init__(
        self,
        model: nn.Module,
        stages: Sequence[Patterns] | Mapping[int, Patterns],
        *,
        norm: Norm = "eval",
        unfreeze_norm: Norm = "train",
    ) -> None:
        if isinstance(stages, str):
            raise UsageError("GradualUnfreezer: stages is a list of stages or a mapping {epoch: stage}, not a string")
        items = stages.items() if isinstance(stages, Mapping) else enumerate(stages)
        self.model, self.unfreeze_norm = model, _checked_norm(unfreeze_norm)
        self.schedule: dict[int, list[str]] = {}
        for epoch, stage in items:
            if not isinstance(epoch, int) or epoch < 0:
                raise UsageError(f"GradualUnfreezer: epochs must be integers >= 0, not {epoch!r}")
            self.schedule[epoch] = check_patterns(model, stage, f"stages[{epoch}]")
        self.pending = sorted(self.schedule)
        self.report = freeze(model, [p for stage in self.schedule.values() for p in stage], norm=norm)

    def step(self, epoch: int) -> FreezeReport | None:
        """Unfreeze every stage due by `epoch` and not unfrozen yet; None when there is none."""
        due = [e for e in self.pending if e <= epoch]
        if not due:
            return None
        self.pending = [e for e in self.pending if e > epoch]
        return unfreeze(self.model, [p for e in due for p in self.schedule[e]], norm=self.unfreeze_norm)


def selects(pattern: str, path: str) -> bool:
    """Whether `pattern` selects `path` (of a module or parameter): it names the path or an ancestor."""
    return pattern in ("", "*") or any(fnmatchcase(prefix, pattern) for prefix in _prefixes(path))


def check_patterns(model: nn.Module, patterns: Patterns, argument: str) -> list[str]:
    """`patterns` as a list, each checked to select some module or parameter of `model`.

    `argument` names the argument in the error, which also says what is there instead.
    """
    patterns = [patterns] if isinstance(patterns, str) else list(patterns)
    paths = [path for path, _ in model.named_modules()] + list(parameter_states(model))
    for pattern in patterns:
        if not isinstance(pattern, str):
            raise UsageError(f"{argument}: patterns are strings (module paths or globs), not {pattern!r}")
        if not any(selects(pattern, path) for path in paths):
            raise UsageError(no_match(model, pattern, argument))
    return patterns


def no_match(model: nn.Module, pattern: str, argument: str) -> str:
    """The one-line error for a `pattern` found nowhere in `model`, listing what is there instead."""
    name = type(model).__name__
    if any(char in pattern for char in "*?["):
        return f"{argument}: {pattern!r} matches nothing in {name}; its top-level modules: {_children(model)}"
    found: list[str] = []
    module = model
    for part in pattern.split("."):
        child = dict(module.named_children()).get(part)
        if child is None:
            break
        module, found = child, found + [part]
    where = repr(".".join(found)) if found else name
    return f"{argument}: {pattern!r} is not in {name}; {where} has: {_children(module)}"


def is_norm_layer(module: nn.Module) -> bool:
    """Whether `module` is a normalisation layer (BatchNorm, frozen or not, GroupNorm, LayerNorm, ...)."""
    return isinstance(module, NORM_LAYERS)


def parameter_states(model: nn.Module) -> dict[str, tuple[int, bool]]:
    """Every parameter's size and whether it trains; a frozen BatchNorm's weight and bias are frozen ones."""
    states: dict[str, tuple[int, bool]] = {}
    seen: set[int] = set()
    for path, module in model.named_modules():
        tensors = dict(module.named_parameters(recurse=False))
        if isinstance(module, FROZEN_BATCH_NORMS):
            tensors = {name: getattr(module, name) for name in ("weight", "bias") if getattr(module, name) is not None}
        for name, tensor in tensors.items():
            if id(tensor) not in seen:
                seen.add(id(tensor))
                states[f"{path}.{name}" if path else name] = (tensor.numel(), tensor.requires_grad)
    return states


def _matcher(model: nn.Module, patterns: Patterns | None, argument: str) -> Selection:
    checked = ["*"] if patterns is None else check_patterns(model, patterns, argument)
    return lambda path: any(selects(pattern, path) for pattern in checked)


def _without(model: nn.Module, chosen: Selection, except_: Patterns | None) -> Selection:
    if except_ is None:
        return chosen
    excepted = _matcher(model, except_, "except_")
    return lambda path: chosen(path) and not excepted(path)


def _up_to(model: nn.Module, until: str) -> Selection:
    """Everything registered before module `until` ends, and the direct parameters of its ancestors."""
    paths = [path for path, _ in model.named_modules()]
    if until in dict(model.named_parameters()):
        raise UsageError(f"until: {until!r} is a parameter of {type(model).__name__}; until takes a module path")
    if not until or until not in paths:
        raise UsageError(no_match(model, until, "until"))
    end = max(i for i, path in enumerate(paths) if path == until or path.startswith(until + "."))
    ancestors = [path for path in paths if until.startswith(path + ".") or not path]
    chosen = {path for path in paths[: end + 1] if path not in ancestors}
    for ancestor in ancestors:
        chosen.update(name for name, _ in model.get_submodule(ancestor).named_parameters(ancestor, recurse=False))
    return lambda path: any(prefix in chosen for prefix in _prefixes(path))


def _apply(model: nn.Module, chosen: Selection, *, trainable: bool, norm: Norm) -> FreezeReport:
    before = parameter_states(model)
    norm_layers: dict[str, str] = {}
    for path, module in list(model.named_modules()):
        if path and chosen(path) and _has_statistics(module):
            was = _describe(module)
            module = _batchnorm_as(module, norm)
            model.set_submodule(path, module)
            module.train(model.training)  # a pinned layer stays in eval
            if _describe(module) != was:
                norm_layers[path] = f"{was} -> {_describe(module)}"
    for path, module in model.named_modules():
        for name, param in module.named_parameters(path, recurse=False):
            if chosen(name):
                param.requires_grad_(norm == "train" if is_norm_layer(module) else trainable)
    after = parameter_states(model)
    return FreezeReport(
        frozen=tuple(name for name, (_, trains) in after.items() if not trains),
        trainable=tuple(name for name, (_, trains) in after.items() if trains),
        changed=tuple(name for name, (_, trains) in after.items() if name in before and before[name][1] != trains),
        norm_layers=norm_layers,
        frozen_count=sum(size for size, trains in after.values() if not trains),
        trainable_count=sum(size for size, trains in after.values() if trains),
    )


def _has_statistics(module: nn.Module) -> bool:
    """A BatchNorm with running statistics, or a frozen one: the layers `norm` converts or pins."""
    return isinstance(module, FROZEN_BATCH_NORMS) or (
        isinstance(module, BATCH_NORMS) and module.running_mean is not None
    )


def _batchnorm_as(module: nn.Module, norm: Norm) -> nn.Module:
    """`module` (a layer `_has_statistics` accepts) in state `norm`: maybe a new module."""
    if norm == "frozen":
        return module if isinstance(module, FROZEN_BATCH_NORMS) else FrozenBatchNorm.from_module(module)
    if isinstance(module, TorchvisionFrozenBatchNorm2d):
        module = FrozenBatchNorm.from_module(module)
    if isinstance(module, FrozenBatchNorm):
        module = module.to_batchnorm()
    if norm == "eval":
        vars(module)["train"] = partial(_stay_in_eval, module)  # nn.Module.train calls this on children
    else:
        vars(module).pop("train", None)
    return module


def _stay_in_eval(module: nn.Module, mode: bool = True) -> nn.Module:
    module.training = False
    return module


def _describe(module: nn.Module) -> str:
    pinned = " (eval)" if "train" in vars(module) else ""
    return f"{type(module).__name__}{pinned}"


def _checked_norm(norm: str) -> Norm:
    if norm not in get_args(Norm):
        raise UsageError(f"norm must be one of {', '.join(map(repr, get_args(Norm)))}, not {norm!r}")
    return cast(Norm, norm)


def _prefixes(path: str) -> list[str]:
    """``"a.b.c"`` -> ``["a", "a.b", "a.b.c"]``."""
    parts = path.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def _compact(names: Sequence[str], everything: Sequence[str]) -> list[str]:
    """`names` shortened to the outermost modules whose parameters are all among `names`."""
    total: Counter[str] = Counter()
    chosen: Counter[str] = Counter()
    members = set(names)
    for name in everything:
        for prefix in _prefixes(name):
            total[prefix] += 1
            chosen[prefix] += name in members
    return list(dict.fromkeys(next(p for p in _prefixes(name) if chosen[p] == total[p]) for name in names))


def _listing(names: Sequence[str], limit: int = 12) -> str:
    if not names:
        return "-"
    more = f", ... ({len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _children(module: nn.Module) -> str:
    names = [name for name, _ in module.named_children()] + [name for name, _ in module.named_parameters(recurse=False)]
    return _listing(names, 20) if names else "no modules or parameters"

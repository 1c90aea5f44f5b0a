"""Look inside a model: a per-layer summary of one forward pass, and intermediate features.

`summarize` runs one pass with forward hooks and reports, per module, its output
shapes, the parameters it owns and whether they train, with totals for parameters,
buffers, activations and inputs (torchsummary's table, as text or plain data). The
example inputs follow the model's task adapter (`zoo.export.tasks`): a detector takes a list
of images.

`feature_nodes`, `features_model` and `extract_features` are `zoo.modeling.features`' torch.fx
feature extraction for a module or a catalog name. This module is where a catalog name
becomes a module for looking inside (`catalog_model`, and a skeleton on the meta device
where only the structure matters), above the registry; `zoo.modeling.features` and `zoo.modeling.surgery`
stay below it.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import fx, nn
from torch.overrides import TorchFunctionMode

from zoo.export import tasks
from zoo.modeling import features
from zoo.errors import PluginError, UsageError, ZooError, first_line
from zoo.modeling.features import kept_modes, run_model, tensors_in
from zoo.registry import get_model, get_model_builder
from zoo.shapes import EXAMPLES, parse_shape
from zoo.text import table

#: what constructors fill new weights with, besides torch.nn.init (skipped by `_NoInit`)
_RANDOM_FILLS = (torch.Tensor.uniform_, torch.Tensor.normal_)

Shape = Any  # a tuple of ints per tensor, nested in lists and dicts as the module returned them


@dataclass(frozen=True)
class LayerRow:
    """One module of a summary.

    `params` counts the parameters the module owns itself (plus those of hidden
    deeper modules when the summary is cut at a depth), each shared one only once,
    so the rows add up to the model's total. `output_shape` is the first call's
    output (None if the module did not run); `output_bytes` sums all its calls.
    """

    path: str
    type: str
    calls: int
    output_shape: Shape
    output_bytes: int
    params: int
    trainable_params: int

    @property
    def trainable(self) -> str | None:
        """"all", "none" or "partial" by requires_grad; None for a module without parameters."""
        if not self.params:
            return None
        return "all" if self.trainable_params == self.params else "partial" if self.trainable_params else "none"

    @property
    def output_text(self) -> str:
        """The output shape as the table shows it: ``-`` if not run, the call count if run more than once."""
        if not self.calls:
            return "-"
        return shape_text(self.output_shape) + (f" ({self.calls} calls)" if self.calls > 1 else "")


@dataclass(frozen=True)
class ModelSummary:
    """What `summarize` measured: rows in module order, and totals in counts and bytes."""

    model: str
    inputs: list[list[int]]
    dtype: str
    rows: list[LayerRow]
    total_params: int
    trainable_params: int
    buffers: int
    param_bytes: int
    buffer_bytes: int
    activation_bytes: int
    input_bytes: int

    @property
    def non_trainable_params(self) -> int:
        """Frozen parameters (requires_grad False); buffers are counted apart, in `buffers`."""
        return self.total_params - self.trainable_params

    @property
    def parameter_memory(self) -> int:
        """Bytes of parameters and buffers."""
        return self.param_bytes + self.buffer_bytes

    @property
    def total_bytes(self) -> int:
        """Inputs, activations and parameter memory: torchsummary's "estimated total size"."""
        return self.input_bytes + self.activation_bytes + self.parameter_memory

    def table(self) -> str:
        """A torchsummary-style table: one row per module, indented by depth, then the totals."""
        lines = table(["Layer", "Output shape", "Params", "Trainable"],
                      [[_layer_label(r), r.output_text, f"{r.params:,}", r.trainable or "-"] for r in self.rows],
                      right={2})
        rule = "-" * max(len(line) for line in lines)
        inputs = ", ".join(shape_text(tuple(s)) for s in self.inputs)
        return "\n".join([
            lines[0], rule, *lines[1:], rule,
            f"Params: {self.total_params:,} ({_bytes_text(self.param_bytes)})",
            f"  trainable: {self.trainable_params:,}",
            f"  non-trainable: {self.non_trainable_params:,}",
            f"Buffers: {self.buffers:,} ({_bytes_text(self.buffer_bytes)})",
            f"Input: {inputs} {self.dtype} ({_bytes_text(self.input_bytes)})",
            f"Activations: {_bytes_text(self.activation_bytes)} (distinct module outputs of one pass)",
            f"Parameter memory: {_bytes_text(self.parameter_memory)} (params + buffers)",
            f"Estimated total: {_bytes_text(self.total_bytes)}",
        ])

    def to_json(self) -> dict[str, Any]:
        """The summary as plain data (dicts, lists, strings, ints): what ``json.dumps`` takes as is."""
        return {
            "model": self.model,
            "inputs": self.inputs,
            "dtype": self.dtype,
            "layers": [
                {
                    "path": r.path,
                    "type": r.type,
                    "calls": r.calls,
                    "output_shape": _plain(r.output_shape),
                    "output_bytes": r.output_bytes,
                    "params": r.params,
                    "trainable_params": r.trainable_params,
                    "trainable": r.trainable,
                }
                for r in self.rows
            ],
            "totals": {
                "params": self.total_params,
                "trainable_params": self.trainable_params,
                "non_trainable_params": self.non_trainable_params,
                "buffers": self.buffers,
                "param_bytes": self.param_bytes,
                "buffer_bytes": self.buffer_bytes,
                "parameter_memory": self.parameter_memory,
                "activation_bytes": self.activation_bytes,
                "input_bytes": self.input_bytes,
                "total_bytes": self.total_bytes,
            },
        }


def summarize(
    model: nn.Module,
    input_size: Sequence[int] | Sequence[Sequence[int]],
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
    depth: int | None = None,
    task: str | None = None,
) -> ModelSummary:
    """Run one forward pass of `model` on `example_inputs` of `input_size` and summarise it per module.

    The pass runs in eval mode under ``torch.inference_mode()``; every module's own
    training flag is restored afterwards and the hooks are removed even on error.
    `device` defaults to the model's; `task` as in `example_inputs`. Rows follow
    ``named_modules()`` (the root first); `depth` keeps only modules whose path has at
    most that many dots (``depth=0``: ``conv1``, ``layer1``; ``depth=1`` adds
    ``layer1.0``; the root row always stays), rolling deeper modules' parameters into
    their nearest shown ancestor.

    Activations count the bytes of every distinct tensor storage that a module returned
    during the pass, each once: a container returning its last child's output, an
    in-place ReLU or a view adds nothing, and the inputs are not counted. All of them
    stay alive until the pass ends, as autograd would keep them for a backward pass
    (torchsummary doubles a similar sum for the gradients; this does not).
    """
    sizes = _input_sizes(input_size)
    if depth is not None and depth < 0:
        raise UsageError(f"depth must be 0 or more (dots in a module path), not {depth}")
    inputs = example_inputs(model, sizes, dtype=dtype, device=device, task=task)
    modules = dict(model.named_modules())
    calls = {path: _Calls() for path in modules}
    outputs: dict[int, torch.UntypedStorage] = {}  # storage id -> storage, kept alive so ids stay unique
    handles = []
    try:
        for path, module in modules.items():
            handles.append(module.register_forward_hook(_recorder(calls[path], outputs)))
        with kept_modes(model), torch.inference_mode():
            model.eval()
            run_model(model, inputs, type(model).__name__)
    finally:
        for handle in handles:
            handle.remove()
    input_storages = {t.untyped_storage()._cdata for t in tensors_in(inputs)}
    params = list(model.parameters())
    buffers = list(model.buffers())
    return ModelSummary(
        model=type(model).__name__,
        inputs=sizes,
        dtype=str(dtype).removeprefix("torch."),
        rows=_rows(modules, calls, depth),
        total_params=sum(p.numel() for p in params),
        trainable_params=sum(p.numel() for p in params if p.requires_grad),
        buffers=sum(b.numel() for b in buffers),
        param_bytes=sum(p.nbytes for p in params),
        buffer_bytes=sum(b.nbytes for b in buffers),
        activation_bytes=sum(s.nbytes() for key, s in outputs.items() if key not in input_storages),
        input_bytes=sum(t.nbytes for t in tensors_in(inputs)),
    )


def example_inputs(
    model: nn.Module,
    input_size: Sequence[int] | Sequence[Sequence[int]],
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
    task: str | None = None,
) -> list[Any]:
    """The positional arguments for ``model(*args)``: one tensor per size, uniform in [0, 1) from seed 0.

    The task's adapter arranges them (`TaskAdapter.call_inputs`: a detector takes each
    N,C,H,W size as a list of N images). `task` is the model's catalog task; without
    it, the adapter that recognises the module (`zoo.export.tasks.for_module`), if any.
    `device` defaults to the device of the model's first parameter or buffer.
    """
    sizes = _input_sizes(input_size)
    if device is None:
        device = next(itertools.chain(model.parameters(), model.buffers()), torch.empty(0)).device
    generator = torch.Generator().manual_seed(0)
    tensors = [torch.rand(size, generator=generator).to(device=device, dtype=dtype) for size in sizes]
    adapter = tasks.adapter(task) if task else tasks.for_module(model)
    return adapter.call_inputs(model, tensors) if adapter else tensors


def catalog_model(name: str, **get_model_kwargs: Any) -> nn.Module:
    """`zoo.get_model(name, **get_model_kwargs)`, except that backbone weights default to none.

    torchvision's detection and segmentation builders otherwise fetch ImageNet backbone
    weights, which change no shape or count; pass ``weights_backbone=...`` to get them.
    An exception of the plugin's builder is a one-line `PluginError` naming the model.
    """
    with _building(name):
        return _built(name, **get_model_kwargs)


def _built(name: str, **get_model_kwargs: Any) -> nn.Module:
    """`catalog_model` with the builder's exceptions as they are."""
    if "weights_backbone" in inspect.signature(get_model_builder(name)).parameters:
        get_model_kwargs.setdefault("weights_backbone", None)
    return get_model(name, **get_model_kwargs)


@contextmanager
def _building(name: str) -> Iterator[None]:
    """Raise an exception of the block (building catalog model `name`) that is not a `ZooError` as a one-line
    `PluginError` naming the model: a plugin's builder fails in its own ways."""
    try:
        yield
    except ZooError:
        raise
    except Exception as exc:
        raise PluginError(f"building {name} failed: its builder raised {type(exc).__name__}: "
                          f"{first_line(exc)}") from exc


def feature_nodes(model: nn.Module | str, *, submodule: str | None = None) -> tuple[list[str], list[str]]:
    """`zoo.modeling.features.feature_nodes` of a module or a catalog name.

    A name is built without weights, on the meta device where its constructor allows
    (node names need no values).
    """
    module, name = _resolved(model, {}, skeleton=True)
    return features.feature_nodes(module, submodule=submodule, name=name)


def features_model(
    name_or_model: nn.Module | str,
    nodes: Sequence[str] | Mapping[str, str],
    *,
    submodule: str | None = None,
    **get_model_kwargs: Any,
) -> fx.GraphModule:
    """`zoo.modeling.features.features_model` of a module or a catalog name, built with `catalog_model(name, **get_model_kwargs)`."""
    module, name = _resolved(name_or_model, get_model_kwargs)
    return features.features_model(module, nodes, submodule=submodule, name=name)


def extract_features(
    model: nn.Module | str,
    nodes: Sequence[str] | Mapping[str, str],
    inputs: torch.Tensor | Sequence[torch.Tensor],
    *,
    submodule: str | None = None,
    **get_model_kwargs: Any,
) -> dict[str, torch.Tensor]:
    """`zoo.modeling.features.extract_features` of a module or a catalog name; arguments as `features_model`."""
    module, name = _resolved(model, get_model_kwargs)
    return features.extract_features(module, nodes, inputs, submodule=submodule, name=name)


def shape_of(obj: Any) -> Shape:
    """The shapes in a module's output as tuples, nested the way `obj` nests its tensors (lists for
    lists and tuples, dicts with str keys); other objects by type name."""
    if isinstance(obj, torch.Tensor):
        return tuple(obj.shape)
    if isinstance(obj, (list, tuple)):
        return [shape_of(item) for item in obj]
    if isinstance(obj, Mapping):
        return {str(k): shape_of(v) for k, v in obj.items()}
    return "None" if obj is None else type(obj).__name__


def shape_text(shape: Shape) -> str:
    """`shape_of`'s result for people: ``(1, 64, 56, 56)``, a list of equal items as
    ``[2 x (1, 256, 56, 56)]``, a dict as ``{key: ..., ...}``."""
    if isinstance(shape, tuple):
        return str(shape)
    if isinstance(shape, list):
        items = [shape_text(s) for s in shape]
        if len(items) > 1 and len(set(items)) == 1:
            return f"[{len(items)} x {items[0]}]"
        return f"[{', '.join(items)}]"
    if isinstance(shape, dict):
        return "{" + ", ".join(f"{k}: {shape_text(v)}" for k, v in shape.items()) + "}"
    return shape


@dataclass
class _Calls:
    count: int = 0
    output: Shape = None
    output_bytes: int = 0


def _recorder(calls: _Calls, outputs: dict[int, torch.UntypedStorage]) -> Callable[..., None]:
    """A forward hook that counts calls, keeps the first output's shape and every output storage."""
    def hook(module: nn.Module, args: Any, output: Any) -> None:
        if not calls.count:
            calls.output = shape_of(output)
        calls.count += 1
        for t in tensors_in(output):
            calls.output_bytes += t.nbytes
            storage = t.untyped_storage()
            outputs.setdefault(storage._cdata, storage)

    return hook


def _rows(modules: dict[str, nn.Module], calls: dict[str, _Calls], depth: int | None) -> list[LayerRow]:
    """One row per shown module; a hidden module's parameters go to its nearest shown ancestor."""
    owned: dict[str, list[int]] = {path: [0, 0] for path in modules}  # path -> [params, trainable]
    seen: set[int] = set()
    for path, module in modules.items():
        shown = path
        while shown and depth is not None and shown.count(".") > depth:
            shown = shown.rpartition(".")[0]
        for p in module.parameters(recurse=False):
            if id(p) not in seen:
                seen.add(id(p))
                owned[shown][0] += p.numel()
                owned[shown][1] += p.numel() if p.requires_grad else 0
    return [
        LayerRow(path, type(module).__name__, calls[path].count, calls[path].output, calls[path].output_bytes,
                 *owned[path])
        for path, module in modules.items()
        if depth is None or not path or path.count(".") <= depth
    ]


def _input_sizes(input_size: Sequence[int] | Sequence[Sequence[int]]) -> list[list[int]]:
    """One list of ints per input; a single size may be given flat."""
    flat = not isinstance(input_size, str) and all(isinstance(d, int) for d in input_size)
    sizes = [input_size] if flat or isinstance(input_size, str) else input_size
    if not sizes:
        raise UsageError(f"no input size given; {EXAMPLES}")
    return [list(parse_shape(size, what="input size")) for size in sizes]


def _plain(shape: Shape) -> Any:
    """`shape` with tuples as lists, so that it survives a JSON round trip unchanged."""
    if isinstance(shape, (tuple, list)):
        return [_plain(s) for s in shape]
    if isinstance(shape, dict):
        return {k: _plain(v) for k, v in shape.items()}
    return shape


def _layer_label(row: LayerRow) -> str:
    if not row.path:
        return row.type
    return "  " * (row.path.count(".") + 1) + f"{row.path} ({row.type})"


def _bytes_text(n: int) -> str:
    """``512 B``, ``37.6 KiB``, ``97.5 MiB``: binary units, as memory is counted."""
    size, unit = float(n), "B"
    for larger in ("KiB", "MiB", "GiB", "TiB"):
        if size < 1024:
            break
        size, unit = size / 1024, larger
    return f"{n} B" if unit == "B" else f"{size:.1f} {unit}"


def _resolved(model: nn.Module | str, get_model_kwargs: dict[str, Any], *,
              skeleton: bool = False) -> tuple[nn.Module, str | None]:
    """The module `model` means, and its catalog name if it is one: where a name becomes a module.

    A name is built with `catalog_model(name, **get_model_kwargs)`, or as a `_skeleton`
    for its structure alone; builder arguments with a module are a UsageError.
    """
    if isinstance(model, str):
        return (_skeleton(model) if skeleton else catalog_model(model, **get_model_kwargs)), model
    if get_model_kwargs:
        raise UsageError(f"builder arguments ({', '.join(get_model_kwargs)}) need a catalog model name, not a module")
    return model, None


def _skeleton(name: str) -> nn.Module:
    """Catalog model `name` for its structure alone, without weights or values.

    Built on the meta device; a constructor that reads tensors back (RegNet computes its
    widths with torch) is built on the CPU instead, skipping the random initialisation
    that costs seconds for billions of parameters.
    """
    with _building(name):
        try:
            with torch.device("meta"):
                return _built(name)
        except NotImplementedError:
            with _NoInit():
                return _built(name)


class _NoInit(TorchFunctionMode):
    """Leaves tensors as allocated where ``torch.nn.init`` or ``uniform_``/``normal_`` would fill them."""

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if getattr(func, "__module__", None) == "torch.nn.init" or func in _RANDOM_FILLS:
            return args[0] if args else kwargs["tensor"]
        return func(*args, **kwargs)

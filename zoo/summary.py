"""Look inside a model: a per-layer summary of one forward pass, and intermediate features.

`summarize` runs one pass with forward hooks and reports, per module, its output
shapes, the parameters it owns and whether they train, with totals for parameters,
buffers, activations and inputs (torchsummary's table, as text or plain data).
`feature_nodes`, `features_model` and `extract_features` wrap torchvision's torch.fx
feature extraction for any module or catalog model, with errors that name the node
or the untraceable model. torch.fx cannot trace models whose Python control flow
depends on tensors: torchvision's detection, instance segmentation and keypoint
models (their backbones trace) and RAFT (its encoders trace) as a whole; every
other catalog model traces, but MViT's features past its first in-place update are
refused because torchvision's extractor would compute them wrong.
"""

from __future__ import annotations

import difflib
import inspect
import itertools
import operator
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import torch
from torch import fx, nn
from torch.overrides import TorchFunctionMode
from torchvision.models.detection import FCOS, RetinaNet
from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN
from torchvision.models.detection.ssd import SSD
from torchvision.models.feature_extraction import (  # the private helper: trace exactly as the extractor does
    NodePathTracer,
    _set_default_tracer_kwargs,
    create_feature_extractor,
    get_graph_node_names,
)

from zoo.errors import UsageError, ZooError
from zoo.shapes import EXAMPLES, parse_shape
from zoo.registry import get_model, get_model_builder
from zoo.text import table

#: torchvision models whose forward takes a list of C,H,W images rather than a batch.
_IMAGE_LIST_MODELS = (GeneralizedRCNN, RetinaNet, FCOS, SSD)
#: what constructors fill new weights with, besides torch.nn.init (skipped by `_NoInit`)
_RANDOM_FILLS = (torch.Tensor.uniform_, torch.Tensor.normal_)

T = TypeVar("T")
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
) -> ModelSummary:
    """Run one forward pass of `model` on `example_inputs` of `input_size` and summarise it per module.

    The pass runs in eval mode under ``torch.inference_mode()``; every module's own
    training flag is restored afterwards and the hooks are removed even on error.
    `device` defaults to the model's. Rows follow ``named_modules()`` (the root first);
    `depth` keeps only modules whose path has at most that many dots (``depth=0``:
    ``conv1``, ``layer1``; ``depth=1`` adds ``layer1.0``; the root row always stays),
    rolling deeper modules' parameters into their nearest shown ancestor.

    Activations count the bytes of every distinct tensor storage that a module returned
    during the pass, each once: a container returning its last child's output, an
    in-place ReLU or a view adds nothing, and the inputs are not counted. All of them
    stay alive until the pass ends, as autograd would keep them for a backward pass
    (torchsummary doubles a similar sum for the gradients; this does not).
    """
    sizes = _input_sizes(input_size)
    if depth is not None and depth < 0:
        raise UsageError(f"depth must be 0 or more (dots in a module path), not {depth}")
    inputs = example_inputs(model, sizes, dtype=dtype, device=device)
    modules = dict(model.named_modules())
    calls = {path: _Calls() for path in modules}
    outputs: dict[int, torch.UntypedStorage] = {}  # storage id -> storage, kept alive so ids stay unique
    handles = []
    try:
        for path, module in modules.items():
            handles.append(module.register_forward_hook(_recorder(calls[path], outputs)))
        with _kept_modes(model), torch.inference_mode():
            model.eval()
            _forward(model, inputs, type(model).__name__)
    finally:
        for handle in handles:
            handle.remove()
    input_storages = {t.untyped_storage()._cdata for t in _tensors(inputs)}
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
        input_bytes=sum(t.nbytes for t in _tensors(inputs)),
    )


def example_inputs(
    model: nn.Module,
    input_size: Sequence[int] | Sequence[Sequence[int]],
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> list[Any]:
    """The positional arguments for ``model(*args)``: one tensor per size, uniform in [0, 1) from seed 0.

    torchvision's detection models (Faster/Mask/Keypoint R-CNN, RetinaNet, FCOS, SSD)
    take a list of C,H,W images, so each N,C,H,W size becomes a list of N images.
    `device` defaults to the device of the model's first parameter or buffer.
    """
    sizes = _input_sizes(input_size)
    if device is None:
        device = next(itertools.chain(model.parameters(), model.buffers()), torch.empty(0)).device
    generator = torch.Generator().manual_seed(0)
    tensors = [torch.rand(size, generator=generator).to(device=device, dtype=dtype) for size in sizes]
    if not isinstance(model, _IMAGE_LIST_MODELS):
        return tensors
    if any(len(size) != 4 for size in sizes):
        raise UsageError(f"{type(model).__name__} takes images as N,C,H,W (e.g. 1,3,320,320), not {sizes}")
    return [list(t.unbind(0)) for t in tensors]


def catalog_model(name: str, **get_model_kwargs: Any) -> nn.Module:
    """`zoo.get_model(name, **get_model_kwargs)`, except that backbone weights default to none.

    torchvision's detection and segmentation builders otherwise fetch ImageNet backbone
    weights, which change no shape or count; pass ``weights_backbone=...`` to get them.
    """
    if "weights_backbone" in inspect.signature(get_model_builder(name)).parameters:
        get_model_kwargs.setdefault("weights_backbone", None)
    return get_model(name, **get_model_kwargs)


def feature_nodes(model: nn.Module | str, *, submodule: str | None = None) -> tuple[list[str], list[str]]:
    """The node names torch.fx finds in train and in eval mode (torchvision's ``get_graph_node_names``).

    `model` is a module or a catalog name; a name is built without weights, on the meta
    device where its constructor allows (node names need no values). `submodule` (a
    dotted path such as ``backbone``) looks inside. A model torch.fx cannot trace
    raises a UsageError naming it and its traceable submodules.
    """
    name = model if isinstance(model, str) else None
    module, label, path = _target(_skeleton(model) if name else model, name, submodule)
    return _traced(module, label, path, partial(get_graph_node_names, suppress_diff_warning=True))


def features_model(
    name_or_model: nn.Module | str,
    nodes: Sequence[str] | Mapping[str, str],
    *,
    submodule: str | None = None,
    **get_model_kwargs: Any,
) -> fx.GraphModule:
    """A module returning a dict of intermediate outputs (torchvision's ``create_feature_extractor``).

    `nodes` are names from `feature_nodes` (a module path such as ``layer1`` stands for
    its last node), or a mapping from node name to output key. A catalog name is built
    with `catalog_model(name, **get_model_kwargs)`; `submodule` picks a part of it. The
    result shares the model's parameters. Nodes are checked against the eval-mode graph,
    which holds in train mode too (train mode only adds nodes).

    torchvision's extractor drops every call whose result is unused, in-place updates
    included; a node that such an update precedes would come out wrong (MViT's, in
    torchvision 0.29), so asking for one raises a UsageError.
    """
    return _extractor(name_or_model, nodes, submodule, get_model_kwargs)[0]


def extract_features(
    model: nn.Module | str,
    nodes: Sequence[str] | Mapping[str, str],
    inputs: torch.Tensor | Sequence[torch.Tensor],
    *,
    submodule: str | None = None,
    **get_model_kwargs: Any,
) -> dict[str, torch.Tensor]:
    """The outputs of `nodes` for `inputs` (a tensor, or one per forward argument); arguments as `features_model`.

    Runs in eval mode under ``torch.inference_mode()`` and leaves every module's mode as it was.
    """
    extractor, label = _extractor(model, nodes, submodule, get_model_kwargs)
    args = [inputs] if isinstance(inputs, torch.Tensor) else list(inputs)
    with _kept_modes(extractor), torch.inference_mode():
        extractor.eval()
        return _forward(extractor, args, label)


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
        for t in _tensors(output):
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


def _tensors(obj: Any) -> Iterator[torch.Tensor]:
    """The tensors in `obj`, through tuples, lists and dict values."""
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for item in obj:
            yield from _tensors(item)
    elif isinstance(obj, Mapping):
        for item in obj.values():
            yield from _tensors(item)


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


@contextmanager
def _kept_modes(model: nn.Module) -> Iterator[None]:
    """Restore every module's own training flag on exit (``model.train(mode)`` would set them all alike)."""
    modes = [(module, module.training) for module in model.modules()]
    try:
        yield
    finally:
        for module, training in modes:  # parents before children: a custom train() override still runs
            module.train(training)


def _skeleton(name: str) -> nn.Module:
    """Catalog model `name` for its structure alone, without weights or values.

    Built on the meta device; a constructor that reads tensors back (RegNet computes its
    widths with torch) is built on the CPU instead, skipping the random initialisation
    that costs seconds for billions of parameters.
    """
    try:
        with torch.device("meta"):
            return catalog_model(name)
    except NotImplementedError:
        with _NoInit():
            return catalog_model(name)


class _NoInit(TorchFunctionMode):
    """Leaves tensors as allocated where ``torch.nn.init`` or ``uniform_``/``normal_`` would fill them."""

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if getattr(func, "__module__", None) == "torch.nn.init" or func in _RANDOM_FILLS:
            return args[0] if args else kwargs["tensor"]
        return func(*args, **kwargs)


def _target(model: nn.Module, name: str | None, submodule: str | None) -> tuple[nn.Module, str, str]:
    """The module to trace, how errors name it, and its path in `model`."""
    label = name or type(model).__name__
    if not submodule:
        return model, f"{label} ({type(model).__name__})" if name else label, ""
    try:
        module = model.get_submodule(submodule)
    except AttributeError:
        paths = [path for path, _ in model.named_modules() if path]
        raise UsageError(f"{label} has no submodule {submodule!r}; {_suggestion(submodule, paths)}") from None
    return module, f"{label}.{submodule} ({type(module).__name__})", submodule


def _extractor(
    name_or_model: nn.Module | str, nodes: Sequence[str] | Mapping[str, str], submodule: str | None,
    get_model_kwargs: dict[str, Any],
) -> tuple[fx.GraphModule, str]:
    """`features_model`'s extractor, and how errors name the traced module."""
    if isinstance(name_or_model, str):
        model, name = catalog_model(name_or_model, **get_model_kwargs), name_or_model
    elif get_model_kwargs:
        raise UsageError(f"builder arguments ({', '.join(get_model_kwargs)}) need a catalog model name, not a module")
    else:
        model, name = name_or_model, None
    module, label, path = _target(model, name, submodule)
    return_nodes = _return_nodes(nodes)
    _check_nodes(return_nodes, *_traced(module, label, path, _eval_graph), label)
    with _kept_modes(module):
        return create_feature_extractor(module, return_nodes=return_nodes, suppress_diff_warning=True), label


def _check_nodes(return_nodes: dict[str, str], tracer: NodePathTracer, graph: fx.Graph, label: str) -> None:
    """Every requested node exists (as a node name or a module path above one) and would come out right."""
    qualnames = [tracer.node_to_qualname.get(node, "") for node in graph.nodes]
    known = _prefixes([q for q in qualnames if q])
    dropped = next((i for i, node in enumerate(graph.nodes) if _side_effect_only(node)), len(qualnames))
    for node in return_nodes:
        if node not in known:
            raise UsageError(f"{label} has no feature node {node!r}; {_suggestion(node, known)} "
                             "(feature_nodes lists them all)")
        if any(q == node or q.startswith(node + ".") for q in qualnames[dropped + 1:]):
            raise UsageError(f"{label}: feature node {node!r} would come out wrong: torchvision's feature "
                             f"extraction drops {qualnames[dropped]}, an in-place update whose result the model "
                             "does not use, which runs before it; nodes before that one are exact")


def _eval_graph(module: nn.Module) -> tuple[NodePathTracer, fx.Graph]:
    """The eval-mode graph exactly as ``create_feature_extractor`` traces it, with its tracer (node names)."""
    module.eval()
    tracer = NodePathTracer(**_set_default_tracer_kwargs(None))
    graph = tracer.trace(module)
    fx.GraphModule(tracer.root, graph)  # sets the graph's owning module, which Node.is_impure needs
    return tracer, graph


def _side_effect_only(node: fx.Node) -> bool:
    """A call whose result nothing uses and that fx does not know to keep: an in-place update, presumably."""
    return (node.op in ("call_function", "call_method", "call_module") and not node.users
            and node.target not in (getattr, operator.getitem, "size", "dim") and not node.is_impure())


def _traced(module: nn.Module, label: str, path: str, trace: Callable[[nn.Module], T]) -> T:
    """`trace(module)`, with every module's mode kept; a module torch.fx cannot trace is a UsageError."""
    try:
        with _kept_modes(module):
            return trace(module)
    except Exception as exc:  # torch.fx fails in many ways (TraceError, TypeError, ...) on dynamic code
        children = [f"{path}.{c}" if path else c for c in _traceable_children(module)]
        hint = (f"extract from a traceable submodule instead: {', '.join(children)} "
                f"(submodule={children[0]!r} in Python, --module {children[0]} on the command line)"
                if children else "nor can any of its direct submodules with parameters")
        raise UsageError(f"{label} cannot be traced by torch.fx ({type(exc).__name__}: "
                         f"{_first_sentence(exc)}); {hint}") from exc


def _forward(model: nn.Module, args: list[Any], label: str) -> Any:
    """``model(*args)``; a model's complaint about its input (they complain in many ways) becomes a UsageError."""
    try:
        return model(*args)
    except ZooError:
        raise
    except Exception as exc:
        shapes = ";".join(",".join(map(str, t.shape)) for t in _tensors(args))
        raise UsageError(f"{label} does not run on input {shapes} ({type(exc).__name__}: "
                         f"{_first_sentence(exc)}); {EXAMPLES}") from exc


def _traceable_children(module: nn.Module) -> list[str]:
    """Names of the direct children that have parameters and that torch.fx can trace."""
    found = []
    for name, child in module.named_children():
        if next(child.parameters(), None) is None:
            continue
        try:
            with _kept_modes(child):
                get_graph_node_names(child, suppress_diff_warning=True)
        except Exception:  # not traceable: not a suggestion
            continue
        found.append(name)
    return found


def _return_nodes(nodes: Sequence[str] | Mapping[str, str]) -> dict[str, str]:
    if isinstance(nodes, str):
        nodes = [nodes]
    return_nodes = dict(nodes) if isinstance(nodes, Mapping) else {node: node for node in nodes}
    if not return_nodes:
        raise UsageError("no feature nodes given; name at least one, e.g. layer1 (see feature_nodes)")
    return return_nodes


def _prefixes(names: list[str]) -> list[str]:
    """Every node name and every module path above one (``layer1`` for ``layer1.0.conv1``), in order."""
    return list(dict.fromkeys(name.rsplit(".", up)[0] for name in names for up in range(name.count("."), -1, -1)))


def _suggestion(word: str, candidates: list[str]) -> str:
    """The closest dotted names to `word`, or else the top-level ones."""
    close = difflib.get_close_matches(word, candidates, n=5, cutoff=0.6)
    if close:
        return f"did you mean: {', '.join(close)}?"
    top = [c for c in candidates if "." not in c]
    return f"top-level names: {', '.join(top[:8])}{', ...' if len(top) > 8 else ''}"


def _first_sentence(exc: Exception) -> str:
    return re.split(r"(?<=\.)\s|\n", str(exc).strip(), maxsplit=1)[0]

"""Intermediate features of a module: torchvision's torch.fx feature extraction, with clear errors.

`feature_nodes`, `features_model` and `extract_features` wrap torchvision's
``get_graph_node_names`` and ``create_feature_extractor`` for any module, with errors
that name the node or the untraceable module and point at traceable submodules.
torch.fx cannot trace models whose Python control flow depends on tensors:
torchvision's detection, instance segmentation and keypoint models (their backbones
trace) and RAFT (its encoders trace) as a whole; every other catalog model traces,
but MViT's features past its first in-place update are refused because torchvision's
extractor would compute them wrong.

This module takes modules only: catalog names are resolved above it, in `zoo.tools.summary`
(whose `feature_nodes`, `features_model` and `extract_features` are the public ones,
taking a module or a name), so that `zoo.modeling.surgery` can use it without importing the registry.
"""

from __future__ import annotations

import difflib
import operator
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import partial
from typing import Any, TypeVar

import torch
from torch import fx, nn
from torchvision.models.feature_extraction import (  # the private helper: trace exactly as the extractor does
    NodePathTracer,
    _set_default_tracer_kwargs,
    create_feature_extractor,
    get_graph_node_names,
)

from zoo.errors import UsageError, ZooError
from zoo.shapes import EXAMPLES

T = TypeVar("T")


def feature_nodes(model: nn.Module, *, submodule: str | None = None,
                  name: str | None = None) -> tuple[list[str], list[str]]:
    """The node names torch.fx finds in train and in eval mode (torchvision's ``get_graph_node_names``).

    `submodule` (a dotted path such as ``backbone``) looks inside; `name`, the catalog
    name `model` was built from, if any, is how errors call it. A model torch.fx cannot
    trace raises a UsageError naming it and its traceable submodules.
    """
    module, label, path = _target(model, name, submodule)
    return _traced(module, label, path, partial(get_graph_node_names, suppress_diff_warning=True))


def features_model(model: nn.Module, nodes: Sequence[str] | Mapping[str, str], *, submodule: str | None = None,
                   name: str | None = None) -> fx.GraphModule:
    """A module returning a dict of intermediate outputs (torchvision's ``create_feature_extractor``).

    `nodes` are names from `feature_nodes` (a module path such as ``layer1`` stands for
    its last node), or a mapping from node name to output key; `submodule` and `name`
    as in `feature_nodes`. The result shares the model's parameters. Nodes are checked
    against the eval-mode graph, which holds in train mode too (train mode only adds nodes).

    torchvision's extractor drops every call whose result is unused, in-place updates
    included; a node that such an update precedes would come out wrong (MViT's, in
    torchvision 0.29), so asking for one raises a UsageError.
    """
    return _extractor(model, nodes, submodule, name)[0]


def extract_features(model: nn.Module, nodes: Sequence[str] | Mapping[str, str],
                     inputs: torch.Tensor | Sequence[torch.Tensor], *, submodule: str | None = None,
                     name: str | None = None) -> dict[str, torch.Tensor]:
    """The outputs of `nodes` for `inputs` (a tensor, or one per forward argument); arguments as `features_model`.

    Runs in eval mode under ``torch.inference_mode()`` and leaves every module's mode as it was.
    """
    extractor, label = _extractor(model, nodes, submodule, name)
    args = [inputs] if isinstance(inputs, torch.Tensor) else list(inputs)
    with kept_modes(extractor), torch.inference_mode():
        extractor.eval()
        return run_model(extractor, args, label)


@contextmanager
def kept_modes(model: nn.Module) -> Iterator[None]:
    """Restore every module's own training flag on exit (``model.train(mode)`` would set them all alike)."""
    modes = [(module, module.training) for module in model.modules()]
    try:
        yield
    finally:
        for module, training in modes:  # parents before children: a custom train() override still runs
            module.train(training)


def run_model(model: nn.Module, args: list[Any], label: str) -> Any:
    """``model(*args)``; a model's complaint about its input (they complain in many ways) becomes a UsageError."""
    try:
        return model(*args)
    except ZooError:
        raise
    except Exception as exc:
        shapes = ";".join(",".join(map(str, t.shape)) for t in tensors_in(args))
        raise UsageError(f"{label} does not run on input {shapes} ({type(exc).__name__}: "
                         f"{_first_sentence(exc)}); {EXAMPLES}") from exc


def tensors_in(obj: Any) -> Iterator[torch.Tensor]:
    """The tensors in `obj`, through tuples, lists and dict values."""
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for item in obj:
            yield from tensors_in(item)
    elif isinstance(obj, Mapping):
        for item in obj.values():
            yield from tensors_in(item)


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


def _extractor(model: nn.Module, nodes: Sequence[str] | Mapping[str, str], submodule: str | None,
               name: str | None) -> tuple[fx.GraphModule, str]:
    """`features_model`'s extractor, and how errors name the traced module."""
    module, label, path = _target(model, name, submodule)
    return_nodes = _return_nodes(nodes)
    _check_nodes(return_nodes, *_traced(module, label, path, _eval_graph), label)
    with kept_modes(module):
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
        with kept_modes(module):
            return trace(module)
    except Exception as exc:  # torch.fx fails in many ways (TraceError, TypeError, ...) on dynamic code
        children = [f"{path}.{c}" if path else c for c in _traceable_children(module)]
        hint = (f"extract from a traceable submodule instead: {', '.join(children)} "
                f"(submodule={children[0]!r} in Python, --module {children[0]} on the command line)"
                if children else "nor can any of its direct submodules with parameters")
        raise UsageError(f"{label} cannot be traced by torch.fx ({type(exc).__name__}: "
                         f"{_first_sentence(exc)}); {hint}") from exc


def _traceable_children(module: nn.Module) -> list[str]:
    """Names of the direct children that have parameters and that torch.fx can trace."""
    found = []
    for name, child in module.named_children():
        if next(child.parameters(), None) is None:
            continue
        try:
            with kept_modes(child):
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

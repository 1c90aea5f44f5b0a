"""Looking into a built model: ``zoo summary``, ``zoo features``."""

from __future__ import annotations

import argparse

from zoo.cli.common import Commands, add_json, argument, comma_list, emit, table
from zoo.errors import UsageError


def register(commands: Commands) -> None:
    p = commands.add_parser("summary", help="per-layer output shapes, parameters and memory of one forward pass",
                            description=("Build NAME (no weights unless --weights; backbone weights never) and run "
                                         "one forward pass in eval mode on random input of --input size: one row "
                                         "per module, then parameter, buffer, input and activation totals."))
    p.add_argument("name", metavar="NAME")
    p.add_argument("--input", type=_input_size, required=True, metavar="SIZE",
                   help="input size, e.g. 1,3,224,224 (images) or 1,3,16,112,112 (video); two inputs "
                        "(optical flow) as '1,3,224,224;1,3,224,224'")
    p.add_argument("--depth", type=int, metavar="N",
                   help="show modules at most N dots deep (0: top-level children only); deeper ones' "
                        "parameters are added to their shown ancestor")
    p.add_argument("--weights", metavar="WEIGHTS", help="load these weights first, e.g. DEFAULT")
    add_json(p)
    p.set_defaults(run=_summary)

    p = commands.add_parser("features", help="list a model's torch.fx feature nodes, or extract some",
                            description=("Without --nodes, list the nodes torch.fx finds in NAME (eval mode) for "
                                         "feature extraction. With --nodes, run one forward pass on random input "
                                         "of --input size and print each node's output shape. Detection models "
                                         "and RAFT cannot be traced whole: use --module (e.g. backbone)."))
    p.add_argument("name", metavar="NAME")
    p.add_argument("--nodes", type=comma_list, metavar="NODE,...",
                   help="extract these nodes: names from the listing or module paths, e.g. layer1,layer4")
    p.add_argument("--module", metavar="PATH", help="trace this submodule, e.g. backbone or backbone.body")
    p.add_argument("--input", type=_input_size, metavar="SIZE", help="input size for extraction, e.g. 1,3,224,224")
    p.add_argument("--weights", metavar="WEIGHTS", help="load these weights before extracting, e.g. DEFAULT")
    add_json(p)
    p.set_defaults(run=_features)


def _input_size(text: str) -> list[tuple[int, ...]]:
    from zoo.shapes import parse_shapes

    return argument(parse_shapes, text)


def _summary(args: argparse.Namespace) -> int:
    from zoo.registry import describe
    from zoo.tools.summary import catalog_model, summarize

    model = catalog_model(args.name, weights=args.weights)
    summary = summarize(model, args.input, depth=args.depth, task=describe(args.name)["task"])
    emit(args, {"name": args.name, **summary.to_json()}, summary.table)
    return 0


def _features(args: argparse.Namespace) -> int:
    import torch

    from zoo.tools.summary import extract_features, feature_nodes, shape_of, shape_text

    if not args.nodes:
        train, evaluation = feature_nodes(args.name, submodule=args.module)
        extra = [node for node in train if node not in evaluation]
        emit(args, {"eval": evaluation, "train": train}, lambda: "\n".join(
            evaluation + ([f"(train mode adds: {', '.join(extra)})"] if extra else [])))
        return 0
    if args.input is None:
        raise UsageError("extracting features needs --input, e.g. --input 1,3,224,224")
    inputs = [torch.rand(size) for size in args.input]
    features = extract_features(args.name, args.nodes, inputs, submodule=args.module, weights=args.weights)
    shapes = {node: shape_of(value) for node, value in features.items()}
    emit(args, shapes, lambda: table(["NODE", "SHAPE"], [[n, shape_text(s)] for n, s in shapes.items()]))
    return 0

"""ONNX exports: ``zoo export``, ``zoo exports``, ``zoo view``."""

from __future__ import annotations

import argparse
import json
from functools import partial
from typing import Any

from zoo.cli.common import Commands, add_json, argument, emit, table
from zoo.errors import UsageError, ZooError, excerpt
from zoo.shapes import dims_text


def register(commands: Commands) -> None:
    _add_export(commands)
    p = commands.add_parser("exports", help="list the verified ONNX exports the catalog recorded: made here, and "
                                            "published (zoo publish export)")
    p.add_argument("--published", action="store_true",
                   help="only the published exports (with --json: their records instead of the local ones)")
    add_json(p)
    p.set_defaults(run=_exports)
    _add_view(commands)


def _add_export(commands: Commands) -> None:
    p = commands.add_parser("export", help="export a model to ONNX, checked and verified against PyTorch",
                            description=(
                                "Build NAME (no weights unless --weights; backbone weights never), export it "
                                "to ONNX (torch.export-based exporter, TorchScript as fallback), run shape "
                                "inference and the ONNX checker, and compare ONNX Runtime's outputs with "
                                "PyTorch's at the export batch size and (unless --static) another one. The "
                                "file is written only if all of that passes; the weights, preprocessing and "
                                "categories travel in its metadata."))
    p.add_argument("name", metavar="NAME")
    p.add_argument("-o", "--output", required=True, metavar="FILE",
                   help="where to write, e.g. model.onnx: a new file or an earlier zoo export")
    p.add_argument("--force", action="store_true",
                   help="replace FILE even if zoo did not write it or it is write-protected (it keeps its mode)")
    p.add_argument("--weights", metavar="WEIGHTS", help="load these weights first, e.g. DEFAULT")
    p.add_argument("--opset", type=int, metavar="N",
                   help="ONNX opset the file must have (default: the highest the exporter and onnxruntime both "
                        "support); one the dynamo exporter cannot write (it starts at 18) comes from TorchScript")
    p.add_argument("--input-shape", type=_shape, metavar="N,C,H,W",
                   help="example input shape, e.g. 1,3,224,224 (default: from the weights' preprocessing)")
    p.add_argument("--static", action="store_true",
                   help="fixed input shape: no dynamic batch (nor image size, which detection models have)")
    p.add_argument("--dynamic-image-size", action="store_true",
                   help="symbolic height and width, verified at a second size (the default for detection)")
    p.add_argument("--precision", default="fp32", metavar="P",
                   help="what the file computes in: fp32 (default) or fp16 (converted after the float32 export is "
                        "verified, then verified against float32 PyTorch at the task's float16 tolerance); bf16 is "
                        "refused")
    p.add_argument("--io-precision", default="fp32", metavar="P",
                   help="with --precision fp16: inputs and outputs in fp32 (default: what users feed) or fp16")
    p.add_argument("--builder-arg", action="append", type=_builder_arg, default=[], metavar="KEY=VALUE",
                   help="pass to the model builder, e.g. min_size=320 (VALUE read as JSON, else text); repeatable")
    add_json(p)
    p.set_defaults(run=_export)


def _add_view(commands: Commands) -> None:
    p = commands.add_parser("view", help="show an ONNX model's graph in the browser (netron)",
                            description=("Serve FILE with netron on 127.0.0.1 (a free port unless --port), print "
                                         "the address and open it in the web browser; Ctrl-C stops. Only FILE "
                                         "(and its external-data file) is served, not the rest of its folder, "
                                         "and only to requests addressed to localhost, 127.0.0.1 or [::1] (or "
                                         "--host): others get 403. Other machines can reach it only with --host."))
    p.add_argument("file", metavar="FILE", help="an ONNX model, e.g. written by zoo export")
    p.add_argument("--port", type=int, default=0, metavar="N", help="port to serve on (default: a free one)")
    p.add_argument("--host", default="127.0.0.1", metavar="H",
                   help="address to serve on (default 127.0.0.1; 0.0.0.0 exposes it to the network)")
    p.add_argument("--no-browser", dest="browse", action="store_false", help="only serve and print the address")
    p.set_defaults(run=_view)


def _shape(text: str) -> tuple[int, ...]:
    from zoo.shapes import parse_shape

    return argument(partial(parse_shape, min_rank=2), text)


def _builder_arg(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"{excerpt(text)} is not KEY=VALUE; use e.g. min_size=320")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def _export(args: argparse.Namespace) -> int:
    from zoo.export import export_onnx

    if args.static and args.dynamic_image_size:
        raise UsageError("--static and --dynamic-image-size contradict each other; give one")
    result = export_onnx(args.name, args.output, weights=args.weights, input_shape=args.input_shape,
                         dynamic_batch=False if args.static else None,
                         dynamic_image_size=False if args.static else args.dynamic_image_size or None,
                         opset=args.opset, builder_kwargs=dict(args.builder_arg), overwrite=args.force,
                         precision=args.precision, io_precision=args.io_precision)
    emit(args, result.to_json(), lambda: _export_text(result))
    return 0


def _exports(args: argparse.Namespace) -> int:
    from zoo.context import current
    from zoo.export import list_exports

    published = current().catalog.exports()
    if args.published:
        emit(args, [e.to_json() for e in published], lambda: _published_exports(published))
        return 0
    records = list_exports()
    here = table(
        ["MODEL", "WEIGHTS", "OPSET", "EXPORTER", "MAX ABS ERROR", "SIZE", "CREATED", "PATH"],
        [[r["model"], r["weights"] or "-", r["opset"], r["exporter"],
          f"{max((c['max_abs_error'] for c in r['verification']), default=0.0):.2e}", f"{r['size'] / 1e6:.1f} MB",
          r["created_at"][:19], r["path"] + ("" if r["exists"] else " (gone)")] for r in records],
    ) if records else "no exports made here"
    emit(args, records, lambda: here + "\n\npublished (zoo publish export):\n" + _published_exports(published))
    return 0


def _published_exports(published: list[Any]) -> str:
    return table(["MODEL", "WEIGHTS", "SHA256", "SIZE", "VERIFIED BY", "PUBLISHED"],
                 [[e.model, e.weights or "-", e.sha256[:16], f"{e.size / 1e6:.1f} MB", e.verified_by,
                   e.created_at.isoformat()[:19]] for e in published]) if published else "none"


def _no_weights(model: str) -> str:
    """How an export without weights is named: its predictions mean nothing where the model has pretrained ones."""
    from zoo.context import current

    try:
        has_weights = bool(current().catalog.describe(model).weights)
    except ZooError:  # a module exported from Python: not in the catalog
        has_weights = False
    return ("none: random initialisation, its predictions mean nothing (--weights DEFAULT exports the pretrained "
            "ones)" if has_weights else "none")


def _export_text(r: Any) -> str:
    lines = [
        f"{'reused' if r.reused else 'wrote'} {r.path} ({r.size / 1e6:.1f} MB, sha256 {r.sha256[:16]})",
        f"  model:     {r.model}  weights: {r.weights or _no_weights(r.model)}",
        f"  exporter:  {r.exporter}, opset {r.opset}, IR {r.ir_version}"
        + (f" (dynamo exporter failed: {r.fallback_reason})" if r.fallback_reason else ""),
        f"  input:     {', '.join(r.input_names)} {dims_text(r.input_shape)}"
        + (f", dynamic axes {r.dynamic_axes}" if r.dynamic_axes else ", static"),
        f"  shapes:    {r.intermediate_tensors - len(r.tensors_without_shape)}/{r.intermediate_tensors} "
        "intermediate tensors shaped",
    ]
    precision = r.metadata.get("precision")
    if isinstance(precision, dict):
        lines.append(f"  precision: {precision['compute']} (inputs and outputs {precision['io']}), against "
                     f"{precision['reference']}; verified {precision['verified']}")
    detection = any(c.detections is not None for c in r.verification)
    rows = [[c.name, dims_text(c.input_shape), f"{c.max_abs_error:.2e}", f"{c.max_rel_error:.2e}",
             f"rtol={c.rtol:g} atol={c.atol:g}", *([f"{c.detections} ({c.unmatched} at the cut)"] if detection else []),
             "ok" if c.passed else "FAIL"] for c in r.verification]
    return "\n".join(lines) + "\n\n" + table(
        ["OUTPUT", "INPUT", "MAX ABS", "MAX REL", "TOLERANCE", *(["DETECTIONS"] if detection else []), ""], rows)


def _view(args: argparse.Namespace) -> int:
    from zoo.tools.view import view

    view(args.file, host=args.host, port=args.port, browse=args.browse)
    return 0

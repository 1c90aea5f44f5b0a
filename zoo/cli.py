"""The ``zoo`` command line: tables for people, ``--json`` for scripts.

A user mistake ends in one line on stderr (``zoo: error: ...``) and exit code 1
(2 for a malformed command line, as argparse does); never a traceback.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, NoReturn

from zoo.errors import ERROR_PREFIX, WARNING_PREFIX, UsageError, ZooError, ZooWarning, excerpt
from zoo.shapes import dims_text
from zoo.text import parse_count, parse_metric

_PYTHON_SHOWWARNING = warnings.showwarning
# Errors of a full or failing disk: reported in one line wherever they happen (stdout included).
_DISK_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO}
_MAX_ERROR_CHARS = 300  # of a command-line parsing error: argparse quotes the whole bad value


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    warnings.showwarning = _show_warning
    try:
        status = args.run(args)
        sys.stdout.flush()  # here, so that a full disk is reported, not found at exit
        return status
    except ZooError as exc:
        print(f"{ERROR_PREFIX}{exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `zoo list | head`: the reader left; not an error
        _drop_stdout()
        return 0
    except OSError as exc:
        if exc.errno not in _DISK_FULL:
            raise
        _drop_stdout()
        where = f" {exc.filename}" if exc.filename else " the output"
        print(f"{ERROR_PREFIX}cannot write{where}: {exc.strerror}", file=sys.stderr)
        return 1


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    """Print a `ZooWarning` as one line ``zoo: warning: ...``; any other warning as Python does."""
    if issubclass(category, ZooWarning):
        print(f"{WARNING_PREFIX}{message}", file=sys.stderr)
    else:
        _PYTHON_SHOWWARNING(message, category, filename, lineno, file, line)


def _drop_stdout() -> None:
    """Point standard output at /dev/null, so that Python's flush at exit does not fail a second time."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="zoo", description="A plugin-based model zoo for PyTorch vision models.")
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    p = commands.add_parser("list", help="list registered models", description=(
        "List registered models. PATTERNs are fnmatch patterns (quote them), as in "
        "torchvision.models.list_models(include=...)."))
    p.add_argument("patterns", nargs="*", metavar="PATTERN")
    p.add_argument("--exclude", action="append", default=[], metavar="PATTERN", help="leave out matching names")
    p.add_argument("--task", help="e.g. classification, detection, segmentation, video, optical_flow")
    p.add_argument("--plugin", help="plugin or distribution name")
    p.add_argument("--pretrained", action=argparse.BooleanOptionalAction, default=None,
                   help="only models with (--pretrained) or without (--no-pretrained) weights")
    p.add_argument("--max-params", type=_count, metavar="N", help="at most N parameters, e.g. 10M, 500k, 25557032")
    p.add_argument("--min-metric", type=_metric, action="append", default=[], metavar="NAME=VALUE",
                   help="some weights reach at least VALUE on metric NAME, e.g. acc@1=75 or ImageNet-1K:acc@1=75 (repeatable)")
    _add_json(p)
    p.set_defaults(run=_list)

    p = commands.add_parser("show", help="show a model, its weights, metadata and transforms")
    p.add_argument("name", metavar="NAME")
    _add_json(p)
    p.set_defaults(run=_show)

    p = commands.add_parser("plugins", help="list the catalog's plugins, whether they loaded and are installed here")
    p.add_argument("--verbose", action="store_true",
                   help="also list the names shared with other plugins, and each model that failed, with its traceback")
    _add_json(p)
    p.set_defaults(run=_plugins)

    p = commands.add_parser("weights", help="fetch, locate and verify weights files")
    actions = p.add_subparsers(title="actions", required=True, metavar="ACTION")
    names_help = "weights (ResNet50_Weights.IMAGENET1K_V2, resnet50.IMAGENET1K_V2) or a model (its default)"
    a = actions.add_parser("fetch", help="download (or copy from the mirror) and verify, with progress")
    a.add_argument("names", nargs="+", metavar="NAME", help=names_help)
    a.add_argument("--offline", action="store_true", default=None, help="never use the network (also $ZOO_OFFLINE=1)")
    a.set_defaults(run=_weights_fetch)
    a = actions.add_parser("path", help="print where a weights file is")
    a.add_argument("names", nargs="+", metavar="NAME", help=names_help)
    a.set_defaults(run=_weights_path)
    a = actions.add_parser("verify", help="re-hash cached weights files (all, or those named) and report")
    a.add_argument("names", nargs="*", metavar="NAME", help=names_help)
    _add_json(a)
    a.set_defaults(run=_weights_verify)

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
    _add_json(p)
    p.set_defaults(run=_summary)

    p = commands.add_parser("features", help="list a model's torch.fx feature nodes, or extract some",
                            description=("Without --nodes, list the nodes torch.fx finds in NAME (eval mode) for "
                                         "feature extraction. With --nodes, run one forward pass on random input "
                                         "of --input size and print each node's output shape. Detection models "
                                         "and RAFT cannot be traced whole: use --module (e.g. backbone)."))
    p.add_argument("name", metavar="NAME")
    p.add_argument("--nodes", type=_comma_list, metavar="NODE,...",
                   help="extract these nodes: names from the listing or module paths, e.g. layer1,layer4")
    p.add_argument("--module", metavar="PATH", help="trace this submodule, e.g. backbone or backbone.body")
    p.add_argument("--input", type=_input_size, metavar="SIZE", help="input size for extraction, e.g. 1,3,224,224")
    p.add_argument("--weights", metavar="WEIGHTS", help="load these weights before extracting, e.g. DEFAULT")
    _add_json(p)
    p.set_defaults(run=_features)

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
    p.add_argument("--builder-arg", action="append", type=_builder_arg, default=[], metavar="KEY=VALUE",
                   help="pass to the model builder, e.g. min_size=320 (VALUE read as JSON, else text); repeatable")
    _add_json(p)
    p.set_defaults(run=_export)

    p = commands.add_parser("exports", help="list the verified ONNX exports the catalog recorded")
    _add_json(p)
    p.set_defaults(run=_exports)

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

    p = commands.add_parser("predict", help="run an exported model on images with ONNX Runtime (no torch needed)",
                            description=("Run FILE (an ONNX model written by zoo export) on each IMAGE with ONNX "
                                         "Runtime, preprocessing and labelling from the file's own metadata: top-k "
                                         "classes, detections, a class mask, ..., as the model's task decodes "
                                         "them (optical flow: on consecutive pairs of images). CUDA when a GPU is "
                                         "usable, else CPU; the providers the session really got are printed. "
                                         "--draw DIR also draws each prediction over its image. With --model and "
                                         "--weights instead of FILE: the newest published export of that model "
                                         "with those weights (from the registry service, ZOO_REGISTRY_URL=http://"
                                         "..., fetched and verified)."))
    p.add_argument("inputs", nargs="+", metavar="[FILE] IMAGE",
                   help="an ONNX model (e.g. written by zoo export; not with --model), then image files (PNG, JPEG, "
                        "... anything Pillow reads), or folders: their image files, by name")
    p.add_argument("--model", metavar="MODEL", help="run the published export of MODEL (with --weights)")
    p.add_argument("--weights", metavar="WEIGHTS", help="with --model: its weights, e.g. acme/defects@production")
    p.add_argument("--topk", type=int, default=5, metavar="K", help="classes per image (default 5)")
    p.add_argument("--score-threshold", type=float, default=0.5, metavar="S",
                   help="detections scoring below S are dropped (default 0.5)")
    p.add_argument("--provider", metavar="P",
                   help="cpu, cuda or tensorrt, or a comma-separated preference list (default: cuda if usable, "
                        "then cpu)")
    p.add_argument("--threads", type=int, metavar="N", help="ONNX Runtime intra-op threads (default: all cores)")
    p.add_argument("--draw", type=Path, metavar="DIR",
                   help="draw each prediction over its image into DIR/<image name>.png, and all of them in "
                        "DIR/grid.png (DIR is made if missing)")
    p.add_argument("--force", action="store_true", help="with --draw: replace files that are already there")
    _add_json(p)
    p.set_defaults(run=_predict)

    p = commands.add_parser("bench", help="latency and throughput: eager PyTorch, ONNX Runtime, int8, fp16",
                            description=("Time TARGET (a catalog model, exported to a temporary file with random "
                                         "weights unless --weights; or an exported .onnx file) in one run on every "
                                         "engine: eager PyTorch, ONNX Runtime float, int8 (static quantisation, "
                                         "CPU) and fp16 (CUDA), at each batch size. Prints p50/p90/p99 latency "
                                         "and throughput, and the speed-up over eager PyTorch."))
    p.add_argument("target", metavar="NAME|FILE", help="a model name (e.g. resnet50) or an exported .onnx file")
    p.add_argument("--batch", default="1", metavar="N[,N...]", help="batch sizes, e.g. 1,8,32 (default 1)")
    p.add_argument("--provider", metavar="P", help="cpu, cuda or tensorrt (default: cuda if usable, then cpu)")
    p.add_argument("--weights", metavar="WEIGHTS", help="load these weights into a catalog model, e.g. DEFAULT")
    p.add_argument("--iterations", type=int, default=50, metavar="N", help="timed calls per engine and batch")
    p.add_argument("--warmup", type=int, default=5, metavar="N", help="untimed calls first (default 5)")
    p.add_argument("--threads", type=int, metavar="N", help="threads for every engine (default: all cores)")
    p.add_argument("--no-int8", dest="int8", action="store_false", help="skip the int8 engine")
    p.add_argument("--calibration", nargs="+", metavar="IMAGE",
                   help="images to calibrate int8 on (default: scikit-image's sample photographs)")
    _add_json(p)
    p.set_defaults(run=_bench)

    p = commands.add_parser("serve", help="serve the registry over HTTP (JSON API, OpenAPI schema)",
                            description=("Serve the catalog and the artifact store as a versioned JSON API under "
                                         "/api/v1 (schema: /api/v1/openapi.json, docs: /api/v1/docs) with uvicorn "
                                         "until Ctrl-C. Publishing needs a token (zoo token create); reads too with "
                                         "--require-read-token. Answers only requests addressed to localhost, "
                                         "127.0.0.1 or [::1] with its port, or to an --allow-host name."))
    p.add_argument("--host", default="127.0.0.1", metavar="H",
                   help="address to listen on (default 127.0.0.1; 0.0.0.0 exposes it to the network)")
    p.add_argument("--port", type=int, default=8765, metavar="N", help="port (default 8765; 0: a free one, printed)")
    p.add_argument("--workers", type=int, default=1, metavar="N", help="worker processes sharing the port (default 1)")
    p.add_argument("--require-read-token", action="store_true", help="reads need a token too (scope read or publish)")
    p.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="also answer requests addressed to NAME (e.g. a reverse proxy's public name); repeatable")
    p.add_argument("--max-upload", type=_count, default=None, metavar="BYTES",
                   help="largest file a client may publish, e.g. 500M (default 4G)")
    p.set_defaults(run=_serve)

    p = commands.add_parser("token", help="make, list and revoke the registry service's tokens")
    actions = p.add_subparsers(title="actions", required=True, metavar="ACTION")
    a = actions.add_parser("create", help="make a token and print its secret (once: only its hash is kept)")
    a.add_argument("name", metavar="NAME", help="what the token is for, e.g. ci-publisher")
    a.add_argument("--scope", action="append", choices=["publish", "read"], metavar="SCOPE",
                   help="publish (upload; reads too) or read; repeatable (default: publish)")
    a.set_defaults(run=_token_create)
    a = actions.add_parser("list", help="list tokens: name, scopes, made, revoked (never a secret)")
    _add_json(a)
    a.set_defaults(run=_token_list)
    a = actions.add_parser("revoke", help="revoke a token: every service process refuses it from now on")
    a.add_argument("name", metavar="NAME")
    a.set_defaults(run=_token_revoke)

    p = commands.add_parser("publish", help="publish fine-tuned weights or a verified export (zoo.publish)")
    actions = p.add_subparsers(title="actions", required=True, metavar="ACTION")
    a = actions.add_parser("weights", help="check weights against a model's head, store them, add a version",
                           description=("Load FILE (safetensors, or a torch state dict read as tensors only) into "
                                        "MODEL built with the head its categories imply; if it fits, store it and "
                                        "record the next version of NAMESPACE/NAME."))
    a.add_argument("model", metavar="MODEL", help="the catalog model the weights are for, e.g. resnet18")
    a.add_argument("file", metavar="FILE", help="the weights file")
    a.add_argument("--name", required=True, metavar="NS/NAME", help="the published name, e.g. acme/defects")
    a.add_argument("--metric", action="append", type=_metric, default=[], metavar="DATASET:METRIC=VALUE",
                   help="a measured metric, e.g. defects-val:acc@1=97.5; repeatable")
    a.add_argument("--categories", metavar="FILE|A,B,C",
                   help="the head's categories: a file with one per line, or a comma-separated list "
                        "(default: those of --from)")
    a.add_argument("--from", dest="from_weights", metavar="WEIGHTS",
                   help="the weights they were fine-tuned from; categories and preprocessing are inherited")
    a.add_argument("--description", metavar="TEXT", help="what these weights are")
    _add_json(a)
    a.set_defaults(run=_publish_weights)
    a = actions.add_parser("export", help="store and record a verified ONNX export (its zoo metadata is checked)")
    a.add_argument("path", metavar="MODEL.onnx")
    _add_json(a)
    a.set_defaults(run=_publish_export)

    p = commands.add_parser("published", help="list published weights: every version, with aliases and metrics")
    p.add_argument("name", nargs="?", metavar="NS/NAME", help="only the versions of this name")
    _add_json(p)
    p.set_defaults(run=_published)

    p = commands.add_parser("alias", help="point NS/NAME@ALIAS at a version of published weights")
    p.add_argument("name", metavar="NS/NAME")
    p.add_argument("alias", metavar="ALIAS", help="e.g. production")
    p.add_argument("version", type=int, metavar="VERSION")
    p.set_defaults(run=_alias)

    p = commands.add_parser("sync", help="write the installed plugins into the catalog now")
    p.add_argument("--strict", action="store_true", default=None,
                   help="fail, leaving the catalog as it was, if any plugin fails (also $ZOO_STRICT_PLUGINS=1)")
    p.add_argument("--prune", action=argparse.BooleanOptionalAction, default=None,
                   help="remove the plugins not installed here (default: on a SQLite catalog, not on PostgreSQL, "
                        "which other machines may share)")
    p.set_defaults(run=_sync)
    return parser


class _Parser(argparse.ArgumentParser):
    """argparse's parser, with its error line (which quotes the bad value) kept short."""

    def error(self, message: str) -> NoReturn:
        if len(message) > _MAX_ERROR_CHARS:
            message = f"{message[:_MAX_ERROR_CHARS]}... ({len(message)} characters)"
        super().error(message)


def _add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _count(text: str) -> int:
    return _argument(parse_count, text)


def _metric(text: str) -> tuple[str, float]:
    return _argument(parse_metric, text)


def _list(args: argparse.Namespace) -> int:
    from zoo.registry import summarize_models

    records = summarize_models(
        args.patterns or None,
        args.exclude,
        task=args.task,
        plugin=args.plugin,
        pretrained=args.pretrained,
        max_params=args.max_params,
        min_metric=dict(args.min_metric),
    )
    _emit(args, records, lambda: _table(
        ["NAME", "TASK", "PARAMS", "WEIGHTS", "PLUGIN"],
        [[r["name"], r["task"], _human(r["num_params"]), len(r["weights"]), r["plugin"]] for r in records],
    ) + f"\n{len(records)} model(s)")
    return 0


def _show(args: argparse.Namespace) -> int:
    from zoo.registry import describe

    record = describe(args.name)
    _emit(args, record, lambda: _show_text(record))
    return 0


def _show_text(r: dict[str, Any]) -> str:
    plugin = r["plugin"]
    others = [p for p in r["providers"] if p != r["qualified_name"]]
    lines = [
        f"{r['name']}  [{r['task']}]",
        f"  qualified:    {r['qualified_name']}",
        *([f"  also:         {', '.join(others)} (same name, other plugins; "
           f"{'this one answers it' if r['name'] == r['qualified_name'].partition('/')[2] else 'use the qualified name'})"]
          if others else []),
        f"  plugin:       {plugin['namespace']} ({plugin['distribution']} {plugin['version']})",
        f"  builder:      {r['builder']}" + (f" {json.dumps(r['builder_args'])}" if r["builder_args"] else ""),
        f"  weights enum: {r['weights_enum'] or '-'}",
        f"  parameters:   {r['num_params']:,}" if r["num_params"] is not None else "  parameters:   -",
        f"  tags:         {', '.join(r['tags']) or '-'}",
    ]
    if not r["weights"]:
        return "\n".join([*lines, "  no pretrained weights"])
    rows = []
    for w in r["weights"]:
        metrics = " ".join(
            f"{dataset} {name}={value}"
            for dataset, values in (w["meta"].get("_metrics") or {}).items()
            for name, value in values.items()
        )
        size = f"{w['file_size'] / 1e6:.1f} MB" if w["file_size"] else (
            f"{w['meta']['_file_size']:.1f} MB" if "_file_size" in w["meta"] else "-")
        rows.append([w["name"], "*" if w["is_default"] else "", metrics or "-", size,
                     (w["sha256"] or "")[:16] or "-"])
    lines += ["", _table(["WEIGHTS", "DEFAULT", "METRICS", "FILE", "SHA256"], rows)]
    for w in r["weights"]:
        spec = w["transforms"]
        if spec:
            settings = " ".join(f"{k}={v}" for k, v in spec.items() if k != "kind" and v is not None)
            lines.append(f"\n  {w['member']} transforms: {spec['kind']} {settings}")
    return "\n".join(lines)


def _plugins(args: argparse.Namespace) -> int:
    from zoo.registry import list_plugins

    records = list_plugins()
    _emit(args, records, lambda: _plugins_text(records, verbose=args.verbose))
    return 0


def _plugins_text(records: list[dict[str, Any]], *, verbose: bool) -> str:
    """The plugins table; with `verbose`, the names each shares with other plugins (and which plugin
    answers each), then each failed model and its traceback."""
    table = _table(
        ["NAMESPACE", "NAME", "DISTRIBUTION", "VERSION", "STATUS", "MODELS", "SHARED", "HERE", "ERROR"],
        [[p["namespace"], p["name"], p["distribution"], p["version"], p["status"], p["models"],
          _shared_text(p), "yes" if p["installed_here"] else "no",
          p["error"] or (f"{len(p['failures'])} model(s) failed" + ("" if verbose else " (--verbose)")
                         if p["failures"] else "")] for p in records],
    )
    if not verbose:
        return table
    shared = [
        f"\nplugin {p['namespace']} shares {len(p['shared'])} name(s) with other plugins; the bare name means:\n"
        + _indented(", ".join(f"{n['name']} -> {n['answered_by']}/{n['name']}" for n in p["shared"]))
        for p in records if p["shared"]
    ]
    failed = [
        f"\nplugin {p['namespace']}, model {f['name']}: {f['error']}\n" + _indented(f["traceback"] or "")
        for p in records for f in p["failures"]
    ]
    return "\n".join([table, *shared, *failed])


def _shared_text(record: dict[str, Any]) -> str:
    """How many of a plugin's names other plugins also have, and how many of those it does not answer."""
    if not record["shared"]:
        return "-"
    elsewhere = sum(n["answered_by"] != record["namespace"] for n in record["shared"])
    return f"{len(record['shared'])} ({elsewhere} qualified only)"


def _indented(text: str) -> str:
    return "\n".join(f"    {line}" for line in text.rstrip().splitlines())


def _weights_fetch(args: argparse.Namespace) -> int:
    from zoo.registry import fetch_weights

    for name in args.names:
        print(fetch_weights(name, offline=args.offline))
    return 0


def _weights_path(args: argparse.Namespace) -> int:
    from zoo.registry import weights_path

    status = 0
    for name in args.names:
        path = weights_path(name)
        if path.is_file():
            print(path)
        else:
            print(f"{ERROR_PREFIX}{name} is not fetched yet (it would be {path}); run: zoo weights fetch {name}",
                  file=sys.stderr)
            status = 1
    return status


def _weights_verify(args: argparse.Namespace) -> int:
    from zoo.registry import verify_weights

    report = verify_weights(args.names)
    _emit(args, report, lambda: _table(
        ["WEIGHTS", "STATUS", "SHA256", "PATH"],
        [[r["weights"], r["status"], r["sha256"] or "-", r["path"]] for r in report],
    ) if report else "no weights files are cached")
    return 0 if all(r["status"] == "ok" for r in report) else 1


def _input_size(text: str) -> list[tuple[int, ...]]:
    from zoo.shapes import parse_shapes

    return _argument(parse_shapes, text)


def _argument(parse: Callable[[str], Any], text: str) -> Any:
    """`parse(text)`, its `ZooError` turned into argparse's error for the argument."""
    try:
        return parse(text)
    except ZooError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _comma_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",")]


def _summary(args: argparse.Namespace) -> int:
    from zoo.registry import describe
    from zoo.summary import catalog_model, summarize

    model = catalog_model(args.name, weights=args.weights)
    summary = summarize(model, args.input, depth=args.depth, task=describe(args.name)["task"])
    _emit(args, {"name": args.name, **summary.to_json()}, summary.table)
    return 0


def _features(args: argparse.Namespace) -> int:
    import torch

    from zoo.summary import extract_features, feature_nodes, shape_of, shape_text

    if not args.nodes:
        train, evaluation = feature_nodes(args.name, submodule=args.module)
        extra = [node for node in train if node not in evaluation]
        _emit(args, {"eval": evaluation, "train": train}, lambda: "\n".join(
            evaluation + ([f"(train mode adds: {', '.join(extra)})"] if extra else [])))
        return 0
    if args.input is None:
        raise UsageError("extracting features needs --input, e.g. --input 1,3,224,224")
    inputs = [torch.rand(size) for size in args.input]
    features = extract_features(args.name, args.nodes, inputs, submodule=args.module, weights=args.weights)
    shapes = {node: shape_of(value) for node, value in features.items()}
    _emit(args, shapes, lambda: _table(["NODE", "SHAPE"], [[n, shape_text(s)] for n, s in shapes.items()]))
    return 0


def _shape(text: str) -> tuple[int, ...]:
    from zoo.shapes import parse_shape

    return _argument(partial(parse_shape, min_rank=2), text)


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
                         opset=args.opset, builder_kwargs=dict(args.builder_arg), overwrite=args.force)
    _emit(args, result.to_json(), lambda: _export_text(result))
    return 0


def _exports(args: argparse.Namespace) -> int:
    from zoo.export import list_exports

    records = list_exports()
    _emit(args, records, lambda: _table(
        ["MODEL", "WEIGHTS", "OPSET", "EXPORTER", "MAX ABS ERROR", "SIZE", "CREATED", "PATH"],
        [[r["model"], r["weights"] or "-", r["opset"], r["exporter"],
          f"{max((c['max_abs_error'] for c in r['verification']), default=0.0):.2e}", f"{r['size'] / 1e6:.1f} MB",
          r["created_at"][:19], r["path"] + ("" if r["exists"] else " (gone)")] for r in records],
    ) if records else "no exports recorded")
    return 0


def _export_text(r: Any) -> str:
    lines = [
        f"{'reused' if r.reused else 'wrote'} {r.path} ({r.size / 1e6:.1f} MB, sha256 {r.sha256[:16]})",
        f"  model:     {r.model}  weights: {r.weights or 'none'}",
        f"  exporter:  {r.exporter}, opset {r.opset}, IR {r.ir_version}"
        + (f" (dynamo exporter failed: {r.fallback_reason})" if r.fallback_reason else ""),
        f"  input:     {', '.join(r.input_names)} {dims_text(r.input_shape)}"
        + (f", dynamic axes {r.dynamic_axes}" if r.dynamic_axes else ", static"),
        f"  shapes:    {r.intermediate_tensors - len(r.tensors_without_shape)}/{r.intermediate_tensors} "
        "intermediate tensors shaped",
    ]
    detection = any(c.detections is not None for c in r.verification)
    rows = [[c.name, dims_text(c.input_shape), f"{c.max_abs_error:.2e}", f"{c.max_rel_error:.2e}",
             f"rtol={c.rtol:g} atol={c.atol:g}", *([f"{c.detections} ({c.unmatched} at the cut)"] if detection else []),
             "ok" if c.passed else "FAIL"] for c in r.verification]
    return "\n".join(lines) + "\n\n" + _table(
        ["OUTPUT", "INPUT", "MAX ABS", "MAX REL", "TOLERANCE", *(["DETECTIONS"] if detection else []), ""], rows)


def _predict(args: argparse.Namespace) -> int:
    from zoo.runtime import Predictor, image_files, published_export, save_drawings

    if args.force and args.draw is None:
        raise UsageError("--force replaces drawings; it needs --draw DIR")
    if (args.model is None) != (args.weights is None):
        raise UsageError("--model and --weights go together: the published export of MODEL with WEIGHTS")
    if args.model is not None:
        file, images = published_export(args.model, args.weights), args.inputs
    elif len(args.inputs) < 2:
        raise UsageError("zoo predict needs an ONNX model FILE and at least one IMAGE (or --model and --weights)")
    else:
        file, images = Path(args.inputs[0]), args.inputs[1:]
    predictor = Predictor(file, providers=_providers(args.provider), threads=args.threads)
    results = predictor.predict(image_files(images), topk=args.topk, score_threshold=args.score_threshold)
    drawings = save_drawings(results, args.draw, overwrite=args.force) if args.draw is not None else []
    data = {"model": str(file), "providers": predictor.providers, "results": [r.to_json() for r in results],
            **({"drawings": [str(p) for p in drawings]} if args.draw is not None else {})}
    _emit(args, data, lambda: "\n".join([f"{file}: {predictor.task} on {', '.join(predictor.providers)}",
                                         *(str(r) for r in results),
                                         *([f"drew {len(drawings)} file(s) in {args.draw}"] if drawings else [])]))
    return 0


def _providers(text: str | None) -> list[str] | None:
    return [p.strip() for p in text.split(",")] if text else None


def _bench(args: argparse.Namespace) -> int:
    from zoo.bench import bench

    result = bench(args.target, batches=args.batch, providers=_providers(args.provider), weights=args.weights,
                   iterations=args.iterations, warmup=args.warmup, threads=args.threads, int8=args.int8,
                   calibration=args.calibration)
    _emit(args, result.to_json(), lambda: str(result))
    return 0


def _view(args: argparse.Namespace) -> int:
    from zoo.view import view

    view(args.file, host=args.host, port=args.port, browse=args.browse)
    return 0


def _serve(args: argparse.Namespace) -> int:
    try:
        from zoo.server.app import DEFAULT_MAX_UPLOAD, serve
    except ImportError as exc:
        raise UsageError(f"zoo serve needs the serve extra (pip install 'zoo[serve]'): {exc}") from None
    serve(host=args.host, port=args.port, workers=args.workers, read_token_required=args.require_read_token,
          allowed_hosts=tuple(args.allow_host), max_upload_bytes=args.max_upload or DEFAULT_MAX_UPLOAD)
    return 0


def _token_create(args: argparse.Namespace) -> int:
    from zoo.server.tokens import DEFAULT_SCOPES, create_token

    secret = create_token(args.name, args.scope or DEFAULT_SCOPES)
    print(secret)
    print(f"token {args.name!r} made; this is the only time its secret is shown", file=sys.stderr)
    return 0


def _token_list(args: argparse.Namespace) -> int:
    from zoo.server.tokens import list_tokens

    records = list_tokens()
    _emit(args, records, lambda: _table(
        ["NAME", "SCOPES", "CREATED", "REVOKED"],
        [[r["name"], ",".join(r["scopes"]), r["created_at"][:19], (r["revoked_at"] or "-")[:19]] for r in records],
    ) if records else "no tokens")
    return 0


def _token_revoke(args: argparse.Namespace) -> int:
    from zoo.server.tokens import revoke_token

    revoke_token(args.name)
    print(f"revoked token {args.name!r}")
    return 0


def _publish_weights(args: argparse.Namespace) -> int:
    from zoo.publish import publish_weights

    record = publish_weights(args.model, args.file, name=args.name, metrics=dict(args.metric),
                             categories=_categories(args.categories), from_weights=args.from_weights,
                             description=args.description)
    _emit(args, record.to_json(), lambda: f"published {record.spec} for {record.model} "
                                          f"(sha256 {record.sha256}, {record.size} bytes)")
    return 0


def _categories(text: str | None) -> list[str] | None:
    """``--categories``: a file with one category per line (blank lines skipped), or ``a,b,c``."""
    if text is None:
        return None
    path = Path(text)
    if path.is_file():
        try:
            return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read the categories file {path}: {exc}") from None
    return _comma_list(text)


def _publish_export(args: argparse.Namespace) -> int:
    from zoo.publish import publish_export

    record = publish_export(args.path)
    _emit(args, record.to_json(), lambda: f"published the export of {record.model} with {record.weights} "
                                          f"(sha256 {record.sha256}, {record.size} bytes)")
    return 0


def _published(args: argparse.Namespace) -> int:
    from zoo.publish import list_published

    records = list_published(args.name)
    _emit(args, [r.to_json() for r in records], lambda: _table(
        ["NAME", "VERSION", "MODEL", "ALIASES", "METRICS", "SIZE", "PUBLISHED"],
        [[r.full_name, r.version, r.model, ",".join(r.aliases) or "-",
          ", ".join(f"{k}={v:g}" for k, v in r.metrics.items()) or "-", _human(r.size),
          r.created_at.isoformat()[:19]] for r in records],
    ) if records else "no published weights")
    return 0


def _alias(args: argparse.Namespace) -> int:
    from zoo.publish import set_alias

    record = set_alias(args.name, args.alias, args.version)
    print(f"{record.full_name}@{args.alias} -> {record.spec}")
    return 0


def _sync(args: argparse.Namespace) -> int:
    from zoo.catalog.engine import open_engine, require_writable
    from zoo.catalog.fingerprint import sync_in_child

    engine = open_engine()
    require_writable(engine.url)  # before loading any plugin
    # Plugin code runs in a child with a deadline ($ZOO_SYNC_TIMEOUT), as for the automatic sync.
    output = sync_in_child(engine, force=True, strict=args.strict, prune=args.prune)
    print(output.summary)
    for line in output.warnings:
        print(line, file=sys.stderr)
    return 0


def _emit(args: argparse.Namespace, data: Any, text: Callable[[], str]) -> None:
    print(json.dumps(data, indent=2) if args.json else text())


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    from zoo.text import table

    return "\n".join(table(headers, rows))


def _human(count: int | None) -> str:
    if count is None:
        return "-"
    for limit, suffix in ((10**9, "G"), (10**6, "M"), (10**3, "k")):
        if count >= limit:
            return f"{count / limit:.1f}{suffix}"
    return str(count)

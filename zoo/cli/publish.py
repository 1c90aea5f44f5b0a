"""Published weights and exports: ``zoo publish weights|export``, ``zoo published``, ``zoo alias``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from zoo.cli.common import Commands, add_json, comma_list, emit, metric_argument, table
from zoo.errors import UsageError, first_line
from zoo.service.client import upload_progress


def register(commands: Commands) -> None:
    _add_publish(commands)
    p = commands.add_parser("published", help="list published weights: every version, with aliases and metrics")
    p.add_argument("name", nargs="?", metavar="NS/NAME", help="only the versions of this name")
    add_json(p)
    p.set_defaults(run=_published)

    p = commands.add_parser("alias", help="point NS/NAME@ALIAS at a version of published weights")
    p.add_argument("name", metavar="NS/NAME")
    p.add_argument("alias", metavar="ALIAS", help="e.g. production")
    p.add_argument("version", type=int, metavar="VERSION")
    p.set_defaults(run=_alias)


def _add_publish(commands: Commands) -> None:
    p = commands.add_parser("publish", help="publish fine-tuned weights or a verified export (zoo.publish)")
    actions = p.add_subparsers(title="actions", required=True, metavar="ACTION")
    a = actions.add_parser("weights", help="check weights against a model's head, store them, add a version",
                           description=("Load FILE (safetensors, or a torch state dict read as tensors only) into "
                                        "MODEL built with the head its categories imply; if it fits, store it and "
                                        "record the next version of NAMESPACE/NAME."))
    a.add_argument("model", metavar="MODEL", help="the catalog model the weights are for, e.g. resnet18")
    a.add_argument("file", metavar="FILE", help="the weights file")
    a.add_argument("--name", required=True, metavar="NS/NAME", help="the published name, e.g. acme/defects")
    a.add_argument("--metric", action="append", type=metric_argument, default=[], metavar="DATASET:METRIC=VALUE",
                   help="a measured metric, e.g. defects-val:acc@1=97.5; repeatable")
    a.add_argument("--categories", metavar="FILE|A,B,C",
                   help="the head's categories: a file with one per line, or a comma-separated list "
                        "(default: those of --from)")
    a.add_argument("--from", dest="from_weights", metavar="WEIGHTS",
                   help="the weights they were fine-tuned from; categories and preprocessing are inherited")
    a.add_argument("--description", metavar="TEXT", help="what these weights are")
    a.add_argument("--run", dest="run_record", metavar="RUN.json",
                   help="the run record that made them (zoo finetune writes run.json), stored with the version as "
                        "its lineage; its base weights are --from when that is not given")
    add_json(a)
    a.set_defaults(run=_publish_weights)
    a = actions.add_parser("export", help="store and record a verified ONNX export (its zoo metadata is checked)")
    a.add_argument("path", metavar="MODEL.onnx")
    add_json(a)
    a.set_defaults(run=_publish_export)


def _publish_weights(args: argparse.Namespace) -> int:
    from zoo.publish import publish_weights

    with upload_progress():  # to a registry service
        record = publish_weights(args.model, args.file, name=args.name, metrics=dict(args.metric),
                                 categories=_categories(args.categories), from_weights=args.from_weights,
                                 description=args.description, run=_run_record(args.run_record))
    emit(args, record.to_json(), lambda: f"published {record.spec} for {record.model} "
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
    return comma_list(text)


def _run_record(path: str | None) -> Any:
    """``--run``: the JSON in the file at `path` (checked by `zoo.publish_weights`), or None."""
    if path is None:
        return None
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read the run record {path}: {first_line(exc)}") from None
    except ValueError as exc:
        raise UsageError(f"the run record {path} is not JSON: {first_line(exc)}") from None


def _publish_export(args: argparse.Namespace) -> int:
    from zoo.publish import publish_export

    with upload_progress():  # to a registry service
        record = publish_export(args.path)
    emit(args, record.to_json(), lambda: f"published the export of {record.model} with {record.weights} "
                                         f"(sha256 {record.sha256}, {record.size} bytes)")
    return 0


def _published(args: argparse.Namespace) -> int:
    from zoo.publish import list_published

    records = list_published(args.name)
    emit(args, [r.to_json() for r in records], lambda: table(
        ["NAME", "VERSION", "MODEL", "ALIASES", "METRICS", "SIZE", "PUBLISHED"],
        [[r.full_name, r.version, r.model, ",".join(r.aliases) or "-",
          ", ".join(f"{k}={v:g}" for k, v in r.metrics.items()) or "-", f"{r.size / 1e6:.1f} MB",
          r.created_at.isoformat()[:19]] for r in records],
    ) if records else "no published weights")
    return 0


def _alias(args: argparse.Namespace) -> int:
    from zoo.publish import set_alias

    record = set_alias(args.name, args.alias, args.version)
    print(f"{record.full_name}@{args.alias} -> {record.spec}")
    return 0

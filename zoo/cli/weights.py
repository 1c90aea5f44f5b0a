"""Weights files: ``zoo weights fetch|path|verify``."""

from __future__ import annotations

import argparse
import sys

from zoo.cli.common import Commands, add_json, emit, table
from zoo.errors import ERROR_PREFIX

_NAMES_HELP = "weights (ResNet50_Weights.IMAGENET1K_V2, resnet50.IMAGENET1K_V2) or a model (its default)"


def register(commands: Commands) -> None:
    p = commands.add_parser("weights", help="fetch, locate and verify weights files")
    actions = p.add_subparsers(title="actions", required=True, metavar="ACTION")
    a = actions.add_parser("fetch", help="download (or copy from the mirror) and verify, with progress")
    a.add_argument("names", nargs="+", metavar="NAME",
                   help=f"{_NAMES_HELP}, or published weights (NS/NAME[:VERSION|@ALIAS])")
    a.add_argument("--offline", action="store_true", default=None, help="never use the network (also $ZOO_OFFLINE=1)")
    a.set_defaults(run=_weights_fetch)
    a = actions.add_parser("path", help="print where a weights file is")
    a.add_argument("names", nargs="+", metavar="NAME", help=_NAMES_HELP)
    a.set_defaults(run=_weights_path)
    a = actions.add_parser("verify", help="re-hash cached weights files (all, or those named) and report")
    a.add_argument("names", nargs="*", metavar="NAME", help=_NAMES_HELP)
    add_json(a)
    a.set_defaults(run=_weights_verify)


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
    emit(args, report, lambda: table(
        ["WEIGHTS", "STATUS", "SHA256", "PATH"],
        [[r["weights"], r["status"], r["sha256"] or "-", r["path"]] for r in report],
    ) if report else "no weights files are cached")
    return 0 if all(r["status"] == "ok" for r in report) else 1

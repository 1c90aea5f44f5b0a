"""Writing the installed plugins into the catalog: ``zoo sync``."""

from __future__ import annotations

import argparse
import sys

from zoo.cli.common import Commands


def register(commands: Commands) -> None:
    p = commands.add_parser("sync", help="write the installed plugins into the catalog now")
    p.add_argument("--strict", action="store_true", default=None,
                   help="fail, leaving the catalog as it was, if any plugin fails (also $ZOO_STRICT_PLUGINS=1)")
    p.add_argument("--prune", action=argparse.BooleanOptionalAction, default=None,
                   help="remove the plugins not installed here (default: on a SQLite catalog, not on PostgreSQL, "
                        "which other machines may share)")
    p.set_defaults(run=_sync)


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

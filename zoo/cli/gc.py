"""Garbage collection of the artifact store: ``zoo gc`` (`zoo.gc`)."""

from __future__ import annotations

import argparse

from zoo.cli.common import Commands, add_json, argument, emit
from zoo.gc import DEFAULT_GRACE, GcReport, parse_duration

_MIB = 1 << 20
_UNITS = (("d", 86400), ("h", 3600), ("m", 60))


def register(commands: Commands) -> None:
    p = commands.add_parser(
        "gc", help="remove stored files no catalog row references, and unfinished uploads",
        description=("Remove from the artifact store ($ZOO_ARTIFACTS) the files that no published weights version "
                     "or export of the catalog ($ZOO_REGISTRY_URL, a database: run it where the service's catalog "
                     "and store are configured) references, and the uploads left unfinished, when they are older "
                     "than the grace period. One line per file removed, then what was freed."))
    p.add_argument("--dry-run", action="store_true", help="remove nothing; list what would be removed")
    p.add_argument("--grace", type=_grace_argument, default=DEFAULT_GRACE, metavar="DURATION",
                   help="keep what is younger than this, e.g. 24h, 30m, 7d, 90s or 0 (default 24h: longer than "
                        "any upload or publish takes, so a file whose catalog row is still to be written, or an "
                        "upload in flight, is never removed; 0 only when nothing is being published)")
    add_json(p)
    p.set_defaults(run=_gc)


def _grace_argument(text: str) -> float:
    return argument(parse_duration, text)


def _gc(args: argparse.Namespace) -> int:
    from zoo.context import current
    from zoo.gc import collect

    context = current()
    report = collect(context.catalog, context.store, grace=args.grace, dry_run=args.dry_run)
    emit(args, report.to_json(), lambda: _text(report))
    return 0


def _text(report: GcReport) -> str:
    """One line per blob and leftover removed (or to be), then what that frees and what was kept as too young."""
    verb = "would remove" if report.dry_run else "removed"
    lines = [f"{verb} blob {a.sha256} ({a.size} bytes)" for a in report.removed]
    lines += [f"{verb} leftover {left.name} ({left.size} bytes)" for left in report.leftovers]
    count = report.files_freed
    summary = (f"{'would free' if report.dry_run else 'freed'} {count} file{'s' * (count != 1)}, "
               f"{report.bytes_freed / _MIB:.1f} MiB")
    young = report.young_blobs + report.young_leftovers
    if young:
        summary += f"; kept {young} unreferenced younger than {_duration(report.grace)}"
    return "\n".join([*lines, summary])


def _duration(seconds: float) -> str:
    """`seconds` as ``--grace`` takes it: 24h, 30m, 90s."""
    unit, size = next(((u, s) for u, s in _UNITS if seconds >= s and seconds % s == 0), ("s", 1))
    return f"{seconds / size:g}{unit}"

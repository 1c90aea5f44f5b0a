"""What the command groups share: the ``--json`` and ``--quiet`` options, printing JSON or a table, and argument types.

An argument type turns a library parser's `ZooError` into argparse's error for that argument, so a
bad value ends in argparse's one-line usage error (exit code 2).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any, TypeAlias

from zoo.errors import ZooError
from zoo.text import parse_count, parse_metric

# What a command group's `register` gets: the `zoo` parser's subcommands.
Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def add_quiet(parser: argparse.ArgumentParser, *, default: Any) -> None:
    """The global ``--quiet``/``-q`` (``args.progress_quiet``): no progress lines or bars (`zoo.progress`)."""
    parser.add_argument("-q", "--quiet", dest="progress_quiet", action="store_true", default=default,
                        help="no progress lines or bars on stderr (there are none when it is not a terminal)")


def emit(args: argparse.Namespace, data: Any, text: Callable[[], str]) -> None:
    """Print `data` as JSON with ``--json``, else `text()` (called only then)."""
    print(json.dumps(data, indent=2) if args.json else text())


def table(headers: list[str], rows: list[list[Any]]) -> str:
    from zoo.text import table

    return "\n".join(table(headers, rows))


def argument(parse: Callable[[str], Any], text: str) -> Any:
    """`parse(text)`, its `ZooError` turned into argparse's error for the argument."""
    try:
        return parse(text)
    except ZooError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def count_argument(text: str) -> int:
    """A count argument such as 10M, 500k or 25557032."""
    return argument(parse_count, text)


def metric_argument(text: str) -> tuple[str, float]:
    """A ``[DATASET:]METRIC=VALUE`` argument."""
    return argument(parse_metric, text)


def comma_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",")]

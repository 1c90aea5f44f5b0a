"""The ``zoo`` command line: tables for people, ``--json`` for scripts.

A user mistake ends in one line on stderr (``zoo: error: ...``) and exit code 1
(2 for a malformed command line, as argparse does); never a traceback. A standard stream
that is closed (``zoo list >&-``) is opened on the null device: what goes to it is
discarded, and no file the command opens takes its place. Requests to a registry service
share one time budget per command (`zoo.service.client.time_budget`). Slow steps say what they do, and
countable work shows a bar, on stderr when it is a terminal (`zoo.progress`); ``--quiet`` (``-q``, before or
after the command) turns that off.

Each command group is a module of this package with a ``register(commands)`` function that adds
its subcommands (each with its ``run`` function as a default) to the ``zoo`` parser;
`COMMAND_GROUPS` lists them in the order ``zoo --help`` shows their commands. A group imports
what its commands need inside their ``run`` functions, so that ``zoo list`` stays light.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
import warnings
from collections.abc import Iterable, Sequence
from typing import NoReturn, Protocol

from zoo import progress
from zoo.cli import catalog, evaluation, export, gc, modeling, publish, runtime, service, sync, training, weights
from zoo.cli.common import Commands, add_quiet
from zoo.errors import ERROR_PREFIX, WARNING_PREFIX, ZooError, ZooWarning
from zoo.service.client import time_budget

_PYTHON_SHOWWARNING = warnings.showwarning
# Errors of a full or failing disk: reported in one line wherever they happen (stdout included).
_DISK_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO}
_MAX_ERROR_CHARS = 300  # of a command-line parsing error: argparse quotes the whole bad value


class CommandGroup(Protocol):
    """A module of commands: `register` adds them to the ``zoo`` parser's subcommands."""

    def register(self, commands: Commands) -> None: ...


COMMAND_GROUPS: tuple[CommandGroup, ...] = (catalog, weights, modeling, training, export, runtime, evaluation, service,
                                             publish, gc, sync)


def main(argv: Sequence[str] | None = None) -> int:
    _open_closed_streams()
    args = build_parser().parse_args(argv)
    warnings.showwarning = _show_warning
    try:
        # a command's own --quiet (zoo finetune's: no epoch lines either) also means no progress
        with time_budget(), progress.quieted(args.progress_quiet or getattr(args, "quiet", None) is True):
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


def build_parser(groups: Iterable[CommandGroup] = COMMAND_GROUPS) -> argparse.ArgumentParser:
    """The ``zoo`` parser, with the commands of each group in `groups`, in that order."""
    parser = _Parser(prog="zoo", description="A plugin-based model zoo for PyTorch vision models.")
    add_quiet(parser, default=False)
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")
    for group in groups:
        group.register(commands)
    for command in commands.choices.values():  # after the command too, unless it has a --quiet of its own
        if "--quiet" not in command._option_string_actions:
            add_quiet(command, default=argparse.SUPPRESS)  # not given there: the value before the command stays
    return parser


class _Parser(argparse.ArgumentParser):
    """argparse's parser, with its error line (which quotes the bad value) kept short.

    Subcommands' parsers are of this class too (argparse makes them of their parent's class)."""

    def error(self, message: str) -> NoReturn:
        if len(message) > _MAX_ERROR_CHARS:
            message = f"{message[:_MAX_ERROR_CHARS]}... ({len(message)} characters)"
        super().error(message)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    """Print a `ZooWarning` as one line ``zoo: warning: ...``; any other warning as Python does."""
    if issubclass(category, ZooWarning):
        print(f"{WARNING_PREFIX}{message}", file=sys.stderr)
    else:
        _PYTHON_SHOWWARNING(message, category, filename, lineno, file, line)


def _open_closed_streams() -> None:
    """Open the null device for each standard stream whose descriptor was closed when Python started (Python
    leaves it None): in order, so that each takes its own number back from any file opened later."""
    for name, mode in (("stdin", "r"), ("stdout", "w"), ("stderr", "w")):
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, mode, encoding="utf-8"))  # noqa: SIM115 - kept open for the process


def _drop_stdout() -> None:
    """Point standard output at /dev/null, so that Python's flush at exit does not fail a second time."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)

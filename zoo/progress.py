"""Progress on a terminal: what a slow step is doing, and how far countable work has got.

The zoo's one progress helper (it imports neither torch nor SQLAlchemy, so every tier uses
it): `status` prints a line saying what runs now, as the step starts; `bar` is a tqdm bar
for work that can be counted (plugins, calls, bytes, images). Both show on stderr, and only
when stderr is a terminal and progress is not `quieted` (the command line's ``--quiet``):
output that a pipe, a file or a program reads is the same as without them, and standard
output never carries progress.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from tqdm import tqdm

__all__ = ["bar", "display_fd", "quieted", "shown", "shown_on", "status"]

_quiet = False  # the process-wide --quiet (`quieted`)
_stream: IO[str] | None = None  # where progress shows instead of stderr (`shown_on`)


def _target() -> IO[str] | None:
    return _stream if _stream is not None else sys.stderr


def shown() -> bool:
    """Whether progress shows: not quieted, and its stream (stderr) is a terminal."""
    stream = _target()
    if _quiet or stream is None:
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or closed
        return False


@contextmanager
def quieted(quiet: bool = True) -> Iterator[None]:
    """No progress in this process while inside (with `quiet`), whatever stderr is; as before afterwards."""
    global _quiet
    before, _quiet = _quiet, bool(quiet) or _quiet
    try:
        yield
    finally:
        _quiet = before


@contextmanager
def shown_on(stream: IO[str] | None) -> Iterator[None]:
    """Progress on `stream` rather than stderr while inside (None: where it was): a child process given its
    parent's terminal by `display_fd`, its own stderr captured; a test's pseudo-terminal."""
    global _stream
    before, _stream = _stream, stream if stream is not None else _stream
    try:
        yield
    finally:
        _stream = before


@contextmanager
def display_fd() -> Iterator[int | None]:
    """A new file descriptor of the terminal progress shows on, for a child process (in its ``pass_fds``) to show
    its own progress there (`shown_on`), closed on leaving; None when progress is not shown."""
    stream = _target()
    if stream is None or not shown():
        yield None
        return
    fd = os.dup(stream.fileno())  # not the child's own stderr, which may go elsewhere
    try:
        yield fd
    finally:
        os.close(fd)


@contextmanager
def status(what: str) -> Iterator[None]:
    """Say ``WHAT...`` on a line of its own as the step inside starts (when progress is shown)."""
    if shown():
        stream = _target()
        print(f"{what}...", file=stream, flush=True)
    yield


def bar(total: int | None, desc: str, *, unit: str = "it", initial: int = 0, show: bool = True,
        leave: bool = True) -> tqdm:
    """A tqdm bar over `total` `unit`s (bytes, scaled by 1024, when `unit` is ``"B"``), described by `desc`,
    starting at `initial`; drawn only where progress is shown (and `show`), left in its final state when
    closed, or erased unless `leave` (a bar that lines of its own follow, such as an epoch's)."""
    from tqdm import tqdm

    scaled = unit == "B"
    return tqdm(total=total, desc=desc, unit=unit, initial=initial, unit_scale=scaled,
                unit_divisor=1024 if scaled else 1000, file=_target(), leave=leave, dynamic_ncols=True,
                disable=not (show and shown()))

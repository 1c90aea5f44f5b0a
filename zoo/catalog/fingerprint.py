"""Is the catalog in step with the installed plugins? Answered without loading any.

The catalog stores a fingerprint of the plugins it was built from (names, targets,
distributions, versions) and of its schema revision. Lookups compare it with the
installed plugins and, when they differ, re-sync in a child process, so the caller
never imports torch or a plugin just to list models. Light: Core only, no ORM.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import warnings
from typing import IO, NamedTuple

from sqlalchemy import Connection, Engine, select

from zoo import __version__
from zoo.catalog import tables
from zoo.catalog.engine import URL_ENV, CatalogWarning, DamagedCatalogError, open_engine, read_only, where
from zoo.errors import ERROR_PREFIX, WARNING_PREFIX, CatalogError, UsageError
from zoo.plugins import (
    LOADED_PREFIX,
    LOADING_PREFIX,
    PluginInfo,
    fingerprint,
    installed_plugins,
    strict_from_env,
)

#: The Alembic head revision; a test checks that it matches ``migrations/versions``.
SCHEMA_REVISION = "0004"
FINGERPRINT_KEY = "plugins_fingerprint"
#: Bump when what a sync writes changes without a schema change (e.g. the transforms format).
DATA_FORMAT = 2


def catalog_fingerprint(plugins: list[PluginInfo]) -> str:
    """The fingerprint a catalog built from `plugins` by this zoo version would carry."""
    parts = f"{fingerprint(plugins)}|schema={SCHEMA_REVISION}|data={DATA_FORMAT}|zoo={__version__}"
    return hashlib.sha256(parts.encode()).hexdigest()


def fingerprint_in(conn: Connection) -> str | None:
    state = tables.catalog_state
    return conn.scalar(select(state.c.value).where(state.c.key == FINGERPRINT_KEY))


def stored_fingerprint(engine: Engine) -> str | None:
    """The fingerprint the catalog holds, or None when it has none (new, unmigrated or damaged)."""
    try:
        with engine.connect() as conn:
            return fingerprint_in(conn)
    except DamagedCatalogError as exc:
        if exc.missing:  # no catalog_state table: a sync builds or repairs it
            return None
        raise


def ensure_current(url: str | None = None) -> Engine:
    """The catalog's engine, after re-syncing it in a child process if it is stale.

    A stale catalog this process cannot write (see `read_only`) is served as it is,
    with a `CatalogWarning`: a shared read-only catalog stays usable.
    """
    engine = open_engine(url)
    if stored_fingerprint(engine) != catalog_fingerprint(installed_plugins()):
        if read_only(engine.url):
            warnings.warn(
                f"{where(engine.url)} is read-only and out of date with the installed plugins; "
                "showing it as it is (run `zoo sync` where it can be written)",
                CatalogWarning,
                stacklevel=2,
            )
        else:
            sync_in_child(engine, force=False)
    return engine


SYNC_TIMEOUT_ENV = "ZOO_SYNC_TIMEOUT"
DEFAULT_SYNC_TIMEOUT = 300.0
#: How much of each of the sync child's outputs is read: the end, where its report is.
OUTPUT_TAIL = 1 << 16
#: The sync child's program. It drops the working directory ('') from ``sys.path``
#: before it imports anything, so a ``pluggy.py`` or ``zoo.py`` there cannot run
#: (``python -m`` would put the working directory first).
_CHILD_PROGRAM = (
    "import sys; sys.path[:] = [p for p in sys.path if p]; "
    "from zoo.catalog.sync import main; main(sys.argv[1:])"
)


class SyncOutput(NamedTuple):
    """What a sync child printed for the user: its summary and its warning lines."""

    summary: str
    warnings: tuple[str, ...]


def sync_in_child(
    engine: Engine, *, force: bool = True, strict: bool | None = None
) -> SyncOutput:
    """Sync the catalog in a child process bounded by ``$ZOO_SYNC_TIMEOUT`` seconds.

    Plugin code runs only there. A plugin that hangs past the timeout, or ends the
    child (``os._exit``, a crash), is named in a `CatalogError`; unless `strict`, it is
    first recorded as failed by a second child that skips it, so the next command
    works without it (and ``zoo plugins`` shows why). ``zoo sync`` or a new version of
    the plugin tries it again.
    """
    timeout = sync_timeout()
    strict = strict_from_env() if strict is None else strict
    culprits: dict[str, str] = {}
    while True:
        done = _run_sync_child(engine, timeout, force=force, strict=strict, skip=culprits)
        culprit = _culprit(done, timeout)
        if culprit is None or culprit[0] in culprits:  # a skipped plugin's code never runs
            break
        culprits[culprit[0]] = culprit[1]
        if strict:
            break
    if culprits:
        recorded = "" if strict or done.returncode != 0 else (
            "; recorded as failed (see zoo plugins); zoo sync tries it again")
        labels = {p.name: p.label for p in reversed(installed_plugins())}  # of one name, the first loads
        named = "; ".join(f"{labels.get(name, repr(name))} {reason}" for name, reason in culprits.items())
        raise CatalogError(f"syncing the catalog failed: {named}{recorded}")
    if done.returncode != 0:
        raise CatalogError(_child_error(done, timeout))
    warnings = tuple(line for line in done.stderr.splitlines() if line.startswith(WARNING_PREFIX))
    return SyncOutput((done.stdout.strip().splitlines() or [""])[-1], warnings)


def sync_timeout() -> float:
    """``$ZOO_SYNC_TIMEOUT`` in seconds (default 300): how long one sync child may run."""
    text = os.environ.get(SYNC_TIMEOUT_ENV, "").strip()
    if not text:
        return DEFAULT_SYNC_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise UsageError(f"{SYNC_TIMEOUT_ENV} must be a positive number of seconds, e.g. 300; got {text[:40]!r}")
    return value


class ChildRun(NamedTuple):
    """How a sync child ended (`returncode` None: killed at the timeout) and the end of what it wrote."""

    returncode: int | None
    stdout: str
    stderr: str
    progress: str  # the LOADING_PREFIX / LOADED_PREFIX lines


def _run_sync_child(engine: Engine, timeout: float, *, force: bool, strict: bool, skip: dict[str, str]) -> ChildRun:
    """Run one sync child; on timeout (or our own interruption) kill its whole process group.

    The child leads a session of its own, so whatever a plugin starts can be killed
    with it; it asks the kernel to kill it when this process dies (``--parent``). Its
    output goes to unlinked temporary files, of which only the end is read: a plugin
    that prints without end costs disk, not this process's memory, and its progress
    lines have a file of their own (``--progress-fd``).
    """
    env = dict(os.environ)
    env[URL_ENV] = engine.url.render_as_string(hide_password=False)
    # The child must see the same distributions (and so the same plugins) as we do.
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, tempfile.TemporaryFile() as progress:
        args = ["--force" if force else "--no-force", "--strict" if strict else "--no-strict",
                "--skip", json.dumps(skip), "--parent", str(os.getpid()), "--progress-fd", str(progress.fileno())]
        child = subprocess.Popen(
            [sys.executable, "-c", _CHILD_PROGRAM, *args], env=env, stdin=subprocess.DEVNULL, stdout=out,
            stderr=err, pass_fds=(progress.fileno(),), start_new_session=True,
        )
        try:
            returncode: int | None = child.wait(timeout)
        except subprocess.TimeoutExpired:
            returncode = None
        finally:  # on timeout, and when we are interrupted ourselves
            _kill_group(child)
            child.wait()
        return ChildRun(returncode, _tail(out), _tail(err), _tail(progress))


def _tail(file: IO[bytes]) -> str:
    """The last `OUTPUT_TAIL` bytes of `file`, as text."""
    size = file.seek(0, os.SEEK_END)
    file.seek(max(0, size - OUTPUT_TAIL))
    return file.read(OUTPUT_TAIL).decode(errors="replace")


def _kill_group(child: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.pid, signal.SIGKILL)


def _culprit(done: ChildRun, timeout: float) -> tuple[str, str] | None:
    """The plugin whose code was running when the child timed out or died, and why; else None."""
    running = None
    for line in done.progress.splitlines():
        if line.startswith(LOADING_PREFIX):
            running = line.removeprefix(LOADING_PREFIX)
        elif line == LOADED_PREFIX + str(running):
            running = None
    if running is None:
        return None
    if done.returncode is None:
        return running, f"did not finish loading within {timeout:g} s ({SYNC_TIMEOUT_ENV})"
    if done.returncode < 0:
        return running, f"ended the sync process (signal {-done.returncode}) while loading"
    return running, f"ended the sync process (exit code {done.returncode}) while loading"


def _child_error(done: ChildRun, timeout: float) -> str:
    """The child's own error message, or what happened to it when it printed none."""
    errors = [line for line in done.stderr.splitlines() if line.startswith(ERROR_PREFIX)]
    if errors:
        return errors[-1].removeprefix(ERROR_PREFIX)
    if done.returncode is None:
        return f"syncing the catalog did not finish within {timeout:g} s ({SYNC_TIMEOUT_ENV})"
    last = next((line.strip() for line in reversed(done.stderr.splitlines()) if line.strip()), None)
    said = f": {last[:200]}" if last else " and no message"
    return f"syncing the catalog failed: the sync process ended with exit code {done.returncode}{said}"

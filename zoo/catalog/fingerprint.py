"""Is the catalog in step with the installed plugins? Answered without loading any.

Each plugin row carries the fingerprint of what it was made from
(`plugin_fingerprint`: the plugin, its distribution's version and the installed
versions of what that distribution requires, the schema revision and zoo's
version). The catalog is stale here when an installed (selected) plugin's row is
missing or has another fingerprint, or, where syncs prune (a private SQLite
catalog), when it holds plugins not installed here. Machines with different
plugin sets on one PostgreSQL catalog so each see the union without re-syncing
each other's plugins away. A stale catalog is re-synced in a child process, so the
caller never imports torch or a plugin just to list models; the check itself runs
at most once per ``ZOO_CATALOG_CHECK_INTERVAL`` seconds per catalog and plugin
selection in a process. Light: Core only, no ORM.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import IO, NamedTuple

from sqlalchemy import Connection, Engine, select
from sqlalchemy.engine import URL

from zoo import __version__
from zoo.catalog import tables
from zoo.catalog.engine import CatalogWarning, DamagedCatalogError, open_engine, read_only, where
from zoo.errors import ERROR_PREFIX, WARNING_PREFIX, CatalogError
from zoo.progress import display_fd, status
from zoo.settings import SYNC_TIMEOUT, Settings, child_environment
from zoo.plugins import (
    LOADED_PREFIX,
    LOADING_PREFIX,
    PluginInfo,
    installed_plugins,
    normalized,
)

#: The Alembic head revision; a test checks that it matches ``migrations/versions``.
SCHEMA_REVISION = "0010"
#: Bump when what a sync writes changes without a schema change (e.g. the transforms format).
DATA_FORMAT = 3
#: The project name a Requires-Dist line starts with (PEP 508).
_REQUIREMENT_NAME = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
#: When this process last found each (catalog URL, plugin selection) current, by time.monotonic().
_checked: dict[tuple[str, str | None], float] = {}


def plugin_fingerprint(info: PluginInfo) -> str:
    """A digest of everything a plugin's catalog rows are made from.

    The installed versions of the distributions its distribution requires are part
    of it, so upgrading timm re-syncs the timm plugin.
    """
    data = {
        "plugin": [info.name, info.target, info.distribution, info.version],
        "requires": _required_versions(info),
        "schema": SCHEMA_REVISION,
        "data": DATA_FORMAT,
        "zoo": __version__,
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def _required_versions(info: PluginInfo) -> dict[str, str | None]:
    """Installed version (None: not installed) of each distribution the plugin's distribution requires."""
    dist = info.entry_point.dist
    names = {normalized(m[1]) for line in (dist.requires or []) if (m := _REQUIREMENT_NAME.match(line))} if dist else ()
    return {name: _installed_version(name) for name in sorted(names)}


def _installed_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


class Staleness(NamedTuple):
    """How the catalog differs from the plugins installed here."""

    outdated: list[PluginInfo]  # installed plugins whose rows are missing or made from other inputs
    foreign: list[int]  # ids of the plugin rows of plugins not installed here
    unmarked: bool = False  # the catalog has no generation: no sync of this zoo finished writing it

    def stale(self, prune: bool) -> bool:
        """Whether a sync that prunes (or not) would change anything."""
        return bool(self.outdated) or (prune and bool(self.foreign)) or self.unmarked


def staleness(conn: Connection, plugins: Sequence[PluginInfo]) -> Staleness:
    """Which of `plugins` the catalog lacks or holds out of date, which of its plugins are not among
    them, and whether it lacks the generation every sync writes."""
    p, state = tables.plugins, tables.catalog_state
    rows = conn.execute(select(p.c.id, p.c.name, p.c.distribution, p.c.fingerprint)).all()
    stored = {(r.name, r.distribution): r.fingerprint for r in rows}
    here = {(info.name, info.distribution) for info in plugins}
    generation = conn.scalar(select(state.c.value).where(state.c.key == tables.GENERATION_KEY))
    return Staleness(
        [info for info in plugins if stored.get((info.name, info.distribution)) != plugin_fingerprint(info)],
        [r.id for r in rows if (r.name, r.distribution) not in here],
        unmarked=generation is None,
    )


def catalog_staleness(engine: Engine, plugins: Sequence[PluginInfo]) -> Staleness | None:
    """`staleness` of the catalog, or None when it lacks its tables (new, unmigrated or damaged)."""
    try:
        with engine.connect() as conn:
            return staleness(conn, plugins)
    except DamagedCatalogError as exc:
        if exc.missing:  # a missing table or column: a sync builds or repairs it
            return None
        raise


def prunes_by_default(url: URL) -> bool:
    """Whether a sync removes the plugins not installed here: on a private SQLite catalog, not on a shared one."""
    return url.get_backend_name() == "sqlite"


def ensure_current(url: str | None = None, settings: Settings | None = None) -> Engine:
    """The catalog's engine, after re-syncing it in a child process if it is stale.

    Checked at most once per ``$ZOO_CATALOG_CHECK_INTERVAL`` seconds (default 2) per
    catalog and plugin selection in this process, so warm lookups do not scan entry
    points. A stale catalog this process cannot write (see `read_only`) is served as
    it is, with a `CatalogWarning`: a shared read-only catalog stays usable.
    """
    settings = settings or Settings.from_environ()
    engine = open_engine(url or settings.registry_url)
    key = (str(engine.url), settings.load_plugins)
    if time.monotonic() - _checked.get(key, -math.inf) < settings.check_interval:
        return engine
    found = catalog_staleness(engine, installed_plugins(settings.load_plugins))
    if found is None or found.stale(prunes_by_default(engine.url)):
        if read_only(engine.url):
            warnings.warn(
                f"{where(engine.url)} is read-only and out of date with the installed plugins; "
                "showing it as it is (run `zoo sync` where it can be written)",
                CatalogWarning,
                stacklevel=2,
            )
        else:
            sync_in_child(engine, force=False, settings=settings)
    _checked[key] = time.monotonic()
    return engine


def forget_check(url: URL) -> None:
    """Make the next lookup on the catalog at `url` check it again (a sync is changing it)."""
    for key in [k for k in _checked if k[0] == str(url)]:
        del _checked[key]


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
    engine: Engine, *, force: bool = True, strict: bool | None = None, prune: bool | None = None,
    settings: Settings | None = None,
) -> SyncOutput:
    """Sync the catalog in a child process bounded by ``$ZOO_SYNC_TIMEOUT`` seconds.

    `force`, `strict` and `prune` are `zoo.catalog.sync.sync`'s; `settings` (default: the environment's)
    choose the plugins the child loads, the timeout and strictness.

    Plugin code runs only there. A plugin that hangs past the timeout, or ends the
    child (``os._exit``, a crash), is named in a `CatalogError`; unless `strict`, it is
    first recorded as failed by a second child that skips it, so the next command
    works without it (and ``zoo plugins`` shows why). ``zoo sync`` or a new version of
    the plugin tries it again.
    """
    settings = settings or Settings.from_environ()
    timeout = settings.sync_timeout
    strict = settings.strict_plugins if strict is None else strict
    forget_check(engine.url)
    culprits: dict[str, str] = {}  # plugin key -> why it is recorded as failed
    while True:
        with status("syncing the catalog"):
            done = _run_sync_child(engine, settings, force=force, strict=strict, prune=prune, skip=culprits)
        culprit = _culprit(done, timeout)
        if culprit is None or culprit[0] in culprits:  # a skipped plugin's code never runs
            break
        culprits[culprit[0]] = culprit[1]
        if strict:
            break
    if culprits:
        recorded = "" if strict or done.returncode != 0 else (
            "; recorded as failed (see zoo plugins); zoo sync tries it again")
        labels = {p.key: p.label for p in installed_plugins(settings.load_plugins)}
        named = "; ".join(f"{labels.get(key, repr(key))} {reason}" for key, reason in culprits.items())
        raise CatalogError(f"syncing the catalog failed: {named}{recorded}")
    if done.returncode != 0:
        raise CatalogError(_child_error(done, timeout))
    warnings = tuple(line for line in done.stderr.splitlines() if line.startswith(WARNING_PREFIX))
    return SyncOutput((done.stdout.strip().splitlines() or [""])[-1], warnings)


class ChildRun(NamedTuple):
    """How a sync child ended (`returncode` None: killed at the timeout) and the end of what it wrote."""

    returncode: int | None
    stdout: str
    stderr: str
    progress: str  # the LOADING_PREFIX / LOADED_PREFIX lines


def _run_sync_child(engine: Engine, settings: Settings, *, force: bool, strict: bool, prune: bool | None,
                    skip: dict[str, str]) -> ChildRun:
    """Run one sync child; on timeout (or our own interruption) kill its whole process group.

    The child leads a session of its own, so whatever a plugin starts can be killed
    with it; it asks the kernel to kill it when this process dies (``--parent``). Its
    output goes to unlinked temporary files, of which only the end is read: a plugin
    that prints without end costs disk, not this process's memory, and its progress
    lines have a file of their own (``--progress-fd``). Where this process shows progress (`zoo.progress`), the
    child shows its own there too (``--display-fd``).
    """
    # The child must see the same distributions (and so the same plugins) as we do.
    env = child_environment(settings.with_catalog(engine.url.render_as_string(hide_password=False)),
                            PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    with (tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, tempfile.TemporaryFile() as progress,
          display_fd() as display):  # where the child shows progress for people, if anywhere
        shown = () if display is None else (display,)
        args = ["--force" if force else "--no-force", "--strict" if strict else "--no-strict",
                "--skip", json.dumps(skip), "--parent", str(os.getpid()), "--progress-fd", str(progress.fileno()),
                *([] if prune is None else ["--prune" if prune else "--no-prune"]),
                *(f"--display-fd={fd}" for fd in shown)]
        child = subprocess.Popen(
            [sys.executable, "-c", _CHILD_PROGRAM, *args], env=env, stdin=subprocess.DEVNULL, stdout=out,
            stderr=err, pass_fds=(progress.fileno(), *shown), start_new_session=True,
        )
        try:
            returncode: int | None = child.wait(settings.sync_timeout)
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
        return running, f"did not finish loading within {timeout:g} s ({SYNC_TIMEOUT})"
    if done.returncode < 0:
        return running, f"ended the sync process (signal {-done.returncode}) while loading"
    return running, f"ended the sync process (exit code {done.returncode}) while loading"


def _child_error(done: ChildRun, timeout: float) -> str:
    """The child's own error message, or what happened to it when it printed none."""
    errors = [line for line in done.stderr.splitlines() if line.startswith(ERROR_PREFIX)]
    if errors:
        return errors[-1].removeprefix(ERROR_PREFIX)
    if done.returncode is None:
        return f"syncing the catalog did not finish within {timeout:g} s ({SYNC_TIMEOUT})"
    last = next((line.strip() for line in reversed(done.stderr.splitlines()) if line.strip()), None)
    said = f": {last[:200]}" if last else " and no message"
    return f"syncing the catalog failed: the sync process ended with exit code {done.returncode}{said}"

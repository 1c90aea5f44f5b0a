"""Is the catalog in step with the installed plugins? Answered without loading any.

The catalog stores a fingerprint of the plugins it was built from (names, targets,
distributions, versions) and of its schema revision. Lookups compare it with the
installed plugins and, when they differ, re-sync in a child process, so the caller
never imports torch or a plugin just to list models. Light: Core only, no ORM.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import warnings

from sqlalchemy import Connection, Engine, select

from zoo import __version__
from zoo.catalog import tables
from zoo.catalog.engine import URL_ENV, CatalogWarning, DamagedCatalogError, open_engine, read_only, where
from zoo.errors import ERROR_PREFIX, CatalogError
from zoo.plugins import PluginInfo, fingerprint, installed_plugins

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
            _sync_in_child(engine)
    return engine


def _sync_in_child(engine: Engine) -> None:
    env = dict(os.environ)
    env[URL_ENV] = engine.url.render_as_string(hide_password=False)
    # The child must see the same distributions (and so the same plugins) as we do.
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    done = subprocess.run(
        [sys.executable, "-m", "zoo.catalog.sync"], env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines() or ["(no output)"]
        raise CatalogError(f"syncing the catalog failed: {lines[-1].removeprefix(ERROR_PREFIX)}")

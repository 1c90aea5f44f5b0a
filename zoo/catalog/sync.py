"""Keeping the catalog in step with the installed plugins.

The catalog stores a fingerprint of the plugins it was built from (names, targets,
distributions, versions, the schema revision). Lookups compare it with the installed
plugins and, when they differ, re-sync in a child process, so the caller never
imports torch or a plugin just to list models. A sync loads the plugins first, then
rewrites the catalog in one write transaction: readers see the old catalog or the
new one, never half of either, and concurrent syncs queue instead of clashing.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, Engine, delete, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from zoo import __version__
from zoo.catalog.engine import URL_ENV, open_engine, write_transaction
from zoo.catalog.schema import CatalogState, MetricRow, ModelRow, PluginRow, WeightsRow
from zoo.errors import CatalogError, ZooError
from zoo.plugins import LoadedPlugin, PluginInfo, fingerprint, installed_plugins, load_plugins, strict_from_env
from zoo.specs import ModelSpec

#: The Alembic head revision; a test checks that it matches ``migrations/versions``.
SCHEMA_REVISION = "0001"
MIGRATIONS = Path(__file__).with_name("migrations")
FINGERPRINT_KEY = "plugins_fingerprint"


@dataclass(frozen=True)
class SyncReport:
    """What a sync did: every plugin tried, and whether the catalog was rewritten."""

    plugins: tuple[LoadedPlugin, ...]
    rewritten: bool

    @property
    def model_count(self) -> int:
        return sum(len(p.models) for p in self.plugins)


def catalog_fingerprint(plugins: list[PluginInfo]) -> str:
    """The fingerprint a catalog built from `plugins` by this zoo version would carry."""
    parts = f"{fingerprint(plugins)}|schema={SCHEMA_REVISION}|zoo={__version__}"
    return hashlib.sha256(parts.encode()).hexdigest()


def stored_fingerprint(engine: Engine) -> str | None:
    """The fingerprint the catalog holds, or None when it has none (new or unmigrated)."""
    try:
        with engine.connect() as conn:
            return conn.scalar(select(CatalogState.value).where(CatalogState.key == FINGERPRINT_KEY))
    except DBAPIError as exc:
        if _is_missing_table(exc):
            return None
        raise _unreachable(engine, exc) from None


def sync(url: str | None = None, *, force: bool = True, strict: bool | None = None) -> SyncReport:
    """Load the selected plugins and write their models into the catalog at `url`.

    With ``force=False`` the catalog is rewritten only when its fingerprint is stale.
    `strict` (default ``$ZOO_STRICT_PLUGINS``) makes a failing plugin an error that
    leaves the catalog as it was.
    """
    engine = open_engine(url)
    plugins = installed_plugins()
    wanted = catalog_fingerprint(plugins)
    if not force and stored_fingerprint(engine) == wanted:
        return SyncReport((), rewritten=False)
    loaded = tuple(load_plugins(plugins, strict=strict_from_env() if strict is None else strict))
    try:
        with write_transaction(engine) as conn:
            _migrate(conn)
            if not force and _fingerprint_in(conn) == wanted:
                return SyncReport(loaded, rewritten=False)  # another process synced meanwhile
            _replace_catalog(conn, loaded)
            conn.execute(delete(CatalogState).where(CatalogState.key == FINGERPRINT_KEY))
            conn.execute(CatalogState.__table__.insert().values(key=FINGERPRINT_KEY, value=wanted))
    except DBAPIError as exc:
        raise _unreachable(engine, exc) from None
    return SyncReport(loaded, rewritten=True)


def ensure_current(url: str | None = None) -> Engine:
    """The catalog's engine, after re-syncing it in a child process if it is stale."""
    engine = open_engine(url)
    if stored_fingerprint(engine) != catalog_fingerprint(installed_plugins()):
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
        raise CatalogError(f"syncing the catalog failed: {lines[-1]}")


def _migrate(conn: Connection) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = conn
    command.upgrade(config, "head")


def _fingerprint_in(conn: Connection) -> str | None:
    return conn.scalar(select(CatalogState.value).where(CatalogState.key == FINGERPRINT_KEY))


def _replace_catalog(conn: Connection, loaded: tuple[LoadedPlugin, ...]) -> None:
    for table in (MetricRow, WeightsRow, ModelRow, PluginRow):
        conn.execute(delete(table))
    with Session(bind=conn) as session:
        for result in loaded:
            info = result.info
            plugin = PluginRow(
                name=info.name,
                target=info.target,
                distribution=info.distribution,
                version=info.version,
                status="loaded" if result.ok else "failed",
                error=result.error,
            )
            plugin.models = [_model_row(spec) for spec in result.models]
            session.add(plugin)
        session.flush()


def _model_row(spec: ModelSpec) -> ModelRow:
    row = ModelRow(
        name=spec.name,
        task=spec.task,
        builder=spec.builder,
        weights_enum=spec.weights_enum,
        num_params=spec.num_params,
        tags=list(spec.tags),
        meta=spec.metadata,
    )
    for w in spec.weights:
        weights = WeightsRow(
            enum_name=spec.weights_enum_name,
            member_name=w.member,
            url=w.url,
            sha256=w.sha256,
            file_size=w.file_size,
            transforms=w.transforms,
            meta=w.meta,
            is_default=w.is_default,
        )
        weights.metrics = [
            MetricRow(dataset=dataset, name=name, value=float(value))
            for dataset, values in (w.meta.get("_metrics") or {}).items()
            for name, value in values.items()
            if isinstance(value, (int, float))
        ]
        row.weights.append(weights)
    return row


def _is_missing_table(exc: DBAPIError) -> bool:
    text = str(exc.orig).lower()
    return "no such table" in text or ("relation" in text and "does not exist" in text)


def _unreachable(engine: Engine, exc: DBAPIError) -> CatalogError:
    where = engine.url.render_as_string(hide_password=True)
    reason = str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip() else type(exc.orig).__name__
    return CatalogError(f"cannot use the catalog at {where}: {reason}")


def main() -> int:
    """Entry point of the child process that `ensure_current` starts."""
    try:
        sync(force=False)
    except ZooError as exc:
        print(f"zoo: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Writing the installed plugins' models into the catalog.

A sync loads the plugins first (the slow part, outside any lock), then rewrites the
catalog in one write transaction: readers see the old catalog or the new one, never
half of either, and processes syncing at once queue instead of clashing. Migrations
run inside the same transaction. Lookups trigger a sync by themselves when the
catalog is stale (`zoo.catalog.fingerprint`); ``zoo sync`` forces one.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, delete
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from zoo.catalog import tables
from zoo.catalog.engine import open_engine, write_transaction
from zoo.catalog.fingerprint import (
    FINGERPRINT_KEY,
    catalog_fingerprint,
    fingerprint_in,
    stored_fingerprint,
    unreachable,
)
from zoo.catalog.schema import MetricRow, ModelRow, PluginRow, WeightsRow
from zoo.errors import ERROR_PREFIX, ZooError
from zoo.plugins import LoadedPlugin, installed_plugins, load_plugins, strict_from_env
from zoo.specs import ModelSpec

MIGRATIONS = Path(__file__).with_name("migrations")


@dataclass(frozen=True)
class SyncReport:
    """What a sync did: every plugin tried, and whether the catalog was rewritten."""

    plugins: tuple[LoadedPlugin, ...]
    rewritten: bool

    @property
    def model_count(self) -> int:
        return sum(len(p.models) for p in self.plugins)


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
            if not force and fingerprint_in(conn) == wanted:
                return SyncReport(loaded, rewritten=False)  # another process synced meanwhile
            _replace_catalog(conn, loaded)
            state = tables.catalog_state
            conn.execute(delete(state).where(state.c.key == FINGERPRINT_KEY))
            conn.execute(state.insert().values(key=FINGERPRINT_KEY, value=wanted))
    except DBAPIError as exc:
        raise unreachable(engine, exc) from None
    return SyncReport(loaded, rewritten=True)


def _migrate(conn: Connection) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = conn
    command.upgrade(config, "head")


def _replace_catalog(conn: Connection, loaded: tuple[LoadedPlugin, ...]) -> None:
    for table in (tables.metrics, tables.weights, tables.models, tables.plugins):
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
        classifier=list(spec.classifier),
        first_conv=spec.first_conv,
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


def main() -> int:
    """Entry point of the child process that `ensure_current` starts."""
    try:
        sync(force=False)
    except ZooError as exc:
        print(f"{ERROR_PREFIX}{exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

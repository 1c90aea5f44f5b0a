"""Writing the installed plugins' models into the catalog.

A sync loads the plugins first (the slow part, outside any lock), then rewrites the
catalog in one write transaction: readers see the old catalog or the new one, never
half of either, and processes syncing at once queue instead of clashing. Migrations
run inside the same transaction. Lookups trigger a sync by themselves when the
catalog is stale (`zoo.catalog.fingerprint`); ``zoo sync`` forces one.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from sqlalchemy import JSON, Connection, DateTime, Engine, Float, Integer, Table, delete, inspect, text
from sqlalchemy.types import TypeEngine
from sqlalchemy.orm import Session

from zoo.catalog import tables
from zoo.catalog.engine import (
    URL_ENV,
    DamagedCatalogError,
    open_engine,
    require_writable,
    where,
    write_transaction,
)
from zoo.catalog.fingerprint import (
    FINGERPRINT_KEY,
    catalog_fingerprint,
    fingerprint_in,
    stored_fingerprint,
)
from zoo.catalog.schema import MetricRow, ModelRow, PluginRow, WeightsRow
from zoo.errors import ERROR_PREFIX, WARNING_PREFIX, CatalogError, ZooError, excerpt, first_line
from zoo.plugins import (
    LOADED_PREFIX,
    LOADING_PREFIX,
    LoadedPlugin,
    PluginInfo,
    installed_plugins,
    load_plugins,
    strict_from_env,
)
from zoo.specs import ModelSpec

MIGRATIONS = Path(__file__).with_name("migrations")
#: Tables every sync rewrites from the plugins: rebuilt empty when damaged.
DERIVED = (tables.plugins, tables.models, tables.weights, tables.metrics, tables.catalog_state)
#: Tables whose rows only this catalog knows (learned hashes, export records): kept when rebuilt.
KEPT = (tables.weight_files, tables.exports)


@dataclass(frozen=True)
class SyncReport:
    """What a sync did: every plugin tried, whether the catalog was rewritten, what was repaired."""

    plugins: tuple[LoadedPlugin, ...]
    rewritten: bool
    repairs: tuple[str, ...] = ()  # what a damaged catalog needed, e.g. "created the missing table exports"

    @property
    def model_count(self) -> int:
        return sum(len(p.models) for p in self.plugins)


def sync(
    url: str | None = None,
    *,
    force: bool = True,
    strict: bool | None = None,
    skip: Mapping[str, str] | None = None,
    watch: Callable[[PluginInfo], AbstractContextManager[object]] | None = None,
) -> SyncReport:
    """Load the selected plugins and write their models into the catalog at `url`.

    With ``force=False`` the catalog is rewritten only when its fingerprint is stale.
    `strict` (default ``$ZOO_STRICT_PLUGINS``) makes a failing plugin an error that
    leaves the catalog as it was. `skip` and `watch` go to `zoo.plugins.load_plugins`.
    """
    engine = open_engine(url)
    require_writable(engine.url)
    plugins = installed_plugins()
    wanted = catalog_fingerprint(plugins)
    current = stored_fingerprint(engine)  # also fails fast, before the slow part, on a catalog we cannot use
    if not force and current == wanted:
        return SyncReport((), rewritten=False)
    strict = strict_from_env() if strict is None else strict
    loaded = tuple(load_plugins(plugins, strict=strict, skip=skip, watch=watch))
    with write_transaction(engine) as conn:
        repairs = _prepare_schema(conn)
        if not force and fingerprint_in(conn) == wanted:
            return SyncReport(loaded, rewritten=False, repairs=repairs)  # another process synced meanwhile
        _replace_catalog(conn, loaded)
        state = tables.catalog_state
        conn.execute(delete(state).where(state.c.key == FINGERPRINT_KEY))
        conn.execute(state.insert().values(key=FINGERPRINT_KEY, value=wanted))
    _checkpoint(engine)
    return SyncReport(loaded, rewritten=True, repairs=repairs)


def _checkpoint(engine: Engine) -> None:
    """Move a SQLite catalog's write-ahead log into the file itself.

    Then the file alone is the whole catalog, even if this process ends abruptly: it
    can be copied, or made read-only and read without its log.
    """
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")


def _prepare_schema(conn: Connection) -> tuple[str, ...]:
    """Bring the schema to the head revision and rebuild whatever is missing from it.

    Migrations assume the tables of their revision exist; when they do not (a table
    dropped, the revision record lost), the schema is stamped as head instead and
    `_rebuild` verifies it against `tables.metadata`. Returns what was repaired.
    """
    _check_intact(conn)
    _check_revision(conn)
    repairs: list[str] = []
    try:
        with conn.begin_nested():
            _alembic(conn, "upgrade")
    except DamagedCatalogError:
        repairs.append("its tables did not match its schema revision")
        _alembic(conn, "stamp")
    except CatalogError:  # e.g. "table ... already exists": the revision record was lost
        if _revision(conn) is not None:
            raise
        repairs.append("its schema revision record (alembic_version) was gone or unreadable")
        _alembic(conn, "stamp")
    return (*repairs, *_rebuild(conn))


def _check_intact(conn: Connection) -> None:
    """Refuse a corrupt SQLite file before writing into it; a sync cannot repair its pages."""
    if conn.dialect.name != "sqlite":
        return
    verdict = conn.exec_driver_sql("PRAGMA quick_check(1)").scalar()
    if verdict != "ok":
        raise DamagedCatalogError(
            f"{where(conn.engine.url)} is corrupt ({verdict}); move it away and run `zoo sync` to build a new one",
            missing=False,
        )


def _check_revision(conn: Connection) -> None:
    """Refuse a schema revision this zoo does not know: a newer zoo wrote it, and may need what it has."""
    revision = _revision(conn)
    scripts = _scripts()
    if revision is not None and revision not in {script.revision for script in scripts.walk_revisions()}:
        raise CatalogError(
            f"{where(conn.engine.url)} has schema revision {excerpt(revision)}, which this zoo does not know "
            f"(its newest is {scripts.get_current_head()!r}): a newer zoo made it; upgrade zoo, or move it away, "
            f"or point {URL_ENV} at another catalog"
        )


def _revision(conn: Connection) -> str | None:
    """The schema revision Alembic recorded, or None when there is none.

    A record that cannot be read (its column gone, several rows in a linear history)
    is dropped as lost, so that the schema is verified and stamped afresh.
    """
    inspector = inspect(conn)
    if "alembic_version" not in inspector.get_table_names():
        return None
    readable = "version_num" in {c["name"] for c in inspector.get_columns("alembic_version")}
    rows = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() if readable else []
    if len(rows) == 1:
        return rows[0]
    if rows or not readable:
        conn.execute(text("DROP TABLE alembic_version"))
    return None


def _scripts():  # -> alembic.script.ScriptDirectory, imported late (alembic is needed only to sync)
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config())


def _alembic_config(conn: Connection | None = None):  # -> alembic.config.Config
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = conn
    return config


def _alembic(conn: Connection, action: str) -> None:
    """Run ``alembic upgrade head`` or ``alembic stamp head`` on `conn`."""
    from alembic import command
    from alembic.util.exc import CommandError

    try:
        getattr(command, action)(_alembic_config(conn), "head")
    except CommandError as exc:
        raise CatalogError(f"cannot migrate {where(conn.engine.url)}: {first_line(exc)}") from None


def _missing_columns(conn: Connection) -> dict[Table, set[str]]:
    """Every table of the schema that lacks columns in the database, with the names it lacks."""
    inspector = inspect(conn)
    present = set(inspector.get_table_names())
    missing = {}
    for table in tables.metadata.sorted_tables:
        have = {c["name"] for c in inspector.get_columns(table.name)} if table.name in present else set()
        lacking = {c.name for c in table.columns} - have
        if lacking:
            missing[table] = lacking
    return missing


def _rebuild(conn: Connection) -> list[str]:
    """Recreate missing tables and columns: the derived tables empty (the sync refills them),
    the kept ones (learned hashes, export records) with every row that can be kept."""
    missing = _missing_columns(conn)
    repairs = []
    damaged = [t.name for t in DERIVED if t in missing]
    if damaged:
        existing = set(inspect(conn).get_table_names())
        for table in reversed(tables.metadata.sorted_tables):
            if table in DERIVED and table.name in existing:
                table.drop(conn)
        tables.metadata.create_all(conn, tables=DERIVED)
        repairs.append(f"rebuilt the table(s) {', '.join(damaged)} (their rows come from the plugins)")
    repairs.extend(_salvage(conn, table, missing[table]) for table in KEPT if table in missing)
    repairs.extend(_drop_unreadable_rows(conn, table) for table in KEPT)
    return [repair for repair in repairs if repair]


def _drop_unreadable_rows(conn: Connection, table: Table) -> str:
    """Delete the rows of a kept table that SQLite (which types values loosely) holds in a form they cannot be read in.

    PostgreSQL enforces column types itself. Returns what was done, or "" when nothing.
    """
    if conn.dialect.name != "sqlite":
        return ""
    quote = conn.dialect.identifier_preparer.quote
    unreadable = " OR ".join(_unreadable(quote(c.name), c.type, c.nullable) for c in table.columns)
    dropped = conn.execute(text(f"DELETE FROM {quote(table.name)} WHERE {unreadable}")).rowcount
    return f"dropped {dropped} unreadable row(s) of {table.name}" if dropped else ""


def _unreadable(name: str, kind: TypeEngine, nullable: bool) -> str:
    """A SQLite condition true when the column `name` holds a value its type cannot read."""
    if isinstance(kind, JSON):
        wrong = f"NOT json_valid({name})"
    elif isinstance(kind, Integer):
        wrong = f"typeof({name}) != 'integer'"
    elif isinstance(kind, Float):
        wrong = f"typeof({name}) NOT IN ('real', 'integer')"
    elif isinstance(kind, DateTime):
        wrong = f"typeof({name}) != 'text' OR datetime({name}) IS NULL"
    else:
        wrong = f"typeof({name}) != 'text'"
    if nullable:
        return f"({name} IS NOT NULL AND ({wrong}))"
    return f"({name} IS NULL OR ({wrong}))"


def _salvage(conn: Connection, table: Table, lacking: set[str]) -> str:
    """Recreate `table` with the schema's columns, keeping each row whose required columns survive."""
    if lacking == {c.name for c in table.columns}:
        table.create(conn)
        return f"created the missing table {table.name}"
    required = {c.name for c in table.columns if not c.nullable}
    if required & lacking:
        table.drop(conn)
        table.create(conn)
        return f"rebuilt {table.name} empty: its column(s) {', '.join(sorted(required & lacking))} were gone"
    quote = conn.dialect.identifier_preparer.quote
    names = ", ".join(quote(c.name) for c in table.columns if c.name not in lacking)
    complete = " AND ".join(f"{quote(name)} IS NOT NULL" for name in sorted(required))
    conn.execute(text(f"CREATE TEMPORARY TABLE zoo_salvage AS SELECT {names} FROM {quote(table.name)} WHERE {complete}"))
    table.drop(conn)
    table.create(conn)
    kept = conn.execute(text(f"INSERT INTO {quote(table.name)} ({names}) SELECT {names} FROM zoo_salvage")).rowcount
    conn.execute(text("DROP TABLE zoo_salvage"))
    return f"rebuilt {table.name} (column(s) {', '.join(sorted(lacking))} were gone), keeping {kept} row(s)"


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


def main(argv: Sequence[str]) -> None:
    """The sync child that `zoo.catalog.fingerprint.sync_in_child` starts: sync, report, exit.

    Plugins' own output goes to stderr, so stdout carries only the summary. Lines on
    ``--progress-fd`` name each plugin before and after its code runs, so the parent
    can name one that hangs or ends this process. The child ends with ``os._exit`` once its report
    is out, so threads or exit handlers a plugin left behind cannot keep it alive.
    """
    options = _child_options(argv)
    _die_with_parent(options.parent)
    status = 0
    try:
        with contextlib.redirect_stdout(sys.stderr):
            report = sync(force=options.force, strict=options.strict, skip=json.loads(options.skip),
                          watch=partial(_announced, options.progress_fd))
    except ZooError as exc:
        print(f"{ERROR_PREFIX}{exc}", file=sys.stderr)
        status = 1
    else:
        failed = [p for p in report.plugins if not p.ok]
        print(f"synced {report.model_count} model(s) from {len(report.plugins) - len(failed)} plugin(s)")
        for p in failed:
            print(f"{WARNING_PREFIX}plugin {p.info.name} failed: {p.error}", file=sys.stderr)
        for repair in report.repairs:
            print(f"{WARNING_PREFIX}the catalog was damaged: {repair}", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def _child_options(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="zoo.catalog.sync")
    parser.add_argument("--force", action=argparse.BooleanOptionalAction, default=False)
    parser.add_argument("--strict", action=argparse.BooleanOptionalAction, default=False)
    parser.add_argument("--skip", default="{}", help="JSON object: plugin name -> why it is recorded as failed unloaded")
    parser.add_argument("--parent", type=int, help="the process id of the parent this child must not outlive")
    parser.add_argument("--progress-fd", type=int, help="where to write which plugin's code runs")
    return parser.parse_args(argv)


def _die_with_parent(parent: int | None) -> None:
    """Have Linux kill this process when `parent` dies (PR_SET_PDEATHSIG), and end now if it already has.

    A killed ``zoo`` command then leaves no sync child behind, even one whose plugin
    hangs. Elsewhere the parent's timeout is the only bound.
    """
    if parent is None or not sys.platform.startswith("linux"):
        return
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
    if os.getppid() != parent:  # it died before the request took effect: we were re-parented
        os._exit(1)


@contextlib.contextmanager
def _announced(fd: int | None, info: PluginInfo) -> Iterator[None]:
    """Tell the parent, by a line on file descriptor `fd`, which plugin's code runs now."""
    if fd is not None:
        os.write(fd, f"{LOADING_PREFIX}{info.name}\n".encode())
    yield
    if fd is not None:
        os.write(fd, f"{LOADED_PREFIX}{info.name}\n".encode())

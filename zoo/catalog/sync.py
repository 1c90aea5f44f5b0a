"""Writing the installed plugins' models into the catalog.

A sync loads the plugins first (the slow part, outside any lock), then writes the
catalog in one write transaction: readers see the old catalog or the new one, never
half of either, and processes syncing at once queue instead of clashing. Migrations
run inside the same transaction. Lookups trigger a sync by themselves when the
catalog is stale (`zoo.catalog.fingerprint`); ``zoo sync`` forces one.

Catalogs merge: a sync upserts the rows of the plugins it loaded (a plugin is its
entry-point name and distribution), replaces only their models, weights, metrics
and failed models, and leaves every other plugin's rows alone, so machines with
different plugins can share one PostgreSQL catalog. Pruning deletes the rows of
plugins not installed here: by default on SQLite (a private catalog), never on
PostgreSQL unless asked (``zoo sync --prune``).

Namespaces: every plugin row gets one, the PLUGIN of ``PLUGIN/NAME``: its
entry-point name, unless another plugin holds that already (in the catalog, or
earlier in this load): then its normalised distribution name. Once given, a
namespace stays with its plugin across syncs.

Who answers a bare name (`answering_row`; ``models.preferred``, one row per name):
installing a plugin never changes what an existing name means. The plugin whose
model answered a name before a sync keeps answering it as long as it still
provides the name, also when it is re-synced. A name new to the catalog, or whose
plugin left it, goes to a bundled plugin's model first (torchvision, digits, timm, in
that order), then to the plugin first
synced into this catalog (the lowest plugin id: ids are kept across syncs and
given in load order).

A weights entry's category list (``meta["categories"]``) is stored once in
``category_lists`` for all entries that share it; lists no entry uses are deleted.
Every sync that writes remakes the full-text search index of all the catalog's models
(`zoo.catalog.search`), made anew where it was lost.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import itertools
import json
import os
import signal
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, Connection, DateTime, Engine, Float, Integer, Row, Table, delete, inspect, select, text, update
from sqlalchemy.types import TypeEngine
from sqlalchemy.orm import Session

from zoo import progress
from zoo.catalog import search, tables
from zoo.catalog.tables import GENERATION_KEY
from zoo.catalog.engine import (
    REGISTRY_URL,
    DamagedCatalogError,
    open_engine,
    require_writable,
    where,
    write_transaction,
)
from zoo.catalog.fingerprint import (
    catalog_staleness,
    forget_check,
    plugin_fingerprint,
    prunes_by_default,
    staleness,
)
from zoo.catalog.schema import MetricRow, ModelFailureRow, ModelRow, PluginRow, WeightsRow
from zoo.errors import ERROR_PREFIX, WARNING_PREFIX, CatalogError, ZooError, excerpt, first_line
from zoo.plugins import (
    LOADED_PREFIX,
    LOADING_PREFIX,
    LoadedPlugin,
    PluginInfo,
    bundled_rank,
    installed_plugins,
    load_plugins,
    normalized,
    strict_from_env,
)
from zoo.specs import ModelSpec, WeightsSpec

MIGRATIONS = Path(__file__).with_name("migrations")
#: Tables whose rows come from the plugins: rebuilt empty when damaged.
DERIVED = (tables.plugins, tables.models, tables.category_lists, tables.weights, tables.metrics,
           tables.model_failures, tables.catalog_state)
#: Tables whose rows only this catalog knows (learned hashes, export records, what was published,
#: the service's tokens, measured metrics): kept when rebuilt, never pruned.
KEPT = (tables.weight_files, tables.exports, tables.published_weights, tables.weight_aliases,
        tables.published_exports, tables.tokens, tables.measurements)
#: How many row ids one UPDATE names (well under SQLite's limit on parameters).
_CHUNK = 500


@dataclass(frozen=True)
class SyncReport:
    """What a sync did: every plugin tried, whether the catalog was written, what was pruned and repaired."""

    plugins: tuple[LoadedPlugin, ...]
    rewritten: bool
    repairs: tuple[str, ...] = ()  # what a damaged catalog needed, e.g. "created the missing table exports"
    pruned: tuple[str, ...] = ()  # namespaces of the plugins removed as not installed here

    @property
    def model_count(self) -> int:
        return sum(len(p.models) for p in self.plugins)


def sync(
    url: str | None = None,
    *,
    force: bool = True,
    strict: bool | None = None,
    prune: bool | None = None,
    skip: Mapping[str, str] | None = None,
    watch: Callable[[PluginInfo], AbstractContextManager[object]] | None = None,
) -> SyncReport:
    """Load the selected plugins and write their rows into the catalog at `url`.

    With ``force=False`` only plugins whose rows are missing or out of date are loaded
    and written (none when the catalog is current). `prune` (default: on SQLite, not
    on PostgreSQL) also deletes the rows of plugins not installed here. `strict`
    (default ``$ZOO_STRICT_PLUGINS``) makes a failing plugin or model an error that
    leaves the catalog as it was. `skip` and `watch` go to `zoo.plugins.load_plugins`.
    """
    engine = open_engine(url)
    require_writable(engine.url)
    plugins = installed_plugins()
    prune = prunes_by_default(engine.url) if prune is None else prune
    found = catalog_staleness(engine, plugins)  # also fails fast, before the slow part, on a catalog we cannot use
    if not force and found is not None and not found.stale(prune):
        return SyncReport((), rewritten=False)
    forget_check(engine.url)
    strict = strict_from_env() if strict is None else strict
    wanted = plugins if force or found is None else found.outdated
    running = [info for info in wanted if info.key not in (skip or {})]  # skipped ones run no code
    with progress.bar(len(running), "loading plugins", unit="plugin") as bar:
        loaded = tuple(load_plugins(wanted, strict=strict, skip=skip, watch=partial(_counted, bar, watch)))
    writing = progress.status(f"writing {sum(len(p.models) for p in loaded)} model(s) into the catalog")
    with writing, write_transaction(engine) as conn:
        repairs = _prepare_schema(conn)
        now = staleness(conn, plugins)
        if not force and not now.stale(prune):
            return SyncReport(loaded, rewritten=False, repairs=repairs)  # another process synced meanwhile
        pruned = _write_catalog(conn, loaded, now.foreign if prune else [])
    _checkpoint(engine)
    return SyncReport(loaded, rewritten=True, repairs=repairs, pruned=pruned)


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
            f"or point {REGISTRY_URL} at another catalog"
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


def _write_catalog(conn: Connection, loaded: Sequence[LoadedPlugin], prune: Sequence[int]) -> tuple[str, ...]:
    """Delete the plugins with ids `prune`, upsert the `loaded` ones; returns the pruned namespaces."""
    answered = dict(conn.execute(select(tables.models.c.name, tables.models.c.plugin_id)
                                 .where(tables.models.c.preferred)).all())
    pruned = _prune(conn, prune)
    namespaces = _namespaces(conn, [result.info for result in loaded])
    categories: dict[str, int] = {}
    with Session(bind=conn, autoflush=False) as session:
        for result in loaded:
            _write_plugin(session, result, namespaces[result.info.key], categories)
            session.flush()
    conn.execute(delete(tables.category_lists).where(
        tables.category_lists.c.id.not_in(select(tables.weights.c.categories_id)
                                          .where(tables.weights.c.categories_id.is_not(None)))))
    _choose_preferred(conn, answered)
    search.refresh(conn)
    _new_generation(conn)
    return pruned


def _new_generation(conn: Connection) -> None:
    """Give the catalog a new generation: processes that kept what they read before read it again."""
    state = tables.catalog_state
    conn.execute(delete(state).where(state.c.key == GENERATION_KEY))
    conn.execute(state.insert().values(key=GENERATION_KEY, value=uuid.uuid4().hex))


def _prune(conn: Connection, ids: Sequence[int]) -> tuple[str, ...]:
    """Delete the plugin rows `ids` (their models and the rest go with them); their namespaces."""
    p = tables.plugins
    namespaces = conn.scalars(select(p.c.namespace).where(p.c.id.in_(ids)).order_by(p.c.namespace)).all()
    conn.execute(delete(p).where(p.c.id.in_(ids)))
    return tuple(namespaces)


def _namespaces(conn: Connection, infos: Sequence[PluginInfo]) -> dict[str, str]:
    """The namespace of each plugin in `infos`, by key: the one it holds, else its entry-point name, else its
    distribution's, whichever is free first (in the catalog and among `infos` before it)."""
    p = tables.plugins
    held = {(r.name, r.distribution): r.namespace for r in conn.execute(select(p.c.name, p.c.distribution,
                                                                               p.c.namespace))}
    taken = set(held.values())
    given = {}
    for info in infos:
        namespace = held.get((info.name, info.distribution))
        if namespace is None:
            base = normalized(info.distribution) if info.distribution else info.name.lower()
            candidates = itertools.chain([info.name.lower(), base], (f"{base}-{n}" for n in itertools.count(2)))
            namespace = next(c for c in candidates if c not in taken)
            taken.add(namespace)
        given[info.key] = namespace
    return given


def _write_plugin(session: Session, result: LoadedPlugin, namespace: str, categories: dict[str, int]) -> None:
    """Upsert the plugin row of `result` and replace its models and failed models."""
    info = result.info
    row = session.scalars(select(PluginRow).where(
        PluginRow.name == info.name, PluginRow.distribution.is_not_distinct_from(info.distribution))).one_or_none()
    if row is None:
        row = PluginRow(name=info.name, distribution=info.distribution, namespace=namespace)
        session.add(row)
    else:  # the database deletes their weights and metrics with them
        session.execute(delete(tables.models).where(tables.models.c.plugin_id == row.id))
        session.execute(delete(tables.model_failures).where(tables.model_failures.c.plugin_id == row.id))
    row.target, row.version, row.fingerprint = info.target, info.version, plugin_fingerprint(info)
    row.status, row.error = ("loaded", None) if result.ok else ("failed", result.error)
    row.synced_at = datetime.now(timezone.utc)
    conn = session.connection()
    row.models = [_model_row(conn, spec, categories) for spec in result.models]
    row.failures = [ModelFailureRow(name=f.name, error=f.error, traceback=f.traceback) for f in result.failures]


def _model_row(conn: Connection, spec: ModelSpec, categories: dict[str, int]) -> ModelRow:
    row = ModelRow(
        name=spec.name,
        preferred=False,  # chosen for all rows at the end (_choose_preferred)
        task=spec.task,
        builder=spec.builder,
        weights_enum=spec.weights_enum,
        num_params=spec.num_params,
        tags=list(spec.tags),
        meta=spec.metadata,
        classifier=list(spec.classifier),
        first_conv=spec.first_conv,
        builder_args=dict(spec.builder_args),
        input_size=list(spec.input_size) if spec.input_size is not None else None,
    )
    row.weights = [_weights_row(conn, spec, w, categories) for w in spec.weights]
    return row


def _weights_row(conn: Connection, spec: ModelSpec, w: WeightsSpec, categories: dict[str, int]) -> WeightsRow:
    meta = dict(w.meta)
    shared = meta.pop("categories") if isinstance(meta.get("categories"), list) else None
    return WeightsRow(
        enum_name=spec.weights_enum_name,
        member_name=w.member,
        url=w.url,
        sha256=w.sha256,
        file_size=w.file_size,
        transforms=w.transforms_json(),
        meta=meta,
        is_default=w.is_default,
        builder_args=dict(w.builder_args),
        task=w.task,
        categories_id=_category_list(conn, shared, categories) if shared is not None else None,
        metrics=[
            MetricRow(dataset=dataset, name=name, value=float(value))
            for dataset, values in _dict(w.meta.get("_metrics")).items()
            for name, value in _dict(values).items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)
        ],
    )


def _dict(value: Any) -> dict[str, Any]:
    """`value` when it is a dict, else an empty one (metadata a plugin shaped otherwise has no metrics)."""
    return value if isinstance(value, dict) else {}


def _category_list(conn: Connection, categories: list[Any], known: dict[str, int]) -> int:
    """The id of the `category_lists` row holding `categories`, added if new; `known` caches them by SHA-256."""
    digest = hashlib.sha256(json.dumps(categories, separators=(",", ":")).encode()).hexdigest()
    if digest not in known:
        c = tables.category_lists
        found = conn.scalar(select(c.c.id).where(c.c.sha256 == digest))
        known[digest] = found if found is not None else conn.execute(
            c.insert().values(sha256=digest, categories=categories)).inserted_primary_key[0]
    return known[digest]


def answering_row(providers: Sequence[Row], owner: int | None) -> Row:
    """Of the model rows `providers` (one name, several plugins), the one that answers the bare name.

    The row of `owner` (the plugin whose model answered it before this sync) while it
    still provides the name; else a bundled plugin's, then the plugin first synced
    into this catalog (lowest plugin id). Bundled plugins come in the order of
    `zoo.plugins.BUNDLED`: torchvision first. Rows have ``plugin_id`` and ``distribution``.
    """
    for row in providers:
        if row.plugin_id == owner:
            return row
    return min(providers, key=lambda row: (bundled_rank(row.distribution), row.plugin_id))


def _choose_preferred(conn: Connection, answered: Mapping[str, int]) -> None:
    """Set ``models.preferred`` so that one row answers each name (`answering_row`), given who `answered` before."""
    m, p = tables.models, tables.plugins
    rows = conn.execute(select(m.c.id, m.c.name, m.c.plugin_id, m.c.preferred, p.c.distribution)
                        .join(p, p.c.id == m.c.plugin_id)).all()
    by_name: dict[str, list[Row]] = {}
    for row in rows:
        by_name.setdefault(row.name, []).append(row)
    chosen = {answering_row(providers, answered.get(name)).id for name, providers in by_name.items()}
    for value, ids in ((False, [r.id for r in rows if r.preferred and r.id not in chosen]),
                       (True, [r.id for r in rows if not r.preferred and r.id in chosen])):
        for start in range(0, len(ids), _CHUNK):
            conn.execute(update(m).where(m.c.id.in_(ids[start:start + _CHUNK])).values(preferred=value))


def main(argv: Sequence[str]) -> None:
    """The sync child that `zoo.catalog.fingerprint.sync_in_child` starts: sync, report, exit.

    Plugins' own output goes to stderr, so stdout carries only the summary. Lines on
    ``--progress-fd`` name each plugin before and after its code runs, so the parent
    can name one that hangs or ends this process; progress for people (`zoo.progress`) shows on
    ``--display-fd``, the parent's terminal, when given. The child ends with ``os._exit`` once its report
    is out, so threads or exit handlers a plugin left behind cannot keep it alive.
    """
    options = _child_options(argv)
    die_with_parent(options.parent)
    terminal = None if options.display_fd is None else os.fdopen(options.display_fd, "w", buffering=1,
                                                                  encoding="utf-8", errors="replace")
    status = 0
    try:  # progress shows on the parent's terminal, if it has one, not in the captured stderr
        with contextlib.redirect_stdout(sys.stderr), progress.shown_on(terminal):
            report = sync(force=options.force, strict=options.strict, prune=options.prune,
                          skip=json.loads(options.skip), watch=partial(_announced, options.progress_fd))
    except ZooError as exc:
        print(f"{ERROR_PREFIX}{exc}", file=sys.stderr)
        status = 1
    else:
        _print_report(report)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def _print_report(report: SyncReport) -> None:
    """The sync child's summary line on stdout; what failed, was pruned or repaired as warnings on stderr."""
    failed = [p for p in report.plugins if not p.ok]
    print(f"synced {report.model_count} model(s) from {len(report.plugins) - len(failed)} plugin(s)"
          + (f"; removed {len(report.pruned)} plugin(s) not installed here: {', '.join(report.pruned)}"
             if report.pruned else ""))
    for p in failed:
        print(f"{WARNING_PREFIX}plugin {p.info.label} failed: {p.error}", file=sys.stderr)
    for p in report.plugins:
        if p.failures:
            print(f"{WARNING_PREFIX}plugin {p.info.label}: {len(p.failures)} model(s) failed: "
                  f"{', '.join(f.name for f in p.failures)} (see zoo plugins --verbose)", file=sys.stderr)
    for repair in report.repairs:
        print(f"{WARNING_PREFIX}the catalog was damaged: {repair}", file=sys.stderr)


def _child_options(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="zoo.catalog.sync")
    parser.add_argument("--force", action=argparse.BooleanOptionalAction, default=False)
    parser.add_argument("--strict", action=argparse.BooleanOptionalAction, default=False)
    parser.add_argument("--prune", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--skip", default="{}", help="JSON object: plugin key -> why it is recorded as failed unloaded")
    parser.add_argument("--parent", type=int, help="the process id of the parent this child must not outlive")
    parser.add_argument("--progress-fd", type=int, help="where to write which plugin's code runs")
    parser.add_argument("--display-fd", type=int, help="the parent's terminal, to show progress on for people")
    return parser.parse_args(argv)


def die_with_parent(parent: int | None) -> None:
    """Have Linux kill this process when `parent` dies (PR_SET_PDEATHSIG), and end now if it already has.

    A killed ``zoo`` command then leaves no sync child behind, even one whose plugin
    hangs (nor training processes: `zoo.training.distributed` calls it in each). Elsewhere
    the parent's timeout is the only bound.
    """
    if parent is None or not sys.platform.startswith("linux"):
        return
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
    if os.getppid() != parent:  # it died before the request took effect: we were re-parented
        os._exit(1)


@contextlib.contextmanager
def _counted(bar: Any, watch: Callable[[PluginInfo], AbstractContextManager[object]] | None,
             info: PluginInfo) -> Iterator[None]:
    """`watch(info)` (when given) around a plugin's code, counted on the progress `bar` with its name shown."""
    bar.set_postfix_str(info.name)
    with watch(info) if watch else contextlib.nullcontext():
        yield
    bar.update()


@contextlib.contextmanager
def _announced(fd: int | None, info: PluginInfo) -> Iterator[None]:
    """Tell the parent, by a line on file descriptor `fd`, which plugin's code runs now."""
    if fd is not None:
        os.write(fd, f"{LOADING_PREFIX}{info.key}\n".encode())
    yield
    if fd is not None:
        os.write(fd, f"{LOADED_PREFIX}{info.key}\n".encode())

"""Published weights and exports in the catalog: versions and aliases, read as typed records.

Names and records are `zoo.records`'s (``NAMESPACE/NAME[:VERSION|@ALIAS]``).

Versions are numbered 1, 2, ... per name by `add_version` inside the catalog's write
transaction (`zoo.catalog.engine.write_transaction`: SQLite's write lock, PostgreSQL's
advisory lock), so concurrent publishers never get the same number; the UNIQUE
constraint on (namespace, name, version) guards it as well. These rows are not a
plugin's: syncs and prunes keep them. Rows become records (`PublishedWeights`,
`PublishedExport`) here, at the store boundary. Core only, no torch.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Connection, Engine, Row, delete, func, select

from zoo.catalog.engine import write_transaction
from zoo.catalog.tables import CHANGES_KEY, catalog_state, published_exports, published_weights, weight_aliases
from zoo.errors import UnknownNameError, UnknownWeightsError, UsageError, excerpt
from zoo.records import PublishedExport, PublishedWeights, Spec, check_alias, is_spec, parse_spec

__all__ = ["PublishedExport", "PublishedWeights", "Spec", "add_export", "add_version", "check_alias", "export_records",
           "exports_of", "for_model", "is_spec", "listing", "note_change", "parse_spec", "point_alias", "resolve"]


def add_version(engine: Engine, spec: Spec, **values: Any) -> PublishedWeights:
    """Insert the next version of `spec`'s name with `values` (the other columns); its record."""
    w = published_weights
    with write_transaction(engine) as conn:
        latest = conn.scalar(select(func.max(w.c.version)).where(_named(w, spec)))
        version = (latest or 0) + 1
        conn.execute(w.insert().values(namespace=spec.namespace, name=spec.name, version=version,
                                       created_at=datetime.now(timezone.utc), **values))
        note_change(conn)
        return _record(conn, _version_row(conn, spec, version))


def resolve(conn: Connection, text: str) -> PublishedWeights:
    """The published weights `text` (a spec) picks; `UnknownWeightsError` when there are none."""
    spec = parse_spec(text)
    version = spec.version
    if spec.alias is not None:
        a = weight_aliases
        version = conn.scalar(select(a.c.version).where(_named(a, spec), a.c.alias == spec.alias))
        if version is None:
            known = conn.scalars(select(a.c.alias).where(_named(a, spec)).order_by(a.c.alias)).all()
            raise UnknownNameError("alias", text, [f"{spec.full_name}@{alias}" for alias in known])
    elif version is None:
        version = conn.scalar(select(func.max(published_weights.c.version)).where(_named(published_weights, spec)))
    row = _version_row(conn, spec, version) if version is not None else None
    if row is None:
        raise UnknownWeightsError(text, _known_specs(conn, spec))
    return _record(conn, row)


def listing(conn: Connection, name: str | None = None) -> list[PublishedWeights]:
    """Every published version (of `name`, ``NAMESPACE/NAME``, when given), by name and version."""
    w = published_weights
    query = select(w).order_by(w.c.namespace, w.c.name, w.c.version)
    if name is not None:
        query = query.where(_named(w, parse_spec(name, bare=True)))
    aliases: dict[tuple[str, str, int], list[str]] = {}
    for a in conn.execute(select(weight_aliases).order_by(weight_aliases.c.alias)):
        aliases.setdefault((a.namespace, a.name, a.version), []).append(a.alias)
    return [_record(conn, row, aliases.get((row.namespace, row.name, row.version), [])) for row in conn.execute(query)]


def for_model(conn: Connection, model: str) -> list[PublishedWeights]:
    """Every published version for the catalog model `model` (``PLUGIN/NAME``)."""
    w = published_weights
    rows = conn.execute(select(w).where(w.c.model == model).order_by(w.c.namespace, w.c.name, w.c.version))
    return [_record(conn, row) for row in rows]


def point_alias(engine: Engine, name: str, alias: str, version: int) -> PublishedWeights:
    """Point ``NAME@ALIAS`` at `version` (which must exist), moving it if it pointed elsewhere."""
    spec = parse_spec(name, bare=True)
    check_alias(alias)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise UsageError(f"an alias points at a version, a whole number from 1, not {excerpt(version)}")
    a = weight_aliases
    with write_transaction(engine) as conn:
        row = _version_row(conn, spec, version)
        if row is None:
            raise UnknownWeightsError(f"{spec.full_name}:{version}", _known_specs(conn, spec))
        conn.execute(delete(a).where(_named(a, spec), a.c.alias == alias))
        conn.execute(a.insert().values(namespace=spec.namespace, name=spec.name, alias=alias, version=version))
        note_change(conn)
        return _record(conn, row)


def add_export(engine: Engine, *, sha256: str, size: int, model: str, weights: str | None,
               metadata: dict[str, Any], verified_by: str) -> PublishedExport:
    """Record the export stored as `sha256`, verified by `verified_by` (kept as it is if it was published
    before); its record."""
    e = published_exports
    with write_transaction(engine) as conn:
        if conn.scalar(select(e.c.id).where(e.c.sha256 == sha256)) is None:
            conn.execute(e.insert().values(sha256=sha256, size=size, model=model, weights=weights, meta=metadata,
                                           created_at=datetime.now(timezone.utc), verified_by=verified_by))
            note_change(conn)
        return _export(conn.execute(select(e).where(e.c.sha256 == sha256)).one())


def exports_of(conn: Connection, model: str, weights: str | None) -> list[PublishedExport]:
    """The published exports of `model` with `weights`, newest first."""
    e = published_exports
    query = select(e).where(e.c.model == model, e.c.weights == weights if weights is not None else e.c.weights.is_(None))
    return [_export(row) for row in conn.execute(query.order_by(e.c.created_at.desc(), e.c.id.desc()))]


def export_records(conn: Connection, *, model: str | None = None, sha256: str | None = None) -> list[PublishedExport]:
    """The published exports (of `model`, ``PLUGIN/NAME``, and with `sha256`, when given), oldest first."""
    e = published_exports
    query = select(e).order_by(e.c.id)
    if model is not None:
        query = query.where(e.c.model == model)
    if sha256 is not None:
        query = query.where(e.c.sha256 == sha256)
    return [_export(row) for row in conn.execute(query)]


def note_change(conn: Connection) -> None:
    """Give the catalog a new `CHANGES_KEY` value, inside the write transaction that changed what a model's
    record or the service shows besides a sync (published weights, aliases, learned hashes, published exports):
    processes that kept records or answers read them again.
    Whoever writes those tables by other means must call it too."""
    state = catalog_state
    conn.execute(delete(state).where(state.c.key == CHANGES_KEY))
    conn.execute(state.insert().values(key=CHANGES_KEY, value=uuid.uuid4().hex))


def _named(table: Any, spec: Spec) -> Any:
    return (table.c.namespace == spec.namespace) & (table.c.name == spec.name)


def _version_row(conn: Connection, spec: Spec, version: int) -> Row | None:
    w = published_weights
    return conn.execute(select(w).where(_named(w, spec), w.c.version == version)).one_or_none()


def _known_specs(conn: Connection, spec: Spec) -> list[str]:
    """The specs an unknown one is compared with: the versions of its name, else every name."""
    w = published_weights
    versions = conn.scalars(select(w.c.version).where(_named(w, spec)).order_by(w.c.version)).all()
    if versions:
        return [f"{spec.full_name}:{v}" for v in versions]
    return [f"{ns}/{n}" for ns, n in conn.execute(select(w.c.namespace, w.c.name).distinct())]


def _record(conn: Connection, row: Row, aliases: list[str] | None = None) -> PublishedWeights:
    if aliases is None:
        a = weight_aliases
        aliases = list(conn.scalars(select(a.c.alias).where(
            a.c.namespace == row.namespace, a.c.name == row.name, a.c.version == row.version).order_by(a.c.alias)))
    return PublishedWeights(row.namespace, row.name, row.version, row.model, row.sha256, row.size, row.categories,
                            row.metrics, row.preprocessing, row.description, row.from_weights,
                            utc(row.created_at), tuple(aliases), row.run)


def _export(row: Row) -> PublishedExport:
    return PublishedExport(row.sha256, row.size, row.model, row.weights, row.meta, utc(row.created_at),
                           row.verified_by)


def utc(moment: datetime) -> datetime:
    """`moment` with its time zone (SQLite returns UTC times without one)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)

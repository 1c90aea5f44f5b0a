"""`SqlCatalog`: the catalog in a SQLite or PostgreSQL database, the only code of the zoo that speaks SQL.

Lookups use SQLAlchemy Core (a cold ``zoo list`` stays light) and rows become the
typed records of `zoo.records` here, at the boundary. The database is brought up to
date with the installed plugins (`zoo.catalog.fingerprint.ensure_current`) at most
once per check interval. Names are read as `zoo.registry` documents them; how every
model is named in one catalog generation (`_Naming`) is read once per generation
and kept. No torch: checking that weights fit their model before they are published
is the caller's (`FitCheck`), and so is verifying an export again (`ExportCheck`).
"""

from __future__ import annotations

import math
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from fnmatch import translate
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from sqlalchemy import Connection, Engine, Row, Select, delete, exists, func, or_, select, text

from zoo.catalog import browse, ranking
from zoo.catalog import published as pub
from zoo.catalog import tokens
from zoo.catalog.api import ExportCheck, FitCheck, Patterns, weights_source
from zoo.catalog.engine import open_engine, remember, write_transaction
from zoo.catalog.fingerprint import ensure_current
from zoo.catalog.plugin_records import plugin_records
from zoo.catalog.search import relevance, search_words
from zoo.catalog.tables import (
    CHANGES_KEY,
    GENERATION_KEY,
    catalog_state,
    category_lists,
    exports,
    measurements,
    metrics,
    models,
    plugins,
    published_exports,
    published_weights,
    weight_files,
    weights,
)
from zoo.errors import UnknownModelError, UnknownWeightsError, UsageError, excerpt
from zoo.records import (
    CLAIMED,
    HF_FILES,
    HF_HUB,
    Measurement,
    ModelRecord,
    ModelSummary,
    PluginRef,
    PublishedExport,
    PublishedWeights,
    WeightsRecord,
    parse_spec,
)
from zoo.settings import Settings

if TYPE_CHECKING:
    from zoo.fetch import Fetched, Loaded, WeightsCache
    from zoo.store import ArtifactStore


class SqlCatalog:
    """A catalog database (`settings.registry_url`) with its artifact `store` and this machine's weights `cache`."""

    def __init__(self, settings: Settings, store: ArtifactStore, cache: WeightsCache) -> None:
        self.settings, self.store, self.cache = settings, store, cache
        self._engine: Engine | None = None
        self._checked = -math.inf  # when the catalog was last found current (time.monotonic)
        #: Model records by (catalog state, name), oldest first: a record changes only with the state.
        self._records: dict[tuple[tuple[str | None, str | None], str], ModelRecord] = {}
        self._lock = threading.Lock()
        self._checking = threading.Lock()  # held by the thread checking the catalog (`engine`)

    def __repr__(self) -> str:
        return f"SqlCatalog({self.settings.registry_url!r})"

    @property
    def engine(self) -> Engine:
        """The database's engine, the catalog synced first when it is stale (checked at most once per
        ``$ZOO_CATALOG_CHECK_INTERVAL``: the lookups of one call find it checked). One thread checks at a time:
        the others use the engine as it is meanwhile (the first lookups wait for the first check)."""
        if self._engine is not None and time.monotonic() - self._checked < self.settings.check_interval:
            return self._engine
        if not self._checking.acquire(blocking=self._engine is None):
            return self._engine
        try:
            now = time.monotonic()
            if self._engine is None or now - self._checked >= self.settings.check_interval:
                self._engine, self._checked = ensure_current(settings=self.settings), now
        finally:
            self._checking.release()
        return self._engine

    # -- models ---------------------------------------------------------------------------

    def names(self, include: Patterns = None, exclude: Patterns = None, *, search: str | None = None,
              **filters: Any) -> list[tuple[str, str]]:
        """(name, builder) of the models that match, by name (by relevance with `search`): `models` without
        building their summaries."""
        found = search_words(search) if search is not None else None
        with self.engine.connect() as conn:
            naming = _naming(conn, self.settings.prefer)
            ids = set(_filtered_ids(conn, naming, **filters))
            relevant = _relevance(conn, naming, search, found)
        matches = _matcher(include, exclude)
        ordered = [(i, name) for i, name in naming.ordered if i in ids and matches(naming.entries[i])
                   and (relevant is None or i in relevant)]
        if relevant is not None:
            ordered.sort(key=lambda item: relevant[item[0]])  # stable: ties stay by name
        return [(name, naming.entries[i].builder) for i, name in ordered]

    def models(self, include: Patterns = None, exclude: Patterns = None, *, sort: str | None = None,
               limit: int | None = None, search: str | None = None, **filters: Any) -> list[ModelSummary]:
        """The models that match, by name (by relevance with `search`), or the first `limit` in the order of
        `sort` (`zoo.catalog.ranking`)."""
        ranking.check_limit(limit)
        found = search_words(search) if search is not None else None
        with self.engine.connect() as conn:
            naming = _naming(conn, self.settings.prefer)
            order = ranking.sort_key(sort, browse.metric_names(conn)) if sort is not None else None
            matches = _matcher(include, exclude)
            relevant = _relevance(conn, naming, search, found)
            ids = {i for i in _filtered_ids(conn, naming, **filters) if matches(naming.entries[i])
                   and (relevant is None or i in relevant)}
            summaries = select(models.c.id, models.c.task, models.c.num_params)
            names = select(weights.c.model_id, weights.c.enum_name, weights.c.member_name, weights.c.is_default,
                           browse.OPS)
            few = len(ids) < 500  # else read them all: one query beats a huge IN list
            if few:
                summaries, names = summaries.where(models.c.id.in_(ids)), names.where(weights.c.model_id.in_(ids))
            rows = [row for row in conn.execute(summaries) if row[0] in ids]
            shown = naming.shown
            weights_of: dict[int, list[str]] = {}
            default_of: dict[int, str] = {}
            gflops_of: dict[int, float | None] = {}
            for model_id, enum_name, member, is_default, ops in conn.execute(names.order_by(weights.c.id)):
                if model_id in ids:
                    full = _full_name(enum_name, member, shown[model_id])
                    weights_of.setdefault(model_id, []).append(full)
                    if is_default or model_id not in gflops_of:
                        gflops_of[model_id] = browse.gflops_of(ops)
                    if is_default:
                        default_of[model_id] = full
            metrics_of = browse.best_metrics(conn, ids if few else None)
        records = {i: ModelSummary(shown[i], naming.entries[i].qualified, task, naming.entries[i].namespace,
                                   naming.entries[i].builder, num_params, tuple(weights_of.get(i, [])),
                                   default_of.get(i), gflops_of.get(i), metrics_of.get(i, {}))
                   for i, task, num_params in rows}
        listed = sorted(records, key=lambda i: records[i].name)
        if relevant is not None and order is None:
            listed.sort(key=relevant.__getitem__)  # stable: ties stay by name
        return ranking.ranked([records[i] for i in listed], order, limit)

    def metric_names(self) -> list[str]:
        with self.engine.connect() as conn:
            return browse.metric_names(conn)

    def describe(self, name: str) -> ModelRecord:
        """The record of the model `name` reaches: read once per catalog state (`_state`), then kept."""
        with self.engine.connect() as conn:
            state = _state(conn)
            kept = self._records.get((state, name))
            if kept is not None:
                return kept
            record = self._describe(conn, name)
        if state[0] is not None:  # a catalog with a generation (every synced one); no marker: nothing changed yet
            with self._lock:  # the service describes in several threads
                while len(self._records) >= _KEPT_RECORDS:
                    del self._records[next(iter(self._records))]
                self._records[(state, name)] = record
        return record

    def _describe(self, conn: Connection, name: str) -> ModelRecord:
        naming = _naming(conn, self.settings.prefer)
        model = _model(conn, name, naming)
        rows = _weights_of(conn, model)
        learned = _learned_files(conn, [w.url for w in rows if not (w.sha256 and w.file_size)])
        categories = _categories(conn, rows)
        published = pub.for_model(conn, naming.entries[model.id].qualified)
        shown = naming.shown[model.id]
        default = next((w for w in rows if w.is_default), None)
        return ModelRecord(
            name=shown, qualified_name=naming.entries[model.id].qualified, task=model.task,
            plugin=PluginRef(model.plugin_name, model.namespace, model.distribution, model.version),
            providers=tuple(sorted([naming.entries[i].qualified for i in naming.by_name[model.name]])),
            builder=model.builder, builder_args=model.builder_args, weights_enum=model.weights_enum,
            num_params=model.num_params, tags=model.tags, metadata=model.meta, classifier=model.classifier,
            first_conv=model.first_conv, input_size=model.input_size,
            default_weights=_full_name(default.enum_name, default.member_name, shown) if default else None,
            weights=tuple([WeightsRecord(
                name=_full_name(w.enum_name, w.member_name, shown), enum=w.enum_name, member=w.member_name,
                is_default=w.is_default, task=w.task or model.task, url=w.url,
                sha256=w.sha256 or learned.get(w.url, _UNKNOWN)[0],
                file_size=w.file_size or learned.get(w.url, _UNKNOWN)[1], transforms=w.transforms,
                builder_args=w.builder_args, meta=_meta(w, categories)) for w in rows]),
            published=tuple(published))

    def plugins(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            records, naming = plugin_records(conn), _naming(conn, self.settings.prefer)
        shared: dict[str, list[dict[str, str]]] = {}
        for name, ids in sorted(naming.by_name.items()):
            if len(ids) > 1:
                answer = next(naming.entries[i].namespace for i in ids if naming.shown[i] == name)
                for i in ids:
                    shared.setdefault(naming.entries[i].namespace, []).append({"name": name, "answered_by": answer})
        return [{**record, "shared": shared.get(record["namespace"], [])} for record in records]

    # -- weights --------------------------------------------------------------------------

    def weights_owner(self, name: str, model: str | None) -> tuple[str, str]:
        with self.engine.connect() as conn:
            row, owner = _resolve_weights(conn, _naming(conn, self.settings.prefer), name, model)
        return f"{owner.namespace}/{owner.name}", row.member_name

    def known_sha256(self, url: str) -> str | None:
        with self.engine.connect() as conn:
            declared = conn.scalar(select(weights.c.sha256).where(weights.c.url == url, weights.c.sha256.is_not(None)))
            return declared or _learned_files(conn, [url]).get(url, _UNKNOWN)[0]

    def learn_sha256(self, url: str, sha256: str, size: int) -> None:
        def learn(conn: Connection) -> None:
            conn.execute(delete(weight_files).where(weight_files.c.url == url))
            conn.execute(weight_files.insert().values(url=url, sha256=sha256, file_size=size))
            pub.note_change(conn)

        remember(self.engine, f"the hash learned for {url}", learn)

    def weights_files(self) -> list[tuple[str, str, str | None]]:
        with self.engine.connect() as conn:
            rows = list(conn.execute(select(weights).order_by(weights.c.id)))
            learned = _learned_files(conn, [w.url for w in rows])
            shown = _weights_names(_naming(conn, self.settings.prefer), rows)
        return [(shown[w.id], w.url, w.sha256 or learned.get(w.url, _UNKNOWN)[0]) for w in rows]

    # -- published weights and exports ------------------------------------------------------

    def resolve_published(self, spec: str) -> PublishedWeights:
        with self.engine.connect() as conn:
            return pub.resolve(conn, spec)

    def list_published(self, name: str | None = None) -> list[PublishedWeights]:
        with self.engine.connect() as conn:
            return pub.listing(conn, name)

    def set_alias(self, name: str, alias: str, version: int) -> PublishedWeights:
        return pub.point_alias(self.engine, name, alias, version)

    def publish_weights(self, model: str, file: Path, *, name: str, metrics: dict[str, float],
                        categories: list[str] | None, from_weights: str | None, description: str | None,
                        preprocessing: dict[str, Any] | None, check: FitCheck,
                        run: dict[str, Any] | None = None) -> PublishedWeights:
        """Check `file` (names and shapes), hash it and store it, streaming: memory stays bounded for any size.

        The check and the hash read the same file: one that changed meanwhile (its inode, size or modification
        time) is refused, and the store verifies the bytes it copies against the hash (`HashMismatchError`).
        The run record's base weights are `from_weights` when it is None (`_lineage`)."""
        from zoo.fetch import digest_of
        from zoo.outputs import open_regular

        record = self.describe(model)
        from_weights = _lineage(self, record, from_weights, run)
        source = weights_source(self, record, from_weights) if from_weights is not None else None
        if source is not None:
            from_weights = source.name
            categories = source.categories if categories is None else categories
            preprocessing = source.preprocessing if preprocessing is None else preprocessing
        with open_regular(file, only="only regular files are published") as f:
            opened = os.fstat(f.fileno())
            check(record, file, categories)
            sha256, _ = digest_of(f)
        if not _still(file, opened):
            raise UsageError(f"{file} changed while it was being published; nothing was published")
        stored = self.store.put_file(file, sha256=sha256)
        return pub.add_version(self.engine, parse_spec(name, bare=True), model=record.qualified_name,
                               sha256=stored.sha256, size=stored.size, categories=categories, metrics=metrics,
                               preprocessing=preprocessing, description=description, from_weights=from_weights,
                               run=run)

    def publish_export(self, path: Path, metadata: Mapping[str, Any], *, check: ExportCheck) -> PublishedExport:
        from zoo.fetch import sha256_of

        model = self.describe(metadata["model"]).qualified_name
        weights_key = _exact(self, metadata["weights"])
        sha256 = sha256_of(path)
        # a file published before keeps its first record, so it is not verified again
        verified_by = CLAIMED if self.is_published(sha256, "export") else check(path)
        stored = self.store.put_file(path, sha256=sha256)
        return pub.add_export(self.engine, sha256=stored.sha256, size=stored.size, model=model, weights=weights_key,
                              metadata=dict(metadata), verified_by=verified_by)

    def find_export(self, model: str, weights: str) -> PublishedExport | None:
        qualified = self.describe(model).qualified_name
        with self.engine.connect() as conn:
            found = pub.exports_of(conn, qualified, _exact(self, weights))
        return found[0] if found else None

    def exports(self, model: str | None = None, sha256: str | None = None) -> list[PublishedExport]:
        qualified = self.describe(model).qualified_name if model is not None else None
        with self.engine.connect() as conn:
            return pub.export_records(conn, model=qualified, sha256=sha256)

    # -- measured metrics ----------------------------------------------------------------

    def record_measurement(self, measurement: Measurement) -> Measurement:
        """Store `measurement` (checked by `zoo.measurements`) under its model's ``PLUGIN/NAME`` and its weights'
        canonical name (a published spec as the exact version), replacing an earlier one of the same file on the
        same data and split; what was stored. Weights that are not the model's are refused in one line."""
        record = self.describe(measurement.model)
        stored = replace(measurement, model=record.qualified_name,
                         weights=weights_source(self, record, measurement.weights).name)
        m = measurements
        with write_transaction(self.engine) as conn:
            conn.execute(delete(m).where(m.c.model == stored.model, m.c.weights == stored.weights,
                                         m.c.kind == stored.kind, m.c.sha256 == stored.sha256,
                                         m.c.dataset == stored.dataset, m.c.split == stored.split,
                                         m.c.manifest_sha256 == stored.manifest_sha256))
            conn.execute(m.insert().values(
                model=stored.model, weights=stored.weights, kind=stored.kind, sha256=stored.sha256,
                dataset=stored.dataset, split=stored.split, images=stored.images, acc1=stored.acc1,
                acc5=stored.acc5, manifest_sha256=stored.manifest_sha256, measured_at=stored.measured_at,
                zoo_version=stored.zoo_version))
            pub.note_change(conn)
        return stored

    def measurements(self, model: str | None = None, weights: str | None = None) -> list[Measurement]:
        """The measured metrics (of `model`, and of its `weights`, when given; `weights` without `model` must be
        named as `record_measurement` stores them), oldest first."""
        m = measurements
        query = select(m).order_by(m.c.measured_at, m.c.id)
        if model is not None:
            record = self.describe(model)
            query = query.where(m.c.model == record.qualified_name)
            weights = weights_source(self, record, weights).name if weights is not None else None
        if weights is not None:
            query = query.where(m.c.weights == weights)
        with self.engine.connect() as conn:
            return [Measurement(row.model, row.weights, row.kind, row.sha256, row.dataset, row.split, row.images,
                                row.acc1, row.acc5, row.manifest_sha256, pub.utc(row.measured_at), row.zoo_version)
                    for row in conn.execute(query)]

    def is_published(self, sha256: str, kind: str) -> bool:
        """Whether a published weights file (`kind` "weights") or export ("export") has `sha256`."""
        table = published_weights if kind == "weights" else published_exports
        with self.engine.connect() as conn:
            return conn.scalar(select(table.c.sha256).where(table.c.sha256 == sha256).limit(1)) is not None

    def referenced_blobs(self) -> set[str]:
        """The SHA-256 of every published weights file and export: the only rows that point into the store."""
        with self.engine.connect() as conn:
            return set(conn.scalars(select(published_weights.c.sha256).union(select(published_exports.c.sha256))))

    def published_bytes(self, published: PublishedWeights) -> Loaded:
        from zoo.fetch import Loaded

        data = self.store.read(published.sha256)
        return Loaded(Path(f"{self.store.location}/{published.sha256}"), published.sha256, len(data), data)

    def export_file(self, export: PublishedExport) -> Fetched:
        return self._cached(export.sha256, export.size, ".onnx", f"stored export {export.sha256}", progress=False)

    def published_file(self, published: PublishedWeights, *, progress: bool = False) -> Fetched:
        return self._cached(published.sha256, published.size, "", f"stored weights {published.spec}", progress)

    def _cached(self, sha256: str, size: int, suffix: str, origin: str, progress: bool) -> Fetched:
        """The stored file of `sha256` (`size` bytes, called `origin` in errors) copied once into the weights cache
        under its hash and `suffix`, where a service's client keeps it too, and verified there."""
        from zoo.fetch import WeightsFile, copy_verified, verify
        from zoo.outputs import is_regular

        target = self.cache.content_entry(sha256, suffix)
        file = WeightsFile(target.as_uri(), sha256, size=size)
        if is_regular(target):
            return verify(target, file)
        _made(target.parent)
        with self.store.open(sha256) as f:  # hashed on its way into the cache
            return copy_verified(f, file, target, origin=origin, progress=progress, total=size)

    def state(self) -> str | None:
        """The catalog's generation and changes marker (`zoo.catalog.tables`); None before its first sync."""
        with self.engine.connect() as conn:
            generation, changes = _state(conn)
        return None if generation is None else f"{generation}/{changes}"

    def health(self) -> None:
        with open_engine(self.settings.registry_url).connect() as conn:  # answering, not synced: no sync here
            conn.execute(text("SELECT 1"))

    # -- the service's tokens (`zoo.catalog.tokens`) ------------------------------------------

    def create_token(self, name: str, scopes: list[str] | tuple[str, ...]) -> str:
        return tokens.create_token(self.engine, name, scopes)

    def list_tokens(self) -> list[dict[str, Any]]:
        return tokens.list_tokens(self.engine)

    def revoke_token(self, name: str) -> None:
        tokens.revoke_token(self.engine, name)

    def token_scopes(self, secret: str) -> frozenset[str] | None:
        return tokens.token_scopes(self.engine, secret)

    def live_token(self, *, secret: str | None = None, name: str | None = None) -> tuple[str, frozenset[str]] | None:
        return tokens.live_token(self.engine, secret=secret, name=name)

    # -- this machine's exports (`zoo export`'s records) ------------------------------------

    def local_exports(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(exports).order_by(exports.c.created_at.desc())).all()
        return [
            {"path": row.path, "model": row.model, "weights": row.weights, "sha256": row.sha256, "size": row.size,
             "opset": row.opset, "exporter": row.exporter, "dynamic_axes": row.dynamic_axes,
             "verification": row.verification, "created_at": row.created_at.isoformat(),
             "exists": Path(row.path).is_file()}
            for row in rows
        ]

    def local_export(self, path: str) -> tuple[dict[str, Any], dict[str, Any], str] | None:
        """The request, result and SHA-256 recorded for the export at `path`; None when none is."""
        with self.engine.connect() as conn:
            row = conn.execute(select(exports).where(exports.c.path == path)).first()
        return (row.options, row.result, row.sha256) if row is not None else None

    def record_local_export(self, path: str, values: Mapping[str, Any]) -> None:
        """Record an export made here at `path` (replacing an earlier record at that path)."""
        def write(conn: Connection) -> None:
            conn.execute(delete(exports).where(exports.c.path == path))
            conn.execute(exports.insert().values(path=path, created_at=datetime.now(timezone.utc), **values))

        remember(self.engine, "the export record", write)

    # -- what the web catalog shows beyond the protocol (`zoo.catalog.browse`) --------------

    def menus(self) -> tuple[list[str], list[str]]:
        """Every task and every loaded plugin's namespace, sorted: what the web catalog's filter menus offer."""

        with self.engine.connect() as conn:
            return browse.menus(conn)

    def model_facts(self) -> browse.ModelFacts:
        """Each model's headline metric (kept per catalog generation) and its numbers of published weights
        versions and exports, by qualified name."""

        with self.engine.connect() as conn:
            return browse.model_facts(conn)

    def best_values(self, dataset: str, metric: str) -> dict[str, browse.BestValue]:
        """Each model's best value of `dataset`'s `metric` over its weights, with those weights' GFLOPS,
        by qualified name."""

        with self.engine.connect() as conn:
            return browse.best_values(conn, dataset, metric)


def _made(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _still(path: Path, opened: os.stat_result) -> bool:
    """Whether `path` is still the file `opened` describes: the same inode, size and modification time."""
    try:
        now = os.stat(path)
    except OSError:
        return False
    return ((now.st_dev, now.st_ino, now.st_size, now.st_mtime_ns)
            == (opened.st_dev, opened.st_ino, opened.st_size, opened.st_mtime_ns))


def _lineage(catalog: SqlCatalog, record: ModelRecord, from_weights: str | None,
             run: dict[str, Any] | None) -> str | None:
    """The weights a version was fine-tuned from: `from_weights`, else the run record's base weights
    (``base_weights.name``). Given both, they must name the same weights (one lineage, not two): a one-line
    `UsageError` otherwise."""
    base = (run or {}).get("base_weights")
    if not isinstance(base, dict):
        return from_weights
    named = base.get("name")
    if named is not None and not isinstance(named, str):
        raise UsageError(f"the run record's base_weights.name must be a weights name or null, not {excerpt(named)}")
    if from_weights is None:
        return named
    if named is None or (named != from_weights and weights_source(catalog, record, named).name
                         != weights_source(catalog, record, from_weights).name):
        raise UsageError(f"from_weights {excerpt(from_weights)} is not the run record's base weights "
                         f"({excerpt(named) if named else 'none: trained from random initialisation'}); "
                         "leave from_weights out to take the record's")
    return from_weights


def _state(conn: Connection) -> tuple[str | None, str | None]:
    """The catalog's generation and changes marker (`zoo.catalog.tables`): what a model's record depends on."""
    values = dict(conn.execute(select(catalog_state.c.key, catalog_state.c.value)
                               .where(catalog_state.c.key.in_((GENERATION_KEY, CHANGES_KEY)))).all())
    return values.get(GENERATION_KEY), values.get(CHANGES_KEY)


def _exact(catalog: SqlCatalog, weights_name: str | None) -> str | None:
    """How exports record weights: a published spec as the exact version it picks, other names as they are."""
    if weights_name is not None and pub.is_spec(weights_name):
        return catalog.resolve_published(weights_name).spec
    return weights_name


_UNKNOWN = (None, None)  # sha256 and size of a file never verified
_MAX_COUNT = 2**63 - 1  # the largest number a BIGINT column compares with
#: The columns that name a model: its bare name, its plugin's namespace, and whether it answers the bare name.
_NAMING = (models.c.name, plugins.c.namespace, models.c.preferred)


def _select(*columns: Any) -> Select:
    """SELECT `columns` from the models joined with their plugins."""
    return select(*columns).select_from(models.join(plugins))


class _Entry(NamedTuple):
    """How one model is named: its bare name, its plugin's namespace, whether the catalog gave it the
    bare name, and its builder."""

    id: int
    name: str
    namespace: str
    preferred: bool
    builder: str
    qualified: str  # PLUGIN/NAME


@dataclass(frozen=True)
class _Naming:
    """Every model's names in one catalog generation: entries and the name that reaches each
    model (by id), the ids of each bare name, (id, name) sorted by name, and the answers of
    the filters asked so far (the catalog cannot change within a generation)."""

    prefer: tuple[str, ...]
    entries: dict[int, _Entry]
    shown: dict[int, str]
    by_name: dict[str, list[int]]
    ordered: list[tuple[int, str]]
    filtered: dict[tuple[Any, ...], list[int]] = field(default_factory=dict)


#: The naming of each (catalog, generation, preference) this process read, newest last.
_NAMINGS: dict[tuple[str, str, tuple[str, ...]], _Naming] = {}
_KEPT_NAMINGS = 4
_KEPT_FILTERS = 64  # filter answers kept per naming
_KEPT_RECORDS = 1024  # model records kept per catalog


def _naming(conn: Connection, prefer: tuple[str, ...]) -> _Naming:
    """The catalog's naming: read once per catalog generation (every sync makes a new one), then kept."""
    generation = conn.scalar(select(catalog_state.c.value).where(catalog_state.c.key == GENERATION_KEY))
    key = (conn.engine.url.render_as_string(), generation, prefer)
    if generation is not None and key in _NAMINGS:
        return _NAMINGS[key]
    entries = {row[0]: _Entry(*row, f"{row[2]}/{row[1]}")
               for row in conn.execute(_select(models.c.id, *_NAMING, models.c.builder))}
    by_name: dict[str, list[int]] = {}
    for entry in entries.values():
        by_name.setdefault(entry.name, []).append(entry.id)
    shown = {}
    for ids in by_name.values():
        answer = ids[0] if len(ids) == 1 else _answer([entries[i] for i in ids], prefer).id
        shown.update((i, entries[i].name if i == answer else entries[i].qualified) for i in ids)
    naming = _Naming(prefer, entries, shown, by_name, sorted(shown.items(), key=lambda item: item[1]))
    if generation is not None:
        while len(_NAMINGS) >= _KEPT_NAMINGS:
            del _NAMINGS[next(iter(_NAMINGS))]
        _NAMINGS[key] = naming
    return naming


def _answer(candidates: list[Any], order: tuple[str, ...]) -> Any:
    """Of the models with one bare name (rows with namespace and preferred), the one that answers it:
    ``$ZOO_PREFER``, else the catalog's choice."""
    return min(candidates, key=lambda r: (
        order.index(r.namespace) if r.namespace in order else len(order), not r.preferred, r.namespace))


def _model(conn: Connection, name: str, naming: _Naming) -> Row:
    """The model row `name` reaches (``PLUGIN/NAME`` or a bare name, see the module docstring), with its
    plugin's name, namespace, distribution and version."""
    if not isinstance(name, str):
        raise UsageError(f"a model name must be a string, not {type(name).__name__}")
    found = _candidates(naming, name)
    if not found:
        raise UnknownModelError(name, list(naming.shown.values()))
    return _row_of(conn, _answer(found, naming.prefer))


def _candidates(naming: _Naming, name: str) -> list[_Entry]:
    """The models `name` can mean: ``PLUGIN/NAME`` one at most, a bare name each of its providers."""
    namespace, _, bare = name.lower().rpartition("/")
    return [naming.entries[i] for i in naming.by_name.get(bare, ())
            if not namespace or naming.entries[i].namespace == namespace]


def _row_of(conn: Connection, entry: _Entry) -> Row:
    """The model row of `entry`, with its plugin's name, namespace, distribution and version."""
    return conn.execute(_select(models, plugins.c.name.label("plugin_name"), plugins.c.namespace,
                                plugins.c.distribution, plugins.c.version).where(models.c.id == entry.id)).one()


def _full_name(enum_name: str | None, member: str, model_name: str) -> str:
    """How a weights entry is named: ``Enum.MEMBER``, or ``MODEL.TAG`` for weights without an enum."""
    return f"{enum_name}.{member}" if enum_name else f"{model_name}.{member}"


def _weights_names(naming: _Naming, rows: list[Row]) -> dict[int, str]:
    """Weights id -> full name, for weights rows."""
    shown = naming.shown
    return {w.id: _full_name(w.enum_name, w.member_name, shown[w.model_id]) for w in rows}


def _resolve_weights(conn: Connection, naming: _Naming, name: str, model: str | None) -> tuple[Row, Row]:
    """The weights row of a `get_weight` name, and its model's row."""
    if name.startswith(HF_HUB):
        return _weights_in_repo(conn, naming, name[len(HF_HUB):])
    owner, _, member = name.rpartition(".")
    if owner:
        return _weights_by_owner(conn, naming, owner, member)
    if model is None:
        raise UsageError(f"weights {name!r} needs a model: write 'MODEL.{name}' or pass model=")
    found = _model(conn, model, naming)
    return _member_of_model(conn, found, member), found


def _weights_in_repo(conn: Connection, naming: _Naming, repo: str) -> tuple[Row, Row]:
    """The weights whose file is in the Hugging Face repository `repo` (timm's ``hf-hub:ORG/REPO``), and their
    model's row: the answering model's when several models list that file."""
    if not re.fullmatch(r"[\w.\-]+/[\w.\-]+", repo):
        raise UsageError(f"{HF_HUB}{excerpt(repo)} is not a Hugging Face repository; expected {HF_HUB}ORG/REPO, "
                         f"e.g. {HF_HUB}timm/resnet18.a1_in1k")
    rows = conn.execute(select(weights).where(weights.c.url.startswith(HF_FILES.format(repo=repo), autoescape=True))
                        .order_by(weights.c.id)).all()
    if not rows:
        raise UnknownWeightsError(f"{HF_HUB}{repo}", [])
    entries = [naming.entries[w.model_id] for w in rows]
    chosen = _answer(entries, naming.prefer)
    return next(w for w in rows if w.model_id == chosen.id), _row_of(conn, chosen)


def _weights_by_owner(conn: Connection, naming: _Naming, owner: str, member: str) -> tuple[Row, Row]:
    """Weights ``[PLUGIN/]MODEL.TAG`` or ``[PLUGIN/]Enum.MEMBER``, and their model's row.

    A bare model name whose answering model lacks the tag falls back to the one
    other provider of that name that has it (timm's ``resnet50.a1_in1k`` beside
    torchvision's resnet50). An enum's class name means the enum of the plugin that
    answers for it (its models answer their names); another plugin's enum of the same
    name is reached only by ``PLUGIN/Enum.MEMBER``.
    """
    candidates = _candidates(naming, owner)
    if candidates:
        first = _answer(candidates, naming.prefer)
        for entry in [first, *(c for c in candidates if c != first)]:
            model = _row_of(conn, entry)
            found = _member(_weights_of(conn, model), member)
            if found is not None:
                return found, model
        first_row = _row_of(conn, first)
        return _member_of_model(conn, first_row, member), first_row  # raises, listing its tags
    namespace, _, bare = owner.lower().rpartition("/")
    in_namespace = plugins.c.namespace == namespace if namespace else True
    enums = conn.execute(
        select(weights.c.model_id, plugins.c.namespace, models.c.preferred)
        .select_from(weights.join(models).join(plugins))
        .where(func.lower(weights.c.enum_name) == bare, in_namespace)
    ).all()
    if enums:
        chosen = _answer(enums, naming.prefer).namespace
        model_ids = {e.model_id for e in enums if e.namespace == chosen}
        rows = conn.execute(select(weights).where(weights.c.model_id.in_(model_ids))).all()
        found = _member(rows, member)
        if found is not None:
            return found, _row_of(conn, naming.entries[found.model_id])
        known = [f"{owner}.{w.member_name}" for w in rows]
    else:
        known = [f"{e}.{m}" for e, m in conn.execute(
            select(weights.c.enum_name, weights.c.member_name).where(weights.c.enum_name.is_not(None))).all()]
    raise UnknownWeightsError(f"{owner}.{member}", known)


def _member_of_model(conn: Connection, model: Row, member: str) -> Row:
    rows = _weights_of(conn, model)
    found = _member(rows, member)
    if found is None:
        raise UnknownWeightsError(f"{model.name}.{member}", [f"{model.name}.{w.member_name}" for w in rows])
    return found


def _member(rows: Iterable[Row], member: str) -> Row | None:
    """The row of tag `member` (any case), or of the default for ``DEFAULT``."""
    member = member.lower()
    return next((w for w in rows if w.member_name.lower() == member or (member == "default" and w.is_default)), None)


def _weights_of(conn: Connection, model: Row) -> list[Row]:
    return list(conn.execute(select(weights).where(weights.c.model_id == model.id).order_by(weights.c.id)))


def _categories(conn: Connection, rows: list[Row]) -> dict[int, list[str]]:
    """Category list id -> the list, for the lists `rows` (weights) use."""
    ids = {w.categories_id for w in rows if w.categories_id is not None}
    if not ids:
        return {}
    return dict(conn.execute(select(category_lists.c.id, category_lists.c.categories)
                             .where(category_lists.c.id.in_(ids))).all())


def _meta(row: Row, categories: Mapping[int, list[str]]) -> dict[str, Any]:
    """A weights entry's meta as its plugin declared it: the shared category list put back."""
    if row.categories_id is None:
        return row.meta
    return {**row.meta, "categories": categories[row.categories_id]}


# -- weights files -------------------------------------------------------------------


def _known_sha256(conn: Connection, url: str) -> str | None:
    """The full SHA-256 of the file at `url`: declared by its plugin, or learned by verifying it."""
    declared = conn.scalar(select(weights.c.sha256).where(weights.c.url == url, weights.c.sha256.is_not(None)))
    return declared or _learned_files(conn, [url]).get(url, _UNKNOWN)[0]


def _learned_files(conn: Connection, urls: list[str]) -> dict[str, tuple[str, int]]:
    rows = conn.execute(select(weight_files).where(weight_files.c.url.in_(urls))) if urls else []
    return {row.url: (row.sha256, row.file_size) for row in rows}


def _filtered_ids(
    conn: Connection,
    naming: _Naming,
    task: str | None = None,
    plugin: str | None = None,
    pretrained: bool | None = None,
    max_params: int | None = None,
    min_metric: Mapping[str, float] | None = None,
) -> list[int]:
    """The ids of the models that pass the metadata filters (as SQL); every model without filters.

    A filter naming a task or plugin the catalog does not have is refused; that is
    checked only when nothing passes, so a lookup that finds something pays for no
    check. Metrics are resolved first (`zoo.catalog.ranking.resolve_metric`, against the
    catalog's metric names, read once per generation): an unknown one, a dataset without
    it or a bare metric of several datasets is refused. Answers are kept for the
    catalog's generation.
    """
    _check_values(task, plugin, max_params, min_metric)
    if min_metric:
        min_metric = ranking.resolve_minimums(min_metric, browse.metric_names(conn))
    if task is None and plugin is None and pretrained is None and max_params is None and not min_metric:
        return list(naming.entries)
    key = (task, plugin, pretrained, max_params, tuple(sorted((min_metric or {}).items())))
    if key not in naming.filtered:
        while len(naming.filtered) >= _KEPT_FILTERS:
            del naming.filtered[next(iter(naming.filtered))]
        naming.filtered[key] = _query_ids(conn, naming, task, plugin, pretrained, max_params, min_metric)
    return naming.filtered[key]


def _query_ids(conn: Connection, naming: _Naming, task: str | None, plugin: str | None, pretrained: bool | None,
               max_params: int | None, min_metric: Mapping[str, float] | None) -> list[int]:
    """`_filtered_ids`, asked of the database."""
    query = select(models.c.id)
    if task is not None:
        task = task.lower()
        by_weights = select(weights.c.model_id).where(weights.c.task == task)
        query = query.where(or_(models.c.task == task, models.c.id.in_(by_weights)))
    if plugin is not None:
        query = query.where(models.c.plugin_id.in_(select(plugins.c.id).where(_names_plugin(plugin))))
    if pretrained is not None:
        has_weights = exists().where(weights.c.model_id == models.c.id)
        query = query.where(has_weights if pretrained else ~has_weights)
    if max_params is not None:
        query = query.where(models.c.num_params <= max_params)
    for metric, minimum in (min_metric or {}).items():  # DATASET:METRIC, as the catalog spells them
        dataset, _, name = metric.rpartition(":")
        meets = (
            select(weights.c.model_id)
            .join(metrics)
            .where(metrics.c.dataset == dataset, metrics.c.name == name, metrics.c.value >= float(minimum))
        )
        query = query.where(models.c.id.in_(meets))
    ids = [i for i in conn.scalars(query) if i in naming.entries]
    if not ids:
        _check_known(conn, task, plugin)
    return ids


def _relevance(conn: Connection, naming: _Naming, search: str | None,
               found: tuple[str, ...] | None) -> dict[int, tuple[bool, float]] | None:
    """The models the search text `search` (its words `found`) finds, by id, with their order: a model named
    exactly `search` (bare, as listed or qualified) first, then by relevance (`zoo.catalog.search`); None
    without a search."""
    if search is None or found is None:
        return None
    exact = search.strip().lower()
    return {i: (exact not in (naming.entries[i].name, naming.shown[i], naming.entries[i].qualified), rank)
            for i, rank in relevance(conn, found).items() if i in naming.entries}


def _names_plugin(plugin: str) -> Any:
    """The condition "this plugin row is `plugin`" (its namespace, entry-point or distribution name)."""
    wanted = plugin.lower()
    return or_(*(func.lower(c) == wanted for c in (plugins.c.namespace, plugins.c.name, plugins.c.distribution)))


def _check_values(task: Any, plugin: Any, max_params: int | None, min_metric: Mapping[str, float] | None) -> None:
    """Refuse filter values a query cannot compare with."""
    for what, value in (("task", task), ("plugin", plugin)):
        if value is not None and not isinstance(value, str):
            raise UsageError(f"{what} must be a name, not {excerpt(value)}")
    if min_metric is not None and not (isinstance(min_metric, Mapping) and all(isinstance(k, str) for k in min_metric)):
        raise UsageError(f"min_metric must map metric names to minimums, e.g. {{'acc@1': 75}}, not {excerpt(min_metric)}")
    if max_params is not None and (
            not isinstance(max_params, int) or isinstance(max_params, bool) or not 0 <= max_params <= _MAX_COUNT):
        raise UsageError(f"max_params must be a whole number from 0 to {_MAX_COUNT}, not {excerpt(max_params)}")
    for metric, minimum in (min_metric or {}).items():
        if not isinstance(minimum, (int, float)) or isinstance(minimum, bool) or not math.isfinite(minimum):
            raise UsageError(f"minimum of metric {excerpt(metric)} must be a finite number, not {excerpt(minimum)}")


def _check_known(conn: Connection, task: str | None, plugin: str | None) -> None:
    """Refuse a filter that could only ever match nothing by mistake: an unknown task or plugin."""
    if task is not None:
        tasks = {*conn.scalars(select(models.c.task).distinct()),
                 *conn.scalars(select(weights.c.task).distinct().where(weights.c.task.is_not(None)))}
        if task not in tasks:
            raise UsageError(f"unknown task {excerpt(task)}; tasks in the catalog: {', '.join(sorted(tasks))}")
    if plugin is not None and not conn.scalar(select(exists().where(_names_plugin(plugin)))):
        names = conn.scalars(select(plugins.c.namespace)).all()
        raise UsageError(f"unknown plugin {excerpt(plugin)}; plugins: {', '.join(sorted(names))}")


def _matcher(include: Patterns, exclude: Patterns) -> Callable[[_Entry], bool]:
    """Whether a model matches an `include` pattern (any, without one) and no `exclude` one.

    A pattern with a ``/`` is matched against ``PLUGIN/NAME``, others against the bare name.
    """
    includes, excludes = _compiled(include), _compiled(exclude)
    if includes is None and excludes is None:
        return lambda entry: True
    include_bare, include_qualified = includes or (None, None)
    exclude_bare, exclude_qualified = excludes or (_never, _never)
    return lambda entry: (
        (include_bare is None or include_bare(entry.name) or include_qualified(entry.qualified))
        and not (exclude_bare(entry.name) or exclude_qualified(entry.qualified)))


def _never(name: str) -> None:
    return None


def _compiled(patterns: Patterns) -> tuple[Callable[[str], Any], Callable[[str], Any]] | None:
    """`patterns` as two matchers, for bare and for qualified names; None without patterns."""
    if patterns is None:
        return None
    items = [patterns] if isinstance(patterns, str) else list(patterns)
    if not items:
        return None
    if not all(isinstance(p, str) for p in items):
        raise UsageError(f"patterns must be strings such as 'resnet*', not {excerpt(patterns)}")
    bare = tuple(p.lower() for p in items if "/" not in p)
    qualified = tuple(p.lower() for p in items if "/" in p)
    return (_regex(bare).match if bare else _never), (_regex(qualified).match if qualified else _never)


@lru_cache(maxsize=64)
def _regex(patterns: tuple[str, ...]) -> re.Pattern[str]:
    """One regular expression matching any of the fnmatch `patterns`."""
    return re.compile("|".join(translate(p) for p in patterns))

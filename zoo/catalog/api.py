"""The one interface of a catalog, local or remote.

`SqlCatalog` (`zoo.catalog.sql`) is the only code that speaks SQL: a SQLite or
PostgreSQL catalog on this machine. `HttpCatalog` (`zoo.service.client`) asks a registry
service (`zoo serve`) the same questions over HTTP. Both answer with the typed
records of `zoo.records`, which are also the service's JSON. `zoo.context.open_catalog`
picks the implementation once; callers (`zoo.registry`, `zoo.publish`, the service, the
CLI) hold a `Catalog` and never ask which kind it is.
This module imports neither SQLAlchemy nor torch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from zoo.errors import UnknownWeightsError, UsageError, excerpt
from zoo.records import (Measurement, ModelRecord, ModelSummary, PublishedExport, PublishedWeights, WeightsSource,
                         is_spec)
from zoo.settings import REGISTRY_URL, Settings

if TYPE_CHECKING:
    from zoo.fetch import Fetched, Loaded

Patterns = str | Iterable[str] | None
#: How a catalog checks weights before it publishes them (building the model needs torch, so the caller,
#: `zoo.publish`, passes it): (model record, file, categories); reads the file's tensor names and shapes, not
#: its data; raises to refuse.
FitCheck = Callable[[ModelRecord, Path, "list[str] | None"], None]
#: How a catalog has an export verified again before it publishes it (running the model needs torch, so the
#: caller, `zoo.publish`, passes it): the file -> who verified it, ``"registry"`` or ``"claimed"``
#: (`zoo.records.VERIFIED_BY_REGISTRY`, `zoo.records.CLAIMED`); raises to refuse.
ExportCheck = Callable[[Path], str]


def weights_source(catalog: Catalog, record: ModelRecord, weights: str | Enum) -> WeightsSource:
    """What `weights` of the model `record` describes pass on: a plugin's weights name, as the catalog reads it
    (``DEFAULT``, a member, ``Enum.MEMBER``, ``MODEL.TAG``) or its weights enum member, or else published weights
    ``NS/NAME[:VERSION|@ALIAS]`` of that model (plugin names win, as `zoo.get_model` reads them). A file's hash
    the catalog learned after `record` was read is found too. Weights of another model, or unknown, are refused
    in one line."""
    try:
        if isinstance(weights, Enum):  # the member of the model's weights enum (zoo.get_weight's answer)
            owner, member = record.qualified_name, weights.name
        else:
            owner, member = catalog.weights_owner(weights, record.name)
    except UnknownWeightsError:
        if not is_spec(weights):
            raise
        published = catalog.resolve_published(weights)
        if published.model != record.qualified_name:
            raise UsageError(f"published weights {published.spec} are for {published.model}, "
                             f"not {record.name}") from None
        return WeightsSource(published.spec, published.sha256, published.categories, published.preprocessing, {},
                             published)
    entry = record.weights_named(member) if owner == record.qualified_name else None
    if entry is None:
        raise UnknownWeightsError(str(weights), [w.name for w in record.weights])
    meta = dict(entry.meta)
    return WeightsSource(entry.name, entry.sha256 or catalog.known_sha256(entry.url), meta.pop("categories", None),
                         entry.transforms, meta, None)


class Catalog(Protocol):
    """What the zoo asks of a catalog. Names are read as `zoo.registry` documents them."""

    settings: Settings

    def names(self, include: Patterns = None, exclude: Patterns = None, *, search: str | None = None,
              **filters: Any) -> list[tuple[str, str]]:
        """(name, builder) of the models that match, by name (by relevance with `search`): what
        `zoo.list_models` needs, without summaries."""

    def models(self, include: Patterns = None, exclude: Patterns = None, *, sort: str | None = None,
               limit: int | None = None, search: str | None = None, **filters: Any) -> list[ModelSummary]:
        """The models that match (fnmatch patterns and the filters of `zoo.list_models`), by name, or the first
        `limit` in the order of the sort key `sort` (`zoo.catalog.ranking`). With the full-text `search`
        (`zoo.catalog.search`: words every model found has, at most ``MAX_SEARCH`` characters), only the models
        it finds, most relevant first unless `sort` is given."""

    def metric_names(self) -> list[str]:
        """Every ``DATASET:METRIC`` some weights of the catalog have, sorted (`zoo.catalog.ranking` resolves bare
        metric names against them)."""

    def describe(self, name: str) -> ModelRecord:
        """The record of the model `name` reaches."""

    def plugins(self) -> list[dict[str, Any]]:
        """The catalog's plugins, as `zoo.list_plugins` lists them (`installed_here`: on this machine)."""

    def weights_owner(self, name: str, model: str | None) -> tuple[str, str]:
        """The model (``PLUGIN/NAME``) whose weights enum holds weights `name`, and the member's name."""

    def known_sha256(self, url: str) -> str | None:
        """The full SHA-256 of the weights file at `url`, when the catalog knows it."""

    def learn_sha256(self, url: str, sha256: str, size: int) -> None:
        """Remember the hash of a file first verified here (a no-op where the catalog is not ours to write)."""

    def weights_files(self) -> list[tuple[str, str, str | None]]:
        """(weights name, URL, full SHA-256 or None) of every weights entry, for `zoo.verify_weights`."""

    def resolve_published(self, spec: str) -> PublishedWeights:
        """The published version `spec` picks (``NS/NAME``, ``NS/NAME:2``, ``NS/NAME@ALIAS``)."""

    def list_published(self, name: str | None = None) -> list[PublishedWeights]:
        """Every published version, or those of ``NAMESPACE/NAME``."""

    def set_alias(self, name: str, alias: str, version: int) -> PublishedWeights:
        """Point ``NAME@ALIAS`` at `version`; that version's record."""

    def publish_weights(self, model: str, file: Path, *, name: str, metrics: dict[str, float],
                        categories: list[str] | None, from_weights: str | None, description: str | None,
                        preprocessing: dict[str, Any] | None, check: FitCheck,
                        run: dict[str, Any] | None = None) -> PublishedWeights:
        """Store `file` and record it as the next version of `name`, once `check` accepts it, with the `run`
        record that made it (`zoo.publish.publish_weights`)."""

    def publish_export(self, path: Path, metadata: Mapping[str, Any], *, check: ExportCheck) -> PublishedExport:
        """Store the verified export at `path` (its zoo `metadata` read and checked by the caller) and record it,
        with who verified it: `check` runs where the catalog is kept (a service's client leaves it to the
        service), unless the file was published before."""

    def find_export(self, model: str, weights: str) -> PublishedExport | None:
        """The newest published export of `model` with `weights`; None when there is none."""

    def exports(self, model: str | None = None, sha256: str | None = None) -> list[PublishedExport]:
        """The published exports (of `model`, and with `sha256`, when given), oldest first."""

    def record_measurement(self, measurement: Measurement) -> Measurement:
        """Store measured metrics (checked by `zoo.measurements.record_measurement`) under the model's
        ``PLUGIN/NAME`` and its weights' canonical name; what was stored. A registry service needs a token with
        the publish scope."""

    def measurements(self, model: str | None = None, weights: str | None = None) -> list[Measurement]:
        """The measured metrics (of `model`, and of its `weights`, when given), oldest first."""

    def published_bytes(self, published: PublishedWeights) -> Loaded:
        """The bytes of published weights, checked against their SHA-256."""

    def export_file(self, export: PublishedExport) -> Fetched:
        """A verified local file of a published export."""

    def published_file(self, published: PublishedWeights, *, progress: bool = False) -> Fetched:
        """A verified local file of published weights (in the weights cache, by SHA-256: `zoo weights fetch`),
        with a progress bar on stderr while it is fetched if `progress`."""

    def health(self) -> None:
        """Return if the catalog answers; a `CatalogError` or `ServiceError` otherwise."""

    def state(self) -> str | None:
        """A value that changes whenever any of this catalog's answers may change (a sync that changed it, a
        publish, an alias, a learned hash), read with one cheap query; None where there is none to read
        (a registry service's client), whose answers must not be kept."""

    def local_exports(self) -> list[dict[str, Any]]:
        """The records of the exports `zoo export` made on this machine (`zoo.export.list_exports`)."""

    def local_export(self, path: str) -> tuple[dict[str, Any], dict[str, Any], str] | None:
        """The request, result and SHA-256 recorded for the export made here at `path`; None when none is."""

    def record_local_export(self, path: str, values: Mapping[str, Any]) -> None:
        """Record an export made here at `path` (replacing an earlier record at that path)."""

    def create_token(self, name: str, scopes: list[str] | tuple[str, ...]) -> str:
        """Make a service token (`zoo.catalog.tokens`); its secret, shown this once."""

    def list_tokens(self) -> list[dict[str, Any]]:
        """Every service token: name, scopes, made and revoked when. Never a secret."""

    def revoke_token(self, name: str) -> None:
        """Revoke token `name`."""

    def token_scopes(self, secret: str) -> frozenset[str] | None:
        """The scopes of the live token with `secret`; None for an unknown or revoked one."""

    def live_token(self, *, secret: str | None = None, name: str | None = None) -> tuple[str, frozenset[str]] | None:
        """The name and scopes of the live token with `secret` (or named `name`); None for an unknown or revoked
        one."""

    def is_published(self, sha256: str, kind: str) -> bool:
        """Whether a published weights file (`kind` "weights") or export ("export") has `sha256`."""

    def referenced_blobs(self) -> set[str]:
        """The SHA-256 of every blob a catalog row points at in the artifact store (published weights and exports):
        what `zoo.gc` keeps. Only where the catalog database is (not through a registry service)."""


def service_url(raw: str) -> str | None:
    """`raw` (a ``ZOO_REGISTRY_URL``) when it names a registry service (``http(s)://HOST[:PORT]``), else None."""
    raw = raw.strip()
    parts = urlsplit(raw)
    if parts.scheme.lower() not in {"http", "https"}:
        return None
    if not parts.hostname or parts.query or parts.fragment:
        raise UsageError(f"{REGISTRY_URL}={excerpt(raw)} is not a service address; expected http://HOST:PORT "
                         f"(or a database URL such as sqlite:///registry.db)")
    return raw.rstrip("/")


__all__ = ["Catalog", "ExportCheck", "FitCheck", "service_url"]

"""The context the zoo's module-level functions work in: settings, catalog, artifact store, weights cache.

``zoo.get_model(...)`` and the other module-level functions use `current()`: the
context `using` made current in this thread or task (the registry service makes its
own for each app), else the default one, built from the environment's settings (one
per distinct `Settings` value, kept). A `Context` opens its catalog, store and cache
on first use; `open_catalog` picks the catalog's implementation once, from the URL.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import cached_property, lru_cache
from typing import TYPE_CHECKING

from zoo.settings import Settings

if TYPE_CHECKING:
    from zoo.catalog.api import Catalog
    from zoo.fetch import WeightsCache
    from zoo.store import ArtifactStore

__all__ = ["Context", "catalog_kind", "current", "open_catalog", "using"]


class Context:
    """Where the zoo finds models and files: a catalog, an artifact store and a weights cache, from `settings`."""

    def __init__(self, settings: Settings, *, store: ArtifactStore | None = None) -> None:
        self.settings = settings
        if store is not None:  # else the one `settings` name, opened on first use
            self.store = store

    def __repr__(self) -> str:
        return f"Context({self.settings.registry_url!r})"

    @cached_property
    def store(self) -> ArtifactStore:
        from zoo.store import open_store

        return open_store(self.settings)

    @cached_property
    def cache(self) -> WeightsCache:
        from zoo.fetch import WeightsCache

        return WeightsCache.from_settings(self.settings)

    @cached_property
    def catalog(self) -> Catalog:
        if catalog_kind(self.settings) == "service":  # no store there, and the cache opened at its first file:
            return open_catalog(self.settings)  # `zoo list` through a service imports neither zoo.store nor zoo.fetch
        return open_catalog(self.settings, self.store, self.cache)


#: The catalog implementation for each kind of URL ("module:class"), imported only when a URL names it:
#: a deployment host that names a registry service never imports SQLAlchemy.
CATALOGS = {"service": "zoo.service.client:HttpCatalog", "database": "zoo.catalog.sql:SqlCatalog"}


def catalog_kind(settings: Settings) -> str:
    """The key of `CATALOGS` for `settings.registry_url`: "service" for ``http(s)://...``, else "database"."""
    from zoo.catalog.api import service_url

    return "service" if service_url(settings.registry_url) is not None else "database"


def open_catalog(settings: Settings, store: ArtifactStore | None = None, cache: WeightsCache | None = None) -> Catalog:
    """The catalog `settings.registry_url` names: a registry service's client for ``http(s)://...`` (it uses no
    artifact store, and without `cache` opens the weights cache `settings` configure at its first file), else
    the SQL catalog of that database URL, on `store` and `cache`, both needed (checked, and synced when stale,
    at its first lookup)."""
    module, _, name = CATALOGS[catalog_kind(settings)].partition(":")
    return getattr(importlib.import_module(module), name)(settings, store, cache)


_CURRENT: ContextVar[Context | None] = ContextVar("zoo_context", default=None)


def current() -> Context:
    """The context `using` made current here; else the default one for the environment's settings."""
    return _CURRENT.get() or _default(Settings.from_environ())


@lru_cache(maxsize=8)
def _default(settings: Settings) -> Context:
    return Context(settings)


@contextmanager
def using(context: Context) -> Iterator[Context]:
    """Make `context` current in this thread or task (and the threads it starts with its context)."""
    token = _CURRENT.set(context)
    try:
        yield context
    finally:
        _CURRENT.reset(token)

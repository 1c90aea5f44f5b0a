"""Opening the catalog database: every dialect-specific setting lives here.

SQLite (the default, ``registry.db`` in the working directory) gets foreign keys,
WAL and a busy timeout on every connection, and SQLAlchemy emits BEGIN itself so
that DDL is transactional and a sync can take the write lock up front. PostgreSQL
URLs use psycopg 3; a sync serialises on an advisory lock.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from zoo.errors import CatalogError

URL_ENV = "ZOO_REGISTRY_URL"
DEFAULT_URL = "sqlite:///registry.db"
SQLITE_BUSY_TIMEOUT_MS = 120_000
# Any fixed 64-bit number: the key of the PostgreSQL advisory lock a sync holds.
PG_SYNC_LOCK_KEY = 0x7A6F6F  # "zoo"


def catalog_url(url: str | None = None) -> URL:
    """The catalog's URL: `url`, else ``$ZOO_REGISTRY_URL``, else ``sqlite:///registry.db``."""
    raw = url or os.environ.get(URL_ENV) or DEFAULT_URL
    try:
        parsed = make_url(raw)
    except ArgumentError:
        raise CatalogError(
            f"catalog URL {raw!r} is not a database URL; expected for example "
            f"sqlite:///registry.db or postgresql://user@host:5432/dbname"
        ) from None
    if parsed.get_backend_name() not in {"sqlite", "postgresql"}:
        raise CatalogError(
            f"catalog URL {parsed.render_as_string(hide_password=True)!r} uses "
            f"{parsed.get_backend_name()!r}; supported: sqlite, postgresql"
        )
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


@lru_cache(maxsize=16)
def _engine_for(url: URL) -> Engine:
    if url.get_backend_name() == "sqlite":
        engine = create_engine(url)
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
        return engine
    return create_engine(url, pool_pre_ping=True)


def open_engine(url: str | None = None) -> Engine:
    """The (cached) engine of the catalog at `url` (see `catalog_url`)."""
    return _engine_for(catalog_url(url))


def _sqlite_on_connect(dbapi_connection, _record) -> None:
    # Let SQLAlchemy emit BEGIN (see _sqlite_on_begin) instead of the sqlite3 module,
    # which would otherwise run DDL outside of transactions.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.close()


def _sqlite_on_begin(conn: Connection) -> None:
    # IMMEDIATE takes the write lock at BEGIN, so two writers queue on the busy
    # timeout instead of one failing when it upgrades a read lock.
    mode = "IMMEDIATE" if conn.get_execution_options().get("zoo_write") else "DEFERRED"
    conn.exec_driver_sql(f"BEGIN {mode}")


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that holds the catalog's write lock until it commits or rolls back.

    Only one such transaction runs at a time per catalog, across processes.
    """
    with engine.connect() as conn:
        conn = conn.execution_options(zoo_write=True)
        with conn.begin():
            if engine.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_SYNC_LOCK_KEY})
            yield conn

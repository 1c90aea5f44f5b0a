"""Opening the catalog database: every dialect-specific setting lives here.

SQLite (the default, ``registry.db`` in the working directory) gets foreign keys, a
busy timeout and ``synchronous=FULL`` (a committed row is on disk before the commit
returns, WAL or not) on every connection that may write, WAL once (it is a property of
the file), and SQLAlchemy emits BEGIN itself so that DDL is transactional and a sync can
take the write lock up front. A catalog file that this process cannot write (a read-only file,
folder or file system) is opened read-only. PostgreSQL URLs use psycopg 3; a sync
serialises on an advisory lock.

A SQLite engine watches its file (`CatalogFile`): a file removed while in use is a
`CatalogError` on every use (never an empty catalog created in its place), a file
replaced by another (a restored copy) is reopened at the next use, and a write that
went into a file no longer at the path is an error, not a silent loss.

Every database error on a catalog engine becomes a one-line `CatalogError` here, at
the store boundary, classified by what the user can do about it: a damaged catalog
(``zoo sync`` rebuilds it), a file that is not a database (never overwritten), a
read-only or unreachable catalog.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import quote

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import URL, ExceptionContext, make_url
from sqlalchemy.exc import ArgumentError, InvalidatePoolError, NoSuchModuleError
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection

from zoo.errors import CatalogError, ZooWarning, excerpt, first_line
from zoo.settings import REGISTRY_URL, Settings

SQLITE_BUSY_TIMEOUT_MS = 120_000
#: (backend, driver) of ``postgresql://``: psycopg 3, which the ``postgres`` extra installs
POSTGRES = ("postgresql", "psycopg")
# Any fixed 64-bit number: the key of the PostgreSQL advisory lock a sync holds.
PG_SYNC_LOCK_KEY = 0x7A6F6F  # "zoo"
_EXAMPLES = "for example sqlite:///registry.db or postgresql://user@host:5432/dbname"
_REBUILD = "run `zoo sync` to rebuild it"
_ELSEWHERE = f"move it away, or point {REGISTRY_URL} at another catalog"
# What SQLite and PostgreSQL (SQLSTATE) say about a table or column the schema lacks.
_MISSING = re.compile(r"no such (table|column)|has no column named", re.IGNORECASE)
_PG_MISSING = {"42P01", "42703"}  # undefined_table, undefined_column
#: The key of a SQLite connection's `OpenedFile` in its pool entry's ``info``.
_OPENED = "zoo_catalog_file"


class CatalogWarning(ZooWarning):
    """The catalog answers, but not as it should: e.g. it is stale and cannot be re-synced."""


class DamagedCatalogError(CatalogError):
    """The catalog lacks a table or column it should have, or its file is corrupt."""

    def __init__(self, message: str, *, missing: bool) -> None:
        super().__init__(message)
        self.missing = missing  # a table or column is missing (not a corrupt file)


def catalog_url(url: str | None = None) -> URL:
    """The catalog's URL: `url`, else ``$ZOO_REGISTRY_URL``, else ``sqlite:///registry.db``."""
    raw = url or Settings.from_environ().registry_url
    shown = excerpt(_hide_password(raw))
    if raw.strip().lower().startswith(("http://", "https://")):
        raise CatalogError(f"{REGISTRY_URL}={shown} names a registry service, and this needs a catalog database: run it "
                           f"where the service's catalog is, or point {REGISTRY_URL} at one ({_EXAMPLES})")
    try:
        parsed = make_url(raw)
    except ArgumentError:
        raise CatalogError(f"catalog URL {shown} is not a database URL; expected {_EXAMPLES}") from None
    except ValueError:  # what make_url raises for a port that is not a number
        raise CatalogError(f"catalog URL {shown} has a port that is not a number; expected {_EXAMPLES}") from None
    if parsed.get_backend_name() not in {"sqlite", "postgresql"}:
        raise CatalogError(f"catalog URL {shown} uses {parsed.get_backend_name()!r}; supported: sqlite, postgresql")
    if parsed.get_backend_name() == "sqlite" and _in_memory(parsed):
        raise CatalogError(
            f"catalog URL {shown} is an in-memory database, which vanishes when the command ends; "
            "use a file, e.g. sqlite:///registry.db"
        )
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="+".join(POSTGRES))
    return parsed


def _hide_password(raw: str) -> str:
    """`raw` with the password of ``scheme://user:password@host`` replaced by ``***``."""
    return re.sub(r"(://[^:/@]*:)[^/]*@", r"\1***@", raw)


def _in_memory(url: URL) -> bool:
    database = url.database or ""
    return database in {"", ":memory:"} or url.query.get("mode") == "memory" or "mode=memory" in database


def where(url: URL) -> str:
    """How messages name the catalog: its file for SQLite, else its URL without the password."""
    if url.get_backend_name() == "sqlite":
        return f"the catalog file {_sqlite_path(url)}"
    return f"the catalog at {url.render_as_string(hide_password=True)}"


def _sqlite_path(url: URL) -> Path:
    """The absolute path of a SQLite catalog (relative URLs are relative to the working directory)."""
    return Path(url.database or "").absolute()


@lru_cache(maxsize=16)
def _engine_for(url: URL) -> Engine:
    """A new engine for `url`, whose database errors all become `CatalogError`s (see `catalog_error`)."""
    if url.get_backend_name() == "sqlite":
        engine = _sqlite_engine(url)
    else:
        engine = _create(url, pool_pre_ping=True)  # PostgreSQL itself refuses a JSON value that does not parse
    event.listen(engine, "handle_error", _raise_catalog_error)
    return engine


def _create(url: URL, **kwargs: object) -> Engine:
    """`create_engine`, with a driver that is missing or not usable here as one line."""
    try:
        engine = create_engine(url, **kwargs)
    except (ImportError, NoSuchModuleError) as exc:
        backend, driver = url.get_backend_name(), url.get_driver_name()
        hint = ("install zoo's postgres extra (pip install 'zoo-registry[postgres]')" if (backend, driver) == POSTGRES
                else f"install it, or use {backend}:// ({'psycopg 3' if backend == 'postgresql' else 'sqlite3'})")
        raise CatalogError(
            f"catalog URL {excerpt(url.render_as_string(hide_password=True))} needs the database driver "
            f"{driver!r}, which is not installed ({first_line(exc)}); {hint}"
        ) from None
    if engine.dialect.is_async:
        raise CatalogError(
            f"catalog URL {excerpt(url.render_as_string(hide_password=True))} names the asyncio driver "
            f"{url.get_driver_name()!r}, which zoo cannot use; use {url.get_backend_name()}://"
        )
    return engine


def _sqlite_engine(url: URL) -> Engine:
    """An engine for a SQLite catalog file: read-only if this process cannot write it, else read-write."""
    path = _sqlite_path(url)
    if path.exists() and not path.is_file():  # SQLite would write its journal next to a device, say
        kind = "a folder" if path.is_dir() else "not a regular file"
        raise CatalogError(
            f"{where(url)} is {kind}; zoo keeps a catalog only in a regular file: "
            f"point {REGISTRY_URL} at one, e.g. sqlite:///registry.db"
        )
    watched = CatalogFile(url)
    if read_only(url):
        engine = _create(url, creator=lambda: _connect_read_only(watched), json_deserializer=_json_reader(url))
        event.listen(engine, "connect", _sqlite_on_connect_read_only)
    else:
        engine = _create(url, json_deserializer=_json_reader(url))
        event.listen(engine, "do_connect", lambda *_: watched.before_connect())
        event.listen(engine, "connect", _sqlite_on_connect)
    event.listen(engine, "connect", watched.opened)
    event.listen(engine, "checkout", watched.checkout)
    event.listen(engine, "begin", _sqlite_on_begin)
    return engine


FileIdentity = tuple[int, int]  # (st_dev, st_ino): which file is at a path while it exists


class OpenedFile(NamedTuple):
    """The catalog file one SQLite connection opened: its watcher and the file's identity then."""

    watched: CatalogFile
    identity: FileIdentity | None


class CatalogFile:
    """The file of a SQLite catalog engine, checked on every use of a connection.

    SQLite keeps using a file that was removed or replaced under it (and creates an
    empty one when a connection opens a missing path), so each connection remembers
    which file it opened (`opened`), and each checkout of one (`checkout`) compares that
    with the file at the path now: gone is a `CatalogError`, another file (a restored
    copy, a new catalog) makes the pool reconnect to it. Once this engine has opened the
    file, a missing path is never created anew (`before_connect`): only a new engine (a
    new command, ``zoo sync``, the service's start) makes a catalog.
    """

    def __init__(self, url: URL) -> None:
        self.url, self.path = url, _sqlite_path(url)
        self.seen = False  # whether a connection of this engine has opened the file

    def identity(self) -> FileIdentity | None:
        """Which file is at the path now; None when there is none."""
        try:
            st = os.stat(self.path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        return st.st_dev, st.st_ino

    def before_connect(self) -> None:
        """Refuse to open (and so create) a catalog file that was removed since this engine opened it."""
        if self.seen and self.identity() is None:
            raise self.removed()

    def opened(self, _dbapi_connection: object, entry: ConnectionPoolEntry) -> None:
        """The ``connect`` event: remember which file the new connection opened."""
        entry.info[_OPENED] = OpenedFile(self, self.identity())
        self.seen = True

    def checkout(self, _dbapi_connection: object, entry: ConnectionPoolEntry, _proxy: PoolProxiedConnection) -> None:
        """The ``checkout`` event: refuse a removed file; reconnect (every pooled connection) to a replaced one."""
        now = self.identity()
        if now is None:
            raise self.removed()
        if now != entry.info[_OPENED].identity:
            raise InvalidatePoolError(f"{where(self.url)} was replaced; reopening it")

    def check_written(self, opened: OpenedFile) -> None:
        """After a commit on a connection that opened `opened`: refuse if that file is no longer at the path."""
        if self.identity() != opened.identity:
            raise CatalogError(f"{where(self.url)} was removed or replaced while this change was being written, "
                               "so the change is not in the catalog; restore the file (or run `zoo sync`) and "
                               "try again")

    def removed(self) -> CatalogError:
        """The error of a catalog whose file is gone."""
        return CatalogError(f"{where(self.url)} was removed while in use; restore it (zoo reopens it by itself) "
                            "or run `zoo sync` to build a new one")


def _json_reader(url: URL) -> Callable[[str], Any]:
    """`json.loads` for a SQLite catalog's JSON columns: a value that is not JSON means a damaged catalog.

    Result values do not pass through ``handle_error``, so this is where they are caught.
    """

    def loads(value: str) -> Any:
        try:
            return json.loads(value)
        except ValueError as exc:
            raise DamagedCatalogError(
                f"{where(url)} is damaged (a JSON value {excerpt(value, 40)} does not parse: {first_line(exc)}); "
                f"{_REBUILD}",
                missing=False,
            ) from None

    return loads


def open_engine(url: str | None = None) -> Engine:
    """The (cached) engine of the catalog at `url` (see `catalog_url`)."""
    return _engine_for(catalog_url(url))


def read_only(url: URL) -> bool:
    """Whether the catalog is a SQLite file that exists and that this process cannot write.

    SQLite writes next to the file too (the WAL index, journals), so a read-only
    folder counts as well. Checked once, when the engine is made.
    """
    if url.get_backend_name() != "sqlite":
        return False
    path = _sqlite_path(url)
    return path.exists() and not (os.access(path, os.W_OK) and os.access(path.parent, os.W_OK))


def require_writable(url: URL) -> None:
    """Refuse, in one line, to start writing a catalog this process cannot write."""
    if read_only(url):
        raise CatalogError(
            f"{where(url)} is read-only here (the file or its folder cannot be written), so zoo cannot update it; "
            f"sync a copy in a writable folder, or point {REGISTRY_URL} at one"
        )


def _connect_read_only(watched: CatalogFile) -> sqlite3.Connection:
    """A read-only connection to the catalog file `watched`.

    A WAL database can be read without writing only while its shared-memory index
    exists (a writer has it open); otherwise SQLite must be told that the file will
    not change under it (``immutable``), which holds while nobody can write it.
    """
    watched.before_connect()
    uri = f"file:{quote(str(watched.path))}"
    conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, check_same_thread=False)
    try:
        conn.execute("PRAGMA schema_version").fetchone()
    except sqlite3.OperationalError:
        conn.close()
        conn = sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True, check_same_thread=False)
    return conn


def _sqlite_on_connect(dbapi_connection, _record) -> None:
    # Let SQLAlchemy emit BEGIN (see _sqlite_on_begin) instead of the sqlite3 module,
    # which would otherwise run DDL outside of transactions.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys = ON")
    # In WAL mode SQLite's default may be NORMAL, where a commit is lost on power loss: FULL syncs the WAL at
    # every commit, so what the service acknowledged is on disk.
    cursor.execute("PRAGMA synchronous = FULL")
    # WAL is stored in the file: switch once, not on every connection (a write each time).
    if cursor.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        cursor.execute("PRAGMA journal_mode = WAL")
    cursor.close()


def _sqlite_on_connect_read_only(dbapi_connection, _record) -> None:
    # As _sqlite_on_connect, less what writes: no journal mode, and foreign keys only matter to writers.
    dbapi_connection.isolation_level = None
    dbapi_connection.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")


def _sqlite_on_begin(conn: Connection) -> None:
    # IMMEDIATE takes the write lock at BEGIN, so two writers queue on the busy
    # timeout instead of one failing when it upgrades a read lock.
    mode = "IMMEDIATE" if conn.get_execution_options().get("zoo_write") else "DEFERRED"
    conn.exec_driver_sql(f"BEGIN {mode}")


def _raise_catalog_error(context: ExceptionContext) -> None:
    """Replace a database error on a catalog engine with the one-line `CatalogError` it means."""
    if context.sqlalchemy_exception is None:  # not a database error: a bug, left as it is
        return
    url = context.engine.url if context.engine is not None else None
    if url is None:
        return
    raise catalog_error(url, context.original_exception) from None


def catalog_error(url: URL, exc: BaseException) -> CatalogError:
    """The one-line error for the database error `exc` on the catalog at `url`."""
    message, named = first_line(exc), where(url)
    if _MISSING.search(message) or getattr(exc, "sqlstate", None) in _PG_MISSING:
        return DamagedCatalogError(f"{named} is damaged ({message}); {_REBUILD}", missing=True)
    if "file is not a database" in message:
        return CatalogError(f"{named} is not a SQLite database, and zoo will not overwrite it; {_ELSEWHERE}")
    if "malformed" in message:
        return DamagedCatalogError(
            f"{named} is corrupt ({message}); move it away and run `zoo sync` to build a new one", missing=False
        )
    if "readonly database" in message:
        return CatalogError(f"{named} is read-only, so zoo cannot update it ({message})")
    if "unable to open database file" in message:
        folder = _sqlite_path(url).parent
        if not folder.is_dir():
            return CatalogError(f"cannot open {named}: the folder {folder} does not exist; point {REGISTRY_URL} at "
                                "a file in a folder that exists")
        if not os.access(folder, os.W_OK | os.X_OK):
            return CatalogError(f"cannot create {named}: its folder cannot be written; point {REGISTRY_URL} at a "
                                "writable place, or have the catalog made there by a user who can write it")
        return CatalogError(f"cannot open {named}: {message}")
    return CatalogError(f"cannot use {named}: {message}")


def remember(engine: Engine, what: str, write: Callable[[Connection], object]) -> bool:
    """Record a learned fact (`write` in a write transaction) unless the catalog is read-only here.

    Such facts (a verified hash, an export record) only save work later, so a read-only
    catalog is no reason to fail: it gets a `CatalogWarning` saying `what` was not kept.
    """
    if read_only(engine.url):
        warnings.warn(f"{where(engine.url)} is read-only here, so {what} is not kept", CatalogWarning, stacklevel=2)
        return False
    with write_transaction(engine) as conn:
        write(conn)
    return True


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that holds the catalog's write lock until it commits or rolls back.

    Only one such transaction runs at a time per catalog, across processes. On a SQLite
    catalog, a commit into a file that was removed or replaced meanwhile (lost with it)
    is a `CatalogError` (`CatalogFile.check_written`).
    """
    with engine.connect() as conn:
        conn = conn.execution_options(zoo_write=True)
        with conn.begin():
            if engine.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_SYNC_LOCK_KEY})
            yield conn
        opened: OpenedFile | None = conn.connection.info.get(_OPENED)
        if opened is not None:
            opened.watched.check_written(opened)

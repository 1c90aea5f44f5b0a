"""A SQLite catalog file removed or replaced while it is in use: never a silent loss.

The engine notices (`zoo.catalog.engine.CatalogFile`): a removed file is a one-line
`CatalogError` (503 from the service) and is never created anew by a request; a
replaced file (a restored copy, another catalog) is reopened; a write that went into a
file no longer at its path is an error, not an acknowledgement. Checked in process on
the engine and against a real ``zoo serve``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from zoo.catalog.engine import open_engine, write_transaction
from zoo.errors import CatalogError
from tests.conftest import run_zoo
from tests.test_serve import API, DIGITS_WEIGHTS, Service, one_line_error, publish, running_service

REMOVED = r"registry\.db was removed while in use; restore it .* or run `zoo sync`"


def copy_catalog(source: Path, target: Path) -> None:
    """A consistent copy of the SQLite catalog `source` (what its WAL holds included) at `target`, a new file."""
    with sqlite3.connect(source) as reading, sqlite3.connect(target) as writing:
        reading.backup(writing)
    reading.close()
    writing.close()


def remove_catalog(path: Path) -> None:
    """Remove a SQLite catalog file with its WAL and shared-memory index, as a careless operator would."""
    for name in (path.name, f"{path.name}-wal", f"{path.name}-shm"):
        (path.parent / name).unlink(missing_ok=True)


def count(url: str) -> int:
    with open_engine(url).connect() as conn:
        return conn.scalar(text("SELECT count(*) FROM t"))


@pytest.fixture
def table(tmp_path: Path) -> Iterator[str]:
    """A SQLite file (its URL) with a table t of one row, written through the catalog engine."""
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    with write_transaction(open_engine(url)) as conn:
        conn.execute(text("CREATE TABLE t (x INTEGER)"))
        conn.execute(text("INSERT INTO t VALUES (1)"))
    yield url
    open_engine(url).dispose()


def test_the_engine_refuses_a_removed_file_and_reopens_a_restored_one(table: str, tmp_path: Path) -> None:
    path = tmp_path / "registry.db"
    copy_catalog(path, tmp_path / "copy.db")
    remove_catalog(path)
    for _ in range(2):  # the first use closes the connection to the removed file; the second would open a new one
        with pytest.raises(CatalogError, match=REMOVED):
            count(table)
    assert not path.exists()  # never recreated empty by a use
    (tmp_path / "copy.db").rename(path)
    assert count(table) == 1


def test_the_engine_reopens_a_replaced_file(table: str, tmp_path: Path) -> None:
    path, other = tmp_path / "registry.db", tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.executescript("CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1), (2), (3);")
    conn.close()
    assert count(table) == 1  # a pooled connection to the first file
    remove_catalog(path)
    other.rename(path)
    assert count(table) == 3


def test_a_write_into_a_file_removed_meanwhile_is_an_error(table: str, tmp_path: Path) -> None:
    path = tmp_path / "registry.db"
    copy_catalog(path, tmp_path / "copy.db")
    with pytest.raises(CatalogError, match=r"was removed or replaced while this change was being written"):
        with write_transaction(open_engine(table)) as conn:
            conn.execute(text("INSERT INTO t VALUES (2)"))
            remove_catalog(path)
            (tmp_path / "copy.db").rename(path)  # the write goes into the removed file, not this one
    assert count(table) == 1


def test_writers_sync_every_commit(table: str) -> None:
    with open_engine(table).connect() as conn:
        assert conn.scalar(text("PRAGMA synchronous")) == 2  # FULL


# -- against zoo serve ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def synced(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A catalog synced with the digits plugin, to be copied by each test."""
    path = tmp_path_factory.mktemp("synced") / "registry.db"
    run_zoo("sync", env={"ZOO_REGISTRY_URL": f"sqlite:///{path}", "ZOO_LOAD_PLUGINS": "digits"})
    return path


@pytest.fixture
def service(synced: Path, tmp_path: Path) -> Iterator[Service]:
    """`zoo serve` on a copy of `synced` (``tmp_path/registry.db``), with a publish token, reading the catalog's
    state at every request (answers kept in memory are otherwise served up to the check interval after the file
    changed)."""
    path = tmp_path / "registry.db"
    copy_catalog(synced, path)
    env = {"ZOO_REGISTRY_URL": f"sqlite:///{path}", "ZOO_LOAD_PLUGINS": "digits",
           "ZOO_ARTIFACTS": str(tmp_path / "artifacts"), "ZOO_CATALOG_CHECK_INTERVAL": "0"}
    token = run_zoo("token", "create", "publisher", env=env).stdout.strip()
    with running_service(env, log=tmp_path / "serve.log") as served:
        served.tokens["publisher"] = token
        yield served


def versions(client: httpx.Client, name: str) -> list[int]:
    answer = client.get(f"{API}/published/{name}")
    assert answer.status_code == 200, answer.text
    return [v["version"] for v in answer.json()["versions"]]


def test_a_removed_catalog_answers_503_and_loses_nothing_acknowledged(service: Service, tmp_path: Path) -> None:
    path, weights = tmp_path / "registry.db", DIGITS_WEIGHTS.read_bytes()
    acknowledged = [publish(service, "team/digits", weights).status_code for _ in range(2)]
    assert acknowledged == [201, 201]
    copy_catalog(path, tmp_path / "backup.db")
    remove_catalog(path)
    with service.client() as client:
        health = client.get(f"{API}/health")
        assert health.status_code == 503 and "was removed while in use" in one_line_error(health)
        lost = publish(service, "team/digits", weights)
        assert lost.status_code == 503 and "was removed" in one_line_error(lost)
        assert client.get(f"{API}/published/team/digits").status_code == 503
        assert not path.exists()  # no request made an empty catalog in its place
        (tmp_path / "backup.db").rename(path)  # a restored copy: another file at the path
        assert client.get(f"{API}/health").status_code == 200
        assert versions(client, "team/digits") == [1, 2]
        assert publish(service, "team/digits", weights).status_code == 201
        assert versions(client, "team/digits") == [1, 2, 3]


def test_a_replaced_catalog_is_served_from_the_new_file(service: Service, synced: Path, tmp_path: Path) -> None:
    path, other = tmp_path / "registry.db", tmp_path / "other" / "registry.db"
    other.parent.mkdir()
    copy_catalog(synced, other)
    run_zoo("publish", "weights", "digits_cnn", str(DIGITS_WEIGHTS), "--name", "team/other",
            env={**service.env, "ZOO_REGISTRY_URL": f"sqlite:///{other}"})
    assert publish(service, "team/digits", DIGITS_WEIGHTS.read_bytes()).status_code == 201
    with service.client() as client:
        assert client.get(f"{API}/published/team/other").status_code == 404
        remove_catalog(path)
        other.rename(path)
        assert versions(client, "team/other") == [1]
        assert client.get(f"{API}/published/team/digits").status_code == 404

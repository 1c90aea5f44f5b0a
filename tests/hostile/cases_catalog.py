"""A damaged, foreign or read-only catalog, and catalog URLs a user can get wrong.

Lookups on a damaged catalog end in one line naming the file and saying to run
``zoo sync``; ``zoo sync`` repairs it (keeping learned hashes) and ``zoo list`` then
works; a file that is not a catalog is never touched; a read-only catalog is read.
"""

from __future__ import annotations

import atexit
import os
import uuid
import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from hostile.harness import ZOO, Case, base_env, synced_catalog

POSTGRES = os.environ.get("ZOO_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")

LEARNED = ("https://example.org/learned.pth", "ab" * 32, 1234)
DAMAGED = r"registry\.db is damaged \(.*\); run `zoo sync` to rebuild it"
FOREIGN = r"registry\.db is not a SQLite database, and zoo will not overwrite it; move it away"
CORRUPT = r"registry\.db is corrupt .*move it away"


def _sql(*statements: str) -> Callable[[Path], None]:
    """A setup that damages the workspace's catalog (after recording one learned hash)."""

    def setup(ws: Path) -> None:
        with sqlite3.connect(ws / "registry.db") as conn:
            conn.execute("INSERT INTO weight_files VALUES (?, ?, ?)", LEARNED)
            for statement in statements:
                conn.execute(statement)
        conn.close()

    return setup


def _write(data: bytes) -> Callable[[Path], None]:
    def setup(ws: Path) -> None:
        (ws / "registry.db").write_bytes(data)

    return setup


def _truncate(ws: Path) -> None:
    path = ws / "registry.db"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _repaired(learned_kept: bool = True, said: bool = False) -> Callable[[Path, subprocess.CompletedProcess], None]:
    """A check that the repaired catalog lists every model and kept the learned hash (and, if `said`,
    that the command said what it repaired)."""

    def check(ws: Path, done: subprocess.CompletedProcess) -> None:
        assert not said or "zoo: warning: the catalog was damaged: " in done.stderr, done.stderr
        listed = subprocess.run([str(ZOO), "list"], cwd=ws, env=base_env(ws), capture_output=True, text=True)
        assert listed.returncode == 0 and "digits_cnn" in listed.stdout, listed.stderr
        with sqlite3.connect(ws / "registry.db") as conn:
            rows = conn.execute("SELECT url, sha256, file_size FROM weight_files").fetchall()
        conn.close()
        assert rows == ([LEARNED] if learned_kept else []), rows

    return check


def _url(url: str) -> Callable[[Path], dict[str, str]]:
    return lambda ws: {"ZOO_REGISTRY_URL": url}


def _postgres_without_models(ws: Path) -> dict[str, str]:
    """A catalog synced on a PostgreSQL database of its own (dropped at exit), then its models table dropped."""
    from sqlalchemy import create_engine, text

    admin = create_engine(POSTGRES, isolation_level="AUTOCOMMIT")
    name = f"zoo_hostile_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    atexit.register(_drop_database, admin, name)
    url = admin.url.set(database=name).render_as_string(hide_password=False)
    env = {**base_env(ws), "ZOO_REGISTRY_URL": url}
    subprocess.run([str(ZOO), "sync"], cwd=ws, env=env, check=True, capture_output=True)
    catalog = create_engine(url)
    with catalog.begin() as conn:
        conn.execute(text("DROP TABLE models CASCADE"))
    catalog.dispose()
    (ws / "catalog-url").write_text(url)  # for the check
    return {"ZOO_REGISTRY_URL": url}


def _drop_database(admin, name: str) -> None:  # noqa: ANN001
    from sqlalchemy import text

    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _lists_again(ws: Path, done: subprocess.CompletedProcess) -> None:
    """A check that ``zoo list`` on the same catalog URL works after the command."""
    env = {**base_env(ws), "ZOO_REGISTRY_URL": (ws / "catalog-url").read_text()}
    listed = subprocess.run([str(ZOO), "list"], cwd=ws, env=env, capture_output=True, text=True)
    assert listed.returncode == 0 and "digits_cnn" in listed.stdout, listed.stderr


def _folder(ws: Path) -> None:
    (ws / "registry.db").unlink()
    (ws / "registry.db").mkdir()


def _remove(folder: Path) -> None:
    """Remove a folder made read-only (which, not being root, we could not empty otherwise)."""
    folder.chmod(0o755)
    shutil.rmtree(folder, ignore_errors=True)


def _read_only_folder(plugins: str, catalog: bool = True) -> Callable[[Path], dict[str, str]]:
    """The synced catalog (or none) in a folder outside the workspace (which only root can reach) that nobody
    can write."""

    def setup(ws: Path) -> dict[str, str]:
        folder = Path(tempfile.mkdtemp(prefix="zoo-hostile-read-only-"))
        atexit.register(_remove, folder)
        if catalog:
            shutil.copyfile(synced_catalog(), folder / "registry.db")
            (folder / "registry.db").chmod(0o444)
        folder.chmod(0o555)
        return {"ZOO_REGISTRY_URL": f"sqlite:///{folder / 'registry.db'}", "ZOO_LOAD_PLUGINS": plugins}

    return setup


CASES = [
    # a table or column gone: lookups say what to do, sync repairs
    *[Case(f"catalog-drop-{table}-{command[0]}", command, DAMAGED, setup=_sql(f"DROP TABLE {table}"), keep=("registry.db",))
      for table in ("models", "weights") for command in (("list",), ("show", "digits_cnn"))],
    # the plugins table is where a lookup reads whether the catalog is current: without it, it re-syncs
    *[Case(f"catalog-drop-plugins-{command[0]}", command, None, setup=_sql("DROP TABLE plugins"), check=_repaired())
      for command in (("list",), ("show", "digits_cnn"))],
    Case("catalog-drop-metrics-list-min-metric", ("list", "--min-metric", "acc@1=50"), DAMAGED,
         setup=_sql("DROP TABLE metrics"), keep=("registry.db",)),
    Case("catalog-drop-column-show", ("show", "digits_cnn"), DAMAGED,
         setup=_sql("ALTER TABLE models DROP COLUMN first_conv"), keep=("registry.db",)),
    *[Case(f"catalog-drop-{table}-sync", ("sync",), None, setup=_sql(f"DROP TABLE {table}"),
           check=_repaired(learned_kept=table != "weight_files", said=True))
      for table in ("plugins", "models", "metrics", "catalog_state", "weight_files", "exports", "alembic_version")],
    Case("catalog-drop-column-sync", ("sync",), None, setup=_sql("ALTER TABLE models DROP COLUMN first_conv"),
         check=_repaired(said=True)),
    Case("catalog-drop-catalog-state-list", ("list",), None, setup=_sql("DROP TABLE catalog_state"), check=_repaired()),
    Case("catalog-garbage-state-list", ("list",), None,
         setup=_sql("DELETE FROM catalog_state", "INSERT INTO catalog_state VALUES ('plugins_fingerprint', x'00ff')",
                    "INSERT INTO catalog_state VALUES ('junk', 12)"), check=_repaired()),
    Case("catalog-revision-unreadable-sync", ("sync",), None,
         setup=_sql("ALTER TABLE alembic_version RENAME COLUMN version_num TO v"), check=_repaired(said=True)),
    Case("catalog-revision-two-rows-sync", ("sync",), None, setup=_sql("INSERT INTO alembic_version VALUES ('0003')"),
         check=_repaired(said=True)),
    Case("catalog-garbage-json-show", ("show", "digits_cnn"), r"is damaged \(a JSON value .* does not parse",
         setup=_sql("UPDATE models SET metadata = '{oops'"), keep=("registry.db",)),
    Case("catalog-garbage-json-sync", ("sync",), None, check=_repaired(said=True),
         setup=_sql("UPDATE models SET metadata = '{oops'", "INSERT INTO weight_files VALUES ('u', 'x', 'big')")),
    Case("catalog-newer-revision-sync", ("sync",), r"schema revision '9999', which this zoo does not know.*newer zoo",
         setup=_sql("UPDATE alembic_version SET version_num = '9999'"), keep=("registry.db",)),
    Case("catalog-postgres-drop-models-list", ("list",), r"the catalog at postgresql\+psycopg://.* is damaged",
         setup=_postgres_without_models),
    Case("catalog-postgres-drop-models-sync", ("sync",), None, setup=_postgres_without_models, check=_lists_again),
    # not a catalog at all, or a corrupt one: never overwritten
    *[Case(f"catalog-not-a-database-{command[0]}", command, FOREIGN, setup=_write(b"my notes\n" * 500),
           keep=("registry.db",)) for command in (("list",), ("show", "resnet18"), ("sync",))],
    *[Case(f"catalog-truncated-{command[0]}", command, CORRUPT, setup=_truncate, keep=("registry.db",))
      for command in (("list",), ("show", "resnet18"), ("sync",))],
    Case("catalog-empty-file-list", ("list",), None, setup=_write(b"")),
    # read-only: listed as it is; stale, it is served with a warning; sync says why it cannot
    Case("catalog-read-only-folder-list", ("list",), None, setup=_read_only_folder("digits,torchvision"), user=65534),
    Case("catalog-read-only-folder-stale-list", ("list",), None, setup=_read_only_folder("digits"), user=65534),
    Case("catalog-read-only-folder-new", ("list",), r"cannot create the catalog file .*: its folder cannot be written",
         setup=_read_only_folder("digits", catalog=False), user=65534),
    Case("catalog-read-only-folder-sync", ("sync",), r"read-only here", setup=_read_only_folder("digits"), user=65534),
    # catalog URLs
    Case("catalog-url-port-not-a-number", ("list",), r"has a port that is not a number",
         setup=_url("postgresql://me:s3cret@localhost:fivefour/zoo")),
    Case("catalog-url-driver-missing", ("list",), r"driver 'psycopg2', which is not installed",
         setup=_url("postgresql+psycopg2://me:s3cret@localhost/zoo")),
    Case("catalog-url-async-driver", ("sync",), r"driver 'asyncpg'",
         setup=_url("postgresql+asyncpg://me:s3cret@localhost/zoo")),
    Case("catalog-url-sqlite-memory", ("list",), r"in-memory database, which vanishes", setup=_url("sqlite://")),
    Case("catalog-url-sqlite-memory-named", ("sync",), r"in-memory database", setup=_url("sqlite:///:memory:")),
    Case("catalog-url-missing-folder", ("list",), r"the folder /nonexistent/dir does not exist",
         setup=_url("sqlite:////nonexistent/dir/registry.db")),
    Case("catalog-url-dev-null", ("sync",), r"/dev/null is not a regular file", setup=_url("sqlite:////dev/null"),
         watch=("/dev/null", "/dev/null-journal", "/dev/null-wal")),
    Case("catalog-url-folder", ("list",), r"registry\.db is a folder", setup=_folder),
    Case("catalog-url-postgres-unreachable", ("list",),
         r"cannot use the catalog at postgresql\+psycopg://me:\*\*\*@127\.0\.0\.1:1/zoo",
         setup=_url("postgresql://me:s3cret@127.0.0.1:1/zoo")),
    Case("catalog-url-postgres-unknown-database", ("show", "resnet18"), r'database "no_such_zoo_db" does not exist',
         setup=_url("postgresql://postgres:s3cret@127.0.0.1:5432/no_such_zoo_db")),
]

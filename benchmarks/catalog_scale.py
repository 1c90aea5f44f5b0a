"""Warm lookups on a 10,000-model catalog, on SQLite and PostgreSQL, idle and under load.

Installs the fixture plugin ``tests/plugins/zoo-fixture-many`` (``$ZOO_FIXTURE_MANY``
models, ``--models``) into a temporary folder put on the children's PYTHONPATH, and
for each backend makes a fresh catalog (a SQLite file; a PostgreSQL database created
and dropped here), syncs it with that plugin alone (``zoo sync``, timed, and the
catalog's size), then times in one process, after one warm-up call each, `--calls`
calls of each lookup, taken in turn: ``list_models`` unfiltered, filtered by task,
parameter count and metric, with a pattern matching every model and one matching
ten, and ``describe``. Medians and 90th percentiles, once on an idle machine and
once beside a process spinning on the CPU. Prints a markdown table and writes
``benchmarks/results/catalog_scale.md``.

    .venv/bin/python benchmarks/catalog_scale.py [--models 10000] [--calls 200] [--backend sqlite]

Issue 12's targets: warm filtered ``list_models`` and ``describe`` at most 2 ms, a
pattern matching 10,000 names at most 10 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from _measure import FIXTURES, child_env, machine_line, markdown_table, median_p90, run_child, write_result, zoo_argv

POSTGRES_URL = os.environ.get("ZOO_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
FIXTURE = FIXTURES / "zoo-fixture-many"
#: The lookups timed, by label: (target in ms or None, the call). Names are zoo_fixture_many's.
LOOKUPS: dict[str, tuple[float | None, Callable[[Any], Any]]] = {
    "list_models()": (None, lambda zoo: zoo.list_models()),
    "list_models(task='embedding')": (2, lambda zoo: zoo.list_models(task="embedding")),
    "list_models(max_params=20_000)": (2, lambda zoo: zoo.list_models(max_params=20_000)),
    "list_models(min_metric={'acc@1': 85})": (2, lambda zoo: zoo.list_models(min_metric={"acc@1": 85})),
    "list_models('many_*') (every model)": (10, lambda zoo: zoo.list_models("many_*")),
    "list_models('many_*_0001?') (ten)": (10, lambda zoo: zoo.list_models("many_*_0001?")),
    "describe('many_gamma_00012')": (2, lambda zoo: zoo.describe("many_gamma_00012")),
}


def time_lookups(calls: int) -> dict[str, dict[str, float]]:
    """In this process: each lookup's result size, and median and p90 milliseconds over `calls` calls."""
    import zoo

    sizes = {label: result_size(call(zoo)) for label, (_, call) in LOOKUPS.items()}  # warm-up
    samples: dict[str, list[float]] = {label: [] for label in LOOKUPS}
    for _ in range(calls):
        for label, (_, call) in LOOKUPS.items():
            start = time.perf_counter()
            call(zoo)
            samples[label].append((time.perf_counter() - start) * 1e3)
    return {label: dict(zip(("median", "p90"), median_p90(samples[label])), size=sizes[label]) for label in LOOKUPS}


def result_size(result: list[str] | dict[str, Any]) -> int:
    """How many names a listing returned, or how many weights entries a description has."""
    return len(result) if isinstance(result, list) else len(result["weights"])


@contextmanager
def spinning(on: bool) -> Iterator[None]:
    """While inside, a second process spins on one CPU (when `on`)."""
    if not on:
        yield
        return
    import subprocess

    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield
    finally:
        spinner.kill()
        spinner.wait()


@contextmanager
def sqlite_catalog(folder: Path) -> Iterator[tuple[str, Callable[[], int]]]:
    """A new SQLite catalog's URL, and how to read its size in bytes."""
    path = folder / "registry.db"
    yield f"sqlite:///{path}", lambda: path.stat().st_size


@contextmanager
def postgresql_catalog(_folder: Path) -> Iterator[tuple[str, Callable[[], int]]]:
    """A new PostgreSQL database's URL (dropped afterwards), and how to read its size in bytes."""
    from sqlalchemy import create_engine, text

    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    name = f"zoo_bench_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        with admin.connect() as conn:
            yield (admin.url.set(database=name).render_as_string(hide_password=False),
                   lambda: conn.scalar(text("SELECT pg_database_size(:name)"), {"name": name}))
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


CATALOGS = {"sqlite": sqlite_catalog, "postgresql": postgresql_catalog}


def install_fixture(target: Path) -> None:
    """pip-install the fixture plugin into `target`, as a user's pip would (see tests/conftest.py)."""
    sys.path.insert(0, str(FIXTURES.parent))
    from conftest import pip_install

    pip_install(FIXTURE, target)


def bench_backend(backend: str, folder: Path, env: dict[str, str], calls: int) -> tuple[list[list[object]], str]:
    """Table rows of one backend's lookups (idle and loaded), and a line with its sync time and catalog size."""
    rows: list[list[object]] = []
    with CATALOGS[backend](folder) as (url, size):
        env = {**env, "ZOO_REGISTRY_URL": url}
        synced = run_child(zoo_argv("sync"), env, folder)
        sync_line = (f"{backend}: `zoo sync` {synced.wall_s:.1f} s ({synced.max_rss / 2**20:.0f} MiB peak); "
                     f"catalog {size() / 1e6:.1f} MB; {synced.stdout.strip()}")
        for loaded in (False, True):
            with spinning(loaded):
                child = run_child([sys.executable, __file__, "--child", "--calls", str(calls)], env, folder)
            for label, r in json.loads(child.stdout).items():
                target = LOOKUPS[label][0]
                rows.append([backend, "1 spinning process" if loaded else "no added load", label, r["size"],
                             f"{r['median']:.2f}", f"{r['p90']:.2f}", f"{target} ms" if target else "-"])
    return rows, sync_line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=10_000, help="models the fixture plugin registers")
    parser.add_argument("--calls", type=int, default=200, help="timed calls of each lookup (default 200)")
    parser.add_argument("--backend", action="append", choices=sorted(CATALOGS),
                        help="sqlite and/or postgresql (repeatable; default both)")
    parser.add_argument("--output", default="catalog_scale.md", help="path under benchmarks/results/")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)  # time the lookups here
    args = parser.parse_args()
    if args.child:
        print(json.dumps(time_lookups(args.calls)))
        return

    with tempfile.TemporaryDirectory() as tmp:
        folder, site = Path(tmp), Path(tmp) / "site"
        install_fixture(site)
        path = os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), str(site)) if p)
        env = child_env(PYTHONPATH=path, ZOO_LOAD_PLUGINS="many", ZOO_FIXTURE_MANY=str(args.models))
        rows, sync_lines = [], []
        for backend in args.backend or sorted(CATALOGS, reverse=True):  # sqlite first
            backend_rows, sync_line = bench_backend(backend, folder, env, args.calls)
            rows += backend_rows
            sync_lines.append(f"- {sync_line}")
    text = "\n".join([
        f"Warm lookups on a catalog of {args.models:,} models (zoo-fixture-many), {args.calls} calls each, in turn, "
        "after one warm-up call; milliseconds.",
        "",
        markdown_table(["backend", "load", "lookup", "names (weights)", "median (ms)", "p90 (ms)", "target"], rows),
        "",
        *sync_lines,
        "",
        machine_line(),
    ])
    write_result(args.output, text)


if __name__ == "__main__":
    main()

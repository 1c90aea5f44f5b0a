"""Shared fixtures: catalogs on SQLite and on the PostgreSQL server of this machine; artifact stores in a
folder and in a SeaweedFS object store started for the session (`zoo.testing.object_store`).

``ZOO_TEST_POSTGRES_URL`` points the PostgreSQL tests at a server (default: the
local one); each test gets a database of its own, dropped afterwards.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import threading
import time
import uuid
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from zoo.outputs import content_path
from zoo.store import ArtifactStore, DirectoryStore
from zoo.testing import ObjectStore, object_store

ROOT = Path(__file__).resolve().parents[1]
POSTGRES_URL = os.environ.get("ZOO_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
ALL_PLUGINS = "digits,torchvision"
FIXTURES = ROOT / "tests" / "plugins"  # plugin distributions the tests install
FULL_SWEEP_ENV = "ZOO_FULL_SWEEP"


#: Fixtures whose parameter is the catalog's backend ("sqlite", "postgresql"): see `pytest_collection_modifyitems`.
BACKEND_FIXTURES = ("catalog_url", "service")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In CI a test parametrized by the catalog's backend runs on one of the two, picked by a stable hash of its
    id (so that both backends run, each under half of such tests); on both with ``ZOO_FULL_SWEEP=1``. Tests of
    what differs between the backends (full-text search, migrations, concurrency on PostgreSQL) ask for the
    backend they test by name and always run."""
    if os.environ.get(FULL_SWEEP_ENV) == "1":
        return
    pairs: dict[str, list[tuple[pytest.Item, str]]] = {}
    for item in items:
        params = item.callspec.params if isinstance(item, pytest.Function) and hasattr(item, "callspec") else {}
        backend = next((params[name] for name in BACKEND_FIXTURES if params.get(name) in ("sqlite", "postgresql")), None)
        if backend is not None:
            base = item.nodeid.partition("[")[0] + "[" + item.callspec.id.replace(backend, "*") + "]"
            pairs.setdefault(base, []).append((item, backend))
    dropped = []
    for base, members in pairs.items():
        if {backend for _, backend in members} == {"sqlite", "postgresql"}:
            kept = "sqlite" if in_stable_half(base) else "postgresql"
            dropped += [item for item, backend in members if backend != kept]
    if dropped:
        gone = set(map(id, dropped))
        items[:] = [item for item in items if id(item) not in gone]
        config.hook.pytest_deselected(items=dropped)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'registry.db'}"


@pytest.fixture
def postgresql_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test."""
    with postgresql_database() as url:
        yield url


@contextmanager
def postgresql_database() -> Iterator[str]:
    """The URL of a fresh, empty PostgreSQL database, dropped afterwards."""
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    name = f"zoo_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = admin.url.set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        from zoo.catalog.engine import open_engine

        open_engine(url).dispose()  # close this process's pooled connections before dropping
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def catalog_url(request: pytest.FixtureRequest) -> str:
    """The URL of a fresh catalog, once on SQLite and once on PostgreSQL."""
    return request.getfixturevalue(f"{request.param}_url")


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ObjectStore]:
    """One SeaweedFS S3 server for the session (tests that kill a server start their own)."""
    with object_store(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server


@pytest.fixture
def s3_artifacts(s3_server: ObjectStore, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh ``s3://`` artifact store (a prefix of its own in the session's bucket), with the AWS variables
    that reach it set for this test; its ``ZOO_ARTIFACTS`` value."""
    for name, value in s3_server.env.items():
        monkeypatch.setenv(name, value)
    return s3_server.location(f"t-{uuid.uuid4().hex[:12]}")


@pytest.fixture(params=["directory", "s3"])
def artifacts(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh artifact store, once a folder and once in the object store: its ``ZOO_ARTIFACTS`` value (the AWS
    variables are set for the test when it is the object store)."""
    return str(tmp_path / "artifacts") if request.param == "directory" else request.getfixturevalue("s3_artifacts")


def damage_blob(store: ArtifactStore, sha256: str) -> None:
    """Flip the last byte of a stored blob behind the store's back (a disk error, someone editing the bucket)."""
    data = bytearray(store.read(sha256))
    data[-1] ^= 1
    if isinstance(store, DirectoryStore):
        blob = content_path(store.root, sha256)
        blob.chmod(0o644)
        blob.write_bytes(data)
    else:  # the object store: the same key, other bytes
        store._client.put_object(Bucket=store.bucket, Key=store._key(sha256), Body=bytes(data))


@pytest.fixture
def use_catalog(monkeypatch: pytest.MonkeyPatch):
    """Point zoo at a catalog URL and a plugin selection, for this test only."""

    def use(url: str, plugins: str | None = ALL_PLUGINS) -> str:
        monkeypatch.setenv("ZOO_REGISTRY_URL", url)
        if plugins is None:
            monkeypatch.delenv("ZOO_LOAD_PLUGINS", raising=False)
        else:
            monkeypatch.setenv("ZOO_LOAD_PLUGINS", plugins)
        return url

    return use


@pytest.fixture(scope="session")
def synced_catalog(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One SQLite catalog synced with the bundled plugins, shared by read-only tests.

    The environment points at it for the whole session of tests that ask for it.
    """
    url = f"sqlite:///{tmp_path_factory.mktemp('catalog') / 'registry.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ZOO_REGISTRY_URL", url)
        mp.setenv("ZOO_LOAD_PLUGINS", ALL_PLUGINS)
        mp.setenv("ZOO_STRICT_PLUGINS", "1")
        run_zoo("sync")
        yield url


@contextmanager
def catalog_at(url: str, revision: str) -> Iterator[Any]:
    """A connection (in one transaction) to the catalog at `url` migrated only up to `revision`: a catalog as an
    older zoo left it, for a test to add its rows to before the zoo upgrades it."""
    from alembic import command
    from alembic.config import Config

    from zoo.catalog.engine import open_engine
    from zoo.catalog.sync import MIGRATIONS

    with open_engine(url).begin() as conn:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = conn
        command.upgrade(config, revision)
        yield conn


def run_zoo(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None, check: bool = True):
    """Run the ``zoo`` command line in a child process, as a user would."""
    done = subprocess.run(
        [sys.executable, "-m", "zoo", *args],
        env={**os.environ, **(env or {})},
        cwd=cwd,
        capture_output=True,
        text=True,
    )
    if check and done.returncode != 0:
        raise AssertionError(f"zoo {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done


def in_stable_half(key: str) -> bool:
    """Whether `key` falls in the stable half of a CI sample (by its CRC-32: the same on every machine and run)."""
    return zlib.crc32(key.encode()) % 2 == 0


def code_blocks(text: str) -> list[tuple[str, str]]:
    """(language, code) of each fenced block of the Markdown `text`, in order."""
    return re.findall(r"^```(\w*)\n(.*?)^```", text, flags=re.S | re.M)


def reader_shell(folder: Path, bin_folder: Path) -> dict[str, str | None]:
    """The changes to this process's environment that make a reader's shell for running the docs' examples
    (`zoo.settings.environment_with`): `bin_folder` first on PATH, a home, torch cache and weights mirror
    (``folder/mirror``) under `folder`, offline, and nothing of the tests' own ``ZOO_*``/``TORCH_*`` settings."""
    inherited = {name: None for name in os.environ if name.startswith(("ZOO_", "TORCH_", "VIRTUAL_ENV"))}
    return inherited | {"PATH": f"{bin_folder}{os.pathsep}{os.environ['PATH']}", "HOME": str(folder / "home"),
                        "TORCH_HOME": str(folder / "torch"), "ZOO_WEIGHTS_MIRROR": str(folder / "mirror"),
                        "ZOO_OFFLINE": "1"}


def run_in(command: list[str], cwd: Path, env: dict[str, str]) -> str:
    """`command`'s standard output, run in `cwd` with exactly the environment `env` (a reader's shell); its exit
    status and output in the failure when it fails. The timeout is only against a hung command."""
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, f"{command[-1]} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def _pseudo_terminal() -> tuple[int, int]:
    """A pseudo-terminal 120 columns wide (tqdm draws no bar 0 columns wide): its (master, slave) descriptors."""
    terminal, its_end = pty.openpty()
    fcntl.ioctl(its_end, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # rows, columns
    return terminal, its_end


def on_a_terminal(env: dict[str, str], *args: str, cwd: Path) -> tuple[str, str]:
    """What ``zoo ARGS`` printed to stdout (a pipe) and to stderr, a pseudo-terminal (where progress shows)."""
    terminal, its_end = _pseudo_terminal()
    with subprocess.Popen([sys.executable, "-m", "zoo", *args], env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=its_end) as child:
        os.close(its_end)
        shown = bytearray()
        while select.select([terminal], [], [], 600)[0]:
            try:
                chunk = os.read(terminal, 65536)
            except OSError:  # EIO: the child closed its end
                break
            if not chunk:
                break
            shown += chunk
        stdout = child.communicate(timeout=60)[0]
    os.close(terminal)
    assert child.returncode == 0, shown.decode(errors="replace")
    return stdout.decode(), shown.decode(errors="replace")


@contextmanager
def progress_on_a_terminal() -> Iterator[bytearray]:
    """This process's progress (`zoo.progress`) shown on a pseudo-terminal while inside; what the terminal
    showed, complete once the block is left."""
    from zoo.progress import shown_on

    terminal, its_end = _pseudo_terminal()
    shown = bytearray()

    def read() -> None:
        with contextlib.suppress(OSError):  # EIO: its end is closed
            while chunk := os.read(terminal, 65536):
                shown.extend(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        with open(its_end, "w", buffering=1, encoding="utf-8") as stream, shown_on(stream):
            yield shown
    finally:
        reader.join(60)
        os.close(terminal)


#: What a deployment host lacks: the runtime needs numpy, Pillow and onnxruntime only (DESIGN.md).
NOT_ON_DEPLOYMENT_HOST = ("torch", "torchvision", "sqlalchemy", "onnx")


def python_without(blocked: Iterable[str], *args: str) -> subprocess.CompletedProcess[str]:
    """``python ARGS`` (``-c CODE ...`` or ``-m MODULE ...``) in a child process where the `blocked`
    top-level packages cannot be imported (scripts/without.py), for what must run without them."""
    command = [sys.executable, str(ROOT / "scripts" / "without.py"), ",".join(blocked), *args]
    return subprocess.run(command, capture_output=True, text=True)


def sweep(names: Iterable[str]) -> list[str]:
    """The catalog models an every-model test runs on: all of them with ``ZOO_FULL_SWEEP=1``,
    else the smallest model of each builder module (one per architecture family), so that
    CI runs a representative sample and the full sweep runs as a benchmark."""
    names = sorted(names)
    if os.environ.get(FULL_SWEEP_ENV) == "1":
        return names
    import zoo

    sizes = {m["name"]: m["num_params"] or 0 for m in zoo.summarize_models()}
    smallest: dict[str, str] = {}
    for name in names:
        family = zoo.describe(name)["builder"].partition(":")[0]
        if family not in smallest or sizes[name] < sizes[smallest[family]]:
            smallest[family] = name
    return sorted(smallest.values())


def pip_install(source: Path, target: Path) -> None:
    """Install the distribution at `source` into the folder `target`, as a user's pip would."""
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(source)],
        check=True, capture_output=True, text=True,
    )


def put_in_mirror(catalog_url: str, mirror: Path, url: str, data: bytes) -> Path:
    """Place `data` in the weights mirror folder `mirror` as the file of `url`, and record its full SHA-256 in the
    catalog at `catalog_url` as a verified first download does: offline, the zoo then takes it as that file (the
    stand-in for pretrained weights that cannot be downloaded here)."""
    import hashlib

    from sqlalchemy import delete

    from zoo.catalog.engine import open_engine, write_transaction
    from zoo.catalog.tables import weight_files

    path = mirror / Path(url).name
    path.write_bytes(data)
    engine = open_engine(catalog_url)
    try:
        with write_transaction(engine) as conn:
            conn.execute(delete(weight_files).where(weight_files.c.url == url))
            conn.execute(weight_files.insert().values(url=url, sha256=hashlib.sha256(data).hexdigest(),
                                                      file_size=len(data)))
    finally:
        engine.dispose()
    return path


def photos(folder: Path) -> None:
    """``folder/CLASS/N.jpg``: crops of two scikit-image photographs, six of each."""
    import numpy as np
    from PIL import Image
    from skimage import data

    rng = np.random.default_rng(0)
    for name, image in (("cat", data.chelsea()), ("coffee", data.coffee())):
        (folder / name).mkdir(parents=True)
        height, width = image.shape[:2]
        for index in range(6):
            size = int(rng.integers(min(height, width) // 2, min(height, width)))
            top, left = int(rng.integers(0, height - size + 1)), int(rng.integers(0, width - size + 1))
            Image.fromarray(image[top:top + size, left:left + size]).save(folder / name / f"{index}.jpg")


def random_weights(builder: str) -> bytes:
    """A torchvision model's state dict with random tensors, saved as torchvision's files are."""
    import torch
    import torchvision.models

    torch.manual_seed(0)
    buffer = io.BytesIO()
    torch.save(getattr(torchvision.models, builder)().state_dict(), buffer)
    return buffer.getvalue()


class CodeOnLoad:
    """Pickles as a call of ``os.mkdir(marker)``: loading it with pickle's full power runs code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return os.mkdir, (str(self.marker),)


def code_on_load(marker: Path) -> bytes:
    """A real ``torch.save`` zip whose pickle calls a global that no weights-only load allows."""
    import io

    import torch

    buffer = io.BytesIO()
    torch.save({"fc.weight": CodeOnLoad(marker), "fc.bias": torch.zeros(3)}, buffer)
    return buffer.getvalue()


class WeightsServer:
    """A real HTTP server on 127.0.0.1 for weights files the tests make.

    Serves ``files`` by path (without the leading slash); ``modes`` makes a file arrive
    corrupted, cut off, slowly or stalled halfway; ``failures`` lists, per path, what the
    next requests get instead of the file, one each: an HTTP status (answered with
    ``failure_headers``) or a mode; ``requests`` lists what was asked for.
    It listens on `port` (0: a free one).
    """

    def __init__(self, port: int = 0) -> None:
        self.files: dict[str, bytes] = {}
        self.modes: dict[str, str] = {}
        self.failures: dict[str, list[int | str]] = {}
        self.failure_headers: dict[str, str] = {}
        self.requests: list[str] = []
        self.stalled = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                name = self.path.lstrip("/")
                server.requests.append(name)
                if name not in server.files:
                    self.send_error(404)
                    return
                body, mode = server.files[name], server.modes.get(name, "ok")
                queued = server.failures.get(name)
                failure = queued.pop(0) if queued else None
                if isinstance(failure, int):
                    self.send_response(failure)
                    for header, value in server.failure_headers.items():
                        self.send_header(header, value)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                mode = failure or mode
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if mode == "corrupt":
                    body = body[: len(body) // 2] + bytes([body[len(body) // 2] ^ 0xFF]) + body[len(body) // 2 + 1:]
                if mode == "drop":  # promise the whole file, send half, hang up
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                if mode == "stall":  # send half, then never the rest (until the client goes away)
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    server.stalled.wait(60)
                    return
                step = max(1, len(body) // 20) if mode == "slow" else len(body)
                for start in range(0, len(body), step):
                    self.wfile.write(body[start:start + step])
                    if mode == "slow":
                        time.sleep(0.05)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"

    def stop(self) -> None:
        """Stop serving and free the port (again: nothing)."""
        if self.thread.is_alive():
            self.stalled.set()
            self.httpd.shutdown()
            self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[WeightsServer]:
    """A `WeightsServer` on a free port of 127.0.0.1, stopped after the test."""
    s = WeightsServer()
    s.thread.start()
    yield s
    s.stop()


@pytest.fixture
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A weights cache of the test's own (``$TORCH_HOME``), with no mirror, offline mode off, and
    download retries that wait milliseconds, not seconds."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("ZOO_FETCH_RETRIES", "4,0.01")
    monkeypatch.delenv("ZOO_OFFLINE", raising=False)
    monkeypatch.delenv("ZOO_WEIGHTS_MIRROR", raising=False)
    return tmp_path / "torch" / "hub" / "checkpoints"


@pytest.fixture(scope="session")
def raft_export(synced_catalog: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """raft_small exported with random weights at its default shape, once for the export and predict tests."""
    from zoo.export import export_onnx

    return export_onnx("raft_small", tmp_path_factory.mktemp("flow") / "raft.onnx")

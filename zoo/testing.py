"""Helpers for tests that need a real registry service: `serving` runs ``zoo serve`` in a child process.

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
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from zoo.settings import environment_with

__all__ = ["Served", "ServeFailed", "serving"]

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
            log: str | os.PathLike[str] | None = None, timeout: float = 300.0) -> Iterator[Served]:
    """Run ``zoo serve --port 0 --ready-file FILE ARGS`` until the block ends; yield it once it is ready.

    `env`: variables set for the server on top of this process's environment (None
    removes one), e.g. ``ZOO_REGISTRY_URL`` and ``ZOO_ARTIFACTS``; `cwd`: its working
    directory; `log`: the file its stdout and stderr go to (default: one in a temporary
    folder, removed afterwards). The wait ends when the server writes its ready file;
    `ServeFailed` (with the log's tail) if it exits first or is not ready within
    `timeout` seconds. On exit the server is stopped (`Served.stop`).
    """
    folder = Path(tempfile.mkdtemp(prefix="zoo-serving-"))
    ready_file, log_path = folder / "ready.json", Path(log) if log is not None else folder / "serve.log"
    try:
        with log_path.open("wb") as output:
            process = subprocess.Popen(
                [sys.executable, "-c", _ZOO_PROGRAM, "serve", "--port", "0", "--ready-file", str(ready_file), *args],
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

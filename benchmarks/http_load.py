"""What the HTTP load benchmarks share: Debian's ``wrk`` as the load generator, ``nginx`` as the reference file
server, and starting and stopping a server that is not ``zoo serve``.

`run_wrk` drives one URL set with ``wrk -t1 -cN -dDs --latency`` and a Lua script of
its own (every request a path drawn from a seeded list, ``Accept-Encoding: gzip`` on
each), and reads the summary that script prints when the run ends: requests, bytes,
socket errors, non-2xx/3xx answers and the latency percentiles. `nginx_serving` runs
nginx on a loopback port with a configuration written to a temporary prefix, serving
one folder with ``sendfile on``.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

PROGRAMS = ("wrk", "nginx")
INSTALL = "apt-get install -y nginx wrk"
#: How long wrk waits for one answer before it counts a timeout (wrk's default, 2 s, would drop the slow servers'
#: answers from the latency figures instead of measuring them).
WRK_TIMEOUT = "60s"
_POLL = 0.1  # seconds between looks at a starting server

#: The Lua script of every wrk run: the paths, the seed, and a summary line when the run ends.
_SCRIPT = """\
math.randomseed({seed})
local paths = {{{paths}}}
local prepared = {{}}
init = function(args)
  for i, path in ipairs(paths) do
    prepared[i] = wrk.format("GET", path, {{["Accept-Encoding"] = "gzip"}})
  end
end
request = function()
  return prepared[math.random(#prepared)]
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WRK-SUMMARY %d %d %d %d %d %d %d %d %d %d\\n", summary.requests, summary.duration,
    summary.bytes, e.connect, e.read, e.write, e.timeout, e.status, latency:percentile(50), latency:percentile(99)))
end
"""


@dataclass(frozen=True)
class WrkRun:
    """What one wrk run recorded: completed requests, seconds, bytes read (in-flight answers included), socket
    errors (connect, read, write, timeout), answers with a status of 400 or more, latency p50 and p99 in ms."""

    requests: int
    seconds: float
    bytes: int
    socket_errors: int
    status_errors: int
    p50_ms: float
    p99_ms: float

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds

    @property
    def mb_per_second(self) -> float:
        return self.bytes / self.seconds / 1e6


def program(name: str) -> str | None:
    """Where the program `name` is: on the PATH, or in /usr/sbin (nginx, for users without it on theirs)."""
    return shutil.which(name) or shutil.which(name, path="/usr/sbin")


def require_programs(names: Sequence[str]) -> None:
    """SystemExit, with the one line that installs them, unless every program of `names` is installed."""
    missing = [name for name in names if program(name) is None]
    if missing:
        raise SystemExit(f"{' and '.join(missing)} not installed; on Debian: {INSTALL}")


def run_wrk(url: str, paths: Sequence[str], clients: int, seconds: float, script_folder: Path, seed: int) -> WrkRun:
    """``wrk -t1 -cCLIENTS -dSECONDS --latency`` on the server at `url`, each request a path of `paths` drawn at
    random (seeded with `seed`)."""
    lua = ", ".join('"' + path.replace("\\", "\\\\").replace('"', '\\"') + '"' for path in paths)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", dir=script_folder) as script:
        script.write(_SCRIPT.format(seed=seed, paths=lua))
        script.flush()
        argv = [str(program("wrk")), "-t1", f"-c{clients}", f"-d{max(1, round(seconds))}s", "--latency",
                "--timeout", WRK_TIMEOUT, "-s", script.name, url]
        done = subprocess.run(argv, capture_output=True, text=True)
    summary = [line for line in done.stdout.splitlines() if line.startswith("WRK-SUMMARY ")]
    if done.returncode != 0 or not summary:
        output = (done.stdout + done.stderr)[-3000:]
        raise SystemExit(f"wrk failed ({done.returncode}): {' '.join(argv)}\n{output}")
    requests, micros, size, connect, read, write, timeout, status, p50, p99 = map(int, summary[0].split()[1:])
    return WrkRun(requests, micros / 1e6, size, connect + read + write + timeout, status, p50 / 1e3, p99 / 1e3)


def free_port() -> int:
    """A loopback TCP port the kernel calls free now (for servers that cannot be told to take port 0)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_answering(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    """Return once GET `url` answers 200; SystemExit with `log`'s tail if `process` exits first or `timeout`
    seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=5).status_code == 200:
                return
        if process.poll() is not None or time.monotonic() > deadline:
            state = f"exited {process.returncode}" if process.poll() is not None else f"not ready in {timeout:.0f} s"
            raise SystemExit(f"{process.args[0]} {state} ({url}):\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(_POLL)


def stop(process: subprocess.Popen[bytes], grace: float = 30.0) -> None:
    """SIGTERM the process group `process` leads, then SIGKILL what is left of it after `grace` seconds."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(grace)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@contextlib.contextmanager
def started(argv: Sequence[str], ready_url: str, log: Path,
            timeout: float = 300.0) -> Iterator[subprocess.Popen[bytes]]:
    """Run `argv` (its output to `log`, a process group of its own) until the block ends; yield it once GET
    `ready_url` answers 200."""
    with log.open("ab") as output:
        process = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        wait_answering(ready_url, process, log, timeout)
        yield process
    finally:
        stop(process)


NGINX_CONF = """\
worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log;
{user}
events {{ worker_connections 1024; }}
http {{
    access_log {prefix}/access.log;
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port};
        root {root};
    }}
}}
"""


@contextlib.contextmanager
def nginx_serving(root: Path, prefix: Path, probe: str) -> Iterator[tuple[str, int]]:
    """nginx (one worker process, sendfile on, access log on) serving the folder `root` on a loopback port, its
    configuration, pid file and logs in `prefix`, until the block ends: its address and master process id, once
    GET `probe` (a path) answers."""
    prefix.mkdir(parents=True, exist_ok=True)
    port = free_port()
    # run as root, nginx's workers would switch to "nobody", who cannot read a private temporary folder
    user = f"user {pwd.getpwuid(os.geteuid()).pw_name};" if os.geteuid() == 0 else ""
    conf = prefix / "nginx.conf"
    conf.write_text(NGINX_CONF.format(prefix=prefix, user=user, port=port, root=root))
    url = f"http://127.0.0.1:{port}"
    with started([str(program("nginx")), "-c", str(conf), "-p", str(prefix), "-e", str(prefix / "error.log")],
                 url + probe, prefix / "nginx.out") as process:
        yield url, process.pid

"""How ``zoo serve`` runs uvicorn: httptools' parser, bounded (`zoo.service.protocol`; its refusals are tested with
the other request guards in tests/test_serve_guards.py), uvloop's event loop, and TCP_NODELAY on every connection
a worker accepts, read off the worker's own socket.
"""

from __future__ import annotations

import ctypes
import os
import socket
from pathlib import Path

import uvloop

from tests.test_serve import children
from zoo.service.app import MAX_REQUEST_HEAD, ServeConfig
from zoo.service.protocol import BoundedHttpToolsProtocol
from zoo.settings import Settings
from zoo.testing import serving

_PIDFD_GETFD = 438  # the system call's number, the same on every architecture (Linux 5.6)


def test_serve_runs_httptools_bounded_and_uvloop(sqlite_url: str) -> None:
    serve = ServeConfig(Settings.from_environ().with_catalog(sqlite_url))
    config = serve.uvicorn_config(serve.app())
    config.load()
    assert config.http_protocol_class is BoundedHttpToolsProtocol
    assert config.h11_max_incomplete_event_size == MAX_REQUEST_HEAD
    assert config.get_loop_factory() is uvloop.new_event_loop


def accepted_socket(pids: set[int], port: int, client: socket.socket) -> tuple[int, socket.socket]:
    """The process among `pids` that holds the server's end of `client`'s connection to `port`, and a copy of
    that socket (pidfd_getfd: the same socket, its options as the server set them)."""
    client_port = client.getsockname()[1]
    rows = (line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:])
    inode = next(row[9] for row in rows if int(row[1].rpartition(":")[2], 16) == port
                 and int(row[2].rpartition(":")[2], 16) == client_port)
    for pid in pids:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                pidfd = os.pidfd_open(pid)
                try:
                    copy = ctypes.CDLL(None, use_errno=True).syscall(_PIDFD_GETFD, pidfd, int(fd), 0)
                finally:
                    os.close(pidfd)
                assert copy >= 0, os.strerror(ctypes.get_errno())
                return pid, socket.socket(fileno=copy)
    raise AssertionError(f"no process of {pids} holds socket {inode}")


def test_with_two_workers_every_accepted_connection_has_tcp_nodelay(sqlite_url: str, tmp_path: Path) -> None:
    """uvicorn issue 3149: its workers' connections lacked TCP_NODELAY (40 ms delayed ACKs on small answers)."""
    env = {"ZOO_REGISTRY_URL": sqlite_url, "ZOO_LOAD_PLUGINS": "", "ZOO_ARTIFACTS": str(tmp_path / "store")}
    with serving("--workers", "2", env=env) as served:
        workers = {pid for pid in children(served.pid)
                   if "spawn_main" in Path(f"/proc/{pid}/cmdline").read_text(errors="replace")}
        assert len(workers) == 2
        accepted_by: set[int] = set()
        for _ in range(200):  # until each worker has accepted one (the kernel picks which)
            with socket.create_connection(("127.0.0.1", served.port), timeout=60) as client:
                client.sendall(f"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1:{served.port}\r\n\r\n".encode())
                answer = b""
                while not answer.endswith(b'{"status":"ok"}'):
                    answer += client.recv(4096)
                pid, accepted = accepted_socket(workers, served.port, client)
                with accepted:
                    assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
                accepted_by.add(pid)
            if accepted_by == workers:
                break
        assert accepted_by == workers

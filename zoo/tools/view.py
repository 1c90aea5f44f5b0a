"""``zoo view``: show an ONNX model's graph in the browser with netron.

netron's web app is served over HTTP from this process, by netron's own request
handler in a server of zoo's that narrows what it answers: only the model file (and
the external-data files its tensors name, such as ``NAME.onnx.data``) is served,
never the rest of its folder, and only to requests addressed to a loopback host name
(``localhost``, ``127.0.0.1``, ``[::1]`` with the port), so that a web page cannot
read it through DNS rebinding; others get 403. It serves on 127.0.0.1 unless the
caller names another host.

    address = serve("digits.onnx", browse=False)   # ("127.0.0.1", 40123); returns at once
    stop(address)
    view("digits.onnx")                              # prints the address, blocks until Ctrl-C
"""

from __future__ import annotations

import ipaddress
import os
import socket
import socketserver
import sys
import threading
import time
import webbrowser
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from zoo.errors import UsageError, excerpt

__all__ = ["host_allowed", "serve", "stop", "view", "url"]

#: What `zoo view` accepts, for error messages.
ACCEPTED = "an ONNX model file such as model.onnx (e.g. written by `zoo export`)"
#: Host names a request may be addressed to on any server; IP literals are compared as addresses.
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
#: Host names that bind every address: requests then may name any IP literal.
_WILDCARDS = ("0.0.0.0", "::", "")

_SERVERS: dict[tuple[str, int], tuple[socketserver.BaseServer, threading.Thread]] = {}


def url(address: tuple[str, int]) -> str:
    """``http://HOST:PORT`` for an address `serve` returned."""
    host, port = address
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _read_model(path: Path) -> Any:
    """The ONNX model at `path` (an ``onnx.ModelProto``), or a one-line `UsageError`.

    Only the protobuf is parsed (external tensor data is not loaded): enough to refuse a
    missing file, a directory or a file of another format before a server starts.
    """
    if not path.exists():
        raise UsageError(f"no such file: {path}; zoo view takes {ACCEPTED}")
    if not path.is_file():
        raise UsageError(f"{path} is not a file; zoo view takes {ACCEPTED}")
    try:
        import onnx
    except ImportError:  # pragma: no cover - onnx is part of the onnx extra
        raise UsageError("zoo view needs the onnx package: pip install onnx (or the export extra, 'zoo-registry[export]')") from None
    try:
        model = onnx.load(str(path), load_external_data=False)
        if model.ir_version <= 0 or not model.HasField("graph"):
            raise ValueError("no graph")
    except Exception:  # noqa: BLE001 - any parse failure means "not ONNX"
        raise UsageError(f"{path} is not an ONNX model; zoo view takes {ACCEPTED}") from None
    return model


def _external_data(path: Path, model: Any) -> dict[str, Path]:
    """The external-data files `model` (read from `path`) names, by their location; only files in its folder."""
    from onnx.external_data_helper import _get_all_tensors, uses_external_data  # onnx's own walk of every tensor

    folder = path.parent.resolve()
    files: dict[str, Path] = {}
    for tensor in _get_all_tensors(model):
        if uses_external_data(tensor):
            location = next((e.value for e in tensor.external_data if e.key == "location"), "")
            target = (folder / location).resolve()
            if location and folder in target.parents and target.is_file():
                files[location] = target
    return files


class _ModelFiles:
    """What netron's handler reads under ``/data/``: the model and its external data, nothing else.

    netron's own provider answers for any file in the model's folder; this one has
    the attributes netron's index page uses (`base`, `name`, `identifier`) and `read`.
    """

    def __init__(self, model: Path, external: dict[str, Path]) -> None:
        self.base = self.identifier = model.name  # the page loads the model from /data/<base>
        self.name = str(model)
        self.files = {**external, model.name: model}

    def read(self, name: str) -> bytes | None:
        """The bytes of the served file `name` (a path under /data/), or None: netron answers 404."""
        path = self.files.get(name)
        try:
            return path.read_bytes() if path is not None else None
        except OSError:
            return None


def host_allowed(header: str | None, served: str, port: int) -> bool:
    """Whether a request's ``Host`` header addresses this server by a name no DNS can rebind.

    Accepted: a loopback name (`LOOPBACK_NAMES`) or the host it serves on, with its
    port; on a wildcard address (0.0.0.0) also any IP literal, which names a machine
    without DNS. A missing or malformed header is refused.
    """
    try:
        parts = urlsplit("//" + (header or ""))
        name, given = parts.hostname, parts.port or 80
    except ValueError:
        return False
    if not name or given != port:
        return False
    if name in LOOPBACK_NAMES or name == served.lower():
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return served in _WILDCARDS


def _handler(files: _ModelFiles) -> type:
    """netron's request handler serving only `files`, answering 403 to requests not addressed to its server."""
    from netron.server import _HTTPRequestHandler  # netron's handler: its web app and index page

    class Handler(_HTTPRequestHandler):
        content = files

        def do_GET(self) -> None:  # noqa: N802 - http.server's name; do_HEAD calls it too
            host, port = self.server.served_host, self.server.server_address[1]
            if not host_allowed(self.headers.get("Host"), host, port):
                self.send_error(403, "zoo view answers only requests addressed to localhost")
                return
            super().do_GET()

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - http.server's signature
            """Silent: netron's own joins the arguments as strings and fails on a status code."""

    return Handler


class _Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    """A threaded TCP server (no reverse DNS lookup of its own address, unlike http.server's)."""

    allow_reuse_address = True
    daemon_threads = True

    def __init__(self, host: str, port: int, handler: type) -> None:
        self.served_host = host.lower()
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        super().__init__((host, port), handler)

    def handle_error(self, request: object, client_address: object) -> None:
        """Silent: a browser that drops a connection is not the user's error, and no traceback is printed."""


def serve(path: str | os.PathLike[str], *, host: str = "127.0.0.1", port: int | None = None,
          browse: bool = True) -> tuple[str, int]:
    """Serve the ONNX model at `path` with netron on `host`:`port` and return ``(host, port)``.

    Returns once the server is listening; it runs in a daemon thread of this process
    until `stop` (or the process ends). `port` None or 0 picks a free port; `host` is
    bound exactly as given (default loopback only). With `browse`, the default web
    browser opens the page. Raises `UsageError` for a file that is not an ONNX model
    (before anything starts), a bad port, or an address that cannot be bound.
    """
    path = Path(path)
    model = _read_model(path)
    if port is None:
        port = 0
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise UsageError(f"port must be an integer from 0 to 65535 (0: any free port), not {port!r}")
    if not isinstance(host, str) or not host:
        raise UsageError(f"host must be a host name or IP address such as 127.0.0.1, not {excerpt(host)}")

    try:
        server = _Server(host, port, _handler(_ModelFiles(path.resolve(), _external_data(path, model))))
    except (OSError, OverflowError) as exc:  # port in use, address not on this machine, unknown host name
        reason = getattr(exc, "strerror", None) or str(exc)
        shown = host if len(host) <= 100 else excerpt(host)
        raise UsageError(f"cannot serve on {shown}:{port or 'any port'}: {reason}"
                         + ("; leave out --port for a free one" if port else "")) from None
    address = (host, server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True,
                              name=f"zoo view {url(address)}")
    thread.start()
    _SERVERS[address] = (server, thread)
    if browse and not webbrowser.open(url(address)):
        print(f"zoo: no web browser found; open {url(address)}", file=sys.stderr)
    return address


def stop(address: tuple[str, int] | None = None, *, timeout: float = 2.0) -> None:
    """Stop serving at `address` (every server of this process if None) and wait for it."""
    for key in [a for a in _SERVERS if address is None or a == tuple(address)]:
        server, thread = _SERVERS.pop(key)
        server.shutdown()
        server.server_close()
        thread.join(timeout)


def _serving(address: tuple[str, int]) -> bool:
    entry = _SERVERS.get(address)
    return entry is not None and entry[1].is_alive()


def view(path: str | os.PathLike[str], *, host: str = "127.0.0.1", port: int | None = None,
         browse: bool = True) -> tuple[str, int]:
    """Serve `path` with netron, print its address and block until Ctrl-C; then stop and return.

    Returns the address it served on. Ctrl-C (KeyboardInterrupt) is the normal way
    out: it is not re-raised.
    """
    address = serve(path, host=host, port=port, browse=browse)
    print(f"netron: serving {path} at {url(address)} (Ctrl-C to stop)", flush=True)
    try:
        while _serving(address):
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        stop(address)
    return address

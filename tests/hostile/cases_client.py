"""Client mode (``ZOO_REGISTRY_URL=http://...``) against services that are down, stalled or hostile.

One small HTTP server in this process answers every route under a prefix that says how
it misbehaves (``http://127.0.0.1:PORT/PREFIX`` is the registry URL a case gets): not
JSON, JSON of another shape, a body larger than the client reads, a redirect to itself,
an HTML error page, or no answer at all. Every command ends in one line naming the
service, within its time budget; names and files are refused before a request is made.
"""

from __future__ import annotations

import atexit
import os
import socket
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from hostile.harness import Case

#: The client's time budget in the stalled cases (seconds); the case's own timeout is far above it.
BUDGET = "3"
_STOP = threading.Event()


class _Hostile(BaseHTTPRequestHandler):
    """Answers by the path's first part: ``badjson``, ``shape``, ``huge``, ``loop``, ``html``, ``stall``."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        kind = self.path.strip("/").split("/")[0]
        if kind == "stall":
            _STOP.wait()  # never answers while the cases run
            return
        if kind == "loop":
            self._answer(307, b"", {"Location": self.path})
        elif kind == "html":
            self._answer(500, b"<html><body><h1>Internal Server Error</h1>\n<pre>Traceback ...</pre></body></html>",
                         {"Content-Type": "text/html"})
        elif kind == "huge":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(1 << 40))
            self.end_headers()
            self.wfile.write(b"[" * 4096)
        elif kind == "shape":
            self._answer(200, b'{"models": 7, "total": "many", "name": ["x"], "versions": null, "error": 3}')
        else:
            self._answer(200, b"{not json at all")

    do_HEAD = do_GET  # noqa: N815

    def _answer(self, status: int, body: bytes, headers: Mapping[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in {"Content-Type": "application/json", **(headers or {})}.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


_server: ThreadingHTTPServer | None = None
_LOCK = threading.Lock()


def _url(kind: str) -> str:
    """The registry URL of the hostile server's `kind` of misbehaviour (the server starts on first use)."""
    global _server
    with _LOCK:
        if _server is None:
            _server = ThreadingHTTPServer(("127.0.0.1", 0), _Hostile)
            _server.daemon_threads = True
            threading.Thread(target=_server.serve_forever, daemon=True).start()
            atexit.register(_STOP.set)
        return f"http://127.0.0.1:{_server.server_address[1]}/{kind}"


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then closed: the kernel refuses connections to it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _client_of(kind: str, **extra: str) -> Callable[[Path], dict[str, str]]:
    """A setup that makes the workspace a client of the hostile server's `kind` (no local catalog)."""

    def setup(ws: Path) -> dict[str, str]:
        return {"ZOO_REGISTRY_URL": _url(kind), "ZOO_SERVICE_TIMEOUT": BUDGET, **extra}

    return setup


def _refused(ws: Path) -> dict[str, str]:
    return {"ZOO_REGISTRY_URL": f"http://127.0.0.1:{_closed_port()}"}


def _fifo(ws: Path) -> dict[str, str]:
    os.mkfifo(ws / "weights.pt")
    return {"ZOO_REGISTRY_URL": _url("stall"), "ZOO_SERVICE_TIMEOUT": BUDGET}


SERVICE = r"the registry service at http://127\.0\.0\.1:\d+/"
CASES = [
    Case("client-refused-list", ("list",), r"the registry service at http://127\.0\.0\.1:\d+ did not answer GET "
         r"/models: ConnectError", setup=_refused, catalog=False),
    Case("client-stalled-list", ("list",), SERVICE + r"stall did not answer GET /models within 3 s",
         setup=_client_of("stall"), catalog=False, timeout=60),
    Case("client-stalled-show", ("show", "resnet50"), SERVICE + r"stall did not answer GET /models/resnet50 within 3 s",
         setup=_client_of("stall"), catalog=False, timeout=60),
    Case("client-stalled-published", ("published",), SERVICE + r"stall did not answer GET /published within 3 s",
         setup=_client_of("stall"), catalog=False, timeout=60),
]
for command, route in ((("list",), "models"), (("show", "resnet50"), "describe"), (("plugins",), "plugins"),
                       (("published",), "list_published"), (("published", "acme/defects"), "list_published")):
    CASES += [
        Case(f"client-badjson-{'-'.join(command).replace('/', '-')}", command,
             SERVICE + rf"badjson answered {route} with data of another shape", setup=_client_of("badjson"),
             catalog=False),
        Case(f"client-shape-{'-'.join(command).replace('/', '-')}", command,
             SERVICE + rf"shape answered {route} with data of another shape", setup=_client_of("shape"),
             catalog=False),
    ]
CASES += [
    Case("client-huge-answer", ("list",), rf"the registry service answered {1 << 40} bytes; at most \d+ are read",
         setup=_client_of("huge"), catalog=False),
    Case("client-redirect-loop", ("show", "resnet50"),
         SERVICE + r"loop answered GET /models/resnet50 with a redirect \(307", setup=_client_of("loop"),
         catalog=False),
    Case("client-html-error-page", ("list",), SERVICE + r"html: HTTP 500 '<html>", setup=_client_of("html"),
         catalog=False),
]

# names and files are refused before a request is made (the stalled service would hang them otherwise)
CASES += [
    Case("client-name-dotdot", ("show", "../health"), r"'\.\./health' is not a name: its parts between '/' must not "
         r"be empty, '\.' or '\.\.'", setup=_client_of("stall"), catalog=False, timeout=60),
    Case("client-alias-traversal", ("alias", "sec/client", "../../../other/w/aliases/x", "1"),
         r"alias '\.\./\.\./\.\./other/w/aliases/x' must be lowercase letters", setup=_client_of("stall"),
         catalog=False, timeout=60),
    Case("client-publish-fifo", ("publish", "weights", "digits_cnn", "weights.pt", "--name", "acme/digits"),
         r"weights\.pt is not a regular file; only regular files are published", setup=_fifo, catalog=False,
         keep=("weights.pt",), timeout=60),
    Case("client-publish-dev-zero", ("publish", "weights", "digits_cnn", "/dev/zero", "--name", "acme/digits"),
         r"/dev/zero is not a regular file; only regular files are published", setup=_client_of("stall"),
         catalog=False, watch=("/dev/zero",), timeout=60),
]

"""The registry service's ASGI app (FastAPI) and how `zoo serve` runs it (uvicorn).

Every answer is JSON, every error one line of it: ``{"error": "..."}``, with the
status saying whose fault it is (400 bad input, 401/403 token, 404 unknown, 408 a body
too slow, 411/413 upload size, 503 catalog unreachable or too many bodies at once, 507
disk full); never a traceback. Handlers that read the catalog are plain functions (run
in the default thread pool); uploads pass the app's gate for request bodies
(`zoo.service.common.Bodies`: a bounded number at once, each in time) and stream into
the store's verified writer chunk by chunk, in threads of the gate's own pool.
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import os
import pathlib
import secrets
import signal
import socket
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, FastAPI, Header, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from zoo.catalog.engine import where
from zoo.catalog.fingerprint import ensure_current
from zoo.catalog.search import MAX_SEARCH
from zoo.errors import UsageError, ZooError, excerpt
from zoo.outputs import write_atomically
from zoo.measurements import MAX_MEASUREMENT_BYTES, list_measurements, record_measurement
from zoo.records import Measurement, parse_spec
from zoo.publish import (
    MAX_RUN_BYTES,
    find_export,
    list_published,
    publish_export,
    publish_weights,
    resolve_published,
    set_alias,
)
from zoo.registry import list_plugins, summarize_models, weights_owner
from zoo.service.access_log import log_config
from zoo.service.answers import Answers, Remembered
from zoo.service.blobs import artifact_mode, blob_response
from zoo.service.common import (
    CLOSE,
    SHA256_PATTERN,
    ApiError,
    ArtifactServing,
    Bodies,
    BodyLimits,
    Credentials,
    Settings,
    Sha256,
    declared_length,
    reader,
    require,
    status_of,
)
from zoo.service.web import install as install_web
from zoo.service.guards import install as install_guards
from zoo.service.sessions import Sessions
from zoo.context import Context, current, using
from zoo.settings import Settings as ZooSettings
from zoo.store import ArtifactStore
from zoo.text import parse_metric
from zoo.tools.view import LOOPBACK_NAMES, host_allowed

API = "/api/v1"
DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8765
DEFAULT_MAX_UPLOAD = 4 << 30  # bytes: larger than any torchvision or timm weights file
_BACKLOG = 2048  # connections waiting to be accepted, as uvicorn's default
#: Bytes of a request's line and headers (its head) the server takes: a longer one is answered 431 with httptools
#: (`zoo.service.protocol`); h11 (without httptools) bounds only what it holds unparsed, 400 past it, and its own
#: default (16 KiB) would refuse common heads. The URL limit, answered 414, is the app's (`zoo.service.guards`).
MAX_REQUEST_HEAD = 64 << 10
_WORKER_GRACE = 30.0  # seconds a stopped worker may take to finish its requests before it is killed
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
MAX_PAGE = 1000
_log = logging.getLogger("zoo.service")
_DESCRIPTION = ("The zoo's catalog and artifact store: models (the filters of zoo.list_models), published weights "
                "and exports (records and files), publishing (token needed). Errors are one line of JSON: "
                '{"error": "..."}.')


def _error(status: int, message: str, headers: dict[str, str] | None = None, kind: str | None = None) -> JSONResponse:
    """The answer `{"error": MESSAGE}`, the message cut to its first line; with `kind`, the zoo error's class
    name, which a client raises as itself (`zoo.service.client`)."""
    answer = {"error": (message.strip().splitlines() or ["error"])[0], **({"kind": kind} if kind else {})}
    return JSONResponse(answer, status_code=status, headers=headers)


def create_app(catalog_url: str | None = None, store: ArtifactStore | None = None, read_token_required: bool = False,
               *, allowed_hosts: tuple[str, ...] = (), max_upload_bytes: int = DEFAULT_MAX_UPLOAD,
               settings: ZooSettings | None = None, body_limits: BodyLimits = BodyLimits(),
               artifacts: ArtifactServing = ArtifactServing(), session_key: bytes | None = None) -> FastAPI:
    """The registry service for the catalog at `catalog_url` and the artifact `store`.

    The app answers from a context of its own (`zoo.context.Context`): the catalog and
    store of `settings` (default: the environment's), or `catalog_url` and `store` when
    given; several apps in one process serve several catalogs. `allowed_hosts` are host
    names requests may be addressed to besides loopback ones (a reverse proxy's public
    name); uploads larger than `max_upload_bytes` are refused before they are read, and
    request bodies are read within `body_limits` (`zoo.service.common.Bodies`). `artifacts` says how a
    published file is answered: streamed by the service, or by a 307 to a presigned URL of the store, which
    must be able to make one (`zoo.service.common.ArtifactServing`, `zoo.service.blobs`). `session_key` signs
    the web's session cookies (`zoo.service.sessions`; default: a random one of this app's own).
    """
    if isinstance(max_upload_bytes, bool) or not isinstance(max_upload_bytes, int) or max_upload_bytes < 1:
        raise UsageError(f"the upload limit must be a positive number of bytes, not {excerpt(max_upload_bytes)}")
    zoo_settings = settings or ZooSettings.from_environ()
    if catalog_url is not None:
        zoo_settings = zoo_settings.with_catalog(catalog_url)
    context = Context(zoo_settings, store=store)
    answers = Answers(lambda: context.catalog.state(), zoo_settings.check_interval)
    settings = Settings(context.store, bool(read_token_required), frozenset(h.lower() for h in allowed_hosts),
                        max_upload_bytes, answers, Bodies(body_limits), artifact_mode(artifacts, context.store),
                        Sessions(session_key) if session_key is not None else Sessions())
    app = FastAPI(title="zoo registry", version="1", openapi_url=f"{API}/openapi.json", docs_url=None,
                  redoc_url=None, description=_DESCRIPTION)
    app.state.settings, app.state.context = settings, context
    for router in _routers(settings):
        app.include_router(router)
    install_web(app, settings)  # the web catalog (HTML pages)
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(ZooError, _zoo_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _internal_error)
    if not settings.read_token_required:  # else every read checks its token in the app
        app.add_middleware(Remembered, answers=answers)
    app.add_middleware(InContext, context=context)
    app.add_middleware(HostCheck, allowed=settings.allowed_hosts)
    install_guards(app)  # outermost: request shapes, HEAD, the API docs page
    return app


@dataclass(frozen=True)
class ServeConfig:
    """What each process of `serve` makes its app from: the zoo's settings and the service's options.

    Picklable: `serve` hands it to every worker process explicitly (nothing travels
    through the environment), and the worker calls `app`.
    """

    settings: ZooSettings
    read_token_required: bool = False
    allowed_hosts: tuple[str, ...] = ()
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD
    log_level: str = "info"
    body_limits: BodyLimits = BodyLimits()
    artifacts: ArtifactServing = ArtifactServing()
    access_log: bool = True
    #: Signs the web's session cookies (`zoo.service.sessions`): one per `serve`, the same in every worker.
    session_key: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)

    def app(self) -> FastAPI:
        """The service's app for these settings (`create_app`)."""
        return create_app(read_token_required=self.read_token_required, allowed_hosts=self.allowed_hosts,
                          max_upload_bytes=self.max_upload_bytes, body_limits=self.body_limits,
                          settings=self.settings, artifacts=self.artifacts, session_key=self.session_key)

    def uvicorn_config(self, app: FastAPI) -> Any:
        """uvicorn's configuration for serving `app`: HTTP parsed by httptools where it is installed (bounded by
        `zoo.service.protocol`), else by h11; a request head up to `MAX_REQUEST_HEAD` bytes either way; uvloop's
        event loop where it is installed (uvicorn's "auto" loop), else asyncio's."""
        from importlib.util import find_spec

        import uvicorn

        http: Any = "h11"
        if find_spec("httptools") is not None:
            from zoo.service.protocol import BoundedHttpToolsProtocol as http
        return uvicorn.Config(app, log_level=self.log_level, http=http, loop="auto", access_log=self.access_log,
                              log_config=log_config(), h11_max_incomplete_event_size=MAX_REQUEST_HEAD)


def serve(*, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, workers: int = 1, read_token_required: bool = False,
          allowed_hosts: tuple[str, ...] = (), max_upload_bytes: int = DEFAULT_MAX_UPLOAD, log_level: str = "info",
          ready_file: str | os.PathLike[str] | None = None, settings: ZooSettings | None = None,
          body_limits: BodyLimits = BodyLimits(), artifacts: ArtifactServing = ArtifactServing(),
          access_log: bool = True) -> None:
    """Serve the registry with uvicorn on `host`:`port` (0: any free port) until Ctrl-C or SIGTERM.

    The catalog is brought up to date first (a sync if it is stale). This process binds
    the listening socket; with ``workers=1`` it serves itself, else it starts `workers`
    processes (spawned, each given a `ServeConfig` with `settings`, default the
    environment's) that share the socket, stops them when it is stopped, and replaces
    one that dies. Once every worker's startup is complete (the socket answers), one
    JSON line goes to stdout, ``{"zoo_serve": "ready", "url": "http://127.0.0.1:PORT",
    "pid": PID, "workers": N}`` (the real port; `pid` this process), and, with
    `ready_file`, the same JSON to that file (written atomically; removed when the
    server stops). `body_limits` bound the request bodies each process reads (`zoo.service.common.Bodies`);
    `artifacts` says how published files are answered (`create_app`); `access_log`: whether uvicorn logs a line
    per request (on stderr).
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise UsageError(f"workers must be a whole number, 1 or more, not {excerpt(workers)}")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise UsageError(f"port must be a whole number from 0 to 65535 (0: any free port), not {excerpt(port)}")
    config = ServeConfig(settings or ZooSettings.from_environ(), bool(read_token_required), tuple(allowed_hosts),
                         max_upload_bytes, log_level, body_limits, artifacts, bool(access_log))
    app = config.app()  # bad settings: one line, here, before a worker starts
    engine = ensure_current(settings=config.settings)  # migrated or synced now, not by the first request
    redirects = " (files by redirect to presigned URLs)" if config.artifacts.redirect else ""
    print(f"zoo serve: {where(engine.url)}, artifact store {app.state.settings.store.location}{redirects}",
          file=sys.stderr)
    ready = _ReadyFile(ready_file)
    sock = _listen(host, port)
    url = _url(host, sock.getsockname()[1])

    def announce() -> None:
        line = json.dumps({"zoo_serve": "ready", "url": url, "pid": os.getpid(), "workers": workers})
        print(f"zoo serve: answering on {url} ({workers} worker{'s' * (workers > 1)}; Ctrl-C to quit)",
              file=sys.stderr, flush=True)
        ready.write(line)
        print(line, flush=True)

    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminated) if main else None
    terminated = False
    try:
        if workers == 1:
            _uvicorn_server(config.uvicorn_config(app), announce).run(sockets=[sock])
        else:
            del app
            _Workers(config, sock, workers).run(announce)
    except _Terminated:  # uvicorn (or _Workers) sends SIGTERM again after its graceful stop
        terminated = True
    finally:
        sock.close()
        ready.remove()
        if main:
            signal.signal(signal.SIGTERM, previous or signal.SIG_DFL)  # None: not set from Python
    if terminated:  # what SIGTERM does without zoo (by default: the process ends by it)
        signal.raise_signal(signal.SIGTERM)


class _Terminated(BaseException):
    """SIGTERM, raised where `serve` can clean up after the server has stopped gracefully."""


def _terminated(sig: int, frame: object) -> None:
    raise _Terminated


class _ReadyFile:
    """Where `serve` says it is ready besides stdout: a file written atomically, or nowhere."""

    def __init__(self, path: str | os.PathLike[str] | None) -> None:
        self.path = None if path is None else pathlib.Path(path)
        self.text: str | None = None
        if self.path is not None:  # an old one must not look ready; a bad path fails before serving
            if not self.path.parent.is_dir():
                raise UsageError(f"cannot write the ready file {self.path}: its folder does not exist")
            try:
                self.path.unlink(missing_ok=True)
            except OSError as exc:
                raise UsageError(f"cannot write the ready file {self.path}: {exc.strerror}") from None

    def write(self, text: str) -> None:
        if self.path is None:
            return
        write_atomically(self.path, [f"{text}\n".encode()], mode=0o644, origin="the ready line")
        self.text = text

    def remove(self) -> None:
        """Remove the file if it is still the one written here."""
        if self.path is not None and self.text is not None:
            with contextlib.suppress(OSError):
                if self.path.read_text(encoding="utf-8").strip() == self.text:
                    self.path.unlink()


def _listen(host: str, port: int) -> socket.socket:
    """A TCP socket listening on `host`:`port`. Made with its protocol (IPPROTO_TCP), so that asyncio sets
    TCP_NODELAY on the connections it accepts, in workers too (uvicorn's own lacks it: uvicorn issue 3149)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(_BACKLOG)
    except (OSError, OverflowError, UnicodeError) as exc:  # in use, not this machine's address, unknown name
        sock.close()
        reason = getattr(exc, "strerror", None) or str(exc)
        shown = host if len(host) <= 100 else excerpt(host)
        raise UsageError(f"cannot serve on {shown}:{port or 'any port'}: {reason}"
                         + ("; use --port 0 for a free one" if port else "")) from None
    return sock


def _url(host: str, port: int) -> str:
    """The address clients reach a server listening on `host`:`port` at (loopback for a wildcard host)."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)  # noqa: S104 - naming it, not binding it
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _uvicorn_server(config: Any, started: Callable[[], None]) -> Any:
    """A uvicorn server for `config` that calls `started` once its startup is complete (it accepts connections)."""
    import uvicorn

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if self.started:
                started()

    return Server(config)


class _Workers:
    """`serve`'s worker processes on one listening socket: started, replaced when one dies, stopped on SIGINT or
    SIGTERM (a second Ctrl-C kills them). Each dies with this process (`_worker`)."""

    def __init__(self, config: ServeConfig, sock: socket.socket, count: int) -> None:
        self.config, self.sock, self.count = config, sock, count
        self.context = multiprocessing.get_context("spawn")
        self.running: dict[int, BaseProcess] = {}  # by sentinel
        self.starting: dict[Connection, BaseProcess] = {}  # their ready pipes
        self.signals: list[int] = []

    def run(self, announce: Callable[[], None]) -> None:
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        main = threading.current_thread() is threading.main_thread()
        if main:  # signals can be caught only there (as uvicorn does)
            previous_fd = signal.set_wakeup_fd(wake_w)
            previous = {sig: signal.signal(sig, lambda sig, _: self.signals.append(sig)) for sig in _STOP_SIGNALS}
        stopping, ready = False, 0
        try:
            for _ in range(self.count):
                self.start()
            while self.running:
                for item in wait([wake_r, *self.running, *self.starting]):
                    if item == wake_r:
                        os.read(wake_r, 512)
                    elif isinstance(item, Connection):
                        del self.starting[item]
                        with contextlib.suppress(EOFError, OSError):  # EOF: it died, which its sentinel says
                            item.recv()
                            ready += 1
                            if ready == self.count:
                                announce()
                        item.close()
                    else:
                        process = self.running.pop(item)
                        process.join()
                        if not stopping and ready < self.count:
                            raise ZooError(f"a worker process of zoo serve exited with code {process.exitcode} "
                                           "before it started; see its messages above")
                        if not stopping:
                            print(f"zoo serve: worker {process.pid} exited with code {process.exitcode}; "
                                  "starting another", file=sys.stderr, flush=True)
                            self.start()
                if self.signals and not stopping:
                    stopping = True
                    self.stop(signal.SIGTERM)
                elif len(self.signals) > 1 and self.signals[-1] == signal.SIGINT:
                    self.stop(signal.SIGKILL)
        finally:
            self.stop(signal.SIGTERM)
            deadline = time.monotonic() + _WORKER_GRACE
            for process in self.running.values():
                process.join(max(0.0, deadline - time.monotonic()))
            self.stop(signal.SIGKILL)
            if main:
                for sig, handler in previous.items():
                    signal.signal(sig, handler or signal.SIG_DFL)
                signal.set_wakeup_fd(previous_fd)
            os.close(wake_r)
            os.close(wake_w)
        if self.signals:  # as uvicorn does after a graceful stop: the signal's own effect (Ctrl-C: KeyboardInterrupt)
            signal.raise_signal(self.signals[0])

    def start(self) -> None:
        reader, writer = self.context.Pipe(duplex=False)
        process = self.context.Process(target=_worker, args=(self.config, self.sock, writer), daemon=True,
                                       name="zoo serve worker")
        process.start()
        writer.close()
        self.running[process.sentinel] = process
        self.starting[reader] = process

    def stop(self, sig: int) -> None:
        for process in self.running.values():
            if process.exitcode is None and process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, sig)


def _worker(config: ServeConfig, sock: socket.socket, ready: Connection) -> None:
    """One worker process of `serve`: its app from `config`, served on `sock` until it is stopped or its parent
    dies; says so on `ready` (its pid) once its startup is complete."""

    def started() -> None:
        ready.send(os.getpid())
        ready.close()

    server = _uvicorn_server(config.uvicorn_config(config.app()), started)
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_stop_with, args=(parent.sentinel, server), daemon=True).start()
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C reaches every process: stopped, not a traceback
        server.run(sockets=[sock])


def _stop_with(sentinel: int, server: Any) -> None:
    """Stop `server` (gracefully, then at once after a grace period) once the process of `sentinel` has ended."""
    wait([sentinel])
    server.should_exit = True
    time.sleep(_WORKER_GRACE)
    os._exit(1)


class InContext:
    """ASGI middleware: every request is answered in the app's context (its catalog and store), whatever
    context the process has (`zoo.context.using`; threads the request starts inherit it)."""

    def __init__(self, app: ASGIApp, context: Context) -> None:
        self.app, self.context = app, context

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        with using(self.context):
            await self.app(scope, receive, send)


# -- requests not addressed to this server --------------------------------------------


class HostCheck:
    """ASGI middleware: 400 for a request whose Host header names neither this server by a loopback
    name with its port (see `zoo.tools.view.host_allowed`) nor an allowed host name; and for a path or
    query with a NUL character, which no name has and PostgreSQL cannot compare."""

    def __init__(self, app: ASGIApp, allowed: frozenset[str]) -> None:
        self.app, self.allowed = app, allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            refusal = self.refusal(scope)
            if refusal is not None:
                await _error(400, refusal)(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def refusal(self, scope: Scope) -> str | None:
        """Why the request in `scope` is refused, or None."""
        header = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"host"), None)
        served, port = scope.get("server") or ("", None)  # no port: a Unix socket, behind a proxy
        name = _host_name(header)
        loopback = host_allowed(header, served, port) if port is not None else name in LOOPBACK_NAMES
        if not (loopback or name in self.allowed):
            return (f"this server answers requests addressed to {', '.join(LOOPBACK_NAMES)} (with its port)"
                    f"{' or ' + ', '.join(sorted(self.allowed)) if self.allowed else ''}, not to host "
                    f"{excerpt(header)}; start it with --allow-host NAME to answer another name")
        if "\x00" in scope["path"] or b"%00" in scope["query_string"]:
            return "a NUL character is in the path or query; no name contains one"
        return None


def _host_name(header: str | None) -> str | None:
    """The host name of a ``Host`` header (lowercase, without port or brackets); None if it has none."""
    try:
        return urlsplit("//" + (header or "")).hostname
    except ValueError:
        return None


# -- errors --------------------------------------------------------------------------


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return _error(exc.status, str(exc), exc.headers, exc.kind)


async def _zoo_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ZooError)
    return _error(status_of(exc), str(exc), kind=type(exc).__name__)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    """The first problem FastAPI found with the request's parameters, in one line."""
    assert isinstance(exc, RequestValidationError)
    problem = next(iter(exc.errors()), {})
    where, *names = [str(part) for part in problem.get("loc", ())] or ["request"]
    field = f"{where} parameter {names[-1]!r}" if names else where
    given = f" (got {excerpt(problem['input'])})" if problem.get("input") is not None else ""
    return _error(400, f"{field}: {problem.get('msg', 'not valid')}{given}")


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    message = exc.detail if exc.status_code != 404 else f"no such path {excerpt(request.url.path)}; see {API}/docs"
    return _error(exc.status_code, str(message), exc.headers)


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    """A bug: logged with its traceback on the server, one line without it for the client."""
    _log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return _error(500, f"internal error ({type(exc).__name__}); the server's log has the details")


# -- the API --------------------------------------------------------------------------

Name = Annotated[str, Path(max_length=200)]
DeclaredSha256 = Annotated[str, Header(alias="X-Zoo-SHA256", pattern=SHA256_PATTERN,
                                       description="the SHA-256 of the body; a body that hashes otherwise is refused")]
#: The request body of an upload, for the OpenAPI schema (the handlers read it as a stream).
_UPLOAD = {"requestBody": {"required": True, "content": {
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}}


def _routers(settings: Settings) -> list[APIRouter]:
    """The API, one router per resource, reading `settings` (the order is the order routes are matched in)."""
    return [_catalog_routes(settings), _published_routes(settings), _export_routes(settings),
            _measurement_routes(settings)]


def _publisher(credentials: Credentials) -> None:
    require(credentials, frozenset({"publish"}), "publishing")


def _catalog_routes(settings: Settings) -> APIRouter:
    """The catalog: health, models, plugins, weights names and published weights files."""
    reads, answers = reader(settings), settings.answers
    router = APIRouter(prefix=API)

    @router.get("/health", summary="whether the catalog answers")
    def health() -> dict[str, str]:
        current().catalog.health()
        return {"status": "ok"}

    @router.get("/models", summary="models, with the filters of zoo.list_models, sorted by name, relevance to "
                "`search` or `sort`; paginated",
                dependencies=[Depends(reads)], response_class=JSONResponse)
    async def models(
        request: Request,
        pattern: Annotated[list[str] | None, Query(description="fnmatch pattern (repeatable), e.g. resnet*")] = None,
        exclude: Annotated[list[str] | None, Query(description="fnmatch pattern to leave out (repeatable)")] = None,
        task: Annotated[str | None, Query(max_length=100)] = None,
        plugin: Annotated[str | None, Query(max_length=200)] = None,
        pretrained: bool | None = None,
        max_params: Annotated[int | None, Query(ge=0)] = None,
        min_metric: Annotated[list[str] | None, Query(
            description="[DATASET:]METRIC=VALUE (repeatable), e.g. ImageNet-1K:acc@1=75")] = None,
        sort: Annotated[str | None, Query(max_length=400, description=(
            "name, params, gflops or [DATASET:]METRIC (metrics best first, the others ascending); "
            "-KEY descending, +KEY ascending"))] = None,
        search: Annotated[str | None, Query(max_length=MAX_SEARCH, description=(
            "words every model found has in its name, tags or docs (most relevant first unless sorted), "
            "e.g. vision transformer"))] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> Response:
        metrics = dict(parse_metric(m) for m in min_metric or [])
        filters = (tuple(pattern or ()), tuple(exclude or ()), task, plugin, pretrained, max_params,
                   tuple(sorted(metrics.items())), sort, search)
        found = await answers.value(("models", filters), partial(
            summarize_models, pattern, exclude, task=task, plugin=plugin, pretrained=pretrained,
            max_params=max_params, min_metric=metrics, sort=sort, search=search))
        return await answers.answer(request, ("models", filters, limit, offset), lambda: {
            "total": len(found), "offset": offset, "limit": limit, "models": found[offset:offset + limit]})

    @router.get("/metric-names", summary="every DATASET:METRIC of the catalog (what sort and min_metric name)",
                dependencies=[Depends(reads)], response_class=JSONResponse)
    async def metric_names(request: Request) -> Response:
        return await answers.answer(request, ("metric names",), current().catalog.metric_names)

    @router.get("/models/{name:path}", summary="a model's catalog record (zoo.describe)", dependencies=[Depends(reads)],
                response_class=JSONResponse)
    async def model(name: Annotated[str, Path(max_length=400)], request: Request) -> Response:
        return await answers.answer(request, ("model", name), lambda: current().catalog.describe(name).to_json())

    @router.get("/plugins", summary="the catalog's plugins (zoo.list_plugins)", dependencies=[Depends(reads)],
                response_class=JSONResponse)
    async def plugins(request: Request) -> Response:
        return await answers.answer(request, ("plugins",), list_plugins)

    @router.get("/weights", summary="the model and enum member a weights name means (zoo.get_weight)",
                dependencies=[Depends(reads)], response_class=JSONResponse)
    async def weights_name(request: Request,
                           name: Annotated[str, Query(max_length=400, description="e.g. ResNet50_Weights.DEFAULT")],
                           model: Annotated[str | None, Query(max_length=400)] = None) -> Response:
        def owner() -> dict[str, str]:
            found, member = weights_owner(name, model=model)
            return {"model": found, "member": member}

        return await answers.answer(request, ("weights", name, model), owner)

    @router.api_route("/weights/{sha256}", methods=["GET", "HEAD"], summary="a published weights file",
                      dependencies=[Depends(reads)], response_class=FileResponse)
    async def weights_file(sha256: Sha256, request: Request) -> Response:
        return await blob_response(settings, request, sha256, "weights", "published weights file")

    return router


def _published_routes(settings: Settings) -> APIRouter:
    """Published weights: versions, aliases, publishing."""
    reads, answers = reader(settings), settings.answers
    router = APIRouter(prefix=API)

    def resolved(spec: str) -> Callable[[], dict[str, Any]]:
        return lambda: resolve_published(spec).to_json()

    @router.get("/published", summary="every published weights version", dependencies=[Depends(reads)],
                response_class=JSONResponse)
    async def published(request: Request) -> Response:
        return await answers.answer(request, ("published",),
                                    lambda: [record.to_json() for record in list_published()])

    @router.get("/published/{namespace}/{name}", summary="the versions and aliases of NAMESPACE/NAME",
                dependencies=[Depends(reads)], response_class=JSONResponse)
    async def published_name(namespace: Name, name: Name, request: Request) -> Response:
        def versions() -> dict[str, Any]:
            found = list_published(f"{namespace}/{name}")
            if not found:
                raise ApiError(404, f"nothing is published as {namespace}/{name}")
            return {"name": f"{namespace}/{name}", "versions": [record.to_json() for record in found]}

        return await answers.answer(request, ("published", namespace, name), versions)

    @router.get("/published/{namespace}/{name}/latest", summary="the latest version of NAMESPACE/NAME",
                dependencies=[Depends(reads)], response_class=JSONResponse)
    async def published_latest(namespace: Name, name: Name, request: Request) -> Response:
        spec = f"{namespace}/{name}"
        return await answers.answer(request, ("resolve", spec), resolved(spec))

    @router.get("/published/{namespace}/{name}/versions/{version}", summary="one version of NAMESPACE/NAME",
                dependencies=[Depends(reads)], response_class=JSONResponse)
    async def published_version(namespace: Name, name: Name, request: Request,
                                version: Annotated[int, Path(ge=1, le=999_999_999)]) -> Response:
        spec = f"{namespace}/{name}:{version}"
        return await answers.answer(request, ("resolve", spec), resolved(spec))

    @router.get("/published/{namespace}/{name}/aliases/{alias}", summary="the version NAMESPACE/NAME@ALIAS points at",
                dependencies=[Depends(reads)], response_class=JSONResponse)
    async def published_alias(namespace: Name, name: Name, alias: Name, request: Request) -> Response:
        spec = f"{namespace}/{name}@{alias}"
        return await answers.answer(request, ("resolve", spec), resolved(spec))

    @router.put("/published/{namespace}/{name}/aliases/{alias}", dependencies=[Depends(_publisher)],
                summary="point NAMESPACE/NAME@ALIAS at a version (zoo alias)")
    def point_alias(namespace: Name, name: Name, alias: Name,
                    version: Annotated[int, Query(ge=1, le=999_999_999)]) -> dict[str, Any]:
        try:
            return set_alias(f"{namespace}/{name}", alias, version).to_json()
        finally:
            answers.changed()

    @router.post("/published/{namespace}/{name}", status_code=201, dependencies=[Depends(_publisher)],
                 summary="publish a weights file as the next version of NAMESPACE/NAME", openapi_extra=_UPLOAD)
    async def publish(
        namespace: Name, name: Name, request: Request, sha256: DeclaredSha256,
        model: Annotated[str, Query(max_length=400, description="the catalog model the weights are for")],
        metric: Annotated[list[str] | None, Query(description="DATASET:METRIC=VALUE (repeatable)")] = None,
        categories: Annotated[str | None, Query(description="class names, comma-separated (a new head)")] = None,
        from_weights: Annotated[str | None, Query(alias="from", max_length=400,
                                                  description="the weights they were fine-tuned from")] = None,
        description: Annotated[str | None, Query(max_length=10_000)] = None,
        preprocessing: Annotated[str | None, Query(max_length=10_000, description="a PreprocessSpec's JSON")] = None,
        run_length: Annotated[int | None, Header(
            alias="X-Zoo-Run-Length", ge=1, le=MAX_RUN_BYTES,
            description="the body starts with the run record (a JSON object) of this many bytes, then the file; "
                        "X-Zoo-SHA256 is the file's")] = None,
    ) -> dict[str, Any]:
        full_name = f"{namespace}/{name}"
        length = declared_length(request, settings.max_upload_bytes + (run_length or 0))
        if run_length is not None and run_length > length:
            raise ApiError(400, f"X-Zoo-Run-Length ({run_length}) is more than the whole body ({length} bytes)")
        metrics = dict(parse_metric(m) for m in metric or [])
        names = [c.strip() for c in categories.split(",")] if categories is not None else None
        spec = _json_query("preprocessing", preprocessing) if preprocessing is not None else None
        bodies = settings.bodies
        with bodies.accepting(settings.store) as uploads:
            await bodies.run(partial(_check_before_upload, full_name, model))
            body = _AfterRunRecord(request, run_length or 0)
            path = await bodies.receive(body, uploads / "upload", length - body.length, sha256)  # type: ignore[arg-type]
            run = body.record()
            with _uploaded_as(path):
                try:
                    record = await bodies.run(partial(
                        publish_weights, model, path, name=full_name, metrics=metrics or None, categories=names,
                        from_weights=from_weights, description=description, preprocessing=spec, run=run))
                finally:
                    answers.changed()
        return record.to_json()

    return router


def _export_routes(settings: Settings) -> APIRouter:
    """Published exports: records, files, publishing."""
    reads, answers = reader(settings), settings.answers
    router = APIRouter(prefix=API)

    @router.get("/exports", summary="published exports", dependencies=[Depends(reads)], response_class=JSONResponse)
    async def exports(request: Request, model: Annotated[str | None, Query(max_length=400)] = None) -> Response:
        return await answers.answer(request, ("exports", model),
                                    lambda: [record.to_json() for record in current().catalog.exports(model)])

    @router.get("/exports/latest", summary="the newest published export of a model with some weights",
                dependencies=[Depends(reads)], response_class=JSONResponse)
    async def export_latest(request: Request, model: Annotated[str, Query(max_length=400)],
                            weights: Annotated[str, Query(max_length=400, description="e.g. acme/defects@production")],
                            ) -> Response:
        def latest() -> dict[str, Any]:
            found = find_export(model, weights)
            if found is None:
                raise ApiError(404, f"no published export of {model} with {weights}")
            return found.to_json()

        return await answers.answer(request, ("export-latest", model, weights), latest)

    @router.get("/exports/{sha256}", summary="a published export's record", dependencies=[Depends(reads)],
                response_class=JSONResponse)
    async def export(sha256: Sha256, request: Request) -> Response:
        def record() -> dict[str, Any]:
            found = current().catalog.exports(sha256=sha256)
            if not found:
                raise ApiError(404, f"no published export has SHA-256 {sha256}")
            return found[0].to_json()

        return await answers.answer(request, ("export", sha256), record)

    @router.api_route("/exports/{sha256}/file", methods=["GET", "HEAD"], summary="a published export's file",
                      dependencies=[Depends(reads)], response_class=FileResponse)
    async def export_file(sha256: Sha256, request: Request) -> Response:
        return await blob_response(settings, request, sha256, "export", "published export")

    @router.post("/exports", status_code=201, dependencies=[Depends(_publisher)], openapi_extra=_UPLOAD,
                 summary="publish a verified ONNX export (its zoo metadata is checked)")
    async def publish_export_file(request: Request, sha256: DeclaredSha256) -> dict[str, Any]:
        length = declared_length(request, settings.max_upload_bytes)
        with settings.bodies.accepting(settings.store) as uploads:
            path = await settings.bodies.receive(request, uploads / "upload", length, sha256)
            with _uploaded_as(path):
                try:
                    record = await settings.bodies.run(partial(publish_export, path))
                finally:
                    settings.answers.changed()
        return record.to_json()

    return router


def _measurement_routes(settings: Settings) -> APIRouter:
    """Measured metrics (zoo eval --record): listing, recording."""
    reads, answers = reader(settings), settings.answers
    router = APIRouter(prefix=API)

    @router.get("/measurements", summary="measured metrics (zoo eval --record), oldest first",
                dependencies=[Depends(reads)], response_class=JSONResponse)
    async def measurements(request: Request, model: Annotated[str | None, Query(max_length=400)] = None,
                           weights: Annotated[str | None, Query(max_length=400)] = None) -> Response:
        return await answers.answer(request, ("measurements", model, weights),
                                    lambda: [m.to_json() for m in list_measurements(model, weights)])

    @router.post("/measurements", status_code=201, dependencies=[Depends(_publisher)],
                 summary="record a measurement (a Measurement's JSON, at most 16 KiB)",
                 openapi_extra={"requestBody": {"required": True, "content": {"application/json": {}}}})
    async def record(request: Request) -> dict[str, Any]:
        length = declared_length(request, settings.max_upload_bytes)
        if length > MAX_MEASUREMENT_BYTES:
            raise ApiError(413, f"a measurement is at most {MAX_MEASUREMENT_BYTES} bytes of JSON; this body has "
                                f"{length}", CLOSE)
        bodies = settings.bodies
        with bodies.accepting(settings.store) as uploads:
            path = await bodies.receive(request, uploads / "measurement.json", length)
            try:
                measurement = Measurement.from_json(json.loads(path.read_bytes()))
            except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
                raise ApiError(400, f"the body is not a measurement's JSON (zoo.records.Measurement): "
                                    f"{type(exc).__name__}: {excerpt(str(exc), 200)}") from None
            try:
                stored = await bodies.run(partial(record_measurement, measurement))
            finally:
                answers.changed()
        return stored.to_json()

    return router


class _AfterRunRecord:
    """A publishing request whose body starts with a run record of `length` bytes (0: none), then the file:
    `stream` yields the file's bytes (what `Bodies.receive` reads and verifies), keeping the record's apart."""

    def __init__(self, request: Request, length: int) -> None:
        self.request, self.length, self.head = request, length, bytearray()

    async def stream(self) -> AsyncIterator[bytes]:
        async for chunk in self.request.stream():
            cut = max(0, self.length - len(self.head))
            self.head += chunk[:cut]
            yield chunk[cut:]  # empty while the record is read: it came, so the wait for the next starts again

    def record(self) -> dict[str, Any] | None:
        """The run record read from the body (None when there is none); 400 when it is not JSON."""
        if not self.length:
            return None
        if len(self.head) < self.length:
            raise ApiError(400, f"the body ended inside its run record ({len(self.head)} of {self.length} bytes)")
        try:
            return json.loads(self.head)
        except ValueError as exc:
            raise ApiError(400, f"the run record (X-Zoo-Run-Length bytes before the file) is not JSON: {exc}"
                           ) from None


def _json_query(name: str, value: str) -> Any:
    """The query parameter `name` read as JSON (400 when it is not)."""
    try:
        return json.loads(value)
    except ValueError as exc:
        raise ApiError(400, f"query parameter {name!r} is not JSON: {exc}") from None


def _check_before_upload(name: str, model: str) -> None:
    """Refuse a publication whose name or model is wrong before its body is read."""
    parse_spec(name, bare=True)
    current().catalog.describe(model)


@contextmanager
def _uploaded_as(path: pathlib.Path) -> Iterator[None]:
    """Errors about the uploaded file at `path` (a server-side temporary name) call it "the uploaded file"."""
    try:
        yield
    except ZooError as exc:
        raise ApiError(status_of(exc), str(exc).replace(str(path), "the uploaded file"), kind=type(exc).__name__) from None

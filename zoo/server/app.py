"""The registry service's ASGI app (FastAPI) and how `zoo serve` runs it (uvicorn).

Every answer is JSON, every error one line of it: ``{"error": "..."}``, with the
status saying whose fault it is (400 bad input, 401/403 token, 404 unknown, 411/413
upload size, 503 catalog unreachable); never a traceback. Handlers that read the
catalog are plain functions (run in uvicorn's thread pool); uploads stream from the
event loop into the store's verified writer in a worker thread, chunk by chunk.
"""

from __future__ import annotations

import json
import logging
import os
import pathlib
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import Annotated, Any
from urllib.parse import urlsplit

import anyio
import anyio.from_thread
from fastapi import APIRouter, Depends, FastAPI, Header, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from sqlalchemy import select, text
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import MalformedRangeHeader, RangeNotSatisfiable
from starlette.types import ASGIApp, Receive, Scope, Send

from zoo.catalog.engine import URL_ENV, open_engine, where
from zoo.catalog.fingerprint import ensure_current
from zoo.catalog.published import export_records, parse_spec
from zoo.catalog.tables import published_exports, published_weights
from zoo.errors import UsageError, ZooError, excerpt
from zoo.publish import find_export, list_published, publish_export, publish_weights, resolve_published, set_alias
from zoo.registry import describe, list_plugins, summarize_models, weights_owner
from zoo.server.common import (
    SHA256_PATTERN,
    ApiError,
    Credentials,
    Settings,
    Sha256,
    declared_length,
    reader,
    require,
    status_of,
)
from zoo.server.web import install as install_web
from zoo.store import ARTIFACTS_ENV, ArtifactStore
from zoo.text import parse_metric
from zoo.view import LOOPBACK_NAMES, host_allowed

API = "/api/v1"
DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8765
DEFAULT_MAX_UPLOAD = 4 << 30  # bytes: larger than any torchvision or timm weights file
#: How `serve` configures the app of each uvicorn worker process (`app_from_environment`).
READ_TOKEN_ENV, ALLOW_HOSTS_ENV, MAX_UPLOAD_ENV = "ZOO_SERVE_READ_TOKEN", "ZOO_SERVE_ALLOW_HOSTS", "ZOO_SERVE_MAX_UPLOAD"
MAX_PAGE = 1000
STALE_UPLOAD_SECONDS = 24 * 3600
_BLOB_CACHE = "public, max-age=31536000, immutable"  # a blob's name is its hash: it never changes
_log = logging.getLogger("zoo.server")
_DESCRIPTION = ("The zoo's catalog and artifact store: models (the filters of zoo.list_models), published weights "
                "and exports (records and files), publishing (token needed). Errors are one line of JSON: "
                '{"error": "..."}.')


def _error(status: int, message: str, headers: dict[str, str] | None = None, kind: str | None = None) -> JSONResponse:
    """The answer `{"error": MESSAGE}`, the message cut to its first line; with `kind`, the zoo error's class
    name, which a client raises as itself (`zoo.client`)."""
    answer = {"error": (message.strip().splitlines() or ["error"])[0], **({"kind": kind} if kind else {})}
    return JSONResponse(answer, status_code=status, headers=headers)


def create_app(catalog_url: str | None = None, store: ArtifactStore | None = None, read_token_required: bool = False,
               *, allowed_hosts: tuple[str, ...] = (), max_upload_bytes: int = DEFAULT_MAX_UPLOAD) -> FastAPI:
    """The registry service for the catalog at `catalog_url` and the artifact `store`.

    A process serves one catalog and one store: a `catalog_url` or `store` given here
    becomes ``$ZOO_REGISTRY_URL`` / ``$ZOO_ARTIFACTS``, which the lookups and publishing
    read (default: those variables, else their defaults). `allowed_hosts` are host
    names requests may be addressed to besides loopback ones (a reverse proxy's public
    name); uploads larger than `max_upload_bytes` are refused before they are read.
    """
    if catalog_url is not None:
        os.environ[URL_ENV] = catalog_url
    if store is not None:
        os.environ[ARTIFACTS_ENV] = str(store.root)
    if isinstance(max_upload_bytes, bool) or not isinstance(max_upload_bytes, int) or max_upload_bytes < 1:
        raise UsageError(f"the upload limit must be a positive number of bytes, not {excerpt(max_upload_bytes)}")
    settings = Settings(store or ArtifactStore.default(), bool(read_token_required),
                        frozenset(h.lower() for h in allowed_hosts), max_upload_bytes)
    app = FastAPI(title="zoo registry", version="1", openapi_url=f"{API}/openapi.json", docs_url=f"{API}/docs",
                  redoc_url=None, description=_DESCRIPTION)
    app.state.settings = settings
    app.include_router(_router(settings))
    install_web(app, settings)  # the web catalog (HTML pages)
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(ZooError, _zoo_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _internal_error)
    app.add_middleware(HostCheck, allowed=settings.allowed_hosts)
    return app


def app_from_environment() -> FastAPI:
    """The app of one uvicorn worker, configured by `serve` through the environment."""
    hosts = os.environ.get(ALLOW_HOSTS_ENV, "")
    return create_app(read_token_required=os.environ.get(READ_TOKEN_ENV) == "1",
                      allowed_hosts=tuple(h for h in hosts.split(",") if h),
                      max_upload_bytes=int(os.environ.get(MAX_UPLOAD_ENV) or DEFAULT_MAX_UPLOAD))


def serve(*, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, workers: int = 1, read_token_required: bool = False,
          allowed_hosts: tuple[str, ...] = (), max_upload_bytes: int = DEFAULT_MAX_UPLOAD,
          log_level: str = "info") -> None:
    """Serve the registry with uvicorn on `host`:`port` (0: a free port, which uvicorn prints) until Ctrl-C.

    The catalog is brought up to date first (a sync if it is stale). `workers` processes share the listening socket; each makes its app from the
    environment, which carries the catalog, the store and the settings here.
    """
    import uvicorn

    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise UsageError(f"workers must be a whole number, 1 or more, not {excerpt(workers)}")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise UsageError(f"port must be a whole number from 0 to 65535 (0: any free port), not {excerpt(port)}")
    app = create_app(allowed_hosts=allowed_hosts, max_upload_bytes=max_upload_bytes)  # bad settings: one line, here
    engine = ensure_current()  # migrated or synced now, not by the first request; unreachable: one line
    print(f"zoo serve: {where(engine.url)}, artifact store {app.state.settings.store.root}", file=sys.stderr)
    os.environ[READ_TOKEN_ENV] = "1" if read_token_required else "0"
    os.environ[ALLOW_HOSTS_ENV] = ",".join(allowed_hosts)
    os.environ[MAX_UPLOAD_ENV] = str(max_upload_bytes)
    uvicorn.run("zoo.server.app:app_from_environment", factory=True, host=host, port=port, workers=workers,
                log_level=log_level)


# -- requests not addressed to this server --------------------------------------------


class HostCheck:
    """ASGI middleware: 400 for a request whose Host header names neither this server by a loopback
    name with its port (see `zoo.view.host_allowed`) nor an allowed host name; and for a path or
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


def _router(settings: Settings) -> APIRouter:
    """The routes of the API, reading `settings`."""

    def publisher(credentials: Credentials) -> None:
        require(credentials, frozenset({"publish"}), "publishing")

    reads = reader(settings)
    router = APIRouter(prefix=API)

    @router.get("/health", summary="whether the catalog answers")
    def health() -> dict[str, str]:
        with open_engine().connect() as conn:
            conn.execute(text("SELECT 1"))
        return {"status": "ok"}

    @router.get("/models", summary="models, with the filters of zoo.list_models; paginated",
                dependencies=[Depends(reads)])
    def models(
        pattern: Annotated[list[str] | None, Query(description="fnmatch pattern (repeatable), e.g. resnet*")] = None,
        exclude: Annotated[list[str] | None, Query(description="fnmatch pattern to leave out (repeatable)")] = None,
        task: Annotated[str | None, Query(max_length=100)] = None,
        plugin: Annotated[str | None, Query(max_length=200)] = None,
        pretrained: bool | None = None,
        max_params: Annotated[int | None, Query(ge=0)] = None,
        min_metric: Annotated[list[str] | None, Query(
            description="[DATASET:]METRIC=VALUE (repeatable), e.g. ImageNet-1K:acc@1=75")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> dict[str, Any]:
        found = summarize_models(pattern, exclude, task=task, plugin=plugin, pretrained=pretrained,
                                 max_params=max_params, min_metric=dict(parse_metric(m) for m in min_metric or []))
        return {"total": len(found), "offset": offset, "limit": limit, "models": found[offset:offset + limit]}

    @router.get("/models/{name:path}", summary="a model's catalog record (zoo.describe)", dependencies=[Depends(reads)])
    def model(name: Annotated[str, Path(max_length=400)]) -> dict[str, Any]:
        return describe(name)

    @router.get("/plugins", summary="the catalog's plugins (zoo.list_plugins)", dependencies=[Depends(reads)])
    def plugins() -> list[dict[str, Any]]:
        return list_plugins()

    @router.get("/weights", summary="the model and enum member a weights name means (zoo.get_weight)",
                dependencies=[Depends(reads)])
    def weights_name(name: Annotated[str, Query(max_length=400, description="e.g. ResNet50_Weights.DEFAULT")],
                     model: Annotated[str | None, Query(max_length=400)] = None) -> dict[str, str]:
        owner, member = weights_owner(name, model=model)
        return {"model": owner, "member": member}

    @router.api_route("/weights/{sha256}", methods=["GET", "HEAD"], summary="a published weights file",
                      dependencies=[Depends(reads)], response_class=FileResponse)
    def weights_file(sha256: Sha256, request: Request) -> Response:
        return _blob(settings.store, request, sha256, published_weights, "published weights file")

    @router.get("/published", summary="every published weights version", dependencies=[Depends(reads)])
    def published() -> list[Any]:
        return [record.to_json() for record in list_published()]

    @router.get("/published/{namespace}/{name}", summary="the versions and aliases of NAMESPACE/NAME",
                dependencies=[Depends(reads)])
    def published_name(namespace: Name, name: Name) -> dict[str, Any]:
        versions = list_published(f"{namespace}/{name}")
        if not versions:
            raise ApiError(404, f"nothing is published as {namespace}/{name}")
        return {"name": f"{namespace}/{name}", "versions": [record.to_json() for record in versions]}

    @router.get("/published/{namespace}/{name}/latest", summary="the latest version of NAMESPACE/NAME",
                dependencies=[Depends(reads)])
    def published_latest(namespace: Name, name: Name) -> dict[str, Any]:
        return resolve_published(f"{namespace}/{name}").to_json()

    @router.get("/published/{namespace}/{name}/versions/{version}", summary="one version of NAMESPACE/NAME",
                dependencies=[Depends(reads)])
    def published_version(namespace: Name, name: Name, version: Annotated[int, Path(ge=1, le=999_999_999)]) -> Any:
        return resolve_published(f"{namespace}/{name}:{version}").to_json()

    @router.get("/published/{namespace}/{name}/aliases/{alias}", summary="the version NAMESPACE/NAME@ALIAS points at",
                dependencies=[Depends(reads)])
    def published_alias(namespace: Name, name: Name, alias: Name) -> dict[str, Any]:
        return resolve_published(f"{namespace}/{name}@{alias}").to_json()

    @router.put("/published/{namespace}/{name}/aliases/{alias}", dependencies=[Depends(publisher)],
                summary="point NAMESPACE/NAME@ALIAS at a version (zoo alias)")
    def point_alias(namespace: Name, name: Name, alias: Name,
                    version: Annotated[int, Query(ge=1, le=999_999_999)]) -> dict[str, Any]:
        return set_alias(f"{namespace}/{name}", alias, version).to_json()

    @router.get("/exports", summary="published exports", dependencies=[Depends(reads)])
    def exports(model: Annotated[str | None, Query(max_length=400)] = None) -> list[dict[str, Any]]:
        qualified = describe(model)["qualified_name"] if model is not None else None
        with ensure_current().connect() as conn:
            return [record.to_json() for record in export_records(conn, model=qualified)]

    @router.get("/exports/latest", summary="the newest published export of a model with some weights",
                dependencies=[Depends(reads)])
    def export_latest(model: Annotated[str, Query(max_length=400)],
                      weights: Annotated[str, Query(max_length=400, description="e.g. acme/defects@production")],
                      ) -> dict[str, Any]:
        found = find_export(model, weights)
        if found is None:
            raise ApiError(404, f"no published export of {model} with {weights}")
        return found.to_json()

    @router.get("/exports/{sha256}", summary="a published export's record", dependencies=[Depends(reads)])
    def export(sha256: Sha256) -> dict[str, Any]:
        with ensure_current().connect() as conn:
            found = export_records(conn, sha256=sha256)
        if not found:
            raise ApiError(404, f"no published export has SHA-256 {sha256}")
        return found[0].to_json()

    @router.api_route("/exports/{sha256}/file", methods=["GET", "HEAD"], summary="a published export's file",
                      dependencies=[Depends(reads)], response_class=FileResponse)
    def export_file(sha256: Sha256, request: Request) -> Response:
        return _blob(settings.store, request, sha256, published_exports, "published export")

    @router.post("/published/{namespace}/{name}", status_code=201, dependencies=[Depends(publisher)],
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
    ) -> dict[str, Any]:
        full_name = f"{namespace}/{name}"
        length = declared_length(request, settings.max_upload_bytes)
        metrics = dict(parse_metric(m) for m in metric or [])
        await anyio.to_thread.run_sync(_check_before_upload, full_name, model)
        names = [c.strip() for c in categories.split(",")] if categories is not None else None
        spec = _json_query("preprocessing", preprocessing) if preprocessing is not None else None
        with _upload(settings.store) as uploads:
            path = await _receive(request, uploads, sha256, length)
            with _uploaded_as(path):
                record = await anyio.to_thread.run_sync(partial(
                    publish_weights, model, path, name=full_name, metrics=metrics or None, categories=names,
                    from_weights=from_weights, description=description, preprocessing=spec))
        return record.to_json()

    @router.post("/exports", status_code=201, dependencies=[Depends(publisher)], openapi_extra=_UPLOAD,
                 summary="publish a verified ONNX export (its zoo metadata is checked)")
    async def publish_export_file(request: Request, sha256: DeclaredSha256) -> dict[str, Any]:
        length = declared_length(request, settings.max_upload_bytes)
        with _upload(settings.store) as uploads:
            path = await _receive(request, uploads, sha256, length)
            with _uploaded_as(path):
                record = await anyio.to_thread.run_sync(publish_export, path)
        return record.to_json()

    return router


def _json_query(name: str, value: str) -> Any:
    """The query parameter `name` read as JSON (400 when it is not)."""
    try:
        return json.loads(value)
    except ValueError as exc:
        raise ApiError(400, f"query parameter {name!r} is not JSON: {exc}") from None


@contextmanager
def _upload(store: ArtifactStore) -> Iterator[ArtifactStore]:
    """A store of its own for one upload, inside `store` (one file system), removed afterwards: publishing
    copies what it accepts into `store`, so a refused or broken upload leaves nothing there. Folders left
    by a server killed during an upload are removed by a later upload once they are a day old."""
    folder = store.root / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    _remove_stale(folder)
    root = tempfile.mkdtemp(dir=folder)
    try:
        yield ArtifactStore(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _remove_stale(folder: pathlib.Path) -> None:
    """Remove the upload folders in `folder` untouched for `STALE_UPLOAD_SECONDS` (no live upload is that idle)."""
    cutoff = time.time() - STALE_UPLOAD_SECONDS
    for entry in folder.iterdir():
        try:
            stale = entry.is_dir() and not entry.is_symlink() and entry.stat().st_mtime < cutoff
        except OSError:  # removed meanwhile by another worker
            continue
        if stale:
            shutil.rmtree(entry, ignore_errors=True)


async def _receive(request: Request, uploads: ArtifactStore, sha256: str, length: int) -> pathlib.Path:
    """Store the request's body, checked against the declared `sha256` and `length`, in `uploads`."""
    try:
        artifact = await anyio.to_thread.run_sync(
            partial(uploads.put_stream, _chunks(request), sha256=sha256, max_bytes=length))
    except ClientDisconnect:
        raise ApiError(400, "the upload ended before its Content-Length; nothing was stored") from None
    return artifact.path


def _check_before_upload(name: str, model: str) -> None:
    """Refuse a publication whose name or model is wrong before its body is read."""
    parse_spec(name, bare=True)
    describe(model)


@contextmanager
def _uploaded_as(path: pathlib.Path) -> Iterator[None]:
    """Errors about the uploaded file at `path` (a server-side temporary name) call it "the uploaded file"."""
    try:
        yield
    except ZooError as exc:
        raise ApiError(status_of(exc), str(exc).replace(str(path), "the uploaded file"), kind=type(exc).__name__) from None


def _blob(store: ArtifactStore, request: Request, sha256: str, table: Any, what: str) -> Response:
    """The stored file of `sha256` if `table` records it as published: streamed with its size, its hash as
    ETag (304 for a client that has it), HEAD and byte ranges (206; 416 past the end)."""
    with ensure_current().connect() as conn:
        if conn.scalar(select(table.c.sha256).where(table.c.sha256 == sha256).limit(1)) is None:
            raise ApiError(404, f"no {what} has SHA-256 {sha256}")
    path = store.path(sha256)
    etag = f'"{sha256}"'
    headers = {"ETag": etag, "Cache-Control": _BLOB_CACHE}
    if etag in [t.strip() for t in request.headers.get("if-none-match", "").split(",")]:
        return Response(status_code=304, headers=headers)
    ranges = request.headers.get("range")
    if ranges is not None:
        size = path.stat().st_size
        try:  # starlette's own parser, which FileResponse uses: refused here so that the refusal is JSON
            FileResponse._parse_range_header(ranges, size)
        except MalformedRangeHeader as exc:
            raise ApiError(400, f"Range {excerpt(ranges)}: {exc.content}") from None
        except RangeNotSatisfiable:
            raise ApiError(416, f"Range {excerpt(ranges)} is past the end of the file ({size} bytes)",
                           {"Content-Range": f"bytes */{size}"}) from None
    return FileResponse(path, media_type="application/octet-stream", headers=headers)


def _chunks(request: Request) -> Iterator[bytes]:
    """The request's body, chunk by chunk as it arrives, for code in a worker thread."""
    stream = request.stream()

    async def next_chunk() -> bytes | None:
        try:
            return await anext(stream)
        except StopAsyncIteration:
            return None

    while (chunk := anyio.from_thread.run(next_chunk)) is not None:
        if chunk:
            yield chunk

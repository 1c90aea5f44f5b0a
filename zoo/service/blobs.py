"""Published files as the service answers them: ``/weights/SHA256`` and ``/exports/SHA256/file`` (`blob_response`).

``zoo serve --artifacts proxy`` (the default) streams a file from the artifact store
through the service: its size, its hash as ETag, HEAD, one byte range (206). With
``--artifacts redirect`` a GET is answered ``307 Temporary Redirect`` to a presigned URL
of the object store (`zoo.store.ArtifactStore.url_for`, valid ``--presign-expiry`` seconds, never
cached), so that the bytes go from the store to the client without passing through the
service; the client sends its ``Range`` along, and never its token (`zoo.fetch`). The
service checks first, as it does when it streams: the file must be published (404) and
in the store (404); HEAD and a client that has the file (``If-None-Match``: 304) are
still answered here. A file up to `zoo.service.answers.SMALL_FILE` bytes is answered from the service's
memory once read (verified by its hash: a damaged one is a 500 and a line in the log), without a thread; a
larger one is streamed in 1 MiB reads (the client verifies it, as it verifies what the object store sends). A store that cannot presign (a folder) is refused at startup
(`artifact_mode`). Pages that must fetch from the service's own origin (netron's,
`zoo.service.web.graph`) have the file streamed in either mode.
"""

from __future__ import annotations

import logging
from functools import partial

import anyio
from fastapi import Request, Response
from fastapi.responses import FileResponse
from starlette.responses import MalformedRangeHeader, RangeNotSatisfiable
from starlette.types import Receive, Scope, Send

from zoo.context import current
from zoo.errors import ArtifactError, HashMismatchError, UnknownArtifactError, UsageError, excerpt
from zoo.service.answers import SMALL_FILE, has_one_of
from zoo.service.common import ApiError, ArtifactServing, Settings
from zoo.store import ArtifactStore

__all__ = ["ARTIFACT_MODES", "MAX_PRESIGN_S", "artifact_mode", "blob_response"]

#: How the service answers a GET of a published file: streamed by itself, or redirected to the object store.
PROXY, REDIRECT = "proxy", "redirect"
ARTIFACT_MODES = (PROXY, REDIRECT)
#: The longest a presigned URL may be valid (SigV4's limit: 7 days).
MAX_PRESIGN_S = 7 * 24 * 3600
_BLOB_CACHE = "public, max-age=31536000, immutable"  # a blob's name is its hash: it never changes
_NEVER_CACHED = {"Cache-Control": "no-store"}  # a redirect to a URL that expires
_OCTETS = "application/octet-stream"
_log = logging.getLogger("zoo.service")


def artifact_mode(serving: ArtifactServing, store: ArtifactStore) -> ArtifactServing:
    """`serving` (``--artifacts``, ``--presign-expiry``) if `store` can serve it; one line otherwise, before the
    service starts."""
    if serving.mode not in ARTIFACT_MODES:
        raise UsageError(f"--artifacts is {excerpt(serving.mode)}; give {' or '.join(ARTIFACT_MODES)}")
    expires_in = serving.expires_in
    if isinstance(expires_in, bool) or not isinstance(expires_in, int) or not 0 < expires_in <= MAX_PRESIGN_S:
        raise UsageError(f"--presign-expiry is {excerpt(expires_in)}; give a whole number of seconds from 1 to "
                         f"{MAX_PRESIGN_S} (7 days)")
    if serving.redirect and store.url_for("0" * 64, expires_in=expires_in) is None:  # presigning asks no one
        raise UsageError(f"--artifacts redirect needs an artifact store that can presign URLs "
                         f"(ZOO_ARTIFACTS=s3://BUCKET/PREFIX); the artifact store {store.location} is a folder; "
                         f"serve its files with --artifacts proxy")
    return serving


async def blob_response(settings: Settings, request: Request, sha256: str, kind: str, what: str, *,
                        serving: ArtifactServing | None = None) -> Response:
    """The stored file of `sha256` if it is published (a `kind` "weights" or "export", `what` in messages).

    Its hash is its ETag (304 for a client that has it, or any version: ``If-None-Match: *``). With
    `serving` (default: the app's) in redirect mode, a GET is answered 307 to a presigned URL of the store;
    otherwise the file is sent with its size, HEAD and byte ranges (206; 416 past the end): a small one from
    memory (`zoo.service.answers`), a larger one streamed from the store. Whether it is published and its size
    are asked once per catalog state.
    """
    store, answers, serving = settings.store, settings.answers, serving or settings.artifacts
    size = await answers.value(("blob", kind, sha256), partial(_published_size, store, sha256, kind, what))
    etag = f'"{sha256}"'
    headers = {"ETag": etag, "Cache-Control": _BLOB_CACHE, "Accept-Ranges": "bytes"}
    if has_one_of(request.headers, etag):
        return Response(status_code=304, headers=headers)
    if serving.redirect and request.method == "GET":  # the client's Range goes along to the store, which answers it
        presigned = await answers.run(partial(store.url_for, sha256, expires_in=serving.expires_in))
        if presigned is not None:
            return Response(status_code=307, headers={"Location": presigned, **_NEVER_CACHED})
    ranges, if_range = request.headers.get("range"), request.headers.get("if-range")
    parts: list[tuple[int, int]] = []
    if ranges is not None and (if_range is None or if_range == etag):  # another If-Range: the whole file
        try:  # starlette's own parser, which FileResponse uses: refused here so that the refusal is JSON
            parts = FileResponse._parse_range_header(ranges, size)
        except MalformedRangeHeader as exc:
            raise ApiError(400, f"Range {excerpt(ranges)}: {exc.content}") from None
        except RangeNotSatisfiable:
            raise ApiError(416, f"Range {excerpt(ranges)} is past the end of the file ({size} bytes)",
                           {"Content-Range": f"bytes */{size}"}) from None
    part = parts[0] if len(parts) == 1 else None
    if size <= SMALL_FILE and request.method == "GET":
        try:
            data = await answers.file(sha256, partial(store.read, sha256))
        except HashMismatchError as exc:  # the server's fault: its store holds other bytes under this name
            _log.error("refused a damaged file: %s", exc)
            raise ApiError(500, str(exc)) from None
        start, end = part or (0, size)
        if part is None:
            answers.remember_file(request, sha256, headers)
        return Response(data[start:end], 200 if part is None else 206,
                        {**headers, **_range_headers(part, size)}, _OCTETS)
    return _BlobResponse(store, sha256, size, part, headers)


def _published_size(store: ArtifactStore, sha256: str, kind: str, what: str) -> int:
    """The size of the stored file `sha256`, which must be a published `kind` (404 otherwise)."""
    if not current().catalog.is_published(sha256, kind):
        raise ApiError(404, f"no {what} has SHA-256 {sha256}")
    size = store.stat(sha256)
    if size is None:
        raise UnknownArtifactError(f"the artifact store {store.location} has no file with SHA-256 {sha256}")
    return size


def _range_headers(part: tuple[int, int] | None, size: int) -> dict[str, str]:
    """The Content-Range of a 206 answer with bytes `part` (start, end) of a file of `size` bytes."""
    return {} if part is None else {"Content-Range": f"bytes {part[0]}-{part[1] - 1}/{size}"}


class _BlobResponse(Response):
    """A stored blob streamed from `ArtifactStore.open` in worker threads: whole (200) or one byte range
    (206; several ranges get the whole file, as HTTP allows); headers alone for HEAD. Reading stops when
    the client goes away."""

    chunk_size = 1 << 20  # bytes per read (and per worker-thread hop): fewer hops for large files
    media_type = _OCTETS

    def __init__(self, store: ArtifactStore, sha256: str, size: int, part: tuple[int, int] | None,
                 headers: dict[str, str]) -> None:
        self.store, self.sha256, self.background = store, sha256, None
        self.start, self.end = part or (0, size)
        self.status_code = 200 if part is None else 206
        self.init_headers({**headers, **_range_headers(part, size), "Content-Length": str(self.end - self.start)})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        if scope["method"].upper() == "HEAD" or self.start == self.end:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        async with anyio.create_task_group() as group:

            async def watch() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                group.cancel_scope.cancel()

            group.start_soon(watch)
            await self._stream(send)
            group.cancel_scope.cancel()

    async def _stream(self, send: Send) -> None:
        blob = await anyio.to_thread.run_sync(self.store.open, self.sha256)
        try:
            await anyio.to_thread.run_sync(blob.seek, self.start)
            position = self.start
            while position < self.end:
                chunk = await anyio.to_thread.run_sync(blob.read, min(self.chunk_size, self.end - position))
                if not chunk:
                    raise ArtifactError(f"stored file {self.sha256} is shorter than its {self.end} bytes")
                position += len(chunk)
                await send({"type": "http.response.body", "body": chunk, "more_body": position < self.end})
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(blob.close)

"""What the registry service's API and its web pages share: one app's settings, refusals with their
HTTP status, the token rule, the upload size rule, the path parameter of a SHA-256, and how request
bodies (uploads and "try it" images) are read: `Bodies`.

A body is read only through `Bodies`: at most `BodyLimits.concurrent` at once per app (more are
refused at once, 503 with Retry-After, before their bytes are read), streamed to a file in a private
folder of the store's scratch space (never into memory), each part within `BodyLimits.timeout`
seconds and the whole at `BodyLimits.min_rate` bytes a second after the first `BodyLimits.timeout`
seconds (408 otherwise), by threads of the gate's own pool, so that the pool that answers reads is
never taken by a slow client; a full disk is a 507. Whatever is refused leaves nothing behind.
"""

from __future__ import annotations

import errno
import logging
import math
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path as FilePath
from typing import TYPE_CHECKING, Annotated, TypeVar

import anyio
import anyio.from_thread
import anyio.to_thread
from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import ClientDisconnect

from zoo.errors import (
    ArtifactTooLargeError,
    CatalogError,
    StoreUnavailableError,
    UnknownArtifactError,
    UnknownNameError,
    UsageError,
    ZooError,
    excerpt,
)
from zoo.fetch import FULL_HASH
from zoo.catalog.tokens import READ_SCOPES
from zoo.context import current
from zoo.outputs import write_atomically
from zoo.service.sessions import COOKIE, Sessions, cross_origin, signed_in
from zoo.store import ArtifactStore

if TYPE_CHECKING:
    from zoo.service.answers import Answers

SHA256_PATTERN = f"^{FULL_HASH.pattern}$"
Sha256 = Annotated[str, Path(pattern=SHA256_PATTERN, description="64 lowercase hex digits")]
_bearer = HTTPBearer(auto_error=False, description="a token from `zoo token create`")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
STALE_UPLOAD_SECONDS = 24 * 3600
RETRY_AFTER = 5  # seconds a client refused by a full gate is asked to wait
#: The errors of a full disk (or a spent quota): 507, the server's fault, and passing.
DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
#: The headers of a refusal that leaves the body unread: the server closes the connection instead of reading it.
CLOSE = {"Connection": "close"}
_log = logging.getLogger("zoo.service")
_T = TypeVar("_T")


@dataclass(frozen=True)
class BodyLimits:
    """How request bodies (uploads, "try it" images) are bounded besides their size (``zoo serve`` options).

    `concurrent` bodies are read at once by one app (``--max-bodies``); each part of a
    body must come within `timeout` seconds (``--body-timeout``), and after the first
    `timeout` seconds the body must have come at `min_rate` bytes a second on average
    (``--min-body-rate``): a 1 KB/s trickle is cut, a slow but real link is not.
    """

    concurrent: int = 8
    timeout: float = 30.0
    min_rate: int = 64 << 10

    def __post_init__(self) -> None:
        if isinstance(self.concurrent, bool) or not isinstance(self.concurrent, int) or self.concurrent < 1:
            raise UsageError(f"the request bodies read at once (--max-bodies) must be a whole number, 1 or more, "
                             f"not {excerpt(self.concurrent)}")
        if (isinstance(self.timeout, bool) or not isinstance(self.timeout, (int, float))
                or not math.isfinite(self.timeout) or self.timeout <= 0):
            raise UsageError(f"the body timeout (--body-timeout) must be a number of seconds above 0, "
                             f"not {excerpt(self.timeout)}")
        if isinstance(self.min_rate, bool) or not isinstance(self.min_rate, int) or self.min_rate < 1:
            raise UsageError(f"the lowest body rate (--min-body-rate) must be a whole number of bytes a second, "
                             f"1 or more, not {excerpt(self.min_rate)}")


class Bodies:
    """One app's gate for request bodies (see the module docstring): admission, the threads bodies are
    written and their work done in, and the time limits of their reading."""

    def __init__(self, limits: BodyLimits = BodyLimits()) -> None:
        self.limits = limits
        self.reading = 0  # bodies admitted and not yet answered (changed on the event loop only)
        self.threads = anyio.CapacityLimiter(limits.concurrent)  # bound to the event loop on first use

    @contextmanager
    def accepting(self, store: ArtifactStore) -> Iterator[FilePath]:
        """Admit one body (503 with Retry-After when `BodyLimits.concurrent` are being read) and give it a private
        folder (`upload_folder`); a full disk met meanwhile is answered 507. For the event loop's thread."""
        if self.reading >= self.limits.concurrent:
            raise ApiError(503, f"the server is reading {self.reading} request bodies already, its limit "
                                f"(zoo serve --max-bodies); try again in {RETRY_AFTER} s",
                           {"Retry-After": str(RETRY_AFTER), **CLOSE})
        self.reading += 1
        try:
            with disk_space(), upload_folder(store) as folder:
                yield folder
        finally:
            self.reading -= 1

    async def receive(self, request: Request, target: FilePath, length: int, sha256: str | None = None) -> FilePath:
        """The request's body written to `target` (`write_atomically`: there only once it has the declared
        `sha256`, if any, and at most `length` bytes), in time (408 otherwise); 400 for a client that left."""
        try:
            written = await self.run(partial(write_atomically, target, self._chunks(request), sha256=sha256,
                                             max_bytes=length, origin="the upload"))
        except ClientDisconnect:
            raise ApiError(400, "the upload ended before its Content-Length; nothing was stored", CLOSE) from None
        return written.path

    async def run(self, work: Callable[[], _T]) -> _T:
        """`work()` in a thread of the bodies' own pool (never the one that answers reads)."""
        return await anyio.to_thread.run_sync(work, limiter=self.threads)

    def _chunks(self, request: Request) -> Iterator[bytes]:
        """The request's body, chunk by chunk as it arrives, for code in a worker thread; each chunk waited for
        until the sooner of the idle timeout and the moment the body would fall below the lowest rate."""
        stream, limits = request.stream(), self.limits
        started, received = time.monotonic(), 0

        async def next_chunk() -> bytes | None:
            now = time.monotonic()
            idle, slow = now + limits.timeout, started + limits.timeout + received / limits.min_rate
            with anyio.move_on_after(min(idle, slow) - now):
                try:
                    return await anext(stream)
                except StopAsyncIteration:
                    return None
            raise _too_slow(limits, idle <= slow or not received, received, time.monotonic() - started)

        while (chunk := anyio.from_thread.run(next_chunk)) is not None:
            received += len(chunk)
            if chunk:
                yield chunk


def _too_slow(limits: BodyLimits, idle: bool, received: int, seconds: float) -> ApiError:
    """The 408 of a body cut for time: it stopped, or never started (`idle`), or came too slowly."""
    if idle:
        why = f"sent nothing for {limits.timeout:g} s (zoo serve --body-timeout)"
    else:
        why = (f"came at {received / seconds / 1024:.1f} KiB/s, slower than this server's "
               f"{limits.min_rate / 1024:g} KiB/s (zoo serve --min-body-rate)")
    return ApiError(408, f"the upload {why}; nothing was stored", CLOSE)


@contextmanager
def disk_space() -> Iterator[None]:
    """A full disk (or quota) met in the block: 507 in one line, and one line in the log, not a traceback."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in DISK_FULL:
            raise
        _log.warning("refused a request: the disk is full (%s)", exc.strerror)
        raise ApiError(507, f"the server's disk is full ({exc.strerror}); nothing was stored; "
                            "try again once it has space", CLOSE) from None


@contextmanager
def upload_folder(store: ArtifactStore) -> Iterator[FilePath]:
    """A private folder for one body in the store's scratch folder ``uploads`` (`ArtifactStore.scratch`: a
    directory store's own file system), removed afterwards: publishing copies what it accepts into `store`,
    so a refused or broken upload leaves nothing there. Folders left by a server killed during an upload
    are removed by a later upload once they are a day old."""
    folder = store.scratch("uploads")
    _remove_stale(folder)
    root = FilePath(tempfile.mkdtemp(dir=folder))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _remove_stale(folder: FilePath) -> None:
    """Remove the upload folders in `folder` untouched for `STALE_UPLOAD_SECONDS` (no live upload is that idle)."""
    cutoff = time.time() - STALE_UPLOAD_SECONDS
    for entry in folder.iterdir():
        try:
            stale = entry.is_dir() and not entry.is_symlink() and entry.stat().st_mtime < cutoff
        except OSError:  # removed meanwhile by another worker
            continue
        if stale:
            shutil.rmtree(entry, ignore_errors=True)


@dataclass(frozen=True)
class ArtifactServing:
    """How a GET of a published file is answered (``zoo serve --artifacts``, ``--presign-expiry``; `zoo.service.blobs`):
    streamed by the service (`mode` "proxy"), or "redirect": 307 to a presigned URL of the object store, valid
    `expires_in` seconds (long enough to start a download, which needs the URL only to start: a resumed one asks the
    service again; short enough that a leaked URL soon says nothing)."""

    mode: str = "proxy"
    expires_in: int = 300

    @property
    def redirect(self) -> bool:
        return self.mode == "redirect"


@dataclass(frozen=True)
class Settings:
    """What one app serves and allows, what it answers from memory (`zoo.service.answers`), and its gate for
    request bodies; the catalog itself is ``$ZOO_REGISTRY_URL``'s."""

    store: ArtifactStore
    read_token_required: bool
    allowed_hosts: frozenset[str]
    max_upload_bytes: int
    answers: Answers
    bodies: Bodies = field(default_factory=Bodies)
    artifacts: ArtifactServing = ArtifactServing()
    sessions: Sessions = field(default_factory=Sessions)  # the web's sign-in (`zoo.service.sessions`)


class ApiError(Exception):
    """A refusal with its HTTP status; the message is the one line the client reads."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None,
                 kind: str | None = None) -> None:
        super().__init__(message)
        self.status, self.headers, self.kind = status, headers, kind


def status_of(exc: ZooError) -> int:
    """The HTTP status of a zoo error: whose fault it is, and whether trying again can help."""
    if isinstance(exc, (CatalogError, StoreUnavailableError)):
        return 503
    if isinstance(exc, (UnknownNameError, UnknownArtifactError)):
        return 404
    if isinstance(exc, ArtifactTooLargeError):
        return 413
    return 400


def require(credentials: HTTPAuthorizationCredentials | None, scopes: frozenset[str], what: str) -> None:
    """Refuse (401) a request without a live token, and (403) one whose token has none of `scopes`."""
    challenge = {"WWW-Authenticate": "Bearer"}
    if credentials is None:
        raise ApiError(401, f"{what} needs a token: send 'Authorization: Bearer <token>' "
                            "(made by `zoo token create NAME`)", challenge)
    granted = current().catalog.token_scopes(credentials.credentials)
    if granted is None:
        raise ApiError(401, "the token is unknown or revoked", challenge)
    if not granted & scopes:
        raise ApiError(403, f"{what} needs a token with the scope {' or '.join(sorted(scopes))}; "
                            f"this one has {', '.join(sorted(granted))}")


def reader(settings: Settings) -> Callable[[Request, Credentials], Awaitable[None]]:
    """The dependency of every read, API or page: a token (scope read or publish) only if the server asks for one
    (checked in a thread: it is a query), else nothing to do on the event loop. Without a bearer token, a
    GET or HEAD may present a web session instead (`zoo.service.sessions`)."""

    async def check(request: Request, credentials: Credentials) -> None:
        if settings.read_token_required:
            by_session = await settings.answers.run(partial(_read_allowed, settings.sessions, request, credentials))
            signed_in.set(by_session)

    return check


def _read_allowed(sessions: Sessions, request: Request, credentials: HTTPAuthorizationCredentials | None) -> bool:
    """Refuse a read as `require` does, unless it comes without a bearer token and with a session cookie that
    names a live token with a read scope, and is a GET or HEAD or else was sent from this server's own pages
    (a "try it" post); whether the session allowed it."""
    from_here = request.method in ("GET", "HEAD") or cross_origin(request) is False
    if credentials is None and from_here and COOKIE in request.cookies:
        if (sessions.scopes(request.cookies) or frozenset()) & READ_SCOPES:
            return True
    require(credentials, READ_SCOPES, "reading")
    return False


def declared_length(request: Request, limit: int) -> int:
    """The upload's declared Content-Length: needed (411), a number (400), at most `limit` (413)."""
    declared = request.headers.get("content-length")
    if declared is None:
        raise ApiError(411, "an upload needs a Content-Length header (the file's size in bytes)")
    if not (declared.isascii() and declared.isdigit()):
        raise ApiError(400, f"Content-Length {excerpt(declared)} is not a number of bytes")
    if int(declared) > limit:
        raise ApiError(413, f"the file is {int(declared)} bytes; this server accepts at most {limit} "
                            "(zoo serve --max-upload)")
    return int(declared)

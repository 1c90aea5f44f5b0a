"""What the service answers from memory: JSON answers computed once per catalog state, small published files,
and token checks (`Answers`).

The catalog's state (`zoo.catalog.api.Catalog.state`: its generation, renewed by every sync, and its changes
marker, renewed by every publish, alias, published export and learned hash) is read at most once per
``$ZOO_CATALOG_CHECK_INTERVAL`` seconds, by one request at a time: the requests that come meanwhile wait for
that one's reading instead of reading it too (single flight). While the state stays the same, an answer (a
page of models, a model's record, a published version...) is the JSON bytes computed the first time it was
asked (by one request; the others asking for it meanwhile wait for it), gzip-compressed once when it is large,
with a strong ETag made from its bytes: the ETag changes when, and only when, the answer does, and a client
that sends it back in ``If-None-Match`` gets 304. A 404 is kept too (a name that is unknown stays unknown until
the state changes). A new state drops everything kept, and a write made through this process (publishing,
an alias) reads the state again at the next request; other processes see it within the check interval.
Tokens are not kept: a revoked one is refused from the next request on (`zoo.service.common.reader`). A GET
whose URL was answered from memory is answered again before routing (`Remembered`).

Answers are computed by threads of a pool of their own (`COMPUTE_THREADS`, about the size of a catalog's
connection pool), so that a burst of new questions queues here rather than for database connections; an
answer that is kept is sent from the event loop without any thread. A published file up to `SMALL_FILE`
bytes is kept in memory once read (verified by its hash: `zoo.store.ArtifactStore.read`); a file's name is
its hash, so its bytes never change. Everything kept is bounded: `MAX_ANSWERS` answers and `MAX_ANSWER_BYTES`
of them, `MAX_FILE_BYTES` of files, the least recently used dropped first.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import anyio
import anyio.to_thread
import orjson
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from zoo.errors import ZooError
from zoo.service.common import ApiError, status_of

__all__ = ["Answer", "Answers", "Remembered", "encode"]

COMPUTE_THREADS = 8  # answers computed at once: a catalog engine's pool has 5 connections and 10 more on demand
MAX_ANSWERS = 4096  # answers kept
MAX_ANSWER_BYTES = 64 << 20  # bytes of answers kept (identity and gzip)
SMALL_FILE = 1 << 20  # published files up to this size are kept in memory
MAX_FILE_BYTES = 64 << 20  # bytes of published files kept
MAX_VALUES = 256  # intermediate results kept (the summaries a page of models is cut from, token scopes...)
GZIP_FROM = 1024  # bytes: smaller answers are sent as they are
JSON = b"application/json"
_REVALIDATE = b"no-cache"  # a client may keep an answer, and asks with its ETag whether it still holds
_T = TypeVar("_T")


def encode(value: Any) -> bytes:
    """`value` (plain data) as compact JSON bytes."""
    return orjson.dumps(value)


@dataclass(frozen=True)
class Answer:
    """One JSON answer as it is sent: its bytes, their ETag, and the gzip-compressed bytes of a large one."""

    body: bytes
    etag: str
    gzipped: bytes | None

    @classmethod
    def of(cls, value: Any) -> Answer:
        body = encode(value)
        etag = f'"{hashlib.blake2b(body, digest_size=16).hexdigest()}"'
        return cls(body, etag, gzip.compress(body, mtime=0) if len(body) >= GZIP_FROM else None)

    @property
    def size(self) -> int:
        return len(self.body) + len(self.gzipped or b"")

    def response(self, headers: Headers) -> Response:
        """This answer for a request with `headers`: 304 if it sends one of its ETags in ``If-None-Match``,
        gzip-compressed if it accepts that and the answer is large, else as it is."""
        zipped = self.gzipped is not None and accepts_gzip(headers.get("accept-encoding", ""))
        etag = f'{self.etag[:-1]}-gzip"' if zipped else self.etag
        if has_one_of(headers, self.etag, f'{self.etag[:-1]}-gzip"'):
            return _Sent(304, etag, b"", zipped)
        assert not zipped or self.gzipped is not None
        return _Sent(200, etag, self.gzipped if zipped else self.body, zipped)  # type: ignore[arg-type]


class _Sent(Response):
    """An answer's response as it is sent: status, ETag, body (gzip-compressed if `zipped`), and the headers
    of an answer kept in memory, made without Starlette's header handling."""

    def __init__(self, status: int, etag: str, body: bytes, zipped: bool) -> None:
        self.status_code, self.body, self.background = status, body, None
        self.raw_headers = [(b"etag", etag.encode()), (b"cache-control", _REVALIDATE), (b"vary", b"Accept-Encoding")]
        if status == 200:
            self.raw_headers += [(b"content-type", JSON), (b"content-length", str(len(body)).encode())]
            if zipped:
                self.raw_headers.append((b"content-encoding", b"gzip"))


def has_one_of(headers: Headers, *etags: str) -> bool:
    """Whether a request's ``If-None-Match`` names one of `etags`, or any (``*``)."""
    return bool({tag.strip() for tag in headers.get("if-none-match", "").split(",")} & {*etags, "*"})


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether an ``Accept-Encoding`` value accepts gzip (by name or ``*``, with a weight above 0)."""
    for item in accept_encoding.lower().split(","):
        coding, _, params = item.partition(";")
        if coding.strip() in {"gzip", "*"}:
            weight = params.strip().removeprefix("q=")
            try:
                return not params.strip() or float(weight) > 0
            except ValueError:
                return False
    return False


class _Flight:
    """A computation under way: the requests waiting for it, and its outcome once it is done."""

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.value: Any = None
        self.error: BaseException | None = None

    def result(self) -> Any:
        if self.error is not None:
            raise self.error.with_traceback(None)
        return self.value


class _Kept(Generic[_T]):
    """Values by key, the least recently used dropped first beyond `count` values or `size` units in all."""

    def __init__(self, count: int, size: int = math.inf, size_of: Callable[[Any], int] = lambda value: 0) -> None:
        self.count, self.size, self.size_of = count, size, size_of
        self.values: OrderedDict[Hashable, _T | BaseException] = OrderedDict()
        self.used = 0

    def get(self, key: Hashable) -> _T | BaseException | None:
        found = self.values.get(key)
        if found is not None:
            self.values.move_to_end(key)
        return found

    def put(self, key: Hashable, value: _T | BaseException) -> None:
        if key in self.values:
            return
        self.values[key] = value
        self.used += self.size_of(value)
        while len(self.values) > self.count or self.used > self.size:
            self.used -= self.size_of(self.values.popitem(last=False)[1])

    def clear(self) -> None:
        self.values.clear()
        self.used = 0


def _answer_size(value: Any) -> int:
    return value.size if isinstance(value, Answer) else 0


class Answers:
    """One app's answers from memory (see the module docstring), for the catalog whose state `read_state`
    reads (None: a catalog without one, whose answers are computed every time), checked at most every
    `interval` seconds. For the event loop's thread; computations run in threads of its own pool."""

    def __init__(self, read_state: Callable[[], str | None], interval: float) -> None:
        self.read_state, self.interval = read_state, interval
        self.threads = anyio.CapacityLimiter(COMPUTE_THREADS)
        self.state: str | None = None
        self.checked = -math.inf  # when the state was last read (time.monotonic)
        self.answers: _Kept[Answer] = _Kept(MAX_ANSWERS, MAX_ANSWER_BYTES, _answer_size)
        self.values: _Kept[Any] = _Kept(MAX_VALUES)
        self.files: _Kept[bytes] = _Kept(MAX_FILE_BYTES // 1024, MAX_FILE_BYTES, len)
        #: (path, query) of a GET -> the key of its answer, or ("file", SHA-256, headers) of a small published file
        self.targets: _Kept[Hashable] = _Kept(MAX_ANSWERS)
        self.flights: dict[tuple[str, Hashable], _Flight] = {}

    async def run(self, work: Callable[[], _T]) -> _T:
        """`work()` in a thread of the answers' pool; the thread's result stands even if the request that asked
        for it has gone (others may be waiting for it)."""
        with anyio.CancelScope(shield=True):
            return await anyio.to_thread.run_sync(work, limiter=self.threads)

    async def current_state(self) -> str | None:
        """The catalog's state, read again if it was read more than `interval` seconds ago (by one request
        at a time); everything kept is dropped when it changed."""
        if time.monotonic() - self.checked < self.interval:
            return self.state
        started, state = await self._flight(("state", None), lambda: (time.monotonic(), self.read_state()))
        if state is None or state != self.state:
            self.answers.clear()
            self.values.clear()
            self.targets.clear()
        self.state, self.checked = state, started
        return state

    def changed(self) -> None:
        """Read the state again at the next request: this process has just changed the catalog."""
        self.checked = -math.inf

    async def answer(self, request: Request, key: Hashable, compute: Callable[[], Any]) -> Response:
        """The answer to `request` whose JSON value `compute()` gives (in a thread): kept for the catalog's
        state under `key` (which must name everything the value depends on), with its 404s. The request's
        URL is remembered as one with that answer (`remembered`)."""
        answer = await self._kept("answer", self.answers, key, lambda: Answer.of(compute()))
        if request.method == "GET":
            self.targets.put(_target(request.scope), key)
        return answer.response(request.headers)

    def remember_file(self, request: Request, sha256: str, headers: dict[str, str]) -> None:
        """Remember the URL of `request`, a whole GET of the small published file `sha256` (kept: `file`), as one
        answered with its bytes and `headers` (`remembered`)."""
        self.targets.put(_target(request.scope), ("file", sha256, tuple(headers.items())))

    async def remembered(self, scope: Scope) -> Response | None:
        """The answer kept for the URL of the GET request `scope` in the catalog's current state, if one is:
        a JSON answer, or a whole small published file (not a Range of it)."""
        key = self.targets.get(_target(scope))
        if key is None or await self.current_state() is None:  # the state read, maybe anew: it may drop the key
            return None
        key, headers = self.targets.get(_target(scope)), Headers(scope=scope)
        if isinstance(key, tuple) and key[:1] == ("file",):
            data = self.files.get(key[1])
            if not isinstance(data, bytes) or "range" in headers:
                return None
            kept = dict(key[2])
            if has_one_of(headers, kept["ETag"]):
                return Response(status_code=304, headers=kept)
            return Response(data, headers=kept, media_type="application/octet-stream")
        found = self.answers.get(key) if key is not None else None
        return found.response(headers) if isinstance(found, Answer) else None

    async def value(self, key: Hashable, compute: Callable[[], _T]) -> _T:
        """`compute()` (in a thread), kept for the catalog's state under `key`."""
        return await self._kept("value", self.values, key, compute)

    async def file(self, sha256: str, read: Callable[[], bytes]) -> bytes:
        """The bytes of the small published file `sha256`, `read()` (verified by hash, in a thread) once."""
        kept = self.files.get(sha256)
        if isinstance(kept, bytes):
            return kept
        data = await self._flight(("file", sha256), read)
        self.files.put(sha256, data)
        return data

    async def _kept(self, kind: str, kept: _Kept[_T], key: Hashable, compute: Callable[[], _T]) -> _T:
        state = await self.current_state()
        if state is None:
            return await self.run(compute)
        found = kept.get(key)
        if found is None:
            try:
                found = await self._flight((kind, key), compute)
            except (ApiError, ZooError) as exc:
                if not _lasting(exc):
                    raise
                found = exc
            if self.state == state:  # else it may be an answer of the state before
                kept.put(key, found)
        if isinstance(found, BaseException):
            raise found.with_traceback(None)
        return found

    async def _flight(self, key: tuple[str, Hashable], compute: Callable[[], _T]) -> _T:
        """`compute()` in a thread, once for all the requests that ask for `key` while it runs (the catalog's
        state too: ``("state", None)``)."""
        flight = self.flights.get(key)
        if flight is not None:
            await flight.done.wait()
            return flight.result()
        self.flights[key] = flight = _Flight()
        try:
            flight.value = await self.run(compute)
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            del self.flights[key]
            flight.done.set()
        return flight.value


class Remembered:
    """ASGI middleware: a GET of a URL answered from memory in the catalog's current state (a JSON answer, a
    small published file) is answered again from memory, before routing, parameters and dependencies (used
    where reads need no token). Anything else, or a state that cannot be read, passes to the app."""

    def __init__(self, app: ASGIApp, answers: Answers) -> None:
        self.app, self.answers = app, answers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            try:
                answer = await self.answers.remembered(scope)
            except Exception:  # the catalog unreachable: the app answers, as it answers that
                answer = None
            if answer is not None:
                await answer(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _target(scope: Scope) -> tuple[str, bytes]:
    """The path and query of a request: what its URL asks."""
    return scope["path"], scope["query_string"]


def _lasting(exc: Exception) -> bool:
    """Whether a refusal holds as long as the catalog's state: an unknown name (404), not an unreachable
    catalog (503) or an internal error."""
    status = exc.status if isinstance(exc, ApiError) else status_of(exc) if isinstance(exc, ZooError) else 500
    return status == 404

"""Client mode: the zoo's lookups answered by a registry service (`zoo serve`) over HTTP.

With ``ZOO_REGISTRY_URL=http://HOST:PORT`` (or ``https://``) there is no catalog
database here: `zoo.context.open_catalog` makes an `HttpCatalog`, which answers the
`Catalog` interface from the service's ``/api/v1`` with the same typed records. Files the
service holds (published weights and exports) are fetched by `zoo.fetch` into the
weights cache, by their SHA-256, with the usual verification, ``$ZOO_OFFLINE`` and
``$ZOO_WEIGHTS_MIRROR`` rules. ``$ZOO_TOKEN`` is sent as the bearer token: publishing
needs one with the publish scope (``zoo token create`` on the service's machine).

The service's refusals are raised as the zoo error it names (`UnknownModelError`,
`UsageError`, ...; `ServiceError` for the rest), with its message made one line. An
answer is read into the typed records only once it is JSON of their shape, at most
`MAX_ANSWER` bytes; anything else (a redirect, a stall, a body too large) is one
`ServiceError` line. ``$ZOO_SERVICE_TIMEOUT`` (default 60 s) bounds the time a command
waits for the service in all (`time_budget`; a call of one catalog method where there is
no command), and how long a download from it may go without a byte. The token goes with
every request, file downloads included, and with a download's redirects to the service's
own origin, never elsewhere (`zoo.fetch`). This module imports neither torch nor
SQLAlchemy: a deployment host finds and fetches published exports through it
(`zoo.runtime.Predictor.from_registry`). A lookup needs httpx (imported without its
command line: `_httpx`) and the records; `zoo.fetch` is imported with the first file. The
requests of an `HttpCatalog` (one per process and settings) share one keep-alive connection.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from pathlib import Path
from types import ModuleType, UnionType
from typing import TYPE_CHECKING, Any, TypedDict, TypeVar, Union, get_args, get_origin, get_type_hints, is_typeddict
from urllib.parse import quote

from zoo import errors
from zoo.catalog.api import ExportCheck, FitCheck, Patterns, service_url
from zoo.catalog.ranking import check_limit
from zoo.errors import ServiceError, UsageError, ZooError, excerpt, first_line, said_by_peer
from zoo.records import (
    Measurement,
    ModelRecord,
    ModelSummary,
    PublishedExport,
    PublishedWeights,
    check_alias,
    parse_spec,
)
from zoo.settings import ARTIFACTS, REGISTRY_URL, SERVICE_TIMEOUT, TOKEN, Settings

if TYPE_CHECKING:
    import httpx

    from zoo.fetch import Fetched, Loaded, WeightsCache, WeightsFile
    from zoo.store import ArtifactStore

__all__ = ["HttpCatalog", "time_budget", "upload_progress"]

T = TypeVar("T")

API = "/api/v1"
PAGE = 1000  # models per request: the service's largest page
#: Bytes of one JSON answer read at most (a page of 1000 models is ~1.5 MB): parsed, JSON takes several times that.
MAX_ANSWER = 64 << 20
REQUEST_TIMEOUT_S = 120.0  # the longest wait for one request's next step (connecting: `CONNECT_TIMEOUT_S`)
CONNECT_TIMEOUT_S = 10.0
UPLOAD_RATE = 256 << 10  # bytes a second: an upload may take the budget and a second per this many bytes more
MAX_SAID = 500  # characters of a service's own message shown
#: Errors a service names that are raised here as themselves (their message is all they carry).
_PLAIN = {cls.__name__: cls for cls in (errors.UsageError, errors.PluginError, errors.CatalogError,
                                        errors.WeightsError, errors.ArtifactError, errors.UnknownArtifactError)}
_UNKNOWN = {cls.__name__: cls for cls in (errors.UnknownNameError, errors.UnknownModelError,
                                          errors.UnknownWeightsError)}


@dataclasses.dataclass
class _Budget:
    """The time requests to registry services may take together: until `deadline`, set at the first one."""

    deadline: float | None = None


_BUDGET: ContextVar[_Budget | None] = ContextVar("zoo_service_budget", default=None)
_UPLOAD_PROGRESS: ContextVar[bool] = ContextVar("zoo_upload_progress", default=False)


@contextlib.contextmanager
def time_budget() -> Iterator[None]:
    """Let every request to a registry service in this block share one time budget: ``$ZOO_SERVICE_TIMEOUT``
    seconds from the first request on. The command line runs each command in one; outside any, each call of
    an `HttpCatalog` method has its own. A block inside another shares the outer one's budget."""
    if _BUDGET.get() is not None:
        yield
        return
    token = _BUDGET.set(_Budget())
    try:
        yield
    finally:
        _BUDGET.reset(token)


@contextlib.contextmanager
def upload_progress() -> Iterator[None]:
    """Show a progress bar on stderr, when it is a terminal, for each file uploaded to a registry service in
    this block (``zoo publish`` does); elsewhere uploads are quiet, as a library's calls should be, and so is
    a command whose stderr is a file or a pipe (its errors stay one line there)."""
    token = _UPLOAD_PROGRESS.set(True)
    try:
        yield
    finally:
        _UPLOAD_PROGRESS.reset(token)


def _answer_checked(method: Callable[..., T]) -> Callable[..., T]:
    """`method`, run in a `time_budget`, with an answer of another shape than the records it is read into
    refused in one line (a `ServiceError`): a peer's answer is validated before use."""

    @functools.wraps(method)
    def checked(self: HttpCatalog, *args: Any, **kwargs: Any) -> T:
        try:
            with time_budget():
                return method(self, *args, **kwargs)
        except ZooError:
            raise
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            raise ServiceError(f"the registry service at {self.url} answered {method.__name__} with data of another "
                               f"shape ({type(exc).__name__}: {excerpt(str(exc), 200)})") from None

    return checked


class HttpCatalog:
    """The `zoo.catalog.api.Catalog` of a registry service's ``/api/v1``; files come into the weights `cache`."""

    def __init__(self, settings: Settings, store: ArtifactStore | None = None, cache: WeightsCache | None = None) -> None:
        httpx = _httpx()
        url = service_url(settings.registry_url)
        if url is None:
            raise UsageError(f"{REGISTRY_URL} must name a registry service (http://HOST:PORT) for a client of one")
        self.url, self.settings = url, settings  # files come from the service: no store here
        if cache is not None:  # else the one `settings` configure, opened at the first file (`cache`)
            self.cache = cache
        self.timeout = settings.service_timeout  # seconds: see `time_budget`
        headers = {"Authorization": f"Bearer {settings.token}"} if settings.token else {}
        # One client, so one keep-alive connection, for every request of this catalog (and so of the process).
        self._http = httpx.Client(base_url=url + API, headers=headers,  # redirects are not followed: refused
                                  transport=httpx.HTTPTransport(retries=2))  # retries: connections only

    def __repr__(self) -> str:
        return f"HttpCatalog({self.url!r})"

    @functools.cached_property
    def cache(self) -> WeightsCache:
        """The weights cache the service's files come into: the one given, else the one `settings` configure."""
        from zoo.fetch import WeightsCache  # here: a lookup (`zoo list`) fetches no file, so needs no zoo.fetch

        return WeightsCache.from_settings(self.settings)

    # -- the catalog --------------------------------------------------------------------

    def names(self, include: Patterns = None, exclude: Patterns = None, **filters: Any) -> list[tuple[str, str]]:
        return [(m.name, m.builder) for m in self.models(include, exclude, **filters)]

    @_answer_checked
    def models(self, include: Patterns = None, exclude: Patterns = None, *, sort: str | None = None,
               limit: int | None = None, task: str | None = None, plugin: str | None = None,
               pretrained: bool | None = None, max_params: int | None = None,
               min_metric: Mapping[str, float] | None = None, search: str | None = None) -> list[ModelSummary]:
        """The service's listing (sorted, or ranked by `search`, there), page by page until `limit` models or the
        last page."""
        params: dict[str, Any] = {"pattern": _listed(include), "exclude": _listed(exclude), "task": task,
                                  "plugin": plugin, "max_params": max_params, "sort": sort, "search": search,
                                  "pretrained": None if pretrained is None else str(bool(pretrained)).lower(),
                                  "min_metric": [f"{k}={v}" for k, v in (min_metric or {}).items()]}
        wanted = check_limit(limit)
        found: list[ModelSummary] = []
        while True:
            size = PAGE if wanted is None else min(PAGE, wanted - len(found))
            page = _shaped(self.get("/models", **params, limit=size, offset=len(found)), _Page, "the page")
            found += [_typed(ModelSummary.from_json(m)) for m in page["models"][:size]]
            if not page["models"] or len(found) >= min(page["total"], wanted or page["total"]):
                return found

    @_answer_checked
    def metric_names(self) -> list[str]:
        return _shaped(self.get("/metric-names"), list[str], "the metric names")

    @_answer_checked
    def describe(self, name: str) -> ModelRecord:
        return _typed(ModelRecord.from_json(self.get(f"/models/{_path(name)}")))

    @_answer_checked
    def plugins(self) -> list[dict[str, Any]]:
        """The service's plugins; `installed_here`: whether this machine has each (can build its models)."""
        from zoo.plugins import installed_here

        records = _shaped(self.get("/plugins"), list[_Plugin], "the plugins")
        here = installed_here((r["name"], r["distribution"], r["version"]) for r in records)
        return [{**record, "installed_here": mine} for record, mine in zip(records, here)]

    @_answer_checked
    def weights_owner(self, name: str, model: str | None) -> tuple[str, str]:
        found = _shaped(self.get("/weights", name=name, model=model), _Owner, "the weights' owner")
        return found["model"], found["member"]

    def known_sha256(self, url: str) -> str | None:
        return None  # the hashes a client uses come with the record of the model it builds

    def learn_sha256(self, url: str, sha256: str, size: int) -> None:
        return None  # the service's catalog is not this client's to write

    def weights_files(self) -> list[tuple[str, str, str | None]]:
        raise UsageError("with a registry service (ZOO_REGISTRY_URL=http://...), name the weights to verify")

    # -- published weights and exports --------------------------------------------------

    @_answer_checked
    def list_published(self, name: str | None = None) -> list[PublishedWeights]:
        if name is None:
            return [_typed(PublishedWeights.from_json(r)) for r in self.get("/published")]
        spec = parse_spec(name, bare=True)
        answer = self.get(f"/published/{spec.namespace}/{spec.name}")
        return [_typed(PublishedWeights.from_json(r)) for r in answer["versions"]]

    @_answer_checked
    def resolve_published(self, spec: str) -> PublishedWeights:
        parsed = parse_spec(spec)
        where = f"/published/{parsed.namespace}/{parsed.name}"
        if parsed.version is not None:
            where += f"/versions/{parsed.version}"
        elif parsed.alias is not None:
            where += f"/aliases/{parsed.alias}"
        else:
            where += "/latest"
        return _typed(PublishedWeights.from_json(self.get(where)))

    @_answer_checked
    def set_alias(self, name: str, alias: str, version: int) -> PublishedWeights:
        spec = parse_spec(name, bare=True)
        where = f"/published/{spec.namespace}/{spec.name}/aliases/{check_alias(alias)}"
        return _typed(PublishedWeights.from_json(self._json("PUT", where, params={"version": version})))

    @_answer_checked
    def publish_weights(self, model: str, file: Path, *, name: str, metrics: dict[str, float],
                        categories: list[str] | None, from_weights: str | None, description: str | None,
                        preprocessing: dict[str, Any] | None, check: FitCheck,
                        run: dict[str, Any] | None = None) -> PublishedWeights:
        """Upload `file`: the service checks it (`check` runs there). The run record, too large for a query,
        goes first in the body as JSON, its length in ``X-Zoo-Run-Length``."""
        if categories is not None and any("," in c for c in categories):
            raise UsageError("a registry service takes categories comma-separated, so a category name with ',' "
                             "cannot be sent; inherit the categories with from_weights (--from) instead")
        query = {"model": model, "metric": [f"{k}={v}" for k, v in metrics.items()],
                 "categories": ",".join(categories) if categories else None, "from": from_weights,
                 "description": description,
                 "preprocessing": json.dumps(preprocessing) if preprocessing is not None else None}
        spec = parse_spec(name, bare=True)
        prefix = json.dumps(run, ensure_ascii=False).encode() if run is not None else b""
        answer = self._upload(f"/published/{spec.namespace}/{spec.name}", file, query, prefix)
        return _typed(PublishedWeights.from_json(answer))

    @_answer_checked
    def publish_export(self, path: Path, metadata: Mapping[str, Any], *, check: ExportCheck) -> PublishedExport:
        """Upload the export at `path`: the service verifies it again (`check` runs there)."""
        return _typed(PublishedExport.from_json(self._upload("/exports", path, {})))

    @_answer_checked
    def find_export(self, model: str, weights: str) -> PublishedExport | None:
        try:
            return _typed(PublishedExport.from_json(self.get("/exports/latest", model=model, weights=weights)))
        except ServiceError as exc:
            if exc.status == 404:  # an unknown model or weights name is raised as such, not as a ServiceError
                return None
            raise

    @_answer_checked
    def exports(self, model: str | None = None, sha256: str | None = None) -> list[PublishedExport]:
        if sha256 is not None:
            try:
                return [_typed(PublishedExport.from_json(self.get(f"/exports/{_path(sha256)}")))]
            except ServiceError as exc:
                if exc.status == 404:
                    return []
                raise
        return [_typed(PublishedExport.from_json(r)) for r in self.get("/exports", model=model)]

    # -- measured metrics -----------------------------------------------------------------

    @_answer_checked
    def record_measurement(self, measurement: Measurement) -> Measurement:
        """POST the measurement as JSON: the service checks and stores it (a token of the publish scope)."""
        body = json.dumps(measurement.to_json(), ensure_ascii=False).encode()
        answer = self._json("POST", "/measurements", content=body, headers={"Content-Type": "application/json"})
        return _typed(Measurement.from_json(answer))

    @_answer_checked
    def measurements(self, model: str | None = None, weights: str | None = None) -> list[Measurement]:
        """The service's measurements; none from a service older than them (no such path: ``zoo show`` still
        shows the rest). An unknown model or weights name is raised as such."""
        try:
            found = self.get("/measurements", model=model, weights=weights)
        except ServiceError as exc:
            if exc.status == 404:
                return []
            raise
        return [_typed(Measurement.from_json(m)) for m in found]

    def published_bytes(self, published: PublishedWeights) -> Loaded:
        """The bytes of published weights, from the cache or the service, checked by their SHA-256."""
        from zoo.fetch import read_verified

        return read_verified(self._file(f"/weights/{published.sha256}", published.sha256, published.size),
                             progress=False, cache=self.cache)

    def export_file(self, export: PublishedExport) -> Fetched:
        """A verified local copy of a published export (kept in the weights cache by its SHA-256)."""
        from zoo.fetch import fetch

        return fetch(self._file(f"/exports/{export.sha256}/file", export.sha256, export.size),
                     progress=False, cache=self.cache)

    def published_file(self, published: PublishedWeights, *, progress: bool = False) -> Fetched:
        """A verified local copy of published weights (kept in the weights cache by their SHA-256)."""
        from zoo.fetch import fetch

        return fetch(self._file(f"/weights/{published.sha256}", published.sha256, published.size),
                     progress=progress, cache=self.cache)

    def _file(self, path: str, sha256: str, size: int) -> WeightsFile:
        """The service's file at `path`, to fetch with this client's token: `size` bytes of SHA-256 `sha256`, the
        download given up on after ``$ZOO_SERVICE_TIMEOUT`` seconds without a byte."""
        from zoo.fetch import WeightsFile

        return WeightsFile(f"{self.url}{API}{path}", sha256, self.settings.token, timeout=self.timeout, size=size)

    @_answer_checked
    def health(self) -> None:
        self.get("/health")

    def state(self) -> None:
        """None: the service's answers are not kept here (every lookup asks it)."""
        return None

    @_answer_checked
    def is_published(self, sha256: str, kind: str) -> bool:
        import httpx

        where = f"/weights/{_path(sha256)}" if kind == "weights" else f"/exports/{_path(sha256)}/file"
        try:
            status = self._http.head(where, timeout=self._timeout(self._deadline(), "HEAD", where)).status_code
        except httpx.TimeoutException:
            raise self._late("HEAD", where) from None
        except httpx.HTTPError as exc:
            raise ServiceError(f"the registry service at {self.url} did not answer HEAD {where}: "
                               f"{type(exc).__name__}: {first_line(exc)}") from None
        return status == 200

    def referenced_blobs(self) -> set[str]:
        raise UsageError(f"{REGISTRY_URL} names a registry service, and zoo gc runs where the catalog database and "
                         f"the artifact store are: run it with {REGISTRY_URL} naming that database and {ARTIFACTS} "
                         f"that store, as the service has them")

    # -- tokens are made where the service's catalog is ------------------------------------

    def create_token(self, name: str, scopes: list[str] | tuple[str, ...]) -> str:
        raise _no_tokens()

    def list_tokens(self) -> list[dict[str, Any]]:
        raise _no_tokens()

    def revoke_token(self, name: str) -> None:
        raise _no_tokens()

    def token_scopes(self, secret: str) -> frozenset[str] | None:
        raise _no_tokens()

    def live_token(self, *, secret: str | None = None, name: str | None = None) -> tuple[str, frozenset[str]] | None:
        raise _no_tokens()

    # -- this machine's exports: a client keeps no records (the file carries its provenance) --

    def local_exports(self) -> list[dict[str, Any]]:
        return []

    def local_export(self, path: str) -> tuple[dict[str, Any], dict[str, Any], str] | None:
        return None

    def record_local_export(self, path: str, values: Mapping[str, Any]) -> None:
        return None

    # -- HTTP -----------------------------------------------------------------------------

    def get(self, path: str, **params: Any) -> Any:
        """The JSON answer to GET `path` with the query `params` (None values left out)."""
        return self._json("GET", path, params=params)

    def _json(self, method: str, path: str, *, allowance: float = 0.0, **request: Any) -> Any:
        """The JSON answer to `method` `path`, within the time left of the budget (`time_budget`) and
        `allowance` seconds more (the time an upload may take to send)."""
        import httpx

        if "params" in request:
            request["params"] = {k: v for k, v in request["params"].items() if v is not None and v != []}
        deadline = self._deadline() + allowance
        try:
            with self._http.stream(method, path, timeout=self._timeout(deadline, method, path), **request) as response:
                body = _read_bounded(response, deadline)
        except (httpx.TimeoutException, _OutOfTime):
            raise self._late(method, path) from None
        except httpx.HTTPError as exc:
            raise ServiceError(f"the registry service at {self.url} did not answer {method} {path}: "
                               f"{type(exc).__name__}: {first_line(exc)}") from None
        if response.is_redirect:
            raise ServiceError(f"the registry service at {self.url} answered {method} {path} with a redirect "
                               f"({response.status_code} to {excerpt(response.headers.get('location', ''))}), "
                               f"which this client does not follow: set {REGISTRY_URL} to the address it "
                               f"answers at", status=response.status_code)
        if response.status_code >= 400:
            raise _refusal(response.status_code, body, self.url)
        try:
            return json.loads(body)  # not JSON: a ValueError, refused as another shape (`_answer_checked`)
        except RecursionError:
            raise ValueError("JSON nested too deeply") from None

    def _deadline(self) -> float:
        """When the budget of this request (`time_budget`) runs out: its block's, set now if this is its first
        request; outside any block, this request's own."""
        budget, now = _BUDGET.get(), time.monotonic()
        if budget is None:
            return now + self.timeout
        if budget.deadline is None:
            budget.deadline = now + self.timeout
        return budget.deadline

    def _timeout(self, deadline: float, method: str, path: str) -> httpx.Timeout:
        """The timeouts of one request: each step at most `REQUEST_TIMEOUT_S` and at most what is left before
        `deadline` (refused at once when nothing is)."""
        import httpx

        left = deadline - time.monotonic()
        if left <= 0:
            raise self._late(method, path)
        return httpx.Timeout(min(REQUEST_TIMEOUT_S, left), connect=min(CONNECT_TIMEOUT_S, left))

    def _late(self, method: str, path: str) -> ServiceError:
        """The error of a request that ran out of time."""
        return ServiceError(f"the registry service at {self.url} did not answer {method} {path} within "
                            f"{self.timeout:g} s, the time a command waits for its answers (${SERVICE_TIMEOUT}; an "
                            f"upload gets a second more per {UPLOAD_RATE >> 10} KiB)")

    def _upload(self, path: str, file: Path, params: Mapping[str, Any], prefix: bytes = b"") -> Any:
        """POST the regular file `file` as the body, with its SHA-256 declared and its length (and a progress bar
        in an `upload_progress` block); `prefix`, when given, goes before the file, its length declared in
        ``X-Zoo-Run-Length``."""
        from zoo import progress
        from zoo.fetch import counted, digest_of
        from zoo.outputs import open_regular

        with open_regular(file, only="only regular files are published") as f:  # before a byte is read
            sha256, size = digest_of(f)
            f.seek(0)
            headers = {"X-Zoo-SHA256": sha256, "Content-Length": str(len(prefix) + size),
                       "Content-Type": "application/octet-stream",
                       **({"X-Zoo-Run-Length": str(len(prefix))} if prefix else {})}
            with progress.bar(size, f"{file.name} (upload)", unit="B", show=_UPLOAD_PROGRESS.get()) as bar:

                def body() -> Iterator[bytes]:
                    if prefix:
                        yield prefix
                    yield from counted(f, bar.update)
                    bar.close()  # sent: the wait for the service's checks is not the upload's

                return self._json("POST", path, allowance=size / UPLOAD_RATE, params=dict(params),
                                  content=body(), headers=headers)


_HTTPX_IMPORT = threading.Lock()


def _httpx() -> ModuleType:
    """httpx, imported without its command-line module where nothing imported it yet. httpx 0.28's
    ``__init__`` imports ``httpx._main`` (rich, click and pygments: some 60 ms of a cold ``zoo list``) when
    they are installed, and falls back to a stub ``httpx.main`` when that import fails, as without its
    ``cli`` extra (encode/httpx#3547 would defer the import): that import is made to fail while httpx loads,
    and allowed again once it has (``import httpx._main`` works afterwards)."""
    with _HTTPX_IMPORT:
        if "httpx" not in sys.modules and "httpx._main" not in sys.modules:
            sys.modules["httpx._main"] = None  # type: ignore[assignment] - `import` raises ImportError for None
            try:
                import httpx  # noqa: F401 - the first import, without httpx._main
            finally:
                del sys.modules["httpx._main"]
    import httpx

    return httpx


def _no_tokens() -> UsageError:
    return UsageError(f"{REGISTRY_URL} names a registry service, and tokens are kept in the service's catalog: "
                      f"run zoo token on the service's machine, with {REGISTRY_URL} naming that database")


def _listed(value: str | Iterable[str] | None) -> list[str] | None:
    return None if value is None else [value] if isinstance(value, str) else list(value)


def _path(name: str) -> str:
    """`name` as URL path segments, each part of a qualified ``PLUGIN/NAME`` encoded on its own; a part that
    is empty, ``.`` or ``..`` (which would address another route) is refused in one line."""
    if not isinstance(name, str):
        raise UsageError(f"a name must be a string, not {type(name).__name__}")
    parts = name.split("/")
    if any(part in {"", ".", ".."} for part in parts):
        raise UsageError(f"{excerpt(name)} is not a name: its parts between '/' must not be empty, '.' or '..'")
    return "/".join(quote(part, safe="") for part in parts)


class _OutOfTime(Exception):
    """An answer still arriving when its budget ran out."""


def _read_bounded(response: httpx.Response, deadline: float) -> bytes:
    """The body of `response`, refused past `MAX_ANSWER` bytes (declared or received) and, if it still arrives
    after `deadline` (each read waits at most the request's timeout), by `_OutOfTime`."""
    declared = response.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared[:20]) > MAX_ANSWER:
        size = declared if len(declared) <= 20 else f"{declared[:20]}... ({len(declared)} digits)"
        raise ServiceError(f"the registry service answered {size} bytes; at most {MAX_ANSWER} are read",
                           status=response.status_code)
    body = bytearray()
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) > MAX_ANSWER:
            raise ServiceError(f"the registry service answered more than {MAX_ANSWER} bytes; at most that is read",
                               status=response.status_code)
        if time.monotonic() > deadline:
            raise _OutOfTime()
    return bytes(body)


# -- the shapes of answers ----------------------------------------------------------------


class _Page(TypedDict):
    """A page of ``GET /models``."""

    models: list[Any]  # each read as a `ModelSummary`
    total: int


class _Owner(TypedDict):
    """What ``GET /weights`` answers: the model that has the weights, and their member name."""

    model: str
    member: str


class _Failure(TypedDict):
    name: str
    error: str | None
    traceback: str | None


class _Shared(TypedDict):
    name: str
    answered_by: str


class _Plugin(TypedDict):
    """One plugin of ``GET /plugins`` (`zoo.catalog.plugin_records`, with the names it shares)."""

    name: str
    namespace: str
    distribution: str | None
    version: str | None
    status: str
    error: str | None
    models: int
    failures: list[_Failure]
    shared: list[_Shared]


def _typed(record: T) -> T:
    """`record` (a typed record read from an answer), refused with a `TypeError` naming the first field that
    does not hold what its annotation says (`from_json` reads whatever it is given)."""
    return _shaped(record, type(record), type(record).__name__)


def _shaped(value: Any, kind: Any, where: str) -> Any:
    """`value` if it is of `kind`; a `TypeError` naming the first part of it (from `where`) that is not."""
    mismatch = _mismatch(value, kind, where)
    if mismatch is not None:
        raise TypeError(mismatch)
    return value


def _mismatch(value: Any, kind: Any, where: str) -> str | None:
    """What part of `value` (called `where`) is not of `kind`, or None when it all is. `kind` is an annotation
    of the typed records: a class, ``X | None``, ``list[X]``, ``tuple[X, ...]``, ``dict[K, V]``, a dataclass or
    a TypedDict (whose keys must all be there; others may be), or `Any`."""
    origin, args = get_origin(kind), get_args(kind)
    if kind is Any:
        return None
    if origin in (Union, UnionType):
        return None if any(_mismatch(value, arm, where) is None for arm in args) else _not(value, kind, where)
    if origin in (list, tuple):
        if not isinstance(value, origin):
            return _not(value, kind, where)
        return next(filter(None, (_mismatch(item, args[0], f"{where}[{i}]") for i, item in enumerate(value))), None)
    if origin is dict:
        if not isinstance(value, dict):
            return _not(value, kind, where)
        return next(filter(None, (_mismatch(k, args[0], f"a key of {where}") or
                                  _mismatch(v, args[1], f"{where}[{excerpt(k, 40)}]") for k, v in value.items())), None)
    if is_typeddict(kind) or dataclasses.is_dataclass(kind):
        if not isinstance(value, dict if is_typeddict(kind) else kind):
            return _not(value, kind, where)
        return next(filter(None, (_field_mismatch(value, name, hint, where) for name, hint in _hints(kind).items())),
                    None)
    if kind is float:
        return None if isinstance(value, (int, float)) and not isinstance(value, bool) else _not(value, kind, where)
    if kind is int:
        return None if isinstance(value, int) and not isinstance(value, bool) else _not(value, kind, where)
    return None if isinstance(value, kind) else _not(value, kind, where)


def _field_mismatch(record: Any, name: str, kind: Any, where: str) -> str | None:
    """What is wrong with the field or key `name` of `record` (a dataclass or a dict), or None."""
    if isinstance(record, dict):
        if name not in record:
            return f"{where} has no {name!r}"
        return _mismatch(record[name], kind, f"{where}[{name!r}]")
    return _mismatch(getattr(record, name), kind, f"{where}.{name}")


@functools.lru_cache(maxsize=None)
def _hints(kind: type) -> dict[str, Any]:
    """The annotations of a dataclass's fields or a TypedDict's keys, resolved."""
    hints = get_type_hints(kind)
    return {f.name: hints[f.name] for f in dataclasses.fields(kind)} if dataclasses.is_dataclass(kind) else hints


def _not(value: Any, kind: Any, where: str) -> str:
    expected = kind.__name__ if isinstance(kind, type) else str(kind).replace("typing.", "")
    return f"{where} is {excerpt(value, 40)}, not {expected}"


def _refusal(status: int, body: bytes, url: str) -> errors.ZooError:
    """The error a refusal names, with the service's message made one line (`ServiceError` for anything else)."""
    try:
        answer = json.loads(body)
        message, kind = said_by_peer(str(answer["error"]), MAX_SAID), answer.get("kind")
    except (ValueError, KeyError, TypeError, AttributeError, IndexError, RecursionError):
        message, kind = f"HTTP {status} {body[:200].decode('utf-8', 'replace')!r}", None
    kind = kind if isinstance(kind, str) else None
    if kind in _UNKNOWN:
        return _UNKNOWN[kind].reported(message)
    if kind in _PLAIN:
        return _PLAIN[kind](message)
    if status == 401:
        message += f"; this client sends ${TOKEN} as its token"
    return ServiceError(f"the registry service at {url}: {message}", status=status)

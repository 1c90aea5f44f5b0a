"""Client mode: the zoo's lookups answered by a registry service (`zoo serve`) over HTTP.

With ``ZOO_REGISTRY_URL=http://HOST:PORT`` (or ``https://``) there is no catalog
database here: `zoo.catalog.api.open_catalog` makes an `HttpCatalog`, which answers the
`Catalog` interface from the service's ``/api/v1`` with the same typed records. Files the
service holds (published weights and exports) are fetched by `zoo.fetch` into the
weights cache, by their SHA-256, with the usual verification, ``$ZOO_OFFLINE`` and
``$ZOO_WEIGHTS_MIRROR`` rules. ``$ZOO_TOKEN`` is sent as the bearer token: publishing
needs one with the publish scope (``zoo token create`` on the service's machine).

The service's refusals are raised as the zoo error it names (`UnknownModelError`,
`UsageError`, ...; `ServiceError` for the rest), with its one-line message. This
module imports neither torch nor SQLAlchemy: a deployment host finds and fetches
published exports through it (`zoo.runtime.Predictor.from_registry`).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

from zoo import errors
from zoo.catalog.api import FitCheck, Patterns, service_url
from zoo.errors import ServiceError, UsageError, ZooError, excerpt
from zoo.records import ModelRecord, ModelSummary, PublishedExport, PublishedWeights, check_alias, parse_spec
from zoo.settings import REGISTRY_URL, TOKEN, Settings

if TYPE_CHECKING:
    import httpx

    from zoo.fetch import Fetched, Loaded, WeightsCache
    from zoo.store import ArtifactStore

__all__ = ["HttpCatalog"]

T = TypeVar("T")

API = "/api/v1"
PAGE = 1000  # models per request: the service's largest page
MAX_ANSWER = 256 << 20  # bytes of one JSON answer read at most (a listing of every timm model is ~2 MB)
#: Errors a service names that are raised here as themselves (their message is all they carry).
_PLAIN = {cls.__name__: cls for cls in (errors.UsageError, errors.PluginError, errors.CatalogError,
                                        errors.WeightsError, errors.ArtifactError, errors.UnknownArtifactError)}
_UNKNOWN = {cls.__name__: cls for cls in (errors.UnknownNameError, errors.UnknownModelError,
                                          errors.UnknownWeightsError)}


def _answer_checked(method: Callable[..., T]) -> Callable[..., T]:
    """`method`, with an answer of another shape than the records it is read into refused in one line (a
    `ServiceError`): a peer's answer is validated before use."""

    @functools.wraps(method)
    def checked(self: HttpCatalog, *args: Any, **kwargs: Any) -> T:
        try:
            return method(self, *args, **kwargs)
        except ZooError:
            raise
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            raise ServiceError(f"the registry service at {self.url} answered {method.__name__} with data of another "
                               f"shape ({type(exc).__name__}: {excerpt(str(exc), 80)})") from None

    return checked


class HttpCatalog:
    """The `zoo.catalog.api.Catalog` of a registry service's ``/api/v1``; files come into the weights `cache`."""

    def __init__(self, settings: Settings, store: ArtifactStore | None = None, cache: WeightsCache | None = None) -> None:
        import httpx

        url = service_url(settings.registry_url)
        if url is None:
            raise UsageError(f"{REGISTRY_URL} must name a registry service (http://HOST:PORT) for a client of one")
        self.url, self.settings, self.cache = url, settings, cache  # files come from the service: no store here
        headers = {"Authorization": f"Bearer {settings.token}"} if settings.token else {}
        self._http = httpx.Client(base_url=url + API, headers=headers, timeout=httpx.Timeout(120, connect=10),
                                  transport=httpx.HTTPTransport(retries=2))  # retries: connections only

    def __repr__(self) -> str:
        return f"HttpCatalog({self.url!r})"

    # -- the catalog --------------------------------------------------------------------

    def names(self, include: Patterns = None, exclude: Patterns = None, **filters: Any) -> list[tuple[str, str]]:
        return [(m.name, m.builder) for m in self.models(include, exclude, **filters)]

    @_answer_checked
    def models(self, include: Patterns = None, exclude: Patterns = None, *,
               task: str | None = None, plugin: str | None = None, pretrained: bool | None = None,
               max_params: int | None = None, min_metric: Mapping[str, float] | None = None) -> list[ModelSummary]:
        params: dict[str, Any] = {"pattern": _listed(include), "exclude": _listed(exclude), "task": task,
                                  "plugin": plugin, "max_params": max_params,
                                  "pretrained": None if pretrained is None else str(bool(pretrained)).lower(),
                                  "min_metric": [f"{k}={v}" for k, v in (min_metric or {}).items()],
                                  "limit": PAGE}
        found: list[ModelSummary] = []
        while True:
            page = self.get("/models", **params, offset=len(found))
            found += [ModelSummary.from_json(m) for m in page["models"]]
            if not page["models"] or len(found) >= page["total"]:
                return found

    @_answer_checked
    def describe(self, name: str) -> ModelRecord:
        return ModelRecord.from_json(self.get(f"/models/{_path(name)}"))

    @_answer_checked
    def plugins(self) -> list[dict[str, Any]]:
        """The service's plugins; `installed_here`: whether this machine has each (can build its models)."""
        from zoo.plugins import installed_here

        records = self.get("/plugins")
        here = installed_here((r["name"], r["distribution"], r["version"]) for r in records)
        return [{**record, "installed_here": mine} for record, mine in zip(records, here)]

    @_answer_checked
    def weights_owner(self, name: str, model: str | None) -> tuple[str, str]:
        found = self.get("/weights", name=name, model=model)
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
            return [PublishedWeights.from_json(r) for r in self.get("/published")]
        spec = parse_spec(name, bare=True)
        answer = self.get(f"/published/{spec.namespace}/{spec.name}")
        return [PublishedWeights.from_json(r) for r in answer["versions"]]

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
        return PublishedWeights.from_json(self.get(where))

    @_answer_checked
    def set_alias(self, name: str, alias: str, version: int) -> PublishedWeights:
        spec = parse_spec(name, bare=True)
        return PublishedWeights.from_json(self._json("PUT", f"/published/{spec.namespace}/{spec.name}/aliases/"
                                                            f"{check_alias(alias)}", params={"version": version}))

    @_answer_checked
    def publish_weights(self, model: str, file: Path, *, name: str, metrics: dict[str, float],
                        categories: list[str] | None, from_weights: str | None, description: str | None,
                        preprocessing: dict[str, Any] | None, check: FitCheck) -> PublishedWeights:
        """Upload `file`: the service checks it (`check` runs there)."""
        if categories is not None and any("," in c for c in categories):
            raise UsageError("a registry service takes categories comma-separated, so a category name with ',' "
                             "cannot be sent; inherit the categories with from_weights (--from) instead")
        query = {"model": model, "metric": [f"{k}={v}" for k, v in metrics.items()],
                 "categories": ",".join(categories) if categories else None, "from": from_weights,
                 "description": description,
                 "preprocessing": json.dumps(preprocessing) if preprocessing is not None else None}
        spec = parse_spec(name, bare=True)
        return PublishedWeights.from_json(self._upload(f"/published/{spec.namespace}/{spec.name}", file, query))

    @_answer_checked
    def publish_export(self, path: Path, metadata: Mapping[str, Any]) -> PublishedExport:
        return PublishedExport.from_json(self._upload("/exports", path, {}))

    @_answer_checked
    def find_export(self, model: str, weights: str) -> PublishedExport | None:
        try:
            return PublishedExport.from_json(self.get("/exports/latest", model=model, weights=weights))
        except ServiceError as exc:
            if exc.status == 404:  # an unknown model or weights name is raised as such, not as a ServiceError
                return None
            raise

    @_answer_checked
    def exports(self, model: str | None = None, sha256: str | None = None) -> list[PublishedExport]:
        if sha256 is not None:
            try:
                return [PublishedExport.from_json(self.get(f"/exports/{_path(sha256)}"))]
            except ServiceError as exc:
                if exc.status == 404:
                    return []
                raise
        return [PublishedExport.from_json(r) for r in self.get("/exports", model=model)]

    def published_bytes(self, published: PublishedWeights) -> Loaded:
        """The bytes of published weights, from the cache or the service, checked by their SHA-256."""
        from zoo.fetch import WeightsFile, read_verified

        return read_verified(WeightsFile(f"{self.url}{API}/weights/{published.sha256}", published.sha256,
                                         self.settings.token), progress=False, cache=self.cache)

    def export_file(self, export: PublishedExport) -> Fetched:
        """A verified local copy of a published export (kept in the weights cache by its SHA-256)."""
        from zoo.fetch import WeightsFile, fetch

        return fetch(WeightsFile(f"{self.url}{API}/exports/{export.sha256}/file", export.sha256, self.settings.token),
                     progress=False, cache=self.cache)

    def health(self) -> None:
        self.get("/health")

    def is_published(self, sha256: str, kind: str) -> bool:
        import httpx

        where = f"/weights/{_path(sha256)}" if kind == "weights" else f"/exports/{_path(sha256)}/file"
        try:
            status = self._http.head(where).status_code
        except httpx.HTTPError as exc:
            raise ServiceError(f"the registry service at {self.url} did not answer HEAD {where}: {exc}") from None
        return status == 200

    # -- tokens are made where the service's catalog is ------------------------------------

    def create_token(self, name: str, scopes: list[str] | tuple[str, ...]) -> str:
        raise _no_tokens()

    def list_tokens(self) -> list[dict[str, Any]]:
        raise _no_tokens()

    def revoke_token(self, name: str) -> None:
        raise _no_tokens()

    def token_scopes(self, secret: str) -> frozenset[str] | None:
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

    def _json(self, method: str, path: str, **request: Any) -> Any:
        import httpx

        if "params" in request:
            request["params"] = {k: v for k, v in request["params"].items() if v is not None and v != []}
        try:
            with self._http.stream(method, path, **request) as response:
                body = _read_bounded(response)
        except httpx.HTTPError as exc:
            raise ServiceError(f"the registry service at {self.url} did not answer {method} {path}: "
                               f"{type(exc).__name__}: {exc}") from None
        if response.status_code >= 400:
            raise _refusal(response.status_code, body, self.url)
        return json.loads(body)

    def _upload(self, path: str, file: Path, params: Mapping[str, Any]) -> Any:
        """POST the regular file `file` as the body, with its SHA-256 declared and its length."""
        from zoo.fetch import CHUNK, digest_of
        from zoo.outputs import open_regular

        with open_regular(file, only="only regular files are published") as f:  # before a byte is read
            sha256, size = digest_of(f)
            f.seek(0)
            headers = {"X-Zoo-SHA256": sha256, "Content-Length": str(size),
                       "Content-Type": "application/octet-stream"}
            return self._json("POST", path, params=dict(params), content=iter(lambda: f.read(CHUNK), b""),
                              headers=headers)


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


def _read_bounded(response: httpx.Response) -> bytes:
    """The body of `response`, refused past `MAX_ANSWER` bytes (declared or received)."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_ANSWER:
        raise ServiceError(f"the registry service answered {declared} bytes; at most {MAX_ANSWER} are read",
                           status=response.status_code)
    body = bytearray()
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) > MAX_ANSWER:
            raise ServiceError(f"the registry service answered more than {MAX_ANSWER} bytes; at most that is read",
                               status=response.status_code)
    return bytes(body)


def _refusal(status: int, body: bytes, url: str) -> errors.ZooError:
    """The error a refusal names, with the service's one line (`ServiceError` for anything else)."""
    try:
        answer = json.loads(body)
        message, kind = str(answer["error"]), answer.get("kind")
    except (ValueError, KeyError, TypeError):
        message, kind = f"HTTP {status} {body[:200].decode('utf-8', 'replace')!r}", None
    if kind in _UNKNOWN:
        return _UNKNOWN[kind].reported(message)
    if kind in _PLAIN:
        return _PLAIN[kind](message)
    if status == 401:
        message += f"; this client sends ${TOKEN} as its token"
    return ServiceError(f"the registry service at {url}: {message}", status=status)

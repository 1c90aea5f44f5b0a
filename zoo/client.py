"""Client mode: the zoo's lookups answered by a registry service (`zoo serve`) over HTTP.

With ``ZOO_REGISTRY_URL=http://HOST:PORT`` (or ``https://``) there is no catalog
database here: `zoo.registry`, `zoo.publish` and the command line ask the service's
``/api/v1`` instead (`service` returns its client, None in local mode). Files the
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

import json
import os
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from zoo import errors
from zoo.errors import ServiceError, UsageError, excerpt
from zoo.records import PublishedExport, PublishedWeights, parse_spec

if TYPE_CHECKING:
    import httpx

    from zoo.fetch import Fetched, Loaded

__all__ = ["Service", "service", "service_url"]

URL_ENV = "ZOO_REGISTRY_URL"  # the same variable as the catalog's URL: a database, or a service
TOKEN_ENV = "ZOO_TOKEN"
API = "/api/v1"
PAGE = 1000  # models per request: the service's largest page
MAX_ANSWER = 256 << 20  # bytes of one JSON answer read at most (a listing of every timm model is ~2 MB)
#: Errors a service names that are raised here as themselves (their message is all they carry).
_PLAIN = {cls.__name__: cls for cls in (errors.UsageError, errors.PluginError, errors.CatalogError,
                                        errors.WeightsError, errors.ArtifactError, errors.UnknownArtifactError)}
_UNKNOWN = {cls.__name__: cls for cls in (errors.UnknownNameError, errors.UnknownModelError,
                                          errors.UnknownWeightsError)}


def service_url() -> str | None:
    """``$ZOO_REGISTRY_URL`` when it names a registry service (``http://`` or ``https://``), else None."""
    raw = os.environ.get(URL_ENV, "").strip()
    if urlsplit(raw).scheme.lower() not in {"http", "https"}:
        return None
    parts = urlsplit(raw)
    if not parts.hostname or parts.query or parts.fragment:
        raise UsageError(f"{URL_ENV}={excerpt(raw)} is not a service address; expected http://HOST:PORT "
                         f"(or a database URL such as sqlite:///registry.db)")
    return raw.rstrip("/")


def service() -> Service | None:
    """The client of the registry service ``$ZOO_REGISTRY_URL`` names; None when it names a catalog database."""
    url = service_url()
    return _client(url, os.environ.get(TOKEN_ENV) or None) if url is not None else None


@lru_cache(maxsize=4)
def _client(url: str, token: str | None) -> Service:
    return Service(url, token)


class Service:
    """A registry service's ``/api/v1``, answered as plain data and `zoo.records` records."""

    def __init__(self, url: str, token: str | None = None) -> None:
        import httpx

        self.url = url
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=url + API, headers=headers, timeout=httpx.Timeout(120, connect=10),
                                  transport=httpx.HTTPTransport(retries=2))  # retries: connections only

    # -- the catalog --------------------------------------------------------------------

    def models(self, include: str | Iterable[str] | None = None, exclude: str | Iterable[str] | None = None, *,
               task: str | None = None, plugin: str | None = None, pretrained: bool | None = None,
               max_params: int | None = None, min_metric: Mapping[str, float] | None = None) -> list[dict[str, Any]]:
        """`zoo.summarize_models`' records, every page of them."""
        params: dict[str, Any] = {"pattern": _listed(include), "exclude": _listed(exclude), "task": task,
                                  "plugin": plugin, "max_params": max_params,
                                  "pretrained": None if pretrained is None else str(bool(pretrained)).lower(),
                                  "min_metric": [f"{k}={v}" for k, v in (min_metric or {}).items()],
                                  "limit": PAGE}
        found: list[dict[str, Any]] = []
        while True:
            page = self.get("/models", **params, offset=len(found))
            found += page["models"]
            if not page["models"] or len(found) >= page["total"]:
                return found

    def describe(self, name: str) -> dict[str, Any]:
        return self.get(f"/models/{_path(name)}")

    def plugins(self) -> list[dict[str, Any]]:
        return self.get("/plugins")

    def weights_owner(self, name: str, model: str | None) -> tuple[str, str]:
        """The qualified model whose weights enum holds weights `name`, and the member's name."""
        found = self.get("/weights", name=name, model=model)
        return found["model"], found["member"]

    # -- published weights and exports --------------------------------------------------

    def published(self, name: str | None = None) -> list[PublishedWeights]:
        if name is None:
            return [PublishedWeights.from_json(r) for r in self.get("/published")]
        spec = parse_spec(name, bare=True)
        answer = self.get(f"/published/{spec.namespace}/{spec.name}")
        return [PublishedWeights.from_json(r) for r in answer["versions"]]

    def resolve(self, text: str) -> PublishedWeights:
        """The published version `text` picks (``NS/NAME``, ``NS/NAME:2``, ``NS/NAME@ALIAS``)."""
        spec = parse_spec(text)
        where = f"/published/{spec.namespace}/{spec.name}"
        if spec.version is not None:
            where += f"/versions/{spec.version}"
        elif spec.alias is not None:
            where += f"/aliases/{spec.alias}"
        else:
            where += "/latest"
        return PublishedWeights.from_json(self.get(where))

    def set_alias(self, name: str, alias: str, version: int) -> PublishedWeights:
        spec = parse_spec(name, bare=True)
        return PublishedWeights.from_json(self._json("PUT", f"/published/{spec.namespace}/{spec.name}/aliases/"
                                                            f"{_path(alias)}", params={"version": version}))

    def publish_weights(self, model: str, file: str | os.PathLike[str], *, name: str, **params: Any) -> PublishedWeights:
        spec = parse_spec(name, bare=True)
        return PublishedWeights.from_json(self._upload(f"/published/{spec.namespace}/{spec.name}", Path(file),
                                                       {"model": model, **params}))

    def publish_export(self, path: str | os.PathLike[str]) -> PublishedExport:
        return PublishedExport.from_json(self._upload("/exports", Path(path), {}))

    def find_export(self, model: str, weights: str) -> PublishedExport | None:
        """The newest published export of `model` with `weights`; None when there is none."""
        try:
            return PublishedExport.from_json(self.get("/exports/latest", model=model, weights=weights))
        except ServiceError as exc:
            if exc.status == 404:  # an unknown model or weights name is raised as such, not as a ServiceError
                return None
            raise

    def weights_file(self, published: PublishedWeights, *, offline: bool | None = None) -> Loaded:
        """The bytes of published weights, from the cache or the service, checked by their SHA-256."""
        from zoo.fetch import WeightsFile, read_verified

        return read_verified(WeightsFile(f"{self.url}{API}/weights/{published.sha256}", published.sha256),
                             offline=offline, progress=False)

    def export_file(self, export: PublishedExport, *, offline: bool | None = None) -> Fetched:
        """A verified local copy of a published export (kept in the weights cache by its SHA-256)."""
        from zoo.fetch import WeightsFile, fetch

        return fetch(WeightsFile(f"{self.url}{API}/exports/{export.sha256}/file", export.sha256),
                     offline=offline, progress=False)

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
        from zoo.fetch import CHUNK, sha256_of
        from zoo.outputs import open_regular

        sha256 = sha256_of(file)
        with open_regular(file, only="only regular files are published") as f:
            size = os.fstat(f.fileno()).st_size
            headers = {"X-Zoo-SHA256": sha256, "Content-Length": str(size),
                       "Content-Type": "application/octet-stream"}
            return self._json("POST", path, params=dict(params), content=iter(lambda: f.read(CHUNK), b""),
                              headers=headers)


def _listed(value: str | Iterable[str] | None) -> list[str] | None:
    return None if value is None else [value] if isinstance(value, str) else list(value)


def _path(name: str) -> str:
    """`name` as a URL path segment (a qualified ``PLUGIN/NAME`` keeps its ``/``)."""
    if not isinstance(name, str):
        raise UsageError(f"a name must be a string, not {type(name).__name__}")
    return quote(name, safe="/")


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
        message += f"; this client sends ${TOKEN_ENV} as its token"
    return ServiceError(f"the registry service at {url}: {message}", status=status)

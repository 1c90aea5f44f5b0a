"""The pages over the catalog: the table, the compare view, a model's card, its layers and the categories
of its weights."""

from __future__ import annotations

import gc
import importlib.util
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace
from typing import Annotated, Any, NamedTuple

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse

from zoo.catalog.tokens import READ_SCOPES
from zoo.context import current
from zoo.errors import PluginError, UnknownWeightsError, first_line
from zoo.service.common import Credentials, require
from zoo.service.web import pages
from zoo.service.web.query import Filters, ModelRow, Page, catalog_rows, compare_points, menus, metric_names, page_of
from zoo.service.web.site import HEADERS, Web

#: The largest model the server builds for a per-layer summary asked with a token (scope read or publish): a
#: build costs the server memory (a 100M-parameter model about 1 GB while it runs).
SUMMARY_MAX_PARAMS = 100_000_000
#: The largest it builds for a reader without a token.
SUMMARY_MAX_PARAMS_ANONYMOUS = 25_000_000
#: Summaries are built one at a time per server process; this many requests at most build or wait for their
#: turn, each at most `SUMMARY_WAIT_SECONDS`; the others are refused at once (503, Retry-After).
SUMMARY_QUEUE = 4
SUMMARY_WAIT_SECONDS = 30.0
SUMMARY_RETRY_AFTER_SECONDS = 10
#: How many models' summaries are kept (a model's layers do not change).
SUMMARY_KEPT = 64
#: The response header that says how a summary was answered: built, cached, or refused (too large, no torch).
SUMMARY_HEADER = "X-Zoo-Summary"
#: The input of the per-layer summary by task: one batch of one image (two for optical flow).
_SUMMARY_INPUT = {"video": [[1, 3, 16, 112, 112]], "optical_flow": [[1, 3, 224, 224], [1, 3, 224, 224]]}


def router(site: Web) -> APIRouter:
    """The catalog, compare, model card and layer pages."""
    web = APIRouter(dependencies=[Depends(site.reader())], include_in_schema=False)
    html = site.html

    @web.get("/", response_class=HTMLResponse)
    def catalog(request: Request) -> HTMLResponse:
        return html(lambda: pages.catalog_page(_page(Filters.from_query(request.query_params))))

    @web.get("/compare", response_class=HTMLResponse)
    def compare(request: Request) -> HTMLResponse:
        def render() -> str:
            filters = Filters.from_query(request.query_params)
            rows = catalog_rows(filters)
            names = metric_names(rows)
            if not filters.metric and names:
                filters = Filters.from_query({**request.query_params, "metric": names[0]})
            points = compare_points(rows, filters.metric, filters.x) if filters.metric else []
            return pages.compare_page(_page(filters, rows), names, points)

        return html(render)

    @web.get("/models/{name:path}", response_class=HTMLResponse)
    def card(name: str) -> HTMLResponse:
        def render() -> str:
            record = current().catalog.describe(name).to_json()  # read only: no copy
            exports = [x.to_json() for x in current().catalog.exports(model=record["qualified_name"])]
            measured = [m.to_json() for m in current().catalog.measurements(record["qualified_name"])]
            return pages.card_page(record, exports, measured)

        return html(render)

    @web.get("/categories/{name:path}", response_class=HTMLResponse)
    def categories(name: str, weights: Annotated[str, Query(max_length=400)]) -> HTMLResponse:
        def render() -> str:
            record = current().catalog.describe(name)
            entry = next((w for w in record.weights if w.name == weights), None)
            if entry is None:
                raise UnknownWeightsError(weights, [w.name for w in record.weights])
            return pages.categories_page(record.name, entry.name, entry.meta.get("categories") or [])

        return html(render)

    @web.get("/layers/{name:path}", response_class=HTMLResponse)
    def layers(name: str, credentials: Credentials) -> HTMLResponse:
        answered: list[Summary] = []

        def render() -> str:
            answered.append(layer_summary(name, credentials))
            return pages.layers_page(name, answered[0].summary, answered[0].reason)

        try:
            page = html(render)
        except SummaryBusy as exc:
            return HTMLResponse(pages.error_page(503, str(exc)), status_code=503,
                                headers={**HEADERS, "Retry-After": str(SUMMARY_RETRY_AFTER_SECONDS)})
        if answered:
            page.headers[SUMMARY_HEADER] = answered[0].how
        return page

    return web


def _page(filters: Filters, rows: list[ModelRow] | None = None) -> Page:
    """The page of the catalog `filters` name, with the filter menus' choices."""
    tasks, plugins = menus()
    return replace(page_of(catalog_rows(filters) if rows is None else rows, filters), tasks=tasks, plugins=plugins)


def _image_size(record: dict[str, Any]) -> list[int]:
    """C, H, W of one input image of a model (`describe`'s record): its fixed input size, else what its
    default weights' preprocessing makes (channels and crop), else 3 x 224 x 224."""
    if record["input_size"]:
        return list(record["input_size"])
    default = next((w for w in record["weights"] if w["is_default"]), None)
    spec = (default or {}).get("transforms") or {}
    if spec.get("crop_size"):
        return [len(spec.get("channel_order", "RGB")), *spec["crop_size"]]
    return [3, 224, 224]


class Summary(NamedTuple):
    """A per-layer summary (`zoo.tools.summary.ModelSummary.to_json`) or why there is none, and how it was
    answered (`SUMMARY_HEADER`)."""

    summary: dict[str, Any] | None
    reason: str | None
    how: str = "built"


class SummaryBusy(Exception):
    """Too many per-layer summaries are being built or waited for: try again later (503, Retry-After)."""


class _Summaries:
    """Per-layer summaries by model identity: the last `SUMMARY_KEPT` kept, one built at a time."""

    def __init__(self) -> None:
        self._kept: OrderedDict[str, Summary] = OrderedDict()
        self._lock = threading.Lock()  # guards _kept and _queued
        self._building = threading.Lock()
        self._queued = 0  # requests building or waiting to build

    def get(self, key: str, build: Callable[[], Summary]) -> Summary:
        """The summary of `key`: kept, else made by `build` in turn (`SummaryBusy` when the queue is full or the
        turn does not come within `SUMMARY_WAIT_SECONDS`)."""
        kept = self._kept_as(key)
        if kept is not None:
            return kept
        with self._lock:
            if self._queued >= SUMMARY_QUEUE:
                raise SummaryBusy(_busy(key, f"{self._queued} requests are building or waiting for one"))
            self._queued += 1
        try:
            if not self._building.acquire(timeout=SUMMARY_WAIT_SECONDS):
                raise SummaryBusy(_busy(key, f"its turn did not come within {SUMMARY_WAIT_SECONDS:g} s"))
            try:
                kept = self._kept_as(key)  # made while this request waited
                return kept if kept is not None else self._keep(key, build())
            finally:
                self._building.release()
        finally:
            with self._lock:
                self._queued -= 1

    def _kept_as(self, key: str) -> Summary | None:
        with self._lock:
            kept = self._kept.get(key)
            if kept is not None:
                self._kept.move_to_end(key)
        return kept._replace(how="cached") if kept is not None else None

    def _keep(self, key: str, made: Summary) -> Summary:
        with self._lock:
            self._kept[key] = made
            while len(self._kept) > SUMMARY_KEPT:
                self._kept.popitem(last=False)
        return made


_SUMMARIES = _Summaries()


def _busy(name: str, why: str) -> str:
    """The one line of a `SummaryBusy` refusing model `name`'s summary."""
    return (f"the server builds one per-layer summary at a time and is busy ({why}); try again in "
            f"{SUMMARY_RETRY_AFTER_SECONDS} s, or run zoo summary {name} where the model's plugin is installed")


def layer_summary(name: str, credentials: Credentials = None) -> Summary:
    """`zoo.tools.summary`'s per-layer summary of catalog model `name` (no weights), or why the server will not
    make one: torch or the model's plugin is not importable here, or the model is larger than the server builds
    (`SUMMARY_MAX_PARAMS` with a token, checked as every read is; `SUMMARY_MAX_PARAMS_ANONYMOUS` without).
    Kept by the model's qualified name, however it was spelled; built one at a time (`SummaryBusy`)."""
    record = current().catalog.describe(name).to_json()  # read only: no copy
    if importlib.util.find_spec("torch") is None:
        return Summary(None, "The per-layer summary needs torch on the server (pip install 'zoo-registry[torch]'); it has none.",
                       "refused")
    refused = _too_large(record, credentials)
    if refused is not None:
        return Summary(None, refused, "refused")
    return _SUMMARIES.get(record["qualified_name"], lambda: _summarize(record))


def _too_large(record: dict[str, Any], credentials: Credentials) -> str | None:
    """Why the model of `record` is too large to build for this request's reader; None if it is not."""
    params = record["num_params"] or 0
    if params <= SUMMARY_MAX_PARAMS_ANONYMOUS:
        return None
    alternative = f"run zoo summary {record['name']} --input SIZE instead."
    if credentials is None:
        return (f"{record['name']} has {params:,} parameters: more than the server builds for a summary without a "
                f"token ({SUMMARY_MAX_PARAMS_ANONYMOUS:,}; {SUMMARY_MAX_PARAMS:,} with a read token); {alternative}")
    require(credentials, READ_SCOPES, "a per-layer summary with a token")
    if params > SUMMARY_MAX_PARAMS:
        return (f"{record['name']} has {params:,} parameters: more than the server builds for a summary "
                f"({SUMMARY_MAX_PARAMS:,}); {alternative}")
    return None


def _summarize(record: dict[str, Any]) -> Summary:
    """Build the model of `record` (no weights), summarise one forward pass, and free it again."""
    from zoo.tools.summary import catalog_model, summarize

    size = _SUMMARY_INPUT.get(record["task"], [[1, *_image_size(record)]])
    try:
        model = catalog_model(record["qualified_name"])
    except (ImportError, PluginError) as exc:  # its plugin cannot be imported here, or its builder failed
        return Summary(None, f"The server cannot build {record['qualified_name']}: {first_line(exc)}")
    try:
        return Summary(summarize(model, size, depth=2, task=record["task"]).to_json(), None)
    finally:
        del model
        gc.collect()  # a model's modules refer to each other: freed now, not at some later collection

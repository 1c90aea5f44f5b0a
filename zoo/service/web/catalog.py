"""The pages over the catalog: the table, the compare view, a model's card and its layers."""

from __future__ import annotations

import importlib.util
from dataclasses import replace
from functools import lru_cache
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from zoo.context import current
from zoo.service.web import pages
from zoo.service.web.query import Filters, ModelRow, Page, catalog_rows, compare_points, menus, metric_names, page_of
from zoo.service.web.site import Web

#: The largest model the server builds for a per-layer summary: any reader may ask, and it costs memory.
SUMMARY_MAX_PARAMS = 100_000_000
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
            return pages.card_page(record, exports)

        return html(render)

    @web.get("/layers/{name:path}", response_class=HTMLResponse)
    def layers(name: str) -> HTMLResponse:
        return html(lambda: pages.layout(f"{name}: layers", pages.layers_fragment(*layer_summary(name))))

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


@lru_cache(maxsize=32)
def layer_summary(name: str) -> tuple[dict[str, Any] | None, str | None]:
    """`zoo.tools.summary`'s per-layer summary of catalog model `name` (no weights), or why the server cannot
    make one: torch or the model's plugin is not importable here, or the model is larger than
    `SUMMARY_MAX_PARAMS`. Kept: a model's layers do not change."""
    record = current().catalog.describe(name).to_json()  # read only: no copy
    if importlib.util.find_spec("torch") is None:
        return None, "The per-layer summary needs torch on the server (pip install 'zoo[torch]'); it has none."
    if (record["num_params"] or 0) > SUMMARY_MAX_PARAMS:
        return None, (f"{record['name']} has {record['num_params']:,} parameters: more than the server builds for a "
                      f"summary ({SUMMARY_MAX_PARAMS:,}); run zoo summary {record['name']} --input SIZE instead.")
    from zoo.tools.summary import catalog_model, summarize

    size = _SUMMARY_INPUT.get(record["task"], [[1, *_image_size(record)]])
    try:
        model = catalog_model(record["qualified_name"])
    except ImportError as exc:
        return None, f"The plugin of {record['qualified_name']} cannot be imported on the server: {exc}"
    return summarize(model, size, depth=2, task=record["task"]).to_json(), None

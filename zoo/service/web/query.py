"""What the web catalog shows that `zoo.registry.summarize_models` does not: each model's headline
metric (its best value over the model's weights), its published versions and exports, and, for the
compare view, one chosen metric and the GFLOPS of the weights that reach it.

Read from the current context's catalog (a `SqlCatalog`: `zoo.catalog.browse` reads every model at
once), then joined to the summaries by qualified name. Filtering, sorting and pagination of those
rows happen here, in Python: the filters are `summarize_models`' own, so the web catalog lists
exactly what ``zoo list`` lists.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any
from urllib.parse import urlencode

from zoo.catalog.search import MAX_SEARCH, words
from zoo.context import current
from zoo.errors import UsageError, excerpt
from zoo.registry import summarize_models
from zoo.text import parse_count, parse_metric

#: Columns the catalog table sorts by (the URL's ``sort``), in the order shown.
COLUMNS = ("name", "task", "plugin", "params", "metric", "weights", "published")
PER_PAGE, MAX_PER_PAGE = 50, 500
#: What the compare view plots a metric against (the URL's ``x``).
X_AXES = ("params", "gflops")
_WILDCARDS = set("*?[")


@dataclass(frozen=True)
class Filters:
    """One view of the catalog, as its URL holds it: `summarize_models`' filters, sort and page."""

    q: str = ""  # an fnmatch pattern; text without wildcards finds names containing it, and searches (`search`)
    task: str = ""
    plugin: str = ""
    max_params: int | None = None
    min_metric: str = ""  # [DATASET:]METRIC=VALUE
    sort: str = "name"
    desc: bool = False
    page: int = 1
    per: int = PER_PAGE
    metric: str = ""  # the compare view's DATASET:METRIC (empty: the most common one)
    x: str = "params"

    @classmethod
    def from_query(cls, params: Mapping[str, str]) -> Filters:
        """The view a URL's query parameters name; a bad value is a one-line `UsageError`."""
        sort = params.get("sort", "name")
        if sort not in COLUMNS:
            raise UsageError(f"sort {excerpt(sort)} is not a column; use one of {', '.join(COLUMNS)}")
        x = params.get("x", "params")
        if x not in X_AXES:
            raise UsageError(f"x {excerpt(x)} is not an axis; use one of {', '.join(X_AXES)}")
        order = params.get("order", "asc")
        if order not in ("asc", "desc"):
            raise UsageError(f"order {excerpt(order)} is not asc or desc")
        min_metric = params.get("min_metric", "").strip()
        if min_metric:
            parse_metric(min_metric)
        return cls(q=params.get("q", "").strip(), task=params.get("task", "").strip(),
                   plugin=params.get("plugin", "").strip(), max_params=_count(params.get("max_params", "")),
                   min_metric=min_metric, sort=sort, desc=order == "desc",
                   page=_whole(params.get("page", ""), "page", 1, 1, None),
                   per=_whole(params.get("per", ""), "per", PER_PAGE, 1, MAX_PER_PAGE),
                   metric=params.get("metric", "").strip(), x=x)

    def query(self, **changes: Any) -> str:
        """``?...``: the URL query of this view with `changes`, defaults left out (short bookmarks)."""
        view = replace(self, **changes)
        pairs = {"q": view.q, "task": view.task, "plugin": view.plugin,
                 "max_params": "" if view.max_params is None else str(view.max_params),
                 "min_metric": view.min_metric, "sort": "" if view.sort == "name" else view.sort,
                 "order": "desc" if view.desc else "", "page": "" if view.page == 1 else str(view.page),
                 "per": "" if view.per == PER_PAGE else str(view.per), "metric": view.metric,
                 "x": "" if view.x == "params" else view.x}
        kept = {k: v for k, v in pairs.items() if v}
        return "?" + urlencode(kept) if kept else "?"

    @property
    def patterns(self) -> list[str] | None:
        """`summarize_models`' include patterns for `q`."""
        if not self.q:
            return None
        return [self.q if _WILDCARDS & set(self.q) else f"*{self.q}*"]

    @property
    def search(self) -> str | None:
        """`summarize_models`' full-text search for `q`: text without wildcards that has words (at most
        `MAX_SEARCH` characters of it); None otherwise."""
        if _WILDCARDS & set(self.q) or not words(self.q):
            return None
        return self.q[:MAX_SEARCH]


def _whole(text: str, name: str, default: int, low: int, high: int | None) -> int:
    """`text` as a whole number from `low` to `high`; empty: `default`."""
    if not text.strip():
        return default
    if not (text.strip().isascii() and text.strip().isdigit()) or int(text) < low or (high is not None and int(text) > high):
        upper = f" to {high}" if high is not None else " or more"
        raise UsageError(f"{name} {excerpt(text)} is not a whole number from {low}{upper}")
    return int(text)


def _count(text: str) -> int | None:
    """A parameter count as ``zoo list --max-params`` reads it (10M, 1.5k, 25557032); empty: None."""
    return parse_count(text, "max params") if text.strip() else None


@dataclass(frozen=True)
class ModelRow:
    """One model of the catalog table."""

    name: str  # the name that reaches it
    qualified_name: str
    task: str
    plugin: str
    params: int | None
    weights: int
    metric: str | None  # DATASET:METRIC of its headline metric
    metric_value: float | None  # the best value of it over the model's weights
    published: int  # published weights versions
    exports: int  # published exports

    def key(self, column: str) -> Any:
        """This row's value in `column` (`COLUMNS`)."""
        return {"name": self.name, "task": self.task, "plugin": self.plugin, "params": self.params,
                "metric": self.metric_value, "weights": self.weights, "published": self.published}[column]


@dataclass(frozen=True)
class Page:
    """The rows of one page of a view, and how many the filters found."""

    rows: list[ModelRow]
    total: int
    filters: Filters
    tasks: list[str] = field(default_factory=list)  # every task and plugin, for the filter menus
    plugins: list[str] = field(default_factory=list)

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.filters.per))


def catalog_rows(filters: Filters) -> list[ModelRow]:
    """Every model the filters find (`summarize_models`), with its headline metric and published counts: for text
    without wildcards, the models whose names contain it and those a full-text search for it finds."""
    min_metric = dict([parse_metric(filters.min_metric)]) if filters.min_metric else None
    listing = partial(summarize_models, task=filters.task or None, plugin=filters.plugin or None,
                      max_params=filters.max_params, min_metric=min_metric)
    found = listing(filters.patterns)
    if filters.search is not None:
        named = {r["qualified_name"] for r in found}
        found += [r for r in listing(search=filters.search) if r["qualified_name"] not in named]
    facts = current().catalog.model_facts()
    return [ModelRow(r["name"], r["qualified_name"], r["task"], r["plugin"], r["num_params"], len(r["weights"]),
                     *facts.headline.get(r["qualified_name"], (None, None)),
                     facts.published.get(r["qualified_name"], 0), facts.exports.get(r["qualified_name"], 0))
            for r in found]


def page_of(rows: Sequence[ModelRow], filters: Filters) -> Page:
    """The rows of the page `filters` names, sorted by its column (empty values last either way)."""
    known = [r for r in rows if r.key(filters.sort) is not None]
    empty = [r for r in rows if r.key(filters.sort) is None]
    known.sort(key=lambda r: (r.key(filters.sort), r.name), reverse=filters.desc)
    ordered = known + sorted(empty, key=lambda r: r.name)
    start = (filters.page - 1) * filters.per
    return Page(ordered[start:start + filters.per], len(rows), filters)


def menus() -> tuple[list[str], list[str]]:
    """Every task and every plugin namespace of the catalog, sorted: what the filter menus offer."""
    return current().catalog.menus()


# -- the compare view ------------------------------------------------------------------


@dataclass(frozen=True)
class Point:
    """One model in the compare view: its x (parameters or GFLOPS) and its best value of the metric."""

    row: ModelRow
    x: float
    y: float
    pareto: bool = False


def metric_names(rows: Iterable[ModelRow]) -> list[str]:
    """The DATASET:METRIC names of `rows`' models, the most common first."""
    counts: dict[str, int] = {}
    for row in rows:
        if row.metric:
            counts[row.metric] = counts.get(row.metric, 0) + 1
    return sorted(counts, key=lambda m: (-counts[m], m))


def compare_points(rows: Sequence[ModelRow], metric: str, x: str) -> list[Point]:
    """`rows`' models that have `metric` (DATASET:METRIC) and an x value, the Pareto front marked:
    no other model has at most its x and a higher value."""
    dataset, _, name = metric.rpartition(":")
    if not dataset or not name:
        raise UsageError(f"metric {excerpt(metric)} is not DATASET:METRIC, e.g. ImageNet-1K:acc@1")
    by_name = {r.qualified_name: r for r in rows}
    best = current().catalog.best_values(dataset, name)
    points = []
    for qualified, (value, gflops) in best.items():
        row = by_name.get(qualified)
        if row is None:
            continue
        x_value = row.params if x == "params" else gflops
        if isinstance(x_value, (int, float)) and x_value > 0:
            points.append(Point(row, float(x_value), float(value)))
    return _pareto(points)


def _pareto(points: list[Point]) -> list[Point]:
    """`points` by x, those on the front (no point with smaller or equal x has a higher y) marked."""
    ordered = sorted(points, key=lambda p: (p.x, -p.y))
    marked, best = [], -math.inf
    for point in ordered:
        on_front = point.y > best
        best = max(best, point.y)
        marked.append(replace(point, pareto=on_front))
    return marked

"""What the web catalog shows that `zoo.registry.summarize_models` does not: each model's headline
metric (its best value over the model's weights), its published versions and exports, and, for the
compare view, one chosen metric and the GFLOPS of the weights that reach it.

Read with SQLAlchemy Core from `zoo.catalog.tables`, one query per fact for every model at once
(a catalog of 10,000 models is read in a few queries), then joined to the summaries by qualified
name. Filtering, sorting and pagination of those rows happen here too, in Python: the filters are
`summarize_models`' own, so the web catalog lists exactly what ``zoo list`` lists.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import Connection, func, select

from zoo.catalog.fingerprint import ensure_current
from zoo.catalog.tables import GENERATION_KEY, catalog_state, metrics, models, plugins, published_exports, published_weights, weights
from zoo.errors import UsageError, excerpt
from zoo.registry import summarize_models
from zoo.text import parse_count, parse_metric

#: Columns the catalog table sorts by (the URL's ``sort``), in the order shown.
COLUMNS = ("name", "task", "plugin", "params", "metric", "weights", "published")
PER_PAGE, MAX_PER_PAGE = 50, 500
#: What the compare view plots a metric against (the URL's ``x``).
X_AXES = ("params", "gflops")
_WILDCARDS = set("*?[")
_HEADLINES: dict[tuple[str, str | None], dict[str, tuple[str, float]]] = {}  # see _headline_metrics


@dataclass(frozen=True)
class Filters:
    """One view of the catalog, as its URL holds it: `summarize_models`' filters, sort and page."""

    q: str = ""  # an fnmatch pattern; text without wildcards matches names containing it
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


def _whole(text: str, name: str, default: int, low: int, high: int | None) -> int:
    """`text` as a whole number from `low` to `high`; empty: `default`."""
    if not text.strip():
        return default
    if not text.strip().isdigit() or int(text) < low or (high is not None and int(text) > high):
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
    """Every model the filters find (`summarize_models`), with its headline metric and published counts."""
    min_metric = dict([parse_metric(filters.min_metric)]) if filters.min_metric else None
    found = summarize_models(filters.patterns, task=filters.task or None, plugin=filters.plugin or None,
                             max_params=filters.max_params, min_metric=min_metric)
    with ensure_current().connect() as conn:
        headline = _headline_metrics(conn)
        published = _counts(conn, published_weights)
        exported = _counts(conn, published_exports)
    return [ModelRow(r["name"], r["qualified_name"], r["task"], r["plugin"], r["num_params"], len(r["weights"]),
                     *headline.get(r["qualified_name"], (None, None)), published.get(r["qualified_name"], 0),
                     exported.get(r["qualified_name"], 0))
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
    with ensure_current().connect() as conn:
        tasks = sorted(conn.scalars(select(models.c.task).distinct()))
        namespaces = sorted(conn.scalars(select(plugins.c.namespace).where(plugins.c.status == "loaded")))
    return tasks, namespaces


def _qualified() -> Any:
    """Each model's ``PLUGIN/NAME`` and id, as columns of a join of models and plugins."""
    return models.join(plugins, models.c.plugin_id == plugins.c.id)


def _headline_metrics(conn: Connection) -> dict[str, tuple[str, float]]:
    """Each model's headline metric (the first metric of its default weights, else of its first weights)
    and the best value any of its weights reaches on it, by qualified name; read once per catalog
    generation (only a sync changes weights and metrics, and it makes a new generation)."""
    generation = conn.scalar(select(catalog_state.c.value).where(catalog_state.c.key == GENERATION_KEY))
    key = (conn.engine.url.render_as_string(), generation)
    if generation is None or key not in _HEADLINES:
        _HEADLINES.clear()  # one catalog per process: keep the newest generation only
        _HEADLINES[key] = _read_headline_metrics(conn)
    return _HEADLINES[key]


def _read_headline_metrics(conn: Connection) -> dict[str, tuple[str, float]]:
    """`_headline_metrics`, read from the catalog."""
    query = (select(plugins.c.namespace, models.c.name, metrics.c.dataset, metrics.c.name, metrics.c.value)
             .select_from(_qualified().join(weights, weights.c.model_id == models.c.id)
                          .join(metrics, metrics.c.weights_id == weights.c.id))
             .order_by(models.c.id, weights.c.is_default.desc(), weights.c.id, metrics.c.id))
    found: dict[str, tuple[str, float]] = {}
    for namespace, name, dataset, metric, value in conn.execute(query):
        qualified, label = f"{namespace}/{name}", f"{dataset}:{metric}"
        first = found.setdefault(qualified, (label, value))
        if first[0] == label and value > first[1]:
            found[qualified] = (label, value)
    return found


def _counts(conn: Connection, table: Any) -> dict[str, int]:
    """How many rows of `table` (published weights or exports) each model has, by qualified name."""
    return dict(conn.execute(select(table.c.model, func.count()).group_by(table.c.model)).all())


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
    query = (select(plugins.c.namespace, models.c.name, metrics.c.value, weights.c.meta)
             .select_from(_qualified().join(weights, weights.c.model_id == models.c.id)
                          .join(metrics, metrics.c.weights_id == weights.c.id))
             .where(metrics.c.dataset == dataset, metrics.c.name == name))
    best: dict[str, tuple[float, Any]] = {}
    with ensure_current().connect() as conn:
        for namespace, model, value, meta in conn.execute(query):
            qualified = f"{namespace}/{model}"
            if qualified in by_name and (qualified not in best or value > best[qualified][0]):
                best[qualified] = (value, (meta or {}).get("_ops"))
    points = []
    for qualified, (value, gflops) in best.items():
        row = by_name[qualified]
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

"""What the web catalog reads of a catalog database beyond the `Catalog` protocol's questions: the
filter menus' choices, each model's headline metric and published counts, and, for the compare
view, each model's best value of one metric with the GFLOPS of the weights that reach it.

Each function takes a SQLAlchemy Connection and reads every model at once (a catalog of 10,000
models is read in a few queries); answers are keyed by qualified name (``PLUGIN/NAME``), which the
web catalog joins to `zoo.registry.summarize_models`' records. `SqlCatalog` exposes them as methods.

A listing's summaries read here too: every ``DATASET:METRIC`` of the catalog (`metric_names`, which
`zoo.catalog.ranking` resolves bare metric names and sort keys against), each model's best value of
each metric (`best_metrics`) and a weights entry's GFLOPS (`gflops_of`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import Connection, func, select

from zoo.catalog.ranking import better
from zoo.catalog.tables import (
    GENERATION_KEY,
    catalog_state,
    metrics,
    models,
    plugins,
    published_exports,
    published_weights,
    weights,
)

__all__ = ["BestValue", "Headline", "ModelFacts", "best_metrics", "best_values", "gflops_of", "menus",
           "metric_names", "model_facts"]


class Headline(NamedTuple):
    """A model's headline metric: the first metric of its default weights (else of its first weights), and
    the best value any of its weights reaches on it."""

    metric: str  # DATASET:METRIC
    value: float


class BestValue(NamedTuple):
    """A model's best value of one metric over its weights, and the GFLOPS of the weights that reach it."""

    value: float
    gflops: float | None  # None: those weights do not say


@dataclass(frozen=True)
class ModelFacts:
    """What the web catalog's table shows of each model beyond its summary, by qualified name."""

    headline: Mapping[str, Headline]  # models without metrics are absent
    published: Mapping[str, int]  # published weights versions; models without any are absent
    exports: Mapping[str, int]  # published exports; likewise


#: A weights entry's GFLOPS as its meta declares them (torchvision's ``_ops``): read alone, not the whole meta.
OPS = weights.c.meta["_ops"]

#: What `_per_generation` read, by (what, catalog URL, generation), newest last.
_KEPT: dict[tuple[str, str, str], Any] = {}
_KEPT_ANSWERS = 8


def menus(conn: Connection) -> tuple[list[str], list[str]]:
    """Every task and every loaded plugin's namespace of the catalog, sorted: what the filter menus offer."""
    tasks = sorted(conn.scalars(select(models.c.task).distinct()))
    namespaces = sorted(conn.scalars(select(plugins.c.namespace).where(plugins.c.status == "loaded")))
    return tasks, namespaces


def model_facts(conn: Connection) -> ModelFacts:
    """Each model's headline metric and its numbers of published weights versions and exports."""
    return ModelFacts(headline_metrics(conn), _counts(conn, published_weights), _counts(conn, published_exports))


def headline_metrics(conn: Connection) -> dict[str, Headline]:
    """Each model's `Headline`, by qualified name; read once per catalog generation (`_per_generation`)."""
    return _per_generation(conn, "headlines", _read_headline_metrics)


def metric_names(conn: Connection) -> list[str]:
    """Every ``DATASET:METRIC`` some weights of the catalog have, sorted; read once per catalog generation."""
    return _per_generation(conn, "metric names", lambda c: sorted(
        f"{dataset}:{name}" for dataset, name in c.execute(select(metrics.c.dataset, metrics.c.name).distinct())))


def _per_generation(conn: Connection, what: str, read: Callable[[Connection], Any]) -> Any:
    """`read(conn)`, read once per catalog generation (only a sync changes weights and metrics, and it makes a
    new generation), kept for a few catalogs and generations."""
    generation = conn.scalar(select(catalog_state.c.value).where(catalog_state.c.key == GENERATION_KEY))
    if generation is None:
        return read(conn)
    key = (what, conn.engine.url.render_as_string(), generation)
    if key not in _KEPT:
        while len(_KEPT) >= _KEPT_ANSWERS:
            del _KEPT[next(iter(_KEPT))]
        _KEPT[key] = read(conn)
    return _KEPT[key]


def _read_headline_metrics(conn: Connection) -> dict[str, Headline]:
    """`headline_metrics`, read from the catalog."""
    query = (select(plugins.c.namespace, models.c.name, metrics.c.dataset, metrics.c.name, metrics.c.value)
             .select_from(_with_metrics())
             .order_by(models.c.id, weights.c.is_default.desc(), weights.c.id, metrics.c.id))
    found: dict[str, Headline] = {}
    for namespace, name, dataset, metric, value in conn.execute(query):
        qualified, label = f"{namespace}/{name}", f"{dataset}:{metric}"
        first = found.setdefault(qualified, Headline(label, value))
        if first.metric == label and value > first.value:
            found[qualified] = Headline(label, value)
    return found


def _counts(conn: Connection, table: Any) -> dict[str, int]:
    """How many rows of `table` (published weights or exports) each model has, by qualified name."""
    return dict(conn.execute(select(table.c.model, func.count()).group_by(table.c.model)).all())


def best_values(conn: Connection, dataset: str, metric: str) -> dict[str, BestValue]:
    """Each model's best value of `dataset`'s `metric` over its weights, with those weights' GFLOPS
    (their meta's ``_ops``), by qualified name; models without that metric are absent."""
    query = (select(plugins.c.namespace, models.c.name, metrics.c.value, OPS)
             .select_from(_with_metrics())
             .where(metrics.c.dataset == dataset, metrics.c.name == metric))
    best: dict[str, BestValue] = {}
    for namespace, model, value, ops in conn.execute(query):
        qualified = f"{namespace}/{model}"
        if qualified not in best or value > best[qualified].value:
            best[qualified] = BestValue(value, gflops_of(ops))
    return best


def gflops_of(ops: Any) -> float | None:
    """The GFLOPS a weights entry declares: its `OPS` (torchvision's meta ``_ops``) if a number, else None."""
    return float(ops) if isinstance(ops, (int, float)) and not isinstance(ops, bool) else None


def best_metrics(conn: Connection, ids: Collection[int] | None) -> dict[int, dict[str, float]]:
    """Each model's best value (`zoo.catalog.ranking.better`) of each ``DATASET:METRIC`` over its weights, by
    model id, for the models `ids` (every model for None); models without metrics are absent."""
    query = select(weights.c.model_id, metrics.c.dataset, metrics.c.name, metrics.c.value).select_from(
        weights.join(metrics, metrics.c.weights_id == weights.c.id)).order_by(metrics.c.id)
    if ids is not None:
        query = query.where(weights.c.model_id.in_(ids))
    best: dict[int, dict[str, float]] = {}
    for model_id, dataset, name, value in conn.execute(query):
        values, metric = best.setdefault(model_id, {}), f"{dataset}:{name}"
        if metric not in values or better(metric, value, values[metric]):
            values[metric] = value
    return best


def _with_metrics() -> Any:
    """Models joined with their plugins, their weights and those weights' metrics."""
    return (models.join(plugins, models.c.plugin_id == plugins.c.id)
            .join(weights, weights.c.model_id == models.c.id)
            .join(metrics, metrics.c.weights_id == weights.c.id))

"""What the web catalog reads of a catalog database beyond the `Catalog` protocol's questions: the
filter menus' choices, each model's headline metric and published counts, and, for the compare
view, each model's best value of one metric with the GFLOPS of the weights that reach it.

Each function takes a SQLAlchemy Connection and reads every model at once (a catalog of 10,000
models is read in a few queries); answers are keyed by qualified name (``PLUGIN/NAME``), which the
web catalog joins to `zoo.registry.summarize_models`' records. `SqlCatalog` exposes them as methods.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import Connection, func, select

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

__all__ = ["BestValue", "Headline", "ModelFacts", "best_values", "menus", "model_facts"]


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


#: The headline metrics of each (catalog URL, generation) this process read, newest last.
_HEADLINES: dict[tuple[str, str], dict[str, Headline]] = {}
_KEPT_HEADLINES = 4


def menus(conn: Connection) -> tuple[list[str], list[str]]:
    """Every task and every loaded plugin's namespace of the catalog, sorted: what the filter menus offer."""
    tasks = sorted(conn.scalars(select(models.c.task).distinct()))
    namespaces = sorted(conn.scalars(select(plugins.c.namespace).where(plugins.c.status == "loaded")))
    return tasks, namespaces


def model_facts(conn: Connection) -> ModelFacts:
    """Each model's headline metric and its numbers of published weights versions and exports."""
    return ModelFacts(headline_metrics(conn), _counts(conn, published_weights), _counts(conn, published_exports))


def headline_metrics(conn: Connection) -> dict[str, Headline]:
    """Each model's `Headline`, by qualified name; read once per catalog generation (only a sync changes
    weights and metrics, and it makes a new generation), kept for a few catalogs and generations."""
    generation = conn.scalar(select(catalog_state.c.value).where(catalog_state.c.key == GENERATION_KEY))
    if generation is None:
        return _read_headline_metrics(conn)
    key = (conn.engine.url.render_as_string(), generation)
    if key not in _HEADLINES:
        while len(_HEADLINES) >= _KEPT_HEADLINES:
            del _HEADLINES[next(iter(_HEADLINES))]
        _HEADLINES[key] = _read_headline_metrics(conn)
    return _HEADLINES[key]


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
    query = (select(plugins.c.namespace, models.c.name, metrics.c.value, weights.c.meta)
             .select_from(_with_metrics())
             .where(metrics.c.dataset == dataset, metrics.c.name == metric))
    best: dict[str, BestValue] = {}
    for namespace, model, value, meta in conn.execute(query):
        qualified = f"{namespace}/{model}"
        if qualified not in best or value > best[qualified].value:
            ops = (meta or {}).get("_ops")
            best[qualified] = BestValue(value, float(ops) if isinstance(ops, (int, float)) else None)
    return best


def _with_metrics() -> Any:
    """Models joined with their plugins, their weights and those weights' metrics."""
    return (models.join(plugins, models.c.plugin_id == plugins.c.id)
            .join(weights, weights.c.model_id == models.c.id)
            .join(metrics, metrics.c.weights_id == weights.c.id))

"""Ranking a listing (``zoo list --sort KEY --limit N``, ``zoo.summarize_models(sort=..., limit=...)``).

A sort key is ``name``, ``params``, ``gflops`` or a metric, ``DATASET:METRIC`` (e.g. ``ImageNet-1K:acc@1``) or a
bare ``METRIC`` that one dataset of the catalog alone has. Each key has its natural order, the one a leaderboard
shows: metrics best first (highest; lowest for the error metrics of `LOWER_IS_BETTER`), names, parameters and
GFLOPS ascending; ``-KEY`` sorts descending and ``+KEY`` ascending instead. Models without a value come last in
either order; ties are ordered by name. A model's value of a metric is its best over its weights.

Pure functions on `zoo.records.ModelSummary` and the catalog's ``DATASET:METRIC`` names: no SQL, so the command
line, the SQL catalog and the registry service share them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from zoo.errors import UsageError, excerpt
from zoo.records import ModelSummary

__all__ = ["LOWER_IS_BETTER", "MAX_LIMIT", "NAMED_KEYS", "SortKey", "better", "check_limit", "ranked",
           "resolve_metric", "resolve_minimums", "sort_key"]

#: The sort keys that are not metrics: the summary's field each reads.
NAMED_KEYS = {"name": "name", "params": "num_params", "gflops": "gflops"}
#: Metrics where lower is better (torchvision's optical flow errors): their best is their lowest.
LOWER_IS_BETTER = frozenset({"epe", "per_image_epe", "fl_all"})
MAX_LIMIT = 2**31 - 1  # the most rows a listing is asked for


@dataclass(frozen=True)
class SortKey:
    """A checked sort key: `column` (a `NAMED_KEYS` key, or a metric as ``DATASET:METRIC`` in the catalog's
    spelling), its direction, and the column as it was `given` (a bare metric name, for one)."""

    column: str
    descending: bool
    given: str

    @property
    def is_metric(self) -> bool:
        return self.column not in NAMED_KEYS

    def __str__(self) -> str:
        return f"{'-' if self.descending else '+'}{self.column}"

    def value(self, summary: ModelSummary) -> Any:
        """`summary`'s value in this column; None when it has none."""
        if self.is_metric:
            return summary.metrics.get(self.column)
        return getattr(summary, NAMED_KEYS[self.column])


def better(metric: str, value: float, than: float) -> bool:
    """Whether `value` of `metric` (``[DATASET:]METRIC``) beats `than`."""
    return value < than if metric.rpartition(":")[2].lower() in LOWER_IS_BETTER else value > than


def resolve_metric(metric: str, known: Iterable[str], *, sort: str | None = None) -> str:
    """``DATASET:METRIC`` of `metric` among the catalog's `known` ``DATASET:METRIC`` names, in their spelling
    (case-insensitive): a bare ``METRIC`` is taken on the one dataset that has it; a one-line `UsageError` for
    an unknown metric (said as an unknown sort key, with the keys accepted, for the `sort` key given), a
    dataset without it, or a bare metric several datasets have."""
    dataset, _, name = metric.rpartition(":")
    pairs = [k.rpartition(":")[::2] for k in known]
    matching = sorted({(d, n) for d, n in pairs if n.lower() == name.lower()}, key=lambda p: p[0].lower())
    if not matching:
        names = ", ".join(sorted({n for _, n in pairs}, key=str.lower)) or "none"
        if sort is not None:
            raise UsageError(f"unknown sort key {excerpt(sort)}; sort by {', '.join(NAMED_KEYS)} or "
                             f"[DATASET:]METRIC (metrics in the catalog: {names}), as KEY (its natural order), "
                             f"+KEY (ascending) or -KEY (descending)")
        raise UsageError(f"unknown metric {excerpt(metric)}; metrics in the catalog: {names}")
    datasets = ", ".join(d for d, _ in matching)
    if dataset:
        found = [f"{d}:{n}" for d, n in matching if d.lower() == dataset.lower()]
        if not found:
            raise UsageError(f"no dataset of metric {excerpt(metric)}; datasets with {name}: {datasets}")
        return found[0]
    if len(matching) > 1:
        raise UsageError(f"{name} is measured on several datasets: {datasets}; give DATASET:{name}, "
                         f"e.g. {matching[0][0]}:{name}")
    return ":".join(matching[0])


def resolve_minimums(minimums: Mapping[str, float], known: Iterable[str]) -> dict[str, float]:
    """`minimums` (``[DATASET:]METRIC`` -> least value) keyed by ``DATASET:METRIC`` (`resolve_metric`); two that
    name one metric keep the stricter minimum."""
    known = list(known)
    resolved: dict[str, float] = {}
    for metric, minimum in minimums.items():
        full = resolve_metric(metric, known)
        resolved[full] = max(minimum, resolved.get(full, minimum))
    return resolved


def sort_key(sort: object, known: Iterable[str]) -> SortKey:
    """The `SortKey` that `sort` (``[+|-]KEY``, see the module docstring) names, its metric resolved among the
    catalog's `known` ``DATASET:METRIC`` names; a one-line `UsageError` naming the keys accepted otherwise."""
    if not isinstance(sort, str) or len(sort) > 400:
        raise UsageError(f"sort key must be name, params, gflops or [DATASET:]METRIC, not {excerpt(sort)}")
    sign, given = (sort[:1], sort[1:].strip()) if sort[:1] in ("+", "-") else ("", sort.strip())
    if given.lower() in NAMED_KEYS:
        column, natural = given.lower(), False
    else:
        column = resolve_metric(given, known, sort=sort)
        natural = column.rpartition(":")[2].lower() not in LOWER_IS_BETTER
    return SortKey(column, natural if not sign else sign == "-", given)


def check_limit(limit: object) -> int | None:
    """`limit` (None: no limit) checked: a whole number from 1 to `MAX_LIMIT`."""
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_LIMIT):
        raise UsageError(f"limit must be a whole number from 1 to {MAX_LIMIT}, not {excerpt(limit)}")
    return limit


def ranked(summaries: Sequence[ModelSummary], key: SortKey | None, limit: int | None) -> list[ModelSummary]:
    """The first `limit` (all, for None) of `summaries` (sorted by name) in `key`'s order: models without a value
    last, ties by name."""
    if key is None:
        return list(summaries[:limit])
    having = [s for s in summaries if key.value(s) is not None]
    lacking = [s for s in summaries if key.value(s) is None]
    having.sort(key=key.value, reverse=key.descending)  # stable: ties stay by name
    return (having + lacking)[:limit]

"""Text for and from people: the one renderer of the CLI's tables (listings, bench results, summaries),
and the one parser of a metric as users write it."""

from __future__ import annotations

from collections.abc import Container, Iterable, Sequence
from typing import Any

from zoo.errors import UsageError, excerpt


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], *, right: Container[int] = ()) -> list[str]:
    """Aligned lines, the headers first, then one per row.

    Cells are shown with `str` (None as empty), columns two spaces apart, those whose
    index is in `right` (numbers) aligned right; trailing spaces are dropped.
    """
    cells = [[str(h) for h in headers], *(["" if c is None else str(c) for c in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return [
        "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip()
        for row in cells
    ]


def parse_metric(text: str) -> tuple[str, float]:
    """``[DATASET:]METRIC=VALUE`` as (metric, value), as `list_models`' min_metric and publishing take it."""
    name, sep, value = text.partition("=")
    try:
        if not sep or not name.strip():
            raise ValueError
        return name.strip(), float(value)
    except ValueError:
        raise UsageError(f"{excerpt(text)} is not NAME=VALUE (NAME: [DATASET:]METRIC); use e.g. ImageNet-1K:acc@1=75") from None

"""Text for and from people: the one renderer of the CLI's tables (listings, bench results, summaries),
and the one parser each of a metric and a count as users write them."""

from __future__ import annotations

import math
import re
from collections.abc import Container, Iterable, Sequence
from typing import Any

from zoo.errors import UsageError, excerpt

_SUFFIXES = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "b": 10**9}
_COUNT = re.compile(r"\s*(\d+)(?:\.(\d+))?\s*([kKmMgGbB]?)\s*")


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


def count_text(count: float | None, *, spec: str = ".1f", none: str = "-") -> str:
    """A count for people, in the form `parse_count` reads back: 25.6M, 1.2k, 512, and billions as B (7.1B
    parameters, as model sizes are told); `spec` formats the scaled number, `none` stands for None."""
    if count is None:
        return none
    for scale, suffix in ((10**9, "B"), (10**6, "M"), (10**3, "k")):
        if abs(count) >= scale:
            return f"{count / scale:{spec}}{suffix}"
    return f"{count:g}"


def parse_metric(text: str) -> tuple[str, float]:
    """``[DATASET:]METRIC=VALUE`` as (metric, value), as `list_models`' min_metric and publishing take it."""
    name, sep, value = text.partition("=")
    try:
        if not sep or not name.strip():
            raise ValueError
        number = float(value)
    except ValueError:
        raise UsageError(f"{excerpt(text)} is not NAME=VALUE (NAME: [DATASET:]METRIC); use e.g. ImageNet-1K:acc@1=75") from None
    if not math.isfinite(number):
        raise UsageError(f"metric {excerpt(name.strip())} must be a finite number, not {value.strip()}")
    return name.strip(), number


def parse_count(text: str, what: str = "") -> int:
    """A count such as ``10M``, ``1.5k`` or ``25557032`` (parameters, bytes), in exact integer arithmetic
    (rounded down); `what` names it in the one-line `UsageError` for anything else."""
    match = _COUNT.fullmatch(text) if len(text) <= 100 else None
    if not match:
        raise UsageError(f"{what + ' ' if what else ''}{excerpt(text)} is not a count; use e.g. 10M, 500k or 25557032")
    whole, fraction, suffix = match[1], match[2] or "", match[3].lower()
    return int(whole + fraction) * _SUFFIXES[suffix] // 10 ** len(fraction)

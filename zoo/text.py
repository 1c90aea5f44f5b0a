"""Plain-text tables for people: the one renderer of the CLI's listings, bench results and summaries."""

from __future__ import annotations

from collections.abc import Container, Iterable, Sequence
from typing import Any


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

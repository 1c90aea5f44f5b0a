"""Tensor shapes as users write them (``1,3,224,224``, ``1x3x224x224``, a tuple): parsed and bounded once.

Every shape zoo is given becomes a tensor it allocates, so each is checked here before
anything is allocated: positive integers, and at most `MAX_ELEMENTS` values per
tensor (a mistyped ``100000`` would otherwise ask for hundreds of gigabytes).
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any

from zoo.errors import UsageError, excerpt

#: The most values one input tensor may hold: 2**28 (1 GiB of float32), far above any
#: vision model's input (a 1x3x4096x4096 image is 5% of it).
MAX_ELEMENTS = 1 << 28
EXAMPLES = "e.g. 1,3,224,224 for images, 1,3,16,112,112 for video, 1,3,224,224;1,3,224,224 for two inputs"


def dims_text(shape: Sequence[int]) -> str:
    """A shape as users write it: ``1x3x224x224``."""
    return "x".join(map(str, shape))


def onnx_shape_text(shape: Sequence[Any]) -> str:
    """(N, 1, 8, 8): an ONNX shape with fixed sizes as numbers, a symbolic batch as N, other symbols by name."""
    names = [str(d) if isinstance(d, int) else ("N" if i == 0 else str(d or "?")) for i, d in enumerate(shape)]
    return f"({', '.join(names)})"


def parse_shape(value: str | Sequence[int], *, what: str = "input shape", min_rank: int = 1) -> tuple[int, ...]:
    """A shape from ``"1,3,224,224"``, ``"1x3x224x224"`` or a sequence of ints, checked and bounded."""
    parts = value.replace("x", ",").split(",") if isinstance(value, str) else value
    try:
        dims = [int(d) if isinstance(value, str) else _index(d) for d in parts]
    except (TypeError, ValueError):
        dims = []
    if len(dims) < min_rank or not all(d > 0 for d in dims):
        rank = f"at least {min_rank} " if min_rank > 1 else ""
        raise UsageError(f"{what} {excerpt(value)} is not {rank}positive integers separated by ','; {EXAMPLES}")
    check_size(dims, what=what)
    return tuple(dims)


def _index(dim: Any) -> int:
    """An int from anything integral (numpy's too), refusing bools and floats."""
    if isinstance(dim, bool):
        raise TypeError("a bool is not a dimension")
    return operator.index(dim)


def parse_shapes(text: str, *, what: str = "input size") -> list[tuple[int, ...]]:
    """One shape per model input, separated by ';': ``1,3,224,224;1,3,224,224``."""
    return [parse_shape(part, what=what) for part in text.split(";")]


def check_size(shape: Sequence[int], *, what: str = "input shape") -> None:
    """Refuse a shape of more than `MAX_ELEMENTS` values, before it is allocated."""
    count = 1
    for dim in shape:
        count *= dim
    if count > MAX_ELEMENTS:
        raise UsageError(f"{what} {dims_text(shape)[:80]} has {count:,} values; at most "
                         f"{MAX_ELEMENTS:,} (2**28) are accepted per input")

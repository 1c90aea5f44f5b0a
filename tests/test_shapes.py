"""Shapes as users write them: parsed in one place and bounded before anything is allocated."""

from __future__ import annotations

import numpy as np
import pytest

import zoo
from zoo.shapes import MAX_ELEMENTS, parse_shape, parse_shapes


def test_shapes_parse_from_text_and_sequences() -> None:
    assert parse_shape("1,3,224,224") == parse_shape("1x3x224x224") == parse_shape([1, 3, 224, 224]) == (1, 3, 224, 224)
    assert parse_shape((np.int64(2), 3)) == (2, 3)
    assert parse_shapes(" 1, 3,8,8 ;1,3,8,8") == [(1, 3, 8, 8), (1, 3, 8, 8)]


@pytest.mark.parametrize("bad", ["", "1,,3", "1,3;", "1,0,8,8", "a,b", [1.5, 2], [True, 3], "-1,3", [1]])
def test_bad_shapes_are_one_line_errors(bad) -> None:
    with pytest.raises(zoo.UsageError, match="is not (at least 2 )?positive integers separated by ','") as raised:
        parse_shapes(bad) if isinstance(bad, str) and ";" in bad else parse_shape(bad, min_rank=2)
    assert "\n" not in str(raised.value)


def test_shapes_are_bounded_before_allocation() -> None:
    assert parse_shape([1, MAX_ELEMENTS]) == (1, MAX_ELEMENTS)
    with pytest.raises(zoo.UsageError, match=r"has 30,000,000,000 values; at most 268,435,456"):
        parse_shape("1,3,100000,100000")
    with pytest.raises(zoo.UsageError, match="values; at most"):
        parse_shape("9" * 40 + ",9")
    with pytest.raises(zoo.UsageError, match=r"\.\.\. \(\d+ characters\)"):
        parse_shape("x" * 10_000)

"""The one table renderer (columns two spaces apart, numbers right-aligned where asked, no trailing spaces)
and the one parser of counts as users write them."""

import pytest

from zoo.errors import UsageError
from zoo.text import count_text, parse_count, table


def test_columns_align_and_none_is_empty() -> None:
    assert table(["NAME", "N", "NOTE"], [["resnet50", 3, None], ["vit_b_16", 12, "x"]]) == [
        "NAME      N   NOTE",
        "resnet50  3",
        "vit_b_16  12  x",
    ]


def test_right_aligned_columns() -> None:
    assert table(["layer", "params"], [["conv1", "9,408"], ["fc", "2,049,000"]], right={1}) == [
        "layer     params",
        "conv1      9,408",
        "fc     2,049,000",
    ]


@pytest.mark.parametrize(("text", "count"), [("25557032", 25557032), ("10M", 10_000_000), ("1.5k", 1500),
                                             (" 2G ", 2_000_000_000), ("0.0000001M", 0), ("3b", 3_000_000_000)])
def test_counts_are_exact_integers(text: str, count: int) -> None:
    assert parse_count(text) == count


@pytest.mark.parametrize("text", ["", "10 M M", "-5", "1e6", "ten", "1" * 101])
def test_anything_else_is_one_line_naming_it(text: str) -> None:
    with pytest.raises(UsageError, match="max params .* is not a count; use e.g. 10M"):
        parse_count(text, "max params")


@pytest.mark.parametrize("count,text", [(None, "-"), (512, "512"), (1_234, "1.2k"), (25_557_032, "25.6M"),
                                        (1_200_000_000, "1.2B"), (7_000_000_000, "7.0B")])
def test_counts_are_told_as_people_tell_model_sizes_and_read_back(count: int | None, text: str) -> None:
    assert count_text(count) == text
    if count is not None:  # what is shown reads back as the same count, to its precision
        assert parse_count(text) == pytest.approx(count, rel=0.05)

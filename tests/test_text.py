"""The one table renderer: columns two spaces apart, numbers right-aligned where asked, no trailing spaces."""

from zoo.text import table


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

"""`zoo.datasets.image_data`: folders of class folders and CSV files of scikit-learn's digits, split and checked."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import sklearn.datasets
from PIL import Image

from zoo.datasets import image_data
from zoo.errors import UsageError


def digits_folder(root: Path, per_class: int = 6, classes: range = range(10)) -> Path:
    """Class folders of scikit-learn's digits as 16x16 PNG files: ``root/3/17.png``."""
    digits = sklearn.datasets.load_digits()
    counts = dict.fromkeys(classes, 0)
    for i, (image, target) in enumerate(zip(digits.images, digits.target)):
        if target in counts and counts[target] < per_class:
            folder = root / str(target)
            folder.mkdir(parents=True, exist_ok=True)
            pixels = (image * 255 / 16).astype(np.uint8)
            Image.fromarray(pixels).resize((16, 16), Image.Resampling.NEAREST).save(folder / f"{i}.png")
            counts[target] += 1
    return root


def test_class_folders_are_split_per_class_by_seed(tmp_path: Path) -> None:
    data = image_data(digits_folder(tmp_path / "digits"), val_fraction=0.25, seed=3)
    assert data.classes == tuple(str(c) for c in range(10)) and data.split == "seeded"
    assert data.counts() == {"train": 40, "val": 20, "skipped": 0}
    for label in range(10):  # every class in both parts: round(6 * 0.25) = 2 to validation
        assert sum(s.label == label for s in data.val) == 2
    assert not {s.path for s in data.train} & {s.path for s in data.val}
    for sample in data.train + data.val:
        assert data.file(sample).parent.name == data.classes[sample.label]
    again, other = image_data(tmp_path / "digits", val_fraction=0.25, seed=3), image_data(
        tmp_path / "digits", val_fraction=0.25, seed=4)
    assert again.val == data.val and other.val != data.val
    assert other.manifest_sha256 == data.manifest_sha256  # the same data, however it is split


def test_the_manifest_changes_with_a_file_or_a_label(tmp_path: Path) -> None:
    root = digits_folder(tmp_path / "digits", classes=range(3))
    before = image_data(root).manifest_sha256
    image = next((root / "1").iterdir())
    image.rename(root / "2" / image.name)
    relabelled = image_data(root).manifest_sha256
    Image.new("L", (16, 16), 255).save(root / "2" / image.name)
    assert len({before, relabelled, image_data(root).manifest_sha256}) == 3


def test_train_and_val_folders_are_kept_as_given(tmp_path: Path) -> None:
    digits_folder(tmp_path / "data" / "train", classes=range(3))
    digits_folder(tmp_path / "data" / "val", per_class=2, classes=range(2))
    data = image_data(tmp_path / "data")
    assert data.split == "folders" and data.classes == ("0", "1", "2")
    assert data.counts() == {"train": 18, "val": 4, "skipped": 0}
    assert all(s.path.startswith("val/") for s in data.val)


def test_a_csv_of_paths_and_labels(tmp_path: Path) -> None:
    root = digits_folder(tmp_path / "digits", classes=range(2))
    rows = [f"{p.relative_to(root).as_posix()},{'odd' if p.parent.name == '1' else 'even'}"
            for p in sorted(root.rglob("*.png"))]
    (root / "labels.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    data = image_data(root / "labels.csv", val_fraction=0.5)
    assert data.classes == ("even", "odd") and data.counts() == {"train": 6, "val": 6, "skipped": 0}


def test_an_unreadable_image_is_skipped_and_counted(tmp_path: Path) -> None:
    root = digits_folder(tmp_path / "digits", classes=range(2))
    (root / "1" / "broken.png").write_bytes(b"\x89PNG but not really")
    data = image_data(root)
    assert [path for path, _ in data.skipped] == ["1/broken.png"] and data.counts()["skipped"] == 1
    assert "1/broken.png" not in {s.path for s in data.train + data.val}


@pytest.mark.parametrize("case, message", [
    ("missing", "does not exist; give a folder of class folders or a CSV file"),
    ("no class folders", "has no class folders"),
    ("empty class", "has no images"),
    ("one class", "need at least 2 classes; found only '0'"),
    ("not csv", "is a file but not a .csv"),
    ("bad row", "line 2: expected path,label"),
    ("outside", "is outside the CSV's folder"),
    ("unknown val class", "validation classes '9' have no training images"),
])
def test_bad_data_is_one_line(tmp_path: Path, case: str, message: str) -> None:
    root = tmp_path / "data"
    if case == "no class folders":
        root.mkdir()
        Image.new("L", (8, 8)).save(root / "loose.png")
    elif case == "empty class":
        digits_folder(root, classes=range(2))
        (root / "2").mkdir()
    elif case == "one class":
        digits_folder(root, classes=range(1))
    elif case == "not csv":
        root.mkdir()
        (root / "labels.txt").write_text("a.png,cat\n")
        root = root / "labels.txt"
    elif case in ("bad row", "outside"):
        digits_folder(root, classes=range(2))
        row = "0/missing-label.png" if case == "bad row" else "../elsewhere.png,cat"
        (root / "labels.csv").write_text(f"path,label\n{row}\n")
        root = root / "labels.csv"
    elif case == "unknown val class":
        digits_folder(root / "train", classes=range(2))
        digits_folder(root / "val", classes=(9,))
    with pytest.raises(UsageError, match=message) as raised:
        image_data(root)
    assert "\n" not in str(raised.value)

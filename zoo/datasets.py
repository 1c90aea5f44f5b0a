"""Labelled image data for fine-tuning and evaluation: a folder of class folders, or a CSV of path,label.

`image_data` reads what a user points ``zoo finetune`` or ``zoo eval`` at, without torch:

- a folder of class folders, as torchvision's ``ImageFolder`` reads it
  (``DATA/cat/1.png``, ``DATA/dog/2.jpg``), split into training and validation images
  by a seeded fraction per class; or with ``train/`` and ``val/`` subfolders, each of
  class folders, used as they are;
- a CSV file of ``path,label`` rows (a header row ``path,label`` is optional), paths
  relative to the CSV's folder, split as a folder is.

Classes are the sorted folder names (or labels), as in torchvision. Images are the
files with torchvision's image extensions; each is opened and checked (Pillow's
``verify``) once, and one that cannot be read is skipped and counted, with its reason,
not fatal. One line (`UsageError`) refuses: a missing folder or file, no images, one
class only, an empty class folder, a CSV row that is not ``path,label`` or names a file
outside the CSV's folder, validation classes the training images lack.

`ImageData.manifest_sha256` identifies the data: a SHA-256 over every readable image's
relative path, size in bytes and label, sorted; the same files under the same labels give
the same hash on any machine, however they are split (the lineage of a fine-tuned version
records it, with the split).
"""

from __future__ import annotations

import csv
import hashlib
import os
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from zoo.errors import UsageError, excerpt

#: The file name endings torchvision's ImageFolder takes as images.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
#: The subfolders that hold a split made beforehand (torchvision's references use train/ and val/).
SPLIT_FOLDERS = ("train", "val")
#: The most images and classes a data set may have (a bound on the work one request can cause).
MAX_IMAGES = 10_000_000
MAX_CLASSES = 100_000


@dataclass(frozen=True)
class Sample:
    """One labelled image: its path relative to the data's root (POSIX), and its class's index."""

    path: str
    label: int


@dataclass(frozen=True)
class ImageData:
    """Labelled images split into training and validation (see the module docstring)."""

    root: Path
    classes: tuple[str, ...]
    train: tuple[Sample, ...]
    val: tuple[Sample, ...]
    skipped: tuple[tuple[str, str], ...]  # (relative path, why it cannot be read)
    manifest_sha256: str
    split: str  # "folders" (train/ and val/ given) or "seeded" (made here)

    def file(self, sample: Sample) -> Path:
        """The file of `sample`."""
        return self.root / sample.path

    def counts(self) -> dict[str, int]:
        """Images per split, and those skipped."""
        return {"train": len(self.train), "val": len(self.val), "skipped": len(self.skipped)}

    def to_json(self) -> dict[str, Any]:
        """What a run record keeps of the data: classes, counts, how it was split, the manifest hash."""
        return {"classes": list(self.classes), **self.counts(), "split": self.split,
                "manifest_sha256": self.manifest_sha256}


def image_data(source: str | os.PathLike[str], *, val_fraction: float = 0.2, seed: int = 0) -> ImageData:
    """The labelled images at `source` (a folder or a ``.csv`` file), split as the module docstring says.

    `val_fraction` of each class's images (at least one, and at least one left to train on) go to
    validation, picked with `seed`; a folder with ``train/`` and ``val/`` keeps its own split.
    """
    if not (isinstance(val_fraction, (int, float)) and 0 < val_fraction < 1):
        raise UsageError(f"the validation fraction must be a number between 0 and 1, not {excerpt(val_fraction)}")
    path = Path(source)
    if not path.exists():
        raise UsageError(f"data {excerpt(str(path))} does not exist; give a folder of class folders or a CSV file "
                         "of path,label rows")
    if path.is_file():
        if path.suffix.lower() != ".csv":
            raise UsageError(f"data {excerpt(str(path))} is a file but not a .csv; give a folder of class folders "
                             "or a CSV file of path,label rows")
        return _split(path.parent.resolve(), _csv_rows(path), val_fraction, seed)
    root = path.resolve()
    if all((root / name).is_dir() for name in SPLIT_FOLDERS):
        train, val = (_class_folders(root / name, root) for name in SPLIT_FOLDERS)
        return _made(root, train, val, "folders")
    return _split(root, _class_folders(root, root), val_fraction, seed)


def dataset_name(source: str | os.PathLike[str]) -> str:
    """The name metrics are published under: the data folder's (a CSV file's stem), in letters, digits,
    ``.``, ``_`` and ``-`` (anything else, ``:`` included, becomes ``-``)."""
    path = Path(source).resolve()
    name = path.stem if path.is_file() else path.name
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "data"


def _class_folders(folder: Path, root: Path) -> list[tuple[str, str]]:
    """(relative path, class) of every image in the class folders of `folder`; an empty class folder is refused."""
    classes = sorted(entry for entry in os.listdir(folder) if (folder / entry).is_dir() and not entry.startswith("."))
    if not classes:
        raise UsageError(f"{_shown(folder)} has no class folders; put each class's images in a folder named after "
                         "the class (DATA/cat/1.png, DATA/dog/2.png)")
    if len(classes) > MAX_CLASSES:
        raise UsageError(f"{_shown(folder)} has {len(classes)} class folders; at most {MAX_CLASSES} are taken")
    found: list[tuple[str, str]] = []
    for name in classes:
        images = sorted(_images_in(folder / name))
        if not images:
            raise UsageError(f"class folder {_shown(folder / name)} has no images ({', '.join(IMAGE_EXTENSIONS)}); "
                             "add some or remove the folder")
        found += [(PurePosixPath(image.relative_to(root)).as_posix(), name) for image in images]
        if len(found) > MAX_IMAGES:
            raise UsageError(f"{_shown(folder)} holds more than {MAX_IMAGES} images; at most that many are taken")
    return found


def _images_in(folder: Path) -> Iterable[Path]:
    """The image files under `folder`, any depth (as ImageFolder walks a class folder), links not followed."""
    for parent, folders, files in os.walk(folder):
        folders[:] = [f for f in folders if not f.startswith(".")]
        for name in files:
            if name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith("."):
                yield Path(parent) / name


def _csv_rows(path: Path) -> list[tuple[str, str]]:
    """(relative path, class) of every row of the CSV at `path`, checked to stay inside its folder."""
    root = path.parent.resolve()
    rows: list[tuple[str, str]] = []
    with path.open(newline="", encoding="utf-8") as f:
        for number, row in enumerate(csv.reader(f), 1):
            if number == 1 and [c.strip().lower() for c in row] == ["path", "label"]:
                continue
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != 2 or not row[0].strip() or not row[1].strip():
                raise UsageError(f"{_shown(path)} line {number}: expected path,label, not {excerpt(','.join(row))}")
            relative, label = row[0].strip(), row[1].strip()
            file = (root / relative).resolve()
            if not file.is_relative_to(root):
                raise UsageError(f"{_shown(path)} line {number}: {excerpt(relative)} is outside the CSV's folder; "
                                 "paths are relative to it")
            if not file.is_file():
                raise UsageError(f"{_shown(path)} line {number}: {excerpt(relative)} is not a file")
            rows.append((file.relative_to(root).as_posix(), label))
            if len(rows) > MAX_IMAGES:
                raise UsageError(f"{_shown(path)} has more than {MAX_IMAGES} rows; at most that many are taken")
    if not rows:
        raise UsageError(f"{_shown(path)} has no path,label rows")
    return rows


def _split(root: Path, rows: list[tuple[str, str]], val_fraction: float, seed: int) -> ImageData:
    """`rows` split per class: `val_fraction` of each (at least one, leaving one) to validation, by `seed`."""
    by_class: dict[str, list[tuple[str, str]]] = {}
    for row in rows:
        by_class.setdefault(row[1], []).append(row)
    rng = random.Random(seed)
    train: list[tuple[str, str]] = []
    val: list[tuple[str, str]] = []
    for name in sorted(by_class):
        members = sorted(by_class[name])
        rng.shuffle(members)
        cut = min(max(1, round(len(members) * val_fraction)), len(members) - 1)
        val += members[:cut]
        train += members[cut:]
    return _made(root, train, val, "seeded")


def _made(root: Path, train: Sequence[tuple[str, str]], val: Sequence[tuple[str, str]], split: str) -> ImageData:
    """The `ImageData` of the listed images: readable ones only (the others skipped), classes checked."""
    classes = tuple(sorted({label for _, label in train}))
    if len(classes) < 2:
        found = f"only {classes[0]!r}" if classes else "none"
        raise UsageError(f"{_shown(root)}: fine-tuning and evaluation need at least 2 classes; found {found}")
    unknown = sorted({label for _, label in val} - set(classes))
    if unknown:
        raise UsageError(f"{_shown(root)}: validation classes {', '.join(map(repr, unknown[:5]))} have no training "
                         "images")
    index = {name: i for i, name in enumerate(classes)}
    skipped: list[tuple[str, str]] = []
    manifest: list[str] = []
    kept: dict[str, list[Sample]] = {"train": [], "val": []}
    for part, rows in (("train", train), ("val", val)):
        for relative, label in rows:
            file = root / relative
            why = _unreadable(file)
            if why is not None:
                skipped.append((relative, why))
                continue
            manifest.append(f"{relative}\t{file.stat().st_size}\t{label}\n")
            kept[part].append(Sample(relative, index[label]))
    if not kept["train"]:
        raise UsageError(f"{_shown(root)}: no readable training images ({len(skipped)} skipped)")
    digest = hashlib.sha256("".join(sorted(manifest)).encode())
    return ImageData(root, classes, tuple(kept["train"]), tuple(kept["val"]), tuple(skipped), digest.hexdigest(),
                     split)


def _unreadable(file: Path) -> str | None:
    """Why Pillow cannot read `file` as an image; None when it can."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(file) as image:
            image.verify()
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"[:200]
    except Image.DecompressionBombError as exc:
        return f"too large: {exc}"[:200]
    return None


def _shown(path: Path) -> str:
    return excerpt(str(path))

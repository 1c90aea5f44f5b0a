"""The shipped held-out split and training record, readable without torch.

`digits_heldout.npz` holds the test quarter of scikit-learn's digits that the weights
never saw (with its indices); `digits_cnn.json` is what the training recipe measured and
wrote. Both are plain numpy/JSON so that a torch-free runtime can use them.
`write_image_folder` writes the digits, split as the weights were trained, as the image
folder ``zoo finetune`` reads (it needs scikit-learn and Pillow).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from zoo.errors import UsageError

HELDOUT = Path(__file__).with_name("digits_heldout.npz")
RECORD = Path(__file__).with_name("digits_cnn.json")
#: The tasks `write_image_folder` writes: each one's class folder names, indexed by the digit.
TASKS = {
    "digit": tuple(str(d) for d in range(10)),
    "parity": ("even", "odd") * 5,
}


def digits_uint8() -> tuple[np.ndarray, np.ndarray]:
    """All of scikit-learn's ``load_digits`` as (N, 8, 8) uint8 images in 0..255 (from 0..16) and int64 labels."""
    from sklearn.datasets import load_digits

    found = load_digits()
    return np.rint(found.images * 255 / 16).astype(np.uint8), found.target.astype(np.int64)


def load_heldout() -> tuple[np.ndarray, np.ndarray]:
    """Held-out images, (N, 8, 8) uint8 in 0..255, and their labels, (N,) int64."""
    with np.load(HELDOUT) as data:
        return data["images"], data["labels"]


def load_record() -> dict[str, Any]:
    """The training record: weights file, sha256, accuracy, normalisation, split."""
    return json.loads(RECORD.read_text())


def write_image_folder(root: str | os.PathLike[str], task: str = "digit") -> dict[str, int]:
    """Write scikit-learn's digits as ``root/train/CLASS/INDEX.png`` and ``root/val/CLASS/INDEX.png``: 8x8 grey
    PNGs, the pixels the weights take; validation is the held-out split (`load_heldout`), which the shipped
    weights never saw, training the rest (the split they were trained on). `task` names the classes
    (`TASKS`): ``"digit"`` the digit (0 to 9), ``"parity"`` ``even`` or ``odd``. `root` must not exist yet.
    Returns the number of images written per split."""
    from PIL import Image

    if task not in TASKS:
        raise UsageError(f"task must be one of {', '.join(TASKS)}, not {task!r}")
    root = Path(root)
    root.mkdir(parents=True)  # an existing folder is refused: it might hold other images
    images, labels = digits_uint8()
    with np.load(HELDOUT) as data:
        heldout = data["indices"]
    val = np.zeros(len(labels), dtype=bool)
    val[heldout] = True
    names = TASKS[task]
    folders = {(split, name): root / split / name for split in ("train", "val") for name in set(names)}
    for folder in folders.values():
        folder.mkdir(parents=True)
    for index, (pixels, digit, is_val) in enumerate(zip(images, labels, val)):
        Image.fromarray(pixels).save(folders["val" if is_val else "train", names[digit]] / f"{index}.png")
    return {"train": int((~val).sum()), "val": int(val.sum())}

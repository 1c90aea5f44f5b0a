"""The shipped held-out split and training record, readable without torch.

`digits_heldout.npz` holds the test quarter of scikit-learn's digits that the weights
never saw; `digits_cnn.json` is what the training recipe measured and wrote. Both are
plain numpy/JSON so that a torch-free runtime can use them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

HELDOUT = Path(__file__).with_name("digits_heldout.npz")
RECORD = Path(__file__).with_name("digits_cnn.json")


def load_heldout() -> tuple[np.ndarray, np.ndarray]:
    """Held-out images, (N, 8, 8) uint8 in 0..255, and their labels, (N,) int64."""
    with np.load(HELDOUT) as data:
        return data["images"], data["labels"]


def load_record() -> dict[str, Any]:
    """The training record: weights file, sha256, accuracy, normalisation, split."""
    return json.loads(RECORD.read_text())

"""Verification primitives: ONNX Runtime's outputs against eager PyTorch's, in numpy alone.

What one comparison finds is an `OutputCheck`. `compare` is elementwise, with ``atol``
in units of the output's scale; `compare_masks` lets a mask's edge move by one pixel;
`box_iou` and `pair_greedy` pair detections that the two runtimes list in another
order. The task adapters (`zoo.export.tasks`) build their comparisons from these. Importing
this module imports neither torch nor onnx, so it is tested with small arrays alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from zoo.errors import ZooError

__all__ = ["OutputCheck", "ExportVerificationError", "CannotVerifyError", "compare", "output_scale", "compare_masks",
           "box_iou", "pair_greedy"]


@dataclass(frozen=True)
class OutputCheck:
    """One output compared at one input shape: ONNX Runtime against eager PyTorch."""

    name: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    max_abs_error: float
    max_rel_error: float  # |onnx - torch| / |torch|, over elements where |torch| > atol
    rtol: float
    atol: float
    passed: bool  # every element: |onnx - torch| <= atol * scale + rtol * |torch|
    detections: int | None = None  # detection models: how many PyTorch found in this image
    unmatched: int | None = None  # detection models: kept by one runtime only, at the score cut
    scale: float = 1.0  # image and class outputs: max(1, max |torch|), the unit of atol

    def to_json(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


class ExportVerificationError(ZooError):
    """The exported model does not reproduce PyTorch's outputs; no file was left."""

    def __init__(self, message: str, checks: Sequence[OutputCheck]) -> None:
        super().__init__(message)
        self.checks = list(checks)


class CannotVerifyError(ZooError):
    """An existing export cannot be verified again on this machine (torch or the model's plugin missing, the
    model too large, its weights out of reach): this says nothing against the file."""


def output_scale(want: Any) -> float:
    """max(1, max |want|): float32 sums round in proportion to the values summed, so an
    output's absolute error grows with its magnitude; atol is counted in this unit."""
    return max(1.0, float(np.abs(np.asarray(want, np.float64)).max(initial=0.0)))


def compare(name: str, want: Any, have: Any, input_shape: tuple[int, ...], rtol: float, atol: float, *,
            scale: float = 1.0) -> OutputCheck:
    """`have` (ONNX Runtime) against `want` (PyTorch), elementwise: passes when every
    |have - want| <= atol * scale + rtol * |want|; another shape, or a NaN anywhere, fails."""
    want = np.asarray(want, dtype=np.float64)
    have = np.asarray(have, dtype=np.float64)
    if want.shape != have.shape:
        return OutputCheck(name, input_shape, tuple(have.shape), float("inf"), float("inf"), rtol, atol, False,
                           scale=scale)
    diff = np.abs(have - want)
    large = np.abs(want) > atol * scale  # near zero, only atol means anything
    rel = float((diff[large] / np.abs(want[large])).max()) if large.any() else 0.0
    passed = bool(np.all(diff <= atol * scale + rtol * np.abs(want)))  # NaN anywhere fails
    return OutputCheck(name, input_shape, tuple(have.shape), float(diff.max(initial=0.0)), rel, rtol, atol, passed,
                       scale=scale)


def compare_masks(name: str, want: Any, have: Any, input_shape: tuple[int, ...], rtol: float,
                  atol: float) -> OutputCheck:
    """Masks (..., H, W) compared up to a one-pixel move of their edges.

    A mask is pasted into its box at a whole number of pixels (torchvision rounds the
    box), so a box that differs by float noise can move a mask's edge by a pixel. Each
    ONNX Runtime pixel must lie within the range of PyTorch's values in its 3x3
    neighbourhood, within tolerance; the reported errors are the plain differences.
    """
    check = compare(name, want, have, input_shape, rtol, atol)
    if check.passed or np.shape(want) != np.shape(have):
        return check
    want = np.asarray(want, np.float64)
    padded = np.pad(want, [(0, 0)] * (want.ndim - 2) + [(1, 1), (1, 1)], mode="edge")
    height, width = want.shape[-2:]
    low, high = want.copy(), want.copy()
    for dy in range(3):
        for dx in range(3):
            shifted = padded[..., dy:dy + height, dx:dx + width]
            np.minimum(low, shifted, out=low)
            np.maximum(high, shifted, out=high)
    slack = atol + rtol * np.maximum(np.abs(low), np.abs(high))
    return replace(check, passed=bool(np.all((have >= low - slack) & (have <= high + slack))))


def box_iou(a: Any, b: Any) -> np.ndarray:
    """Intersection over union of every (x1, y1, x2, y2) box in `a` with every one in `b`; 0 without area."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)

    def area(boxes: np.ndarray) -> np.ndarray:
        return (boxes[:, 2] - boxes[:, 0]).clip(0) * (boxes[:, 3] - boxes[:, 1]).clip(0)

    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (bottom_right - top_left).clip(0).prod(-1)
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def pair_greedy(affinity: Any, threshold: float) -> list[tuple[int, int]]:
    """(row, column) pairs, highest affinity first, each row and column used once, none below `threshold`.

    Greedy rather than optimal on purpose: an item one side lacks cannot take its
    neighbour's better partner, so the pairs that remain wrong are the ones that fail.
    """
    affinity = np.asarray(affinity, np.float64)
    used_rows: set[int] = set()
    used_cols: set[int] = set()
    pairs = []
    for flat in np.argsort(-affinity, axis=None, kind="stable"):
        i, j = divmod(int(flat), affinity.shape[1])
        if not affinity[i, j] >= threshold:  # NaN never pairs
            break
        if i not in used_rows and j not in used_cols:
            pairs.append((i, j))
            used_rows.add(i)
            used_cols.add(j)
    return pairs

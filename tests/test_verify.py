"""zoo.export.verify: the comparisons of an export's verification, on small numpy arrays alone."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from zoo.export.verify import box_iou, compare, compare_masks, output_scale, pair_greedy
from zoo.export.tasks.detection import compare_detections

SHAPE = (1, 3, 8, 8)


def test_outputs_within_tolerance_pass_and_report_their_errors() -> None:
    want = np.array([[1.0, -2.0, 0.0]], np.float32)
    have = want + np.array([[1e-4, -1e-4, 5e-6]], np.float32)
    check = compare("logits", want, have, SHAPE, 1e-3, 1e-5)
    assert check.passed and check.output_shape == (1, 3) and check.input_shape == SHAPE
    assert check.max_abs_error == pytest.approx(1e-4, rel=1e-3)
    assert check.max_rel_error == pytest.approx(1e-4, rel=1e-2)  # of 1.0; the zero is left out


def test_an_element_beyond_tolerance_fails() -> None:
    want = np.zeros((2, 4))
    have = want.copy()
    have[1, 2] = 2e-5  # atol 1e-5 near zero, where rtol gives no room
    check = compare("out", want, have, SHAPE, 1e-3, 1e-5)
    assert not check.passed and check.max_abs_error == pytest.approx(2e-5)


def test_atol_counts_in_units_of_the_output_scale() -> None:
    want = np.array([2000.0, 0.0])
    have = np.array([2000.0, 2.6e-3])  # a large output's rounding shows at its zero crossings
    assert output_scale(want) == 2000.0 and output_scale(np.array([0.5, -0.25])) == 1.0
    assert not compare("out", want, have, SHAPE, 1e-3, 1e-5).passed
    scaled = compare("out", want, have, SHAPE, 1e-3, 1e-5, scale=output_scale(want))
    assert scaled.passed and scaled.scale == 2000.0


@pytest.mark.parametrize("where", ["have", "want"])
def test_nan_anywhere_fails(where: str) -> None:
    want, have = np.ones(5), np.ones(5)
    (have if where == "have" else want)[3] = np.nan
    assert not compare("out", want, have, SHAPE, 1.0, 1.0).passed


def test_another_shape_fails_with_infinite_error() -> None:
    check = compare("out", np.zeros((1, 10)), np.zeros((1, 11)), SHAPE, 1e-3, 1e-5)
    assert not check.passed and check.output_shape == (1, 11)
    assert check.max_abs_error == check.max_rel_error == float("inf")
    assert check.to_json()["output_shape"] == [1, 11]


def _square(shift: int = 0) -> np.ndarray:
    mask = np.zeros((2, 1, 12, 12), np.float32)
    mask[0, 0, 3:8, 3 + shift:9 + shift] = 1.0
    return mask


def test_a_mask_edge_may_move_one_pixel_but_not_two() -> None:
    assert not compare("masks", _square(), _square(1), SHAPE, 5e-3, 1e-3).passed  # plain comparison fails
    assert compare_masks("masks", _square(), _square(1), SHAPE, 5e-3, 1e-3).passed
    assert compare_masks("masks", _square(), _square(-1), SHAPE, 5e-3, 1e-3).passed
    moved_two = compare_masks("masks", _square(), _square(2), SHAPE, 5e-3, 1e-3)
    assert not moved_two.passed and moved_two.max_abs_error == 1.0
    assert not compare_masks("masks", _square(), _square() * 0.9, SHAPE, 5e-3, 1e-3).passed  # values inside


def test_box_iou_of_every_pair_and_of_boxes_without_area() -> None:
    a = np.array([[0, 0, 10, 10], [5, 5, 6, 5]])  # the second has no height
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]])
    iou = box_iou(a, b)
    assert iou.shape == (2, 3)
    np.testing.assert_allclose(iou[0], [1.0, 50 / 150, 0.0])
    assert (iou[1] == 0).all()
    assert box_iou(np.zeros((0, 4)), b).shape == (0, 3)


def test_pairs_are_greedy_best_first_and_stop_at_the_threshold() -> None:
    affinity = np.array([[0.9, 0.8], [0.85, 0.1], [0.3, 0.2]])
    assert pair_greedy(affinity, 0.5) == [(0, 0)]  # row 1 lost column 0; the rest are below 0.5
    assert pair_greedy(affinity, 0.05) == [(0, 0), (2, 1)]
    assert pair_greedy(np.full((2, 2), np.nan), 0.5) == [] and pair_greedy(np.zeros((0, 3)), 0.5) == []


def _detections(boxes: list[list[float]], scores: list[float], labels: list[int]) -> list[np.ndarray]:
    return [np.array(boxes, np.float32).reshape(-1, 4), np.array(labels, np.int64), np.array(scores, np.float32)]


NAMES = ["boxes", "labels", "scores"]
TORCH = _detections([[10, 10, 50, 60], [0, 0, 30, 30], [60, 60, 90, 95]], [0.9, 0.6, 0.3], [1, 2, 2])


def test_detections_listed_in_another_order_pair_up_and_pass() -> None:
    reordered = [a[[2, 0, 1]] for a in TORCH]
    checks = compare_detections(NAMES, TORCH, reordered, SHAPE, 5e-3, 1e-3)
    assert [c.name for c in checks] == NAMES
    assert all(c.passed and c.unmatched == 0 and c.detections == 3 for c in checks)
    assert all(c.max_abs_error == 0 for c in checks)


def test_detections_of_another_label_do_not_pair() -> None:
    relabelled = [TORCH[0], np.array([1, 3, 2]), TORCH[2]]
    checks = compare_detections(NAMES, TORCH, relabelled, SHAPE, 5e-3, 1e-3)
    assert not any(c.passed for c in checks) and checks[0].unmatched == 2


def test_an_empty_image_compares_equal() -> None:
    empty = _detections([], [], [])
    checks = compare_detections(NAMES, empty, empty, SHAPE, 5e-3, 1e-3)
    assert all(c.passed and c.detections == 0 and c.output_shape[0] == 0 for c in checks)


def test_verify_imports_neither_torch_nor_onnx() -> None:
    code = ("import sys, zoo.export.verify; "
            "print(sorted(m for m in ('torch', 'onnx', 'onnxruntime', 'sqlalchemy') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"

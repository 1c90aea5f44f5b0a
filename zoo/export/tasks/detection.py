"""The detection task, export side: the runtime side (`zoo.runtime.tasks.detection`) plus export and verification."""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from zoo.errors import UsageError
from zoo.runtime.tasks import detection as runtime
from zoo.export.tasks import TaskAdapter

if TYPE_CHECKING:
    import torch

    from zoo.export.verify import OutputCheck


class Detection(TaskAdapter, runtime.Detection):
    """Detection: as `zoo.runtime.tasks.detection.Detection`, exported and verified."""

    #: The models run two stages (proposals, then RoIAlign on the regressed boxes), so
    #: float differences compound: on fasterrcnn_resnet50_fpn boxes differ by up to
    #: 1.3e-3 relative (0.02 px) and scores by 3e-4, hence rtol 5e-3, atol 1e-3.
    tolerance = (5e-3, 1e-3)

    dynamic_image_size = True

    def recognises(self, model: torch.nn.Module) -> bool:
        """torchvision's convention: ``forward(images, targets=None)`` on a list of C x H x W images
        (Faster/Mask/Keypoint R-CNN, RetinaNet, FCOS, SSD, and plugins' detectors that follow it)."""
        return list(inspect.signature(model.forward).parameters)[:2] == ["images", "targets"]

    def call_inputs(self, model: torch.nn.Module, tensors: list[torch.Tensor]) -> list[Any]:
        """Each N x C x H x W tensor as a list of N images."""
        if any(t.dim() != 4 for t in tensors):
            sizes = [list(t.shape) for t in tensors]
            raise UsageError(f"{type(model).__name__} takes images as N,C,H,W (e.g. 1,3,320,320), not {sizes}")
        return [list(t.unbind(0)) for t in tensors]

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """The model on a (1, C, H, W) tensor, returning that image's dict of outputs."""
        import torch

        class OneImage(torch.nn.Module):
            """A detection model on one image as a batch of one; its outputs for that image."""

            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, input: torch.Tensor) -> dict[str, torch.Tensor]:  # noqa: A002
                return self.model([input[0]])[0]

        return OneImage()

    def default_shape(self, model: torch.nn.Module, *, name: str, preprocessing: Mapping[str, Any] | None,
                      min_size: Sequence[int] | None, input_size: Sequence[int] | None) -> tuple[int, ...]:
        """A square of the model's own ``transform.min_size``: it resizes every image itself (shorter
        side to that size); the weights' `min_size` is only the smallest image it accepts."""
        side = max(model.transform.min_size)
        return (1, 3, side, side)

    def sample(self, size: Sequence[int], generator: torch.Generator) -> torch.Tensor:
        """An image in [0, 1], as the model takes it (it normalises inside)."""
        import torch

        return torch.rand(size, generator=generator)

    def verification_inputs(self, shape: tuple[int, ...], *, dynamic_batch: bool,
                            dynamic_image_size: bool) -> list[tuple[torch.Tensor, ...]]:
        """The export size, another size, and a blank grey image, on which a detector finds
        nothing (an empty output is where variable-length graphs break).

        The grey is dithered between two adjacent 8-bit levels, as a camera records a
        blank wall: on a perfectly uniform image shifted anchors score exactly alike,
        and which of them survives the top-k and NMS is arbitrary, so the runtimes may
        keep different ones.
        """
        import torch

        levels = torch.randint(127, 129, shape, generator=torch.Generator().manual_seed(3))
        runs = super().verification_inputs(shape, dynamic_batch=dynamic_batch, dynamic_image_size=dynamic_image_size)
        return [*runs, (levels.float() / 255,)]

    def output_axes(self, output: str, *, dynamic_batch: bool, dynamic_image_size: bool) -> dict[int, str]:
        """Every output's first axis counts detections; masks have the image's height and width."""
        image = {2: "height", 3: "width"} if output == "masks" and dynamic_image_size else {}
        return {0: "detections"} | image

    def compare(self, names: Sequence[str], expected: Sequence[np.ndarray], got: Sequence[np.ndarray],
                input_shape: tuple[int, ...], rtol: float, atol: float) -> list[OutputCheck]:
        """Detections paired across the runtimes, then compared pair by pair (`compare_detections`)."""
        return compare_detections(names, expected, got, input_shape, rtol, atol)


class InstanceSegmentation(Detection):
    """Detection plus one soft mask per object (Mask R-CNN)."""

    name = "instance_segmentation"


class Keypoints(Detection):
    """Detection plus keypoints per object (Keypoint R-CNN)."""

    name = "keypoints"


def compare_detections(names: Sequence[str], expected: Sequence[np.ndarray], got: Sequence[np.ndarray],
                       input_shape: tuple[int, ...], rtol: float, atol: float) -> list[OutputCheck]:
    """Detections paired across the runtimes (same label; twin boxes, then overlap), then compared pair by pair.

    The runtimes may list detections in another order, and which detections survive
    the cut (the score threshold, or the per-image limit among tied scores) can differ
    by float noise. A detection found by one runtime only, or a pair that differs, is
    tolerated (and counted as unmatched) only where its scores sit at that cut; any
    other difference fails. Masks may move an edge by one pixel (`compare_masks`).
    """
    from zoo.export.verify import compare, compare_masks

    want, have = dict(zip(names, expected)), dict(zip(names, got))
    want_at_cut, have_at_cut = _at_cut(want["scores"], rtol, atol), _at_cut(have["scores"], rtol, atol)
    pairs = [(i, j) for i, j in _match_detections(want, have, rtol, atol)
             if not (want_at_cut[i] and have_at_cut[j])
             or all(np.allclose(have[n][j], want[n][i], rtol=rtol, atol=atol) for n in names)]
    lost = np.ones(len(want["scores"]), bool)
    extra = np.ones(len(have["scores"]), bool)
    lost[[i for i, _ in pairs]] = False
    extra[[j for _, j in pairs]] = False
    tolerated = bool(want_at_cut[lost].all() and have_at_cut[extra].all())
    rows, cols = [i for i, _ in pairs], [j for _, j in pairs]
    checks = [(compare_masks if n == "masks" else compare)(n, want[n][rows], have[n][cols], input_shape, rtol, atol)
              for n in names]
    return [replace(c, output_shape=tuple(have[c.name].shape), passed=c.passed and tolerated,
                    detections=len(want["scores"]), unmatched=int(lost.sum() + extra.sum())) for c in checks]


def _at_cut(scores: np.ndarray, rtol: float, atol: float) -> np.ndarray:
    """Which detections score as low as the lowest one kept, within tolerance."""
    if not len(scores):
        return np.zeros(0, bool)
    low = float(scores.min())
    return scores <= low + atol + rtol * abs(low)


def _match_detections(want: Mapping[str, np.ndarray], have: Mapping[str, np.ndarray], rtol: float,
                      atol: float) -> list[tuple[int, int]]:
    """(PyTorch index, ONNX Runtime index) pairs of one label: twins first, then by overlap.

    Twins are boxes whose corners agree within tolerance; they pair closest first,
    because IoU cannot pair them when they have no area (a random head's boxes often
    have x1 == x2). The rest pair by overlap (IoU of at least 0.5), best first
    (`pair_greedy`), so a detection one runtime lacks cannot take its neighbour's twin;
    those pairs are the ones that then fail the comparison, with their measured error.
    """
    from zoo.export.verify import box_iou, pair_greedy

    a, b = np.asarray(want["boxes"], np.float64), np.asarray(have["boxes"], np.float64)
    gap = np.abs(a[:, None, :] - b[None, :, :])
    twin = (gap <= atol + rtol * np.abs(a[:, None, :])).all(-1)
    distance = gap.max(-1, initial=0.0)
    # twins rank in (1, 2], nearest first; other pairs by their IoU in [0, 1]
    affinity = np.where(twin, 2.0 - distance / (1.0 + distance), box_iou(a, b))
    affinity[want["labels"][:, None] != have["labels"][None, :]] = 0.0
    return pair_greedy(affinity, 0.5)

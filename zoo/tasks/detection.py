"""The detection tasks: export side and runtime side (see `zoo.tasks`)."""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from zoo.errors import UsageError
from zoo.tasks import DecodeOptions, Result, TaskAdapter, check_ranks

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from zoo.verify import OutputCheck

#: The outputs a detection model's results are read from, by their rank; `_REQUIRED` always.
_OUTPUT_RANKS = {"boxes": 2, "labels": 1, "scores": 1, "masks": 4, "keypoints": 3, "keypoints_scores": 2}
_REQUIRED = ("boxes", "labels", "scores")
#: torchvision's instance-segmentation masks are probabilities; a pixel belongs above this.
_MASK_THRESHOLD = 0.5
#: COCO's person skeleton over its 17 keypoints (nose, eyes, ears, shoulders, elbows, wrists,
#: hips, knees, ankles), as torchvision's keypoint R-CNN predicts them.
COCO_PERSON_SKELETON = ((0, 1), (0, 2), (1, 3), (2, 4), (0, 5), (0, 6), (5, 7), (6, 8), (7, 9), (8, 10), (5, 11),
                        (6, 12), (11, 13), (12, 14), (13, 15), (14, 16))


@dataclass(frozen=True)
class Detections(Result):
    """The objects found in one image at or above the score threshold, by descending score.

    Coordinates are in the pixels of the image as the model saw it: the image itself
    for detection preprocessing, which does not resize.
    """

    boxes: np.ndarray  # (K, 4) float32: x1, y1, x2, y2
    labels: list[str]
    label_ids: np.ndarray  # (K,) int64, index into the categories
    scores: np.ndarray  # (K,) float32
    masks: np.ndarray | None = None  # instance segmentation: (K, H, W) bool
    keypoints: np.ndarray | None = None  # keypoints: (K, J, 3) x, y, visibility
    keypoint_scores: np.ndarray | None = None  # keypoints: (K, J)
    task: str = field(default="detection", kw_only=True)  # or instance_segmentation, keypoints

    def to_json(self) -> dict[str, Any]:
        """Plain data; a mask is summarised by its pixel count (`masks` has the pixels)."""
        objects = []
        for i, label in enumerate(self.labels):
            item: dict[str, Any] = {"label": label, "label_id": int(self.label_ids[i]),
                                    "score": float(self.scores[i]), "box": [float(v) for v in self.boxes[i]]}
            if self.masks is not None:
                item["mask_pixels"] = int(self.masks[i].sum())
            if self.keypoints is not None:
                item["keypoints"] = self.keypoints[i].tolist()
            objects.append(item)
        return {"source": self.source, "task": self.task, "detections": objects}

    def __str__(self) -> str:
        lines = [f"{self.source or 'image'}: {len(self.labels)} detection(s)"]
        lines += [f"  {label} {score:.1%} at ({', '.join(f'{v:.0f}' for v in box)})"
                  for label, score, box in zip(self.labels, self.scores, self.boxes)]
        return "\n".join(lines)


class Detection(TaskAdapter):
    """Object detection (torchvision's detection models): one image per call, a variable number of boxes, labels and scores out."""

    name = "detection"
    #: The models run two stages (proposals, then RoIAlign on the regressed boxes), so
    #: float differences compound: on fasterrcnn_resnet50_fpn boxes differ by up to
    #: 1.3e-3 relative (0.02 px) and scores by 3e-4, hence rtol 5e-3, atol 1e-3.
    tolerance = (5e-3, 1e-3)
    batched = False
    dynamic_image_size = True
    #: Per output; K counts detections, J keypoints.
    output_layouts = {
        "boxes": "K4 (x1, y1, x2, y2 in input pixels)", "labels": "K", "scores": "K", "masks": "K1HW",
        "keypoints": "KJ3 (x, y, visibility)", "keypoints_scores": "KJ",
    }

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

    # -- export side

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

    # -- runtime side

    def check_outputs(self, path: str, shapes: Mapping[str, list[Any]]) -> None:
        _check_detection_outputs(path, self.name, shapes)

    def decode(self, outputs: Mapping[str, np.ndarray], source: str | None, options: DecodeOptions) -> Result:
        return _decode_detections(self.name, outputs, source, options)

    def draw(self, result: Result, image: Image.Image) -> Image.Image:
        return _draw_detections(result, image)


def compare_detections(names: Sequence[str], expected: Sequence[np.ndarray], got: Sequence[np.ndarray],
                       input_shape: tuple[int, ...], rtol: float, atol: float) -> list[OutputCheck]:
    """Detections paired across the runtimes (same label; twin boxes, then overlap), then compared pair by pair.

    The runtimes may list detections in another order, and which detections survive
    the cut (the score threshold, or the per-image limit among tied scores) can differ
    by float noise. A detection found by one runtime only, or a pair that differs, is
    tolerated (and counted as unmatched) only where its scores sit at that cut; any
    other difference fails. Masks may move an edge by one pixel (`compare_masks`).
    """
    from zoo.verify import compare, compare_masks

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
    from zoo.verify import box_iou, pair_greedy

    a, b = np.asarray(want["boxes"], np.float64), np.asarray(have["boxes"], np.float64)
    gap = np.abs(a[:, None, :] - b[None, :, :])
    twin = (gap <= atol + rtol * np.abs(a[:, None, :])).all(-1)
    distance = gap.max(-1, initial=0.0)
    # twins rank in (1, 2], nearest first; other pairs by their IoU in [0, 1]
    affinity = np.where(twin, 2.0 - distance / (1.0 + distance), box_iou(a, b))
    affinity[want["labels"][:, None] != have["labels"][None, :]] = 0.0
    return pair_greedy(affinity, 0.5)


class InstanceSegmentation(Detection):
    """Detection plus one soft mask per object (Mask R-CNN)."""

    name = "instance_segmentation"


class Keypoints(Detection):
    """Detection plus keypoints per object (Keypoint R-CNN)."""

    name = "keypoints"


def _check_detection_outputs(path: str, task: str, shapes: Mapping[str, list[Any]]) -> None:
    """boxes, labels and scores, and masks or keypoints where the model has them, of their ranks."""
    check_ranks(path, task, shapes, {name: rank for name, rank in _OUTPUT_RANKS.items()
                                     if name in shapes or name in _REQUIRED})


def _decode_detections(task: str, outputs: Mapping[str, np.ndarray], source: str | None,
                       options: DecodeOptions) -> Detections:
    """The detections scoring at least `options.score_threshold`, best first (ties in the model's order)."""
    scores = outputs["scores"]
    keep = np.flatnonzero(scores >= options.score_threshold)
    keep = keep[np.argsort(-scores[keep], kind="stable")]
    label_ids = outputs["labels"][keep].astype(np.int64)
    masks, keypoints, keypoint_scores = (outputs.get(name) for name in ("masks", "keypoints", "keypoints_scores"))
    return Detections(
        source=source,
        boxes=outputs["boxes"][keep].astype(np.float32),
        labels=[options.label(int(i)) for i in label_ids],
        label_ids=label_ids,
        scores=scores[keep].astype(np.float32),
        masks=masks[keep, 0] > _MASK_THRESHOLD if masks is not None else None,
        keypoints=keypoints[keep] if keypoints is not None else None,
        keypoint_scores=keypoint_scores[keep] if keypoint_scores is not None else None,
        task=task,
    )


def _draw_detections(result: Result, image: Image.Image) -> Image.Image:
    """Masks blended in their object's colour, then boxes labelled with class and score, then
    keypoints in the same colour (joined as COCO's person skeleton when there are its 17)."""
    from PIL import Image

    from zoo.drawing import draw_bounding_boxes, draw_keypoints, draw_segmentation_masks, palette

    assert isinstance(result, Detections), type(result)
    pixels = np.asarray(image.convert("RGB"))
    colors = palette(len(result.boxes) + 1)[1:]  # object i in colour i + 1: the palette's first is black
    if result.masks is not None and len(result.masks):
        if result.masks.shape[1:] != pixels.shape[:2]:  # the model saw the image at another size
            pixels = np.asarray(image.convert("RGB").resize(result.masks.shape[:0:-1]))
        pixels = draw_segmentation_masks(pixels, result.masks, alpha=0.5, colors=colors)
    labels = [f"{label} {score:.0%}" for label, score in zip(result.labels, result.scores)]
    pixels = draw_bounding_boxes(pixels, result.boxes, labels=labels, colors=colors, width=2)
    if result.keypoints is not None and len(result.keypoints):
        skeleton = COCO_PERSON_SKELETON if result.keypoints.shape[1] == 17 else None
        for points, color in zip(result.keypoints, colors):
            pixels = draw_keypoints(pixels, points[None, :, :2], connectivity=skeleton, colors=color,
                                    visibility=points[None, :, 2] > 0)
    return Image.fromarray(pixels)

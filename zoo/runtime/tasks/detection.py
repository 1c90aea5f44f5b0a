"""The detection tasks: the runtime side (see `zoo.runtime.tasks`; the export side is `zoo.export.tasks`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from zoo.runtime.tasks import DecodeOptions, Result, RuntimeTask, check_ranks

if TYPE_CHECKING:
    from PIL import Image


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


class Detection(RuntimeTask):
    """Object detection (torchvision's detection models): one image per call, a variable number of boxes, labels and scores out."""

    name = "detection"
    batched = False
    #: Per output; K counts detections, J keypoints.
    output_layouts = {
        "boxes": "K4 (x1, y1, x2, y2 in input pixels)", "labels": "K", "scores": "K", "masks": "K1HW",
        "keypoints": "KJ3 (x, y, visibility)", "keypoints_scores": "KJ",
    }


    def check_outputs(self, path: str, shapes: Mapping[str, list[Any]]) -> None:
        _check_detection_outputs(path, self.name, shapes)

    def decode(self, outputs: Mapping[str, np.ndarray], source: str | None, options: DecodeOptions) -> Result:
        return _decode_detections(self.name, outputs, source, options)

    def draw(self, result: Result, image: Image.Image) -> Image.Image:
        return _draw_detections(result, image)


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

    from zoo.runtime.drawing import draw_bounding_boxes, draw_keypoints, draw_segmentation_masks, palette

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

"""Measuring a classifier on labelled images, without torch: ``zoo eval`` on an export, and the metrics of both sides.

`evaluate_export` runs an exported classifier (ONNX Runtime, the preprocessing and categories from
the file's zoo metadata, as `Predictor` runs it) on a split of an `zoo.datasets.ImageData`;
`zoo.training.evaluate` does the same for a PyTorch model of the catalog. Both hand the logits to
`evaluate_logits`, which makes the one `Evaluation`: acc@1, acc@5, per-class accuracy and the
confusion matrix (rows: the true class; columns: the predicted one), with the data's manifest hash
and split and what was evaluated. `draw_confusion` draws the matrix (Pillow), `save_confusion`
writes it as ``zoo``'s other drawings are written (`zoo.outputs.staged_output`).

Classes are matched to the model's outputs by name: each class of the data must be one of the
model's categories (a folder ``cat`` is scored on the output named ``cat``), else one line names it.
A model that names no categories is matched by index (class i of the data, in its sorted order, is
output i) only when the counts agree; the result says how they were matched. A model with more
categories than the data has classes is measured over its whole head: a prediction of a category the
data lacks counts as wrong, in the last column, ``(other)``.

Importing this module loads numpy and Pillow only; ONNX Runtime is imported by `evaluate_export`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from zoo.datasets import ImageData, Sample, image_data
from zoo.errors import UsageError, excerpt
from zoo.outputs import png_info, staged_output
from zoo.preprocessing import check_image_size
from zoo.progress import bar
from zoo.text import table

if TYPE_CHECKING:
    from zoo.runtime.predictor import Predictor

__all__ = ["SPLITS", "OTHER", "Evaluation", "evaluate_logits", "evaluate_export", "export_logits", "class_indices",
           "split_samples", "as_image_data", "is_export", "draw_confusion", "save_confusion", "check_drawing",
           "check_batch_size", "progress_bar"]

#: The parts of the data that can be measured: the validation images, the training images, or both.
SPLITS = ("val", "all", "train")
#: The confusion matrix's last column where the model has categories the data lacks.
OTHER = "(other)"
#: acc@k's k, capped at the number of the model's categories (timm's and zoo finetune's convention: a head of
#: at most 5 categories has acc@5 100%).
TOPK = 5
#: Classes shown in the text table's confusion matrix; more are left to --json and --draw.
TEXT_MATRIX_MOST = 20
#: Most columns `draw_confusion` draws (a picture of more is not readable).
DRAWN_MOST = 200
#: Longest class name drawn, in characters (longer ones end in an ellipsis).
DRAWN_LABEL_CHARS = 24
#: The colour of an empty cell and of a full one (a row's fraction between them): matplotlib's "Blues" ends.
_EMPTY, _FULL = np.array([247, 251, 255]), np.array([8, 48, 107])
_MARGIN = 8


@dataclass(frozen=True)
class Evaluation:
    """A classifier measured on labelled images: what `evaluate_logits` (and so ``zoo eval``) reports.

    Accuracies are percentages. `confusion` has a row per class of the data (the true class) and a
    column per entry of `columns` (the predicted one): the data's classes, then `OTHER` when the
    model has categories the data lacks.
    """

    evaluated: Mapping[str, Any]  # what ran: kind (model or export), model, weights, file and its SHA-256, device
    data: str | None  # the data's folder (or the CSV's)
    manifest_sha256: str | None  # `zoo.datasets.ImageData.manifest_sha256`: which images, under which labels
    split: str  # the part measured: one of SPLITS
    classes: tuple[str, ...]
    columns: tuple[str, ...]
    matched_by: str  # "name" (classes are the model's categories) or "index" (the model names none)
    categories: int  # how many the model's head has
    images: int
    skipped: int  # the data's images that could not be read (not counted)
    acc1: float
    acc5: float  # over min(TOPK, categories) classes
    per_class: tuple[float | None, ...]  # None for a class without images in the split
    confusion: tuple[tuple[int, ...], ...]

    @property
    def correct(self) -> int:
        """Images whose top-1 class is their own."""
        return sum(row[i] for i, row in enumerate(self.confusion))

    def to_json(self) -> dict[str, Any]:
        """Plain data: ``zoo eval --json``."""
        return {
            "evaluated": dict(self.evaluated),
            "data": {"path": self.data, "manifest_sha256": self.manifest_sha256, "split": self.split,
                     "images": self.images, "skipped": self.skipped},
            "classes": list(self.classes), "matched_by": self.matched_by, "categories": self.categories,
            "acc@1": self.acc1, "acc@5": self.acc5,
            "per_class": {name: {"images": sum(row), "correct": row[i], "acc@1": acc}
                          for i, (name, row, acc) in enumerate(zip(self.classes, self.confusion, self.per_class))},
            "confusion": {"rows": "true class", "columns": list(self.columns),
                          "counts": [list(row) for row in self.confusion]},
        }

    def title(self) -> str:
        """What was evaluated, in a few words."""
        what = self.evaluated
        model = f"{what.get('model') or 'a model'} with {what.get('weights') or 'no named weights'}"
        return f"{what['path']} ({model})" if what.get("kind") == "export" else model

    def summary(self) -> str:
        """The split and the accuracies, in one line."""
        return (f"{self.split}: {self.images} images  acc@1 {self.acc1:.2f}% ({self.correct}/{self.images})  "
                f"acc@5 {self.acc5:.2f}%")

    def table(self) -> str:
        """What ``zoo eval`` prints: the header, a row per class, and the confusion matrix when it is small."""
        how = ("by name" if self.matched_by == "name"
               else "by index (the model names no categories; class i of the data is output i)")
        lines = [self.title() + (f" on {self.data}" if self.data else ""),
                 f"data: manifest sha256 {(self.manifest_sha256 or '-')[:16]}..., {self.skipped} unreadable "
                 f"image(s) skipped; classes matched to the model's {self.categories} outputs {how}",
                 self.summary(), ""]
        rows = []
        for i, (name, row, acc) in enumerate(zip(self.classes, self.confusion, self.per_class)):
            count, j = max(((count, j) for j, count in enumerate(row) if j != i), default=(0, 0))
            mistaken = f"{self.columns[j]} ({count})" if count else ""
            rows.append([name, sum(row), row[i], "-" if acc is None else f"{acc:.1f}%", mistaken])
        lines += table(["CLASS", "IMAGES", "CORRECT", "ACC@1", "MOST OFTEN TAKEN FOR"], rows, right={1, 2, 3})
        if len(self.columns) <= TEXT_MATRIX_MOST:
            lines += ["", "confusion matrix (rows: true class; columns: predicted class):"]
            lines += table(["", *self.columns], [[name, *row] for name, row in zip(self.classes, self.confusion)],
                           right=set(range(1, len(self.columns) + 1)))
        else:
            lines += ["", f"(the confusion matrix has {len(self.columns)} columns: see --json, or --draw FILE.png)"]
        return "\n".join(lines)


# -- the metrics -----------------------------------------------------------------------


def class_indices(classes: Sequence[str], categories: Sequence[str] | None, outputs: int | None,
                  what: str = "the model") -> tuple[np.ndarray, str]:
    """The output of the model that scores each class of the data, and how they were matched.

    By name when the model has `categories` (each class must be one); else by index, when the
    model's number of `outputs` is the number of classes (None: not known yet, taken as agreeing).
    Anything else is a one-line `UsageError` naming `what`.
    """
    if categories is None:
        if outputs is not None and outputs != len(classes):
            raise UsageError(f"{what} names no categories and has {outputs} outputs; the data has {len(classes)} "
                             "classes, so they cannot be matched by index (give weights or an export that name "
                             "their categories, or data of as many classes)")
        return np.arange(len(classes)), "index"
    if outputs is not None and outputs != len(categories):
        raise UsageError(f"{what} has {outputs} outputs but names {len(categories)} categories")
    index: dict[str, int] = {}
    for i, name in enumerate(categories):
        index.setdefault(name, i)
    outside = [name for name in classes if name not in index]
    if outside:
        more = f" (and {len(outside) - 1} more)" if len(outside) > 1 else ""
        raise UsageError(f"data class {excerpt(outside[0])}{more} is not one of the {len(categories)} categories of "
                         f"{what} (a label outside its head); name the class folders after its categories, "
                         f"e.g. {', '.join(map(repr, list(categories)[:3]))}")
    return np.array([index[name] for name in classes]), "name"


def evaluate_logits(logits: np.ndarray, labels: Sequence[int] | np.ndarray, classes: Sequence[str], *,
                    categories: Sequence[str] | None = None, evaluated: Mapping[str, Any] | None = None,
                    split: str = "all", data: ImageData | None = None) -> Evaluation:
    """The `Evaluation` of a classifier's `logits` (N x outputs) on N images of `labels` (indices into `classes`).

    `categories` names the model's outputs (None: matched by index, see `class_indices`). A class's
    rank is its place in the logits sorted from the highest; equal logits rank the lower output
    first (as `zoo.runtime`'s classification results do). `data` gives the manifest hash, folder and
    count of skipped images; `evaluated` says what ran and `split` which part of the data.
    """
    scores = np.asarray(logits)
    if scores.ndim != 2 or scores.shape[0] == 0 or not np.issubdtype(scores.dtype, np.floating):
        raise UsageError(f"logits must be a float array of N x outputs (N >= 1), got {excerpt(scores)[:80]}")
    targets = np.asarray(labels)
    if targets.shape != (scores.shape[0],) or not np.issubdtype(targets.dtype, np.integer) \
            or targets.min() < 0 or targets.max() >= len(classes):
        raise UsageError(f"labels must be {scores.shape[0]} class indices from 0 to {len(classes) - 1}, one per "
                         f"row of the logits; got {excerpt(labels)}")
    if split not in SPLITS:
        raise UsageError(f"split must be one of {', '.join(SPLITS)}, not {excerpt(split)}")
    outputs = scores.shape[1]
    scored, matched_by = class_indices(classes, categories, outputs)
    order = np.argsort(-scores, axis=1, kind="stable")
    wanted = scored[targets]
    # the column of each output: its class in the data, or the last ("other") for a category the data lacks
    column = np.full(outputs, len(classes))
    column[scored] = np.arange(len(classes))
    columns = (*classes, OTHER) if outputs > len(classes) else tuple(classes)
    confusion = np.zeros((len(classes), len(columns)), dtype=np.int64)
    np.add.at(confusion, (targets, column[order[:, 0]]), 1)
    top5 = (order[:, :TOPK] == wanted[:, None]).any(axis=1)
    counts = confusion.sum(axis=1)
    per_class = tuple(100.0 * int(confusion[i, i]) / int(n) if n else None for i, n in enumerate(counts))
    return Evaluation(
        evaluated=dict(evaluated or {}), data=str(data.root) if data is not None else None,
        manifest_sha256=data.manifest_sha256 if data is not None else None, split=split, classes=tuple(classes),
        columns=columns, matched_by=matched_by, categories=outputs, images=len(targets),
        skipped=len(data.skipped) if data is not None else 0,
        acc1=100.0 * float(np.trace(confusion)) / len(targets),
        acc5=100.0 * float(top5.mean()),
        per_class=per_class, confusion=tuple(tuple(int(c) for c in row) for row in confusion),
    )


# -- the data --------------------------------------------------------------------------


def as_image_data(data: ImageData | str | os.PathLike[str], val_fraction: float = 0.2, seed: int = 0) -> ImageData:
    """`data` itself, or the images at that path (`zoo.datasets.image_data`, split by `val_fraction` and `seed`)."""
    return data if isinstance(data, ImageData) else image_data(data, val_fraction=val_fraction, seed=seed)


def split_samples(data: ImageData, split: str) -> tuple[Sample, ...]:
    """The images of `split` (one of `SPLITS`); a split without images is one line."""
    if split not in SPLITS:
        raise UsageError(f"split must be one of {', '.join(SPLITS)}, not {excerpt(split)}")
    samples = {"val": data.val, "train": data.train, "all": data.train + data.val}[split]
    if not samples:
        raise UsageError(f"{data.root}: the {split} split has no readable images")
    return samples


def is_export(model_or_export: Any) -> bool:
    """Whether ``zoo eval`` takes `model_or_export` as an exported file: a path object, or a name ending in .onnx."""
    return isinstance(model_or_export, os.PathLike) or (
        isinstance(model_or_export, str) and model_or_export.lower().endswith(".onnx"))


# -- exports -----------------------------------------------------------------------------


def evaluate_export(path: str | os.PathLike[str], data: ImageData | str | os.PathLike[str], *, split: str = "val",
                    val_fraction: float = 0.2, seed: int = 0, batch_size: int = 64, device: str | None = None,
                    progress: bool = False) -> Evaluation:
    """The `Evaluation` of the exported classifier at `path` on the `split` of `data`, run by ONNX Runtime.

    `data` is an `ImageData` or the path of one (split by `val_fraction` and `seed`). Preprocessing and
    categories come from the file's zoo metadata. `device` is the execution provider (``"cpu"``,
    ``"cuda"``; None: CUDA when a GPU is usable, else CPU). `batch_size` images are read and
    preprocessed at a time. Neither torch nor SQLAlchemy is imported.
    """
    from zoo.fetch import sha256_of
    from zoo.runtime.predictor import Predictor
    from zoo.runtime.tasks import main_output

    images = as_image_data(data, val_fraction, seed)
    samples = split_samples(images, split)
    predictor = Predictor(path, providers=device)
    if predictor.task != "classification":
        raise UsageError(f"{predictor.path}: zoo eval measures classification models; this one's task is "
                         f"{predictor.task or 'not recorded (no zoo metadata: export it with zoo export)'}")
    if predictor.preprocessing is None:
        raise UsageError(f"{predictor.path}: its metadata has no preprocessing (zoo.preprocessing); zoo eval "
                         "preprocesses images as the export declares: export it with zoo export")
    shapes = {output.name: output.shape for output in predictor.session.get_outputs()}
    outputs = shapes[main_output(list(shapes))][-1]
    class_indices(images.classes, predictor.categories, outputs if isinstance(outputs, int) else None,
                  predictor.path.name)
    logits = export_logits(predictor, [images.file(s) for s in samples], batch_size=batch_size, progress=progress)
    evaluated = {"kind": "export", "path": str(predictor.path), "sha256": sha256_of(predictor.path),
                 "model": predictor.metadata.get("model"), "weights": predictor.metadata.get("weights"),
                 "device": predictor.providers[0]}
    return evaluate_logits(logits, [s.label for s in samples], images.classes, categories=predictor.categories,
                           evaluated=evaluated, split=split, data=images)


def export_logits(predictor: Predictor, files: Sequence[str | os.PathLike[str]], *, batch_size: int = 64,
                  progress: bool = False) -> np.ndarray:
    """The classifier's logits (N x outputs, float32) on the image `files`, as `Predictor.predict` runs them.

    `batch_size` files are read and preprocessed at a time; they reach the session in the calls that
    `Predictor.predict` makes (its batch limit, or the export's own fixed batch).
    """
    from zoo.runtime.tasks import main_output

    check_batch_size(batch_size)
    rows: list[np.ndarray] = []
    with progress_bar(len(files), progress) as bar:
        for start in range(0, len(files), batch_size):
            outputs = predictor.outputs(list(files[start:start + batch_size]))
            rows += [out[main_output(list(out))] for out in outputs]
            bar.update(len(outputs))
    return np.stack(rows).astype(np.float32, copy=False)


def check_batch_size(batch_size: Any) -> int:
    """`batch_size`, a positive integer, or one line."""
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise UsageError(f"the batch size must be a positive integer, not {excerpt(batch_size)}")
    return batch_size


def progress_bar(total: int, shown: bool) -> Any:
    """The progress bar over `total` images evaluated, when `shown` (`zoo.progress`: on a terminal)."""
    return bar(total, "evaluating", unit="img", show=shown, leave=False)


# -- the picture -----------------------------------------------------------------------


def draw_confusion(evaluation: Evaluation) -> Image.Image:
    """The confusion matrix as an RGB picture: a cell per true (row) and predicted (column) class with its
    count (empty for none), shaded by its share of the row; class names on both axes, each row's accuracy
    on the right, what was evaluated and the accuracies above. Up to `DRAWN_MOST` columns."""
    columns, counts = evaluation.columns, np.array(evaluation.confusion, dtype=np.int64)
    if len(columns) > DRAWN_MOST:
        raise UsageError(f"the confusion matrix is drawn for at most {DRAWN_MOST} classes; this one has "
                         f"{len(columns)} (--json gives it whole)")
    font = ImageFont.load_default(14 if len(columns) <= 20 else 11 if len(columns) <= 50 else 9)
    line = int(font.getbbox("Ag")[3]) + 2
    cell = max(line + 4, int(font.getlength(str(counts.max(initial=0)))) + 8, 16)
    rows = [_shortened(name) for name in evaluation.classes]
    labels = [_shortened(name) for name in columns]
    label_w = max(int(font.getlength(text)) for text in rows + labels)
    accuracies = ["-" if acc is None else f"{acc:.1f}%" for acc in evaluation.per_class]
    acc_w = max(int(font.getlength(text)) for text in [*accuracies, "acc@1"])
    titles = [evaluation.title()[:120], evaluation.summary()]
    left = _MARGIN + line + _MARGIN + label_w + _MARGIN  # the axis title, the row names
    top = _MARGIN + len(titles) * line + _MARGIN + line + _MARGIN + label_w + _MARGIN  # titles, axis title, names
    width = max(left + len(columns) * cell + _MARGIN + acc_w + _MARGIN,
                2 * _MARGIN + max(int(font.getlength(t)) for t in titles))
    height = top + len(rows) * cell + _MARGIN
    check_image_size(width, height, "the confusion matrix")
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    for i, text in enumerate(titles):
        draw.text((_MARGIN, _MARGIN + i * line), text, fill="black", font=font)
    draw.text((left, top - label_w - 2 * _MARGIN - line), "predicted class", fill="black", font=font)
    _paste_rotated(canvas, "true class", font, _MARGIN, top + (len(rows) * cell + int(font.getlength("true class"))) // 2)
    totals = counts.sum(axis=1)
    for j, text in enumerate(labels):
        _paste_rotated(canvas, text, font, left + j * cell + (cell - line) // 2, top - _MARGIN)
    draw.text((left + len(columns) * cell + _MARGIN, top - _MARGIN - line), "acc@1", fill="black", font=font)
    for i, text in enumerate(rows):
        y = top + i * cell
        draw.text((left - _MARGIN - int(font.getlength(text)), y + (cell - line) // 2), text, fill="black", font=font)
        draw.text((left + len(columns) * cell + _MARGIN, y + (cell - line) // 2), accuracies[i], fill="black",
                  font=font)
        for j, count in enumerate(counts[i]):
            share = count / totals[i] if totals[i] else 0.0
            x = left + j * cell
            colour = tuple(int(c) for c in np.rint(_EMPTY + (_FULL - _EMPTY) * share))
            draw.rectangle([x, y, x + cell - 1, y + cell - 1], fill=colour, outline=(210, 210, 210))
            if i == j:
                draw.rectangle([x, y, x + cell - 1, y + cell - 1], outline=(90, 90, 90))
            if count:
                text = str(count)
                draw.text((x + (cell - font.getlength(text)) / 2, y + (cell - line) // 2), text, font=font,
                          fill="white" if share > 0.5 else "black")
    return canvas


def save_confusion(evaluation: Evaluation, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Write `draw_confusion`'s picture to `path` as a PNG, as zoo writes every file asked for
    (`zoo.outputs.staged_output`: regular files only, atomically; an existing file only with `overwrite`)."""
    target = _png(path)
    picture = draw_confusion(evaluation)
    with staged_output(target, overwrite=overwrite, what="drawing") as work:
        picture.save(work / target.name, format="PNG", pnginfo=png_info())
    return target


def check_drawing(path: str | os.PathLike[str], *, overwrite: bool = False) -> None:
    """Refuse in one line, before any work, a `path` that `save_confusion` would refuse."""
    with staged_output(_png(path), overwrite=overwrite, what="drawing"):
        pass  # a block that writes nothing publishes nothing: only the checks run


def _png(path: str | os.PathLike[str]) -> Path:
    if not os.fspath(path).lower().endswith(".png"):
        raise UsageError(f"the confusion matrix is drawn as a PNG file; give a name ending in .png, not "
                         f"{excerpt(os.fspath(path))}")
    return Path(path)


def _shortened(name: str) -> str:
    return name if len(name) <= DRAWN_LABEL_CHARS else name[:DRAWN_LABEL_CHARS - 1] + "\u2026"


def _paste_rotated(canvas: Image.Image, text: str, font: Any, left: int, bottom: int) -> None:
    """`text` written bottom to top, its first letter's edge at `bottom` and its top at `left`."""
    line = int(font.getbbox("Ag")[3]) + 2
    strip = Image.new("RGB", (max(1, math.ceil(font.getlength(text))), line), "white")
    ImageDraw.Draw(strip).text((0, 0), text, fill="black", font=font)
    rotated = strip.rotate(90, expand=True)
    canvas.paste(rotated, (left, bottom - rotated.height))

"""``zoo eval`` on a PyTorch model of the catalog, and `evaluate` (`zoo.evaluate`), which takes a model or an export.

`evaluate_model` builds the model with its weights (`zoo.build_model`: a plugin's weights, or
published weights ``NAMESPACE/NAME[:VERSION|@ALIAS]``), preprocesses each image with the weights'
own preprocessing on torchvision (`zoo.modeling.transforms.to_torchvision`, the twin of what an
export carries) and hands the logits to `zoo.runtime.evaluation.evaluate_logits`, so that a model
and its export are measured by one function. Torch is imported only when a model is evaluated:
`evaluate` on an export runs without it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from zoo.datasets import ImageData
from zoo.errors import UnknownModelError, UsageError, excerpt
from zoo.runtime.evaluation import (Evaluation, as_image_data, check_batch_size, class_indices, evaluate_export,
                                    evaluate_logits, is_export, progress_bar, split_samples)

if TYPE_CHECKING:
    import numpy as np
    import torch

__all__ = ["evaluate", "evaluate_model", "model_logits", "weights_to_evaluate", "EvaluatedWeights"]


@dataclass(frozen=True)
class EvaluatedWeights:
    """The catalog's account of a model's weights, as evaluating needs it."""

    model: str  # the model's name in the catalog
    weights: str  # the weights' name (a published spec ``NS/NAME:VERSION``)
    sha256: str | None
    categories: list[str] | None  # the head's class names; None: it names none
    preprocessing: dict[str, Any]  # a `zoo.preprocessing.PreprocessSpec`'s JSON
    build_with: Any  # what `zoo.build_model` takes as `weights`


def evaluate(model_or_export: str | os.PathLike[str], data: ImageData | str | os.PathLike[str], *,
             weights: str | None = None, split: str = "val", val_fraction: float = 0.2, seed: int = 0,
             batch_size: int = 64, device: str | None = None, progress: bool = False) -> Evaluation:
    """acc@1, acc@5, per-class accuracy and the confusion matrix of a classifier on the `split` of `data`.

    `model_or_export` is an exported file (a path object, or a name ending in ``.onnx``: run by ONNX
    Runtime, no torch, `zoo.runtime.evaluation.evaluate_export`) or a catalog model (with `weights`,
    default its DEFAULT weights; or published weights as the name: `evaluate_model`). `data` is a
    `zoo.datasets.ImageData` or its folder (or CSV), split by `val_fraction` and `seed` as
    ``zoo finetune`` splits it; `split` is ``"val"``, ``"train"`` or ``"all"``. `device` is
    ``"cpu"`` or ``"cuda"`` (None: CUDA when usable). A progress bar goes to a terminal's stderr with
    `progress`.
    """
    options = {"split": split, "val_fraction": val_fraction, "seed": seed, "batch_size": batch_size,
               "device": device, "progress": progress}
    if is_export(model_or_export):
        if weights is not None:
            raise UsageError("an export carries its weights; weights (--weights) apply to a catalog model")
        return evaluate_export(model_or_export, data, **options)
    if not isinstance(model_or_export, str):
        raise UsageError(f"evaluate takes a model name or an exported .onnx file, not {excerpt(model_or_export)}")
    return evaluate_model(model_or_export, data, weights=weights, **options)


def evaluate_model(name: str, data: ImageData | str | os.PathLike[str], *, weights: str | None = None,
                   split: str = "val", val_fraction: float = 0.2, seed: int = 0, batch_size: int = 64,
                   device: str | None = None, progress: bool = False) -> Evaluation:
    """The `Evaluation` of catalog model `name` with `weights` (see `weights_to_evaluate`) on `data`, in PyTorch.

    The data's classes are matched to the weights' categories before the model is built (a class
    outside the head is one line). Options as `evaluate`'s.
    """
    from zoo.modeling.transforms import to_torchvision
    from zoo.preprocessing import PreprocessSpec
    from zoo.registry import build_model
    from zoo.training.images import ImageDataset

    check_batch_size(batch_size)
    images = as_image_data(data, val_fraction, seed)
    samples = split_samples(images, split)
    chosen = weights_to_evaluate(name, weights)
    what = f"{chosen.model} with {chosen.weights}"
    class_indices(images.classes, chosen.categories, None, what)
    where = _device(device)
    model = build_model(chosen.model, weights=chosen.build_with).model.eval().to(where)
    transform = to_torchvision(PreprocessSpec.from_json(chosen.preprocessing))
    logits = model_logits(model, ImageDataset(images, samples, transform), batch_size=batch_size, device=where,
                          progress=progress)
    evaluated = {"kind": "model", "model": chosen.model, "weights": chosen.weights, "sha256": chosen.sha256,
                 "device": str(where)}
    return evaluate_logits(logits, [s.label for s in samples], images.classes, categories=chosen.categories,
                           evaluated=evaluated, split=split, data=images)


def weights_to_evaluate(name: str, weights: str | None = None) -> EvaluatedWeights:
    """Which weights `name` and `weights` mean, with their categories and preprocessing; refused in one line
    when they are not a classifier's or declare no preprocessing.

    `weights` is any name `zoo.get_model` takes (None: the model's DEFAULT weights); `name` may be
    published weights ``NAMESPACE/NAME[:VERSION|@ALIAS]`` themselves, when no catalog model has that name.
    """
    from zoo.records import is_spec
    from zoo.publish import resolve_published
    from zoo.registry import describe, weights_or_published

    try:
        record = describe(name)
    except UnknownModelError:
        if not is_spec(name):
            raise
        if weights is not None:
            raise UsageError(f"{name} names published weights already; drop --weights (weights=) "
                             f"{excerpt(weights)}") from None
        published = resolve_published(name)
        record, weights = describe(published.model), published.spec
    if record["task"] != "classification":
        raise UsageError(f"zoo eval measures classification models; {record['name']}'s task is {record['task']}")
    member, published = weights_or_published(weights or "DEFAULT", record["name"])
    if published is not None:
        if published.model != record["qualified_name"]:
            raise UsageError(f"published weights {published.spec} are for {published.model}, not {record['name']}")
        chosen = EvaluatedWeights(record["name"], published.spec, published.sha256, published.categories,
                                  published.preprocessing, published.spec)
    else:
        entry = next((entry for entry in record["weights"] if entry["name"] == str(member)), None)
        if entry is None:
            raise UsageError(f"weights {member} are not {record['name']}'s; its weights: "
                             + ", ".join(entry["name"] for entry in record["weights"]))
        chosen = EvaluatedWeights(record["name"], entry["name"], entry["sha256"], entry["meta"].get("categories"),
                                  entry["transforms"], member)
    if not chosen.preprocessing or chosen.preprocessing.get("kind") != "classification":
        raise UsageError(f"weights {chosen.weights} declare no classification preprocessing; zoo eval preprocesses "
                         "images as the weights declare")
    return chosen


def model_logits(model: torch.nn.Module, images: Sequence[tuple[torch.Tensor, int]], *, batch_size: int = 64,
                 device: torch.device | str = "cpu", progress: bool = False) -> np.ndarray:
    """`model`'s logits (N x outputs, float32) on the preprocessed `images` ((tensor, label) pairs, e.g.
    `zoo.training.images.ImageDataset`: read as fine-tuning reads them), `batch_size` at a time in inference mode."""
    import numpy as np
    import torch

    rows = []
    with torch.inference_mode(), progress_bar(len(images), progress) as bar:
        for start in range(0, len(images), check_batch_size(batch_size)):
            inputs = [images[i][0] for i in range(start, min(start + batch_size, len(images)))]
            if len({x.shape for x in inputs}) == 1:
                rows.append(model(torch.stack(inputs).to(device)).float().cpu())
            else:  # no crop in the preprocessing: images of other shapes go one at a time
                rows += [model(x[None].to(device)).float().cpu() for x in inputs]
            bar.update(len(inputs))
    return np.concatenate([row.numpy() for row in rows])


def _device(device: str | None) -> torch.device:
    """The torch device `device` names (None: CUDA when usable, else the CPU); one line for one that is not here."""
    import torch

    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        where = torch.device(device)
    except (RuntimeError, TypeError):
        raise UsageError(f"unknown device {excerpt(device)}; use cpu or cuda (cuda:N for one GPU)") from None
    if where.type == "cuda" and not (torch.cuda.is_available() and (where.index or 0) < torch.cuda.device_count()):
        raise UsageError(f"device {where} is not usable here (torch sees {torch.cuda.device_count()} GPU(s)); "
                         "use cpu")
    if where.type not in ("cpu", "cuda"):
        raise UsageError(f"zoo eval runs models on cpu or cuda, not {where}")
    return where

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
from typing import TYPE_CHECKING

from zoo.datasets import ImageData
from zoo.errors import UnknownModelError, UsageError, excerpt
from zoo.runtime.evaluation import (Evaluation, as_image_data, check_batch_size, class_indices, evaluate_export,
                                    evaluate_logits, is_export, progress_bar, split_samples)

if TYPE_CHECKING:
    import numpy as np
    import torch

    from zoo.records import ModelRecord, WeightsSource

__all__ = ["evaluate", "evaluate_model", "model_logits", "weights_to_evaluate"]


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
    record, chosen = weights_to_evaluate(name, weights)
    class_indices(images.classes, chosen.categories, None, f"{record.name} with {chosen.name}")
    where = _device(device)
    model = build_model(record.name, weights=chosen.name).model.eval().to(where)
    transform = to_torchvision(PreprocessSpec.from_json(chosen.preprocessing))
    logits = model_logits(model, ImageDataset(images, samples, transform), batch_size=batch_size, device=where,
                          progress=progress)
    evaluated = {"kind": "model", "model": record.name, "weights": chosen.name, "sha256": chosen.sha256,
                 "device": str(where)}
    return evaluate_logits(logits, [s.label for s in samples], images.classes, categories=chosen.categories,
                           evaluated=evaluated, split=split, data=images)


def weights_to_evaluate(name: str, weights: str | None = None) -> tuple[ModelRecord, WeightsSource]:
    """The model and the weights `name` and `weights` mean (`zoo.catalog.api.weights_source`: their canonical
    name, categories and preprocessing); refused in one line when they are not a classifier's or declare no
    preprocessing.

    `weights` is any name `zoo.get_model` takes (None: the model's DEFAULT weights); `name` may be
    published weights ``NAMESPACE/NAME[:VERSION|@ALIAS]`` themselves, when no catalog model has that name.
    """
    from zoo.catalog.api import weights_source
    from zoo.context import current
    from zoo.records import is_spec

    catalog = current().catalog
    try:
        record = catalog.describe(name)
    except UnknownModelError:
        if not is_spec(name):
            raise
        if weights is not None:
            raise UsageError(f"{name} names published weights already; drop --weights (weights=) "
                             f"{excerpt(weights)}") from None
        published = catalog.resolve_published(name)
        record, weights = catalog.describe(published.model), published.spec
    if record.task != "classification":
        raise UsageError(f"zoo eval measures classification models; {record.name}'s task is {record.task}")
    chosen = weights_source(catalog, record, weights or "DEFAULT")
    if not chosen.preprocessing or chosen.preprocessing.get("kind") != "classification":
        raise UsageError(f"weights {chosen.name} declare no classification preprocessing; zoo eval preprocesses "
                         "images as the weights declare")
    return record, chosen


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

"""Registers ``$ZOO_FIXTURE_MANY`` (default 10,000) small models, to measure the catalog at scale.

Every model is the same two-layer MLP on 3x8x8 inputs, built by one function
(`build_mlp`) with per-model ``builder_args``; names, widths (so parameter counts),
tasks, metrics and the number of weights entries (one or two) vary
deterministically with the model's index, so every run registers the same catalog.
Weights URLs point under ``$ZOO_FIXTURE_MANY_URL``; nothing here downloads them.
Importing this package does not import torch.
"""

from __future__ import annotations

import os

import zoo

COUNT_ENV = "ZOO_FIXTURE_MANY"
URL_ENV = "ZOO_FIXTURE_MANY_URL"
DEFAULT_COUNT = 10_000
#: Ten name families, so that a pattern such as ``many_gamma_*`` matches a tenth of the models.
FAMILIES = ("alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa")
TASKS = ("classification", "embedding", "detection", "segmentation")
IN_FEATURES = 3 * 8 * 8
CLASSES = {"a": 10, "b": 20}  # classes of each weights tag's head
CATEGORIES = {tag: [f"class_{i}" for i in range(n)] for tag, n in CLASSES.items()}
PREPROCESS = {
    "kind": "classification", "resize_size": [10], "resize_mode": "shorter_side", "crop_size": [8, 8],
    "interpolation": "bilinear", "antialias": True, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25],
}


def build_mlp(*, width: int, num_classes: int = CLASSES["a"]):
    """The one builder of every model here: Flatten, Linear(192, width), ReLU, Linear(width, num_classes)."""
    import torch.nn as nn

    return nn.Sequential(nn.Flatten(), nn.Linear(IN_FEATURES, width), nn.ReLU(), nn.Linear(width, num_classes))


def num_params(width: int, num_classes: int) -> int:
    """`build_mlp`'s parameter count, without building it."""
    return IN_FEATURES * width + width + width * num_classes + num_classes


def model_name(index: int) -> str:
    """The name of model `index`, e.g. ``many_gamma_00012``."""
    return f"many_{FAMILIES[index % len(FAMILIES)]}_{index:05d}"


def weights_entry(name: str, index: int, tag: str, width: int) -> zoo.WeightsSpec:
    """Weights `tag` of model `index`: tag ``a`` is the default, ``b`` has a 20-class head."""
    base = os.environ.get(URL_ENV, "http://127.0.0.1:9/zoo-fixture-many")
    acc1 = 50 + (index * 7919 + ord(tag)) % 4000 / 100  # 50.00 to 89.99 in steps of 0.01, spread over the indices
    classes = CLASSES[tag]
    return zoo.WeightsSpec(
        member=tag,
        url=f"{base}/{name}/{tag}.safetensors",
        meta={
            "categories": CATEGORIES[tag],
            "num_params": num_params(width, classes),
            "_metrics": {"ImageNet-1K": {"acc@1": round(acc1, 2), "acc@5": round(min(acc1 + 15, 100.0), 2)}},
        },
        transforms=PREPROCESS,
        is_default=tag == "a",
        builder_args={} if classes == CLASSES["a"] else {"num_classes": classes},
    )


def model(index: int) -> zoo.ModelSpec:
    """Model `index`: width 4 to 259, task and number of weights entries cycling with the index."""
    name, width = model_name(index), 4 + (index * 37) % 256
    tags = ("a", "b") if index % 3 == 0 else ("a",)
    return zoo.ModelSpec(
        name=name,
        builder="zoo_fixture_many:build_mlp",
        builder_args={"width": width},
        task=TASKS[index % len(TASKS)],
        weights=tuple(weights_entry(name, index, tag, width) for tag in tags),
        tags=("fixture", FAMILIES[index % len(FAMILIES)]),
        num_params=num_params(width, CLASSES["a"]),
        classifier=("3",),
        input_size=(3, 8, 8),
    )


@zoo.hookimpl
def zoo_register_models() -> list[zoo.ModelSpec]:
    return [model(i) for i in range(int(os.environ.get(COUNT_ENV, DEFAULT_COUNT)))]

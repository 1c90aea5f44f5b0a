"""`digits_cnn`: the builder and weights enum of the zoo, in torchvision's conventions.

The weights entry is built from `digits_cnn.json`, the record the training recipe
wrote next to the weights it shipped: hash, size, accuracy and normalisation are
read from there, never copied by hand.
"""

from __future__ import annotations

from typing import Any

from torchvision.models._utils import _ovewrite_named_param

from zoo.modeling.weights import Weights, WeightsEnum
from zoo_digits.cnn import SIZE, DigitsCNN, evaluate, transforms_preset
from zoo_digits.data import HELDOUT, RECORD, load_record

__all__ = ["DigitsCNN", "DigitsCNN_Weights", "digits_cnn", "evaluate"]

_RECORD = load_record()


class DigitsCNN_Weights(WeightsEnum):
    """The shipped weights; every number in them comes from the training record."""

    SKLEARN_DIGITS_V1 = Weights(
        url=RECORD.with_name(_RECORD["weights_file"]).as_uri(),
        transforms=transforms_preset(_RECORD["mean"], _RECORD["std"]),
        meta={
            "categories": [str(digit) for digit in range(10)],
            "num_params": _RECORD["num_params"],
            "min_size": (SIZE, SIZE),
            "recipe": "plugins/zoo-digits/zoo_digits/train.py: python -m zoo_digits.train",
            "_metrics": {"sklearn-digits-heldout": {"acc@1": round(_RECORD["acc"] * 100, 3)}},
            "_ops": round(_RECORD["gflops"], 6),
            "_file_size": round(_RECORD["file_size"] / 1024**2, 3),
            "_docs": (
                f"Trained from scratch on {_RECORD['n_train']} of the "
                f"{_RECORD['n_train'] + _RECORD['n_test']} 8x8 images of scikit-learn's load_digits "
                f"({_RECORD['epochs']} epochs, {_RECORD['optimizer']}, {_RECORD['augmentation']}); "
                f"acc@1 is on the other {_RECORD['n_test']} images (stratified split, "
                f"random_state={_RECORD['seed']}), shipped as {HELDOUT.name}."
            ),
        },
        sha256=_RECORD["sha256"],
        file_size=_RECORD["file_size"],
    )
    DEFAULT = SKLEARN_DIGITS_V1


def digits_cnn(*, weights: DigitsCNN_Weights | None = None, progress: bool = True, **kwargs: Any) -> DigitsCNN:
    """A `DigitsCNN`, with `weights` loaded (checked by SHA-256) when given.

    `kwargs` go to `DigitsCNN`; with weights, ``num_classes`` follows their categories
    and a different explicit value raises ValueError, as in torchvision.
    """
    weights = DigitsCNN_Weights.verify(weights)
    if weights is not None:
        _ovewrite_named_param(kwargs, "num_classes", len(weights.meta["categories"]))
    model = DigitsCNN(**kwargs)
    if weights is not None:
        model.load_state_dict(weights.get_state_dict(progress=progress, check_hash=True))
    return model

"""zoo plugin: ``digits_cnn``, a compact CNN for scikit-learn's 8x8 handwritten digits.

Ships real weights trained by `zoo_digits.train` (a reproducible recipe), the
held-out split they were measured on (`zoo_digits.data`) and the training record.
Importing this package or `zoo_digits.data` does not import torch.
"""

from __future__ import annotations

import zoo
from zoo.introspect import model_spec


@zoo.hookimpl
def zoo_register_models() -> list[zoo.ModelSpec]:
    from zoo_digits.model import DigitsCNN_Weights, digits_cnn

    return [
        model_spec("digits_cnn", digits_cnn, DigitsCNN_Weights, task="classification", tags=["cnn", "digits"],
                   classifier=["classifier"], first_conv="features.0")
    ]

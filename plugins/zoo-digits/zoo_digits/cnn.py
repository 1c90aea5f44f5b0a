"""The network, its preprocessing and its evaluation, independent of any trained weights.

Kept apart from `zoo_digits.model` (whose weights enum reads the shipped training
record) so that the training recipe can run where no record exists yet.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np
import torch
from torch import nn
from torchvision.transforms._presets import ImageClassification

from zoo.modeling.weights import Weights, WeightsEnum
from zoo_digits.data import load_heldout

SIZE = 8  # load_digits images are 8x8


class DigitsCNN(nn.Module):
    """A compact CNN for 8x8 grey digits: two 8x8 conv blocks, max-pool to 4x4, one more block.

    Input N x `in_channels` x 8 x 8 float, output N x `num_classes` logits. The head is
    a plain `classifier` Linear and the first conv is ``features.0``, so head and stem
    surgery finds them where torchvision models keep them.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1) -> None:
        super().__init__()
        self.features = nn.Sequential(
            *_conv_block(in_channels, 16),
            *_conv_block(16, 32),
            nn.MaxPool2d(2),
            *_conv_block(32, 64),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(0.2)
        self.classifier = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.pool(self.features(x)), 1)
        return self.classifier(self.dropout(x))


def _conv_block(in_channels: int, out_channels: int) -> list[nn.Module]:
    # no conv bias: the BatchNorm right after it has one
    return [
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]


def transforms_preset(mean: float, std: float) -> Callable[[], ImageClassification]:
    """The weights' preprocessing: resize and crop at 8x8 (the identity), /255, normalise."""
    return partial(ImageClassification, crop_size=SIZE, resize_size=SIZE, mean=(mean,), std=(std,))


def evaluate(
    model: nn.Module,
    weights: WeightsEnum | Weights,
    images: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    batch_size: int = 256,
) -> float:
    """Top-1 accuracy in [0, 1] of `model` on uint8 `images` (N, 8, 8) with `labels` (N,).

    The images go through ``weights.transforms()`` as a batched N x 1 x 8 x 8 uint8
    tensor, as a user of the weights would feed them. Without images, the shipped
    held-out split is used. Puts `model` in eval mode.
    """
    if (images is None) != (labels is None):
        raise ValueError("pass both images and labels, or neither for the held-out split")
    if images is None or labels is None:
        images, labels = load_heldout()
    preprocess = weights.transforms()
    inputs, targets = torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels)
    model.eval()
    correct = 0
    with torch.inference_mode():
        for start in range(0, len(targets), batch_size):
            logits = model(preprocess(inputs[start : start + batch_size]))
            correct += int((logits.argmax(1) == targets[start : start + batch_size]).sum())
    return correct / len(targets)

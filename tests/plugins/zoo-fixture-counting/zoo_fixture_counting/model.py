"""The plugin's models: the counter (a 1 x 1 convolution from RGB to brightness, a steep sigmoid,
summed over the image) and the tiny segmenter (the same convolution's logits, one pair per pixel)."""

import torch
from torch import nn


class Counter(nn.Module):
    """N x 3 x H x W images in [0, 1] -> N x 1: how many pixels are brighter than the threshold
    the weights set (a soft count: each pixel adds sigmoid(w . rgb + b))."""

    def __init__(self) -> None:
        super().__init__()
        self.brightness = nn.Conv2d(3, 1, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.brightness(x)).sum(dim=(2, 3))


class TinySegmenter(nn.Module):
    """N x 3 x H x W images in [0, 1] -> ``{"out": N x 2 x H x W}`` logits of two classes per pixel, the
    dict torchvision's segmentation models return; any image size (a 1 x 1 convolution)."""

    def __init__(self) -> None:
        super().__init__()
        self.classifier = nn.Conv2d(3, 2, kernel_size=1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"out": self.classifier(x)}


def counter() -> Counter:
    return Counter()


def tiny_segmenter() -> TinySegmenter:
    return TinySegmenter()


def bright_pixel_weights(threshold: float = 0.5, steepness: float = 40.0) -> dict[str, torch.Tensor]:
    """Weights that count pixels whose mean of R, G, B is above `threshold`."""
    weight = torch.full((1, 3, 1, 1), steepness / 3)
    return {"brightness.weight": weight, "brightness.bias": torch.tensor([-steepness * threshold])}


def bright_region_weights(threshold: float = 0.5, steepness: float = 40.0) -> dict[str, torch.Tensor]:
    """Segmenter weights: class 1 ("bright") where the mean of R, G, B is above `threshold`, else
    class 0 ("background"), whose logit is 0 everywhere; class 1's is the counter's brightness logit."""
    bright = bright_pixel_weights(threshold, steepness)
    weight, bias = bright["brightness.weight"], bright["brightness.bias"]
    return {"classifier.weight": torch.cat([torch.zeros_like(weight), weight]),
            "classifier.bias": torch.cat([torch.zeros_like(bias), bias])}

"""The counter: a 1 x 1 convolution from RGB to brightness, a steep sigmoid, summed over the image."""

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


def counter() -> Counter:
    return Counter()


def bright_pixel_weights(threshold: float = 0.5, steepness: float = 40.0) -> dict[str, torch.Tensor]:
    """Weights that count pixels whose mean of R, G, B is above `threshold`."""
    weight = torch.full((1, 3, 1, 1), steepness / 3)
    return {"brightness.weight": weight, "brightness.bias": torch.tensor([-steepness * threshold])}

"""Images for training and validation: a torch `Dataset` of `zoo.datasets.ImageData` samples, and the
transforms a weights entry's preprocessing implies.

Evaluation uses the weights' own preprocessing (`zoo.modeling.transforms.to_torchvision`). Training
derives its augmentation from it, as torchvision's classification references do: a RandomResizedCrop
at the spec's crop size with its interpolation, a horizontal flip (each can be turned off), then the
same channel order (grey models take ``"L"``), scaling and normalisation.

The random augmentation of an image is seeded by the run's seed, the epoch and the image's index
(`SampleSeeds`), not by the process that happens to load it: the same recipe gives the same images
with any number of loader workers or training processes, and a resumed epoch repeats exactly.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image
from torchvision.transforms import InterpolationMode, v2

from zoo.datasets import ImageData, Sample
from zoo.errors import UsageError
from zoo.modeling.transforms import to_torchvision
from zoo.preprocessing import PreprocessSpec, check_image_size, to_8bit

#: ImageNet's per-channel mean and std, for a model whose weights declare no preprocessing; one grey channel
#: gets their averages (as timm does for ``in_chans=1``).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: The crop-to-resize ratio of torchvision's classification presets (224 of 256).
CROP_RATIO = 0.875


@dataclass(frozen=True)
class Augmentation:
    """How training images are augmented: RandomResizedCrop's smallest area fraction, and a horizontal flip;
    `enabled` False trains on the evaluation transform."""

    enabled: bool = True
    min_scale: float = 0.08
    flip: bool = True


def default_spec(input_size: Sequence[int] | None, model: str) -> PreprocessSpec:
    """Preprocessing for a model whose weights declare none: its catalog `input_size` (C, H, W) cropped from a
    resize by `CROP_RATIO`, bilinear, with ImageNet's mean and std. Refused where the catalog has no size."""
    if not input_size:
        raise UsageError(f"{model} declares no input size and no weights of it declare preprocessing, so the "
                         "image size to train at is unknown; give weights that have preprocessing")
    channels, height, width = input_size
    if channels not in (1, 3):
        raise UsageError(f"{model} takes {channels} channels; images are fine-tuned on as 1 (grey) or 3 (RGB)")
    grey = ((sum(IMAGENET_MEAN) / 3,), (sum(IMAGENET_STD) / 3,))
    mean, std = (IMAGENET_MEAN, IMAGENET_STD) if channels == 3 else grey
    return PreprocessSpec(kind="classification", resize_size=(round(min(height, width) / CROP_RATIO),),
                          resize_mode="shorter_side", crop_size=(height, width), interpolation="bilinear",
                          antialias=True, mean=mean, std=std, channel_order="RGB" if channels == 3 else "L")


def image_size(spec: PreprocessSpec, model: str) -> tuple[int, int]:
    """The (height, width) that `spec` makes every image; refused when it makes images of varying size."""
    if spec.kind != "classification":
        raise UsageError(f"{model}'s weights take {spec.kind} preprocessing; fine-tuning takes classification")
    if spec.crop_size is not None:
        return spec.crop_size
    if spec.resize_size is not None and spec.resize_mode == "exact":
        return spec.resize_size[0], spec.resize_size[1]
    raise UsageError(f"{model}'s preprocessing makes images of varying size (no crop, no fixed resize); "
                     "fine-tuning takes batches of one size")


def eval_transform(spec: PreprocessSpec) -> Callable[[Image.Image], torch.Tensor]:
    """The weights' preprocessing on a PIL image."""
    return to_torchvision(spec)


def train_transform(spec: PreprocessSpec, augmentation: Augmentation, size: tuple[int, int]
                    ) -> Callable[[Image.Image], torch.Tensor]:
    """RandomResizedCrop to `size` (`spec`'s interpolation) and a flip, then `spec`'s channels, scaling and
    normalisation; `spec`'s own transform when augmentation is off."""
    if not augmentation.enabled:
        return eval_transform(spec)
    steps: list[Any] = [to_8bit, v2.RGB() if spec.channel_order == "RGB" else v2.Grayscale(1),
                        v2.RandomResizedCrop(list(size), scale=(augmentation.min_scale, 1.0),
                                             interpolation=InterpolationMode(spec.interpolation or "bilinear"),
                                             antialias=True)]
    if augmentation.flip:
        steps.append(v2.RandomHorizontalFlip())
    steps += [v2.PILToTensor(), v2.ToDtype(torch.float32, scale=True)]
    normalisation = spec.normalisation()
    if normalisation is not None:
        steps.append(v2.Normalize(*normalisation))
    return v2.Compose(steps)


class SampleSeeds:
    """The seed of one image's augmentation in one epoch: a hash of (run seed, epoch, index)."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.epoch = 0

    def __call__(self, index: int) -> int:
        digest = hashlib.blake2b(f"{self.seed}/{self.epoch}/{index}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "little")


class ImageDataset(torch.utils.data.Dataset):
    """`samples` of `data` as (image tensor, label) pairs through `transform`; with `seeds`, each image's
    random transform is seeded by `seeds` (set ``seeds.epoch`` before each epoch's loader is iterated)."""

    def __init__(self, data: ImageData, samples: Sequence[Sample], transform: Callable[[Image.Image], torch.Tensor],
                 seeds: SampleSeeds | None = None) -> None:
        self.data, self.samples, self.transform, self.seeds = data, samples, transform, seeds

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        sample = self.samples[index]
        with Image.open(self.data.file(sample)) as image:
            check_image_size(image.width, image.height, f"image {sample.path}")
            if self.seeds is None:
                return self.transform(image), sample.label
            with torch.random.fork_rng(devices=[]):
                torch.default_generator.manual_seed(self.seeds(index))
                return self.transform(image), sample.label

"""Preprocessing specs to and from torchvision's transforms (torch and torchvision, imported inside).

`spec_from_transforms` reads a `zoo.preprocessing.PreprocessSpec` off one of
torchvision's five presets; `to_torchvision` builds the preset's equivalent on
torchvision's transforms v2, which `preprocess_numpy` (the numpy twin) matches.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from PIL import Image

from zoo.errors import UsageError
from zoo.preprocessing import LAYOUTS, RESIZE_MODES, PreprocessSpec, to_8bit

if TYPE_CHECKING:
    import torch


# -- from torchvision's presets -------------------------------------------------------


def spec_from_transforms(transforms: Callable[[], Any] | None) -> PreprocessSpec | None:
    """The spec of a weights entry's `transforms`, e.g. ``partial(ImageClassification, crop_size=224)``.

    Builds the preset (cheap) so that its defaults are filled in, and reads its
    settings; the constants its ``forward`` hard-codes (video: no antialiasing,
    channels-first clips; optical flow: [-1, 1]) are written out. Raises `UsageError`
    for anything but torchvision's five presets (subclasses included: they may do
    something else).
    """
    if transforms is None:
        return None
    from torchvision.transforms import _presets

    preset = transforms()
    kind = {
        _presets.ImageClassification: "classification",
        _presets.ObjectDetection: "detection",
        _presets.SemanticSegmentation: "segmentation",
        _presets.VideoClassification: "video",
        _presets.OpticalFlow: "optical_flow",
    }.get(type(preset))
    if kind is None:
        cls = type(preset)
        raise UsageError(
            f"cannot describe transforms {cls.__module__}.{cls.__qualname__}: not one of "
            "torchvision's presets ImageClassification, ObjectDetection, SemanticSegmentation, "
            "VideoClassification, OpticalFlow"
        )
    if kind == "detection":
        return PreprocessSpec(kind=kind)
    if kind == "optical_flow":
        return PreprocessSpec(kind=kind, mean=(0.5,) * 3, std=(0.5,) * 3)
    resize = tuple(preset.resize_size) if preset.resize_size is not None else None
    crop = getattr(preset, "crop_size", None)
    # video's forward resizes without antialiasing; torchvision's None means off for tensors
    antialias = False if kind == "video" else bool(preset.antialias)
    channels = {1: "L", 3: "RGB"}.get(len(preset.mean))
    if channels is None:
        raise UsageError(f"cannot describe transforms with {len(preset.mean)}-channel mean {preset.mean}")
    return PreprocessSpec(
        kind=kind,
        resize_size=resize,
        resize_mode=RESIZE_MODES[len(resize)] if resize else None,
        crop_size=(crop[0], crop[-1]) if crop else None,  # [n] means n x n
        interpolation=preset.interpolation.value if resize else None,
        antialias=antialias if resize else None,
        mean=tuple(preset.mean),
        std=tuple(preset.std),
        channel_order=channels,
        layout=LAYOUTS[kind],
    )


# -- torchvision transforms v2 --------------------------------------------------------


def to_torchvision(spec: PreprocessSpec) -> Callable[..., Any]:
    """The preset's equivalent on torchvision's transforms v2.

    Takes what the preset takes (a PIL image or a uint8 tensor, batched or not; a
    T x C x H x W clip for video; two images for optical flow) and returns the same
    float tensor(s). PIL images are first brought to 8 bits (`to_8bit`) and converted
    to `channel_order`, which the presets leave to the caller.
    """
    import torch
    from torchvision.transforms import InterpolationMode, v2

    steps: list[Callable[[Any], Any]] = [_pil_to_8bit, v2.RGB() if spec.channel_order == "RGB" else v2.Grayscale(1)]
    if spec.resize_size is not None:
        mode = InterpolationMode(spec.interpolation)
        steps.append(partial(_resize_like_presets, list(spec.resize_size), mode, spec.antialias))
    if spec.crop_size is not None:
        steps.append(v2.CenterCrop(list(spec.crop_size)))
    steps += [v2.PILToTensor(), v2.ToDtype(torch.float32, scale=True)]
    normalisation = spec.normalisation()
    if normalisation is not None:
        steps.append(v2.Normalize(*normalisation))
    if spec.layout == "CTHW":
        steps.append(_frames_after_channels)
    pipeline = v2.Compose(steps)
    return partial(_each_of_pair, pipeline) if spec.kind == "optical_flow" else pipeline


def _pil_to_8bit(image: Any) -> Any:
    """`to_8bit` for PIL images; tensors pass as they are."""
    return to_8bit(image) if isinstance(image, Image.Image) else image


def _resize_like_presets(size: list[int], mode: Any, antialias: bool, image: Any) -> Any:
    """Resize as the presets' (v1) functional does: uint8 tensors in float32, rounded back.

    v2 resizes uint8 tensors with kernels of its own that round differently (and,
    for bicubic, clip between the two passes as Pillow does).
    """
    import torch
    from torchvision.transforms.v2 import functional as F

    if isinstance(image, torch.Tensor) and image.dtype == torch.uint8:
        resized = F.resize(image.float(), size, interpolation=mode, antialias=antialias)
        return resized.clamp_(0, 255).round_().to(torch.uint8)
    return F.resize(image, size, interpolation=mode, antialias=antialias)


def _frames_after_channels(clip: torch.Tensor) -> torch.Tensor:
    return clip.transpose(-4, -3)  # (..., T, C, H, W) -> (..., C, T, H, W)


def _each_of_pair(pipeline: Callable[[Any], Any], image1: Any, image2: Any) -> tuple[Any, Any]:
    return pipeline(image1).contiguous(), pipeline(image2).contiguous()


# -- numpy and Pillow -----------------------------------------------------------------

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
from zoo.preprocessing import KEEP_RATIO_MODES, LAYOUTS, RESIZE_MODES, PreprocessSpec, resized_size, to_8bit

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
    to `channel_order`, which the presets leave to the caller. The contain and cover
    resizes and a center crop's `pad_fill` are timm's `ResizeKeepRatio` and
    `CenterCropOrPad`, which the presets do not have.
    """
    import torch
    from torchvision.transforms import InterpolationMode, v2

    steps: list[Callable[[Any], Any]] = [_pil_to_8bit, v2.RGB() if spec.channel_order == "RGB" else v2.Grayscale(1)]
    if spec.resize_size is not None:
        resize = partial(_resize_like_presets, mode=InterpolationMode(spec.interpolation), antialias=spec.antialias)
        keeps_ratio = spec.resize_mode in KEEP_RATIO_MODES
        steps.append(partial(_resize_keeping_ratio, spec, resize) if keeps_ratio else
                     partial(resize, list(spec.resize_size)))
    if spec.crop_size is not None:
        steps.append(partial(_center_crop_or_pad, list(spec.crop_size), list(spec.pad_fill or (0,))))
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


def _resize_like_presets(size: list[int], image: Any, *, mode: Any, antialias: bool) -> Any:
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


def _resize_keeping_ratio(spec: PreprocessSpec, resize: Callable[[list[int], Any], Any], image: Any) -> Any:
    """`resize` to the size that `resized_size` gives for this image (contain and cover depend on its shape)."""
    from torchvision.transforms.v2 import functional as F

    return resize(list(resized_size(*F.get_size(image), spec)), image)


def _center_crop_or_pad(size: list[int], fill: list[int], image: Any) -> Any:
    """torchvision's `center_crop`, padding with `fill` (per channel) rather than zeros
    where the crop is larger, as timm's `center_crop_or_pad` does: (c - n) // 2 before, the rest after."""
    from torchvision.transforms.v2 import functional as F

    (height, width), (crop_height, crop_width) = F.get_size(image), size
    pad_height, pad_width = max(crop_height - height, 0), max(crop_width - width, 0)
    if pad_height or pad_width:
        padding = [pad_width // 2, pad_height // 2, pad_width - pad_width // 2, pad_height - pad_height // 2]
        image = F.pad(image, padding, fill=fill)
    return F.center_crop(image, size)


def _frames_after_channels(clip: torch.Tensor) -> torch.Tensor:
    return clip.transpose(-4, -3)  # (..., T, C, H, W) -> (..., C, T, H, W)


def _each_of_pair(pipeline: Callable[[Any], Any], image1: Any, image2: Any) -> tuple[Any, Any]:
    return pipeline(image1).contiguous(), pipeline(image2).contiguous()


# -- numpy and Pillow -----------------------------------------------------------------

"""Preprocessing as data: what a weights entry does to an image before the model sees it.

A `PreprocessSpec` is the typed, JSON-serialisable description of one torchvision
preset (``weights.transforms()``): the catalog stores ``spec.to_json()`` for every
weights entry, and exported models will carry it in their metadata. From a spec,
`zoo.modeling.transforms.to_torchvision` builds the preset's equivalent on torchvision's transforms v2, and
`preprocess_numpy` does the same with numpy and Pillow alone, for deployments
without torch. Importing this module does not import torch.

The steps, in order: bring the image to 8 bits per channel (`to_8bit`: 16-bit and
float images as torchvision's ``to_dtype(torch.uint8, scale=True)`` scales them);
convert to `channel_order`; resize; center crop (padding with `pad_fill`, zeros by
default, where the crop is larger); scale uint8 pixels to `value_range`; subtract `mean`
and divide by `std` per channel.

Specs and images are untrusted input (a spec travels inside a model file): every
size is bounded before anything is allocated, resize and crop sides by `MAX_SIDE`
and images, read or resized, by `MAX_IMAGE_PIXELS`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
from PIL import Image

from zoo.errors import UsageError, excerpt

#: What the spec's inputs and outputs are; the task of the model may differ (keypoint
#: and instance-segmentation models take detection preprocessing).
KINDS = ("classification", "detection", "segmentation", "video", "optical_flow")
#: Output layout of one sample per kind: a clip is channels first, then frames.
LAYOUTS = {kind: "CTHW" if kind == "video" else "CHW" for kind in KINDS}
#: How many images the kinds made of images take per model call (video takes a clip instead).
IMAGES_PER_CALL = {"classification": 1, "detection": 1, "segmentation": 1, "optical_flow": 2}
#: torchvision's `InterpolationMode` values that its presets can use on tensors.
INTERPOLATIONS = ("nearest", "nearest-exact", "bilinear", "bicubic")
#: The resize mode torchvision's presets mean by a size of each length.
RESIZE_MODES = {1: "shorter_side", 2: "exact"}
#: Resize modes that keep the aspect ratio to a box ``(h, w)``, as timm's `ResizeKeepRatio`
#: with ``longest=1`` (contain, its border crop) and ``longest=0`` (cover, its non-square center crop).
KEEP_RATIO_MODES = ("contain", "cover")
#: Every resize mode a size of each length may have.
RESIZE_MODE_CHOICES = {1: (RESIZE_MODES[1],), 2: (RESIZE_MODES[2], *KEEP_RATIO_MODES)}
CHANNEL_ORDERS = ("RGB", "L")
#: Largest resize or crop side a spec may ask for (torchvision's presets use at most 1024).
MAX_SIDE = 8192
#: Largest image, in pixels, that is read or made by resizing: 8192 x 8192 (64 Mpx, below
#: Pillow's own decompression-bomb limit of about 89 Mpx).
MAX_IMAGE_PIXELS = MAX_SIDE * MAX_SIDE
#: Fields added after the first version, which `PreprocessSpec.to_json` leaves out while None.
_LATER_FIELDS = ("pad_fill",)
#: Longest JSON text of a rejected value that an error message quotes.
_SHOWN_CHARS = 60
#: Pillow's 16-bit modes; "I" (32-bit) is taken as 16-bit when its values fit.
_MODES_16BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")
#: torchvision's float-to-uint8 scale: ``x * (255 + 1 - 1e-3)``, truncated.
_FLOAT_TO_UINT8 = np.float32(255 + 1.0 - 1e-3)

# torchvision resizes PIL images with these Pillow filters (its `pil_modes_mapping`)
_PIL_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "nearest-exact": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
}


@dataclass(frozen=True)
class PreprocessSpec:
    """One weights entry's preprocessing. Field names and values are a stored contract.

    - `kind`: one of `KINDS`. Classification, detection and segmentation take one
      image; video one clip of frames; optical_flow a pair of images.
    - `resize_size`, `resize_mode`: how to resize, or both None not to. ``(n,)`` with
      ``"shorter_side"``: the shorter side to n keeping the aspect ratio (the longer
      side rounded down, as torchvision does). ``(h, w)`` with ``"exact"``: to exactly
      h x w; with ``"contain"``: keeping the aspect ratio, the largest size within
      h x w; with ``"cover"``: the smallest that covers h x w. Contain and cover
      scale both sides by one ratio and round each to the nearest integer (half to
      even, at least 1), as timm's `ResizeKeepRatio` does.
    - `crop_size`: ``(h, w)`` of a center crop, or None.
    - `pad_fill`: the uint8 colour (one integer 0..255 per channel of `channel_order`)
      that the center crop pads with where it is larger than the image, e.g. timm's
      border crop's mean colour; None pads with zeros, as torchvision does. None
      without a crop. Added after the first version: `to_json` writes it only when set.
    - `interpolation` (one of `INTERPOLATIONS`) and `antialias`: how to resize; both
      None when there is no resize. PIL images are always antialiased, as in torchvision.
    - `mean`, `std`: per channel, on values in `value_range`; both None: no normalisation.
    - `channel_order`: ``"RGB"`` (3 channels) or ``"L"`` (1 channel, grey).
    - `value_range`: ``(low, high)`` that uint8 0..255 maps to before normalising.
    - `layout`: output axes of one sample, ``"CHW"`` or (video) ``"CTHW"``; a batch adds N.
    """

    kind: str
    resize_size: tuple[int, ...] | None = None
    resize_mode: str | None = None
    crop_size: tuple[int, int] | None = None
    pad_fill: tuple[int, ...] | None = None
    interpolation: str | None = None
    antialias: bool | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    channel_order: str = "RGB"
    value_range: tuple[float, float] = (0.0, 1.0)
    layout: str = "CHW"

    def __post_init__(self) -> None:
        for name in ("resize_size", "crop_size", "pad_fill", "mean", "std", "value_range"):
            value = getattr(self, name)
            if value is None and name != "value_range":
                continue
            if not isinstance(value, (list, tuple)):
                raise _invalid(name, value, "a list of numbers")
            object.__setattr__(self, name, tuple(value))
        _check_choice("kind", self.kind, KINDS)
        _check_choice("channel_order", self.channel_order, CHANNEL_ORDERS)
        _check_choice("layout", self.layout, (LAYOUTS[self.kind],))
        resizes = self.resize_size is not None
        if resizes and not (len(self.resize_size) in RESIZE_MODES and _sides(self.resize_size)):
            raise _invalid("resize_size", self.resize_size,
                           f"[n] (shorter side), [h, w] (integers from 1 to {MAX_SIDE}) or null")
        _check_choice("resize_mode", self.resize_mode,
                      RESIZE_MODE_CHOICES[len(self.resize_size)] if resizes else (None,))
        _check_choice("interpolation", self.interpolation, INTERPOLATIONS if resizes else (None,))
        _check_choice("antialias", self.antialias, (True, False) if resizes else (None,))
        if self.crop_size is not None and not (len(self.crop_size) == 2 and _sides(self.crop_size)):
            raise _invalid("crop_size", self.crop_size, f"[h, w] of integers from 1 to {MAX_SIDE} or null")
        self._check_pad_fill()
        channels = f"{len(self.channel_order)} numbers, one per channel of {self.channel_order!r}"
        if (self.mean is None) != (self.std is None):
            missing = "mean" if self.mean is None else "std"
            raise _invalid(missing, None, f"{channels}: mean and std come together")
        for name in ("mean", "std"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _floats(name, value, len(self.channel_order), channels))
        if self.std is not None and min(self.std) <= 0:
            raise _invalid("std", self.std, "positive numbers")
        low, high = _floats("value_range", self.value_range, 2, "[low, high]")
        if not low < high:
            raise _invalid("value_range", self.value_range, "[low, high] with low < high")
        object.__setattr__(self, "value_range", (low, high))

    def _check_pad_fill(self) -> None:
        if self.pad_fill is None:
            return
        if self.crop_size is None:
            raise _invalid("pad_fill", self.pad_fill, "null: it colours a center crop's padding, and there is no crop")
        count = len(self.channel_order)
        if not (len(self.pad_fill) == count and _integers(self.pad_fill, 0, 255)):
            raise _invalid("pad_fill", self.pad_fill,
                           f"{count} integers from 0 to 255, one per channel of {self.channel_order!r}, or null")

    def to_json(self) -> dict[str, Any]:
        """Plain JSON data, tuples as lists: every field, except those of `_LATER_FIELDS` left at None.

        A spec that does not use a later field thus reads in the versions before it.
        """
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()
                if not (v is None and k in _LATER_FIELDS)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PreprocessSpec:
        """The spec `to_json` wrote; missing optional fields take their defaults.

        An unknown field is an error rather than ignored: it would be a step this
        version does not know how to apply.
        """
        if not isinstance(data, dict):
            raise UsageError(f"preprocessing spec: expected a JSON object, got {type(data).__name__}")
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise UsageError(f"preprocessing spec: unknown field {excerpt(unknown[0])}; fields: {', '.join(known)}")
        if "kind" not in data:
            raise UsageError(f"preprocessing spec: field 'kind' is missing; use one of {', '.join(KINDS)}")
        return cls(**data)

    def normalisation(self) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
        """``(mean, std)`` such that ``(pixel / 255 - mean) / std`` scales to `value_range` and normalises.

        None when that is the identity. With the default value range these are
        `mean` and `std` exactly, so the arithmetic is the preset's.
        """
        low, high = self.value_range
        if self.mean is None and (low, high) == (0.0, 1.0):
            return None
        channels = len(self.channel_order)
        mean, std = self.mean or (0.0,) * channels, self.std or (1.0,) * channels
        return tuple((m - low) / (high - low) for m in mean), tuple(s / (high - low) for s in std)


def _invalid(name: str, value: Any, accepted: str) -> UsageError:
    shown = json.dumps(list(value) if isinstance(value, tuple) else value, default=repr)
    if len(shown) > _SHOWN_CHARS:
        shown = f"{shown[:_SHOWN_CHARS]}... ({len(shown)} characters)"
    return UsageError(f"preprocessing spec: {name}={shown} is not accepted; use {accepted}")


def _check_choice(name: str, value: Any, choices: Sequence[Any]) -> None:
    # comparing types too keeps 1 from passing for true
    if not any(value == c and type(value) is type(c) for c in choices):
        raise _invalid(name, value, " or ".join(json.dumps(c) for c in choices))


def _sides(values: tuple[Any, ...]) -> bool:
    """Every value is an image side zoo accepts: an integer from 1 to `MAX_SIDE`."""
    return _integers(values, 1, MAX_SIDE)


def _integers(values: tuple[Any, ...], low: int, high: int) -> bool:
    """Every value is an integer (not a bool) from `low` to `high`."""
    return all(isinstance(v, int) and not isinstance(v, bool) and low <= v <= high for v in values)


def _floats(name: str, values: tuple[Any, ...], count: int, accepted: str) -> tuple[float, ...]:
    ok = len(values) == count and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values)
    if not ok:
        raise _invalid(name, values, accepted)
    return tuple(float(v) for v in values)


def preprocess_numpy(spec: PreprocessSpec, *images: Any) -> np.ndarray | tuple[np.ndarray, ...]:
    """`to_torchvision`'s result as float32 numpy, from numpy and Pillow alone.

    One image (PIL, or uint8 H x W / H x W x C array) gives C x H x W; for video, one
    clip (a T x H x W x C array or a sequence of frames) gives C x T x H x W; for
    optical flow, two images give a pair. Resizing uses Pillow's filter for the
    interpolation, as torchvision does for PIL images; where `antialias` is off
    (video), which Pillow cannot do, it interpolates as torch does a tensor.
    """
    expected = 2 if spec.kind == "optical_flow" else 1
    if len(images) != expected:
        raise UsageError(f"{spec.kind} preprocessing takes {expected} input(s), got {len(images)}")
    if spec.kind == "optical_flow":
        return tuple(_preprocess_image(spec, image) for image in images)
    if spec.kind == "video":
        return np.stack([_preprocess_image(spec, frame) for frame in images[0]], axis=1)
    return _preprocess_image(spec, images[0])


def preprocess_image(spec: PreprocessSpec, image: Image.Image | np.ndarray) -> np.ndarray:
    """One image as `preprocess_numpy` makes it: C x H x W float32, also each image of an optical flow
    pair on its own (what `zoo.runtime.Predictor` needs to pair consecutive images once each)."""
    if spec.kind == "video":
        raise UsageError("video preprocessing takes a clip of frames, not one image; use preprocess_numpy")
    return _preprocess_image(spec, image)


def _preprocess_image(spec: PreprocessSpec, image: Image.Image | np.ndarray) -> np.ndarray:
    pixels = _resize(_pil_image(image, spec.channel_order), spec)
    if spec.crop_size is not None:
        pixels = _center_crop(pixels, spec.crop_size, spec.pad_fill or 0)
    out = pixels.transpose(2, 0, 1).astype(np.float32) / np.float32(255)
    normalisation = spec.normalisation()
    if normalisation is not None:
        mean, std = (np.asarray(v, dtype=np.float32)[:, None, None] for v in normalisation)
        out = (out - mean) / std
    return out


def _pil_image(image: Image.Image | np.ndarray, mode: str) -> Image.Image:
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim not in (2, 3):
            raise UsageError(f"expected a uint8 H x W or H x W x C image, got {image.dtype} {image.shape}")
        image = Image.fromarray(image[..., 0] if image.ndim == 3 and image.shape[2] == 1 else image)
    elif not isinstance(image, Image.Image):
        raise UsageError(f"expected a PIL image or a numpy array, got {type(image).__name__}")
    image = to_8bit(image)
    return image if image.mode == mode else image.convert(mode)


def check_image_size(width: int, height: int, what: str = "image") -> None:
    """Raise a one-line `UsageError` when a `width` x `height` image exceeds `MAX_IMAGE_PIXELS`.

    Called before the pixels are allocated: on an image file's header, and on the
    size a resize would make.
    """
    if width * height > MAX_IMAGE_PIXELS:
        raise UsageError(f"{what} is {width} x {height} pixels, more than zoo's limit of {MAX_IMAGE_PIXELS} "
                         f"({MAX_SIDE} x {MAX_SIDE}); scale it down first")


def to_8bit(image: Image.Image) -> Image.Image:
    """`image` with 8 bits per channel, scaled as torchvision's ``to_dtype(torch.uint8, scale=True)``.

    Pillow's own conversion clips 16-bit values at 255 (half grey becomes white) and
    rounds float values in [0, 1] to 0 or 1 (black). Here 16-bit grey (modes
    ``I;16*``, and ``I`` when its values fit in 16 bits) becomes ``value // 256`` and
    float grey (mode ``F``, values in [0, 1] as torchvision's float images are)
    ``value * (256 - 1e-3)`` truncated. Other values raise a one-line `UsageError`;
    8-bit images are returned as they are.
    """
    if image.mode == "F":
        pixels = np.asarray(image, dtype=np.float32)
        outside = ~((pixels >= 0) & (pixels <= 1))  # NaN is outside too
        if outside.any():
            raise UsageError(f"a float (mode F) image must have values in [0, 1], as torchvision's float images "
                             f"do; this one has {int(outside.sum())} pixel(s) outside, e.g. {pixels[outside][0]:g}")
        pixels = (pixels * _FLOAT_TO_UINT8).astype(np.uint8)
    elif image.mode in _MODES_16BIT:
        low, high = image.getextrema()
        if not (0 <= low and high <= 0xFFFF):
            raise UsageError(f"a 32-bit integer (mode I) image is read as 16-bit grey, 0 to 65535; this one "
                             f"spans {low} to {high}: convert it to 8 or 16 bits")
        pixels = (np.asarray(image).astype(np.uint32) >> 8).astype(np.uint8)
    else:
        return image
    return Image.fromarray(pixels)


def _resize(image: Image.Image, spec: PreprocessSpec) -> np.ndarray:
    """`image` resized per `spec`, as uint8 H x W x C."""
    size = resized_size(image.height, image.width, spec)
    if size == (image.height, image.width):
        return _hwc(image)
    height, width = size
    check_image_size(width, height, f"the {image.width} x {image.height} image resized to {list(spec.resize_size)}")
    if spec.antialias or spec.interpolation not in ("bilinear", "bicubic"):
        return _hwc(image.resize((width, height), _PIL_RESAMPLE[spec.interpolation]))
    pixels = _hwc(image).astype(np.float64)
    rows = _interpolation_matrix(image.height, height, spec.interpolation)
    cols = _interpolation_matrix(image.width, width, spec.interpolation)
    resized = np.einsum("oh,hwc->owc", rows, pixels, optimize=True)
    resized = np.einsum("pw,hwc->hpc", cols, resized, optimize=True)
    return np.clip(np.rint(resized), 0, 255).astype(np.uint8)


def _hwc(image: Image.Image) -> np.ndarray:
    pixels = np.asarray(image)
    return pixels[:, :, None] if pixels.ndim == 2 else pixels


def resized_size(height: int, width: int, spec: PreprocessSpec) -> tuple[int, int]:
    """``(height, width)`` of a `height` x `width` image after `spec`'s resize.

    Shorter side: torchvision's `_compute_resized_output_size`, the longer side rounded
    down. Contain and cover: timm's `ResizeKeepRatio.get_params`, in its arithmetic.
    """
    if spec.resize_size is None:
        return height, width
    if spec.resize_mode == "exact":
        return spec.resize_size[0], spec.resize_size[1]
    if spec.resize_mode in KEEP_RATIO_MODES:
        ratios = (height / spec.resize_size[0], width / spec.resize_size[1])
        ratio = max(ratios) if spec.resize_mode == "contain" else min(ratios)
        return max(round(height / ratio), 1), max(round(width / ratio), 1)
    short_side = spec.resize_size[0]
    if width <= height:
        return int(short_side * height / width), short_side
    return short_side, int(short_side * width / height)


def _interpolation_matrix(size_in: int, size_out: int, interpolation: str) -> np.ndarray:
    """size_out x size_in weights of torch's interpolation without antialiasing (align_corners=False)."""
    source = (np.arange(size_out) + 0.5) * (size_in / size_out) - 0.5
    if interpolation == "bilinear":
        source = np.maximum(source, 0.0)  # torch clamps linear (not cubic) source positions at 0
        taps, kernel = range(0, 2), lambda d: 1.0 - d
    else:
        taps, kernel = range(-1, 3), _cubic
    base = np.floor(source)
    weights = np.zeros((size_out, size_in))
    for tap in taps:
        index = base + tap
        # taps beyond the border read the edge pixel, as torch does
        np.add.at(weights, (np.arange(size_out), np.clip(index, 0, size_in - 1).astype(int)),
                  kernel(np.abs(source - index)))
    return weights


def _cubic(d: np.ndarray, a: float = -0.75) -> np.ndarray:
    """Keys' cubic convolution kernel at distance `d` in [0, 2], with torch's a = -0.75."""
    near = ((a + 2) * d - (a + 3)) * d * d + 1
    far = ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
    return np.where(d <= 1, near, far)


def _center_crop(pixels: np.ndarray, size: tuple[int, int], fill: int | tuple[int, ...]) -> np.ndarray:
    """torchvision's `center_crop` (timm's `center_crop_or_pad` with a colour): pad with
    `fill` (per channel) where the crop is larger, then crop.

    On each axis a larger crop pads (c - n) // 2 before and the rest after; a smaller
    one starts at ``round((n - c) / 2)`` (Python's rounding, half to even).
    """
    starts, padding = [], []
    for n, c in zip(pixels.shape[:2], size):
        start = -((c - n) // 2) if c > n else int(round((n - c) / 2.0))
        starts.append(max(start, 0))
        padding.append((max(-start, 0), max(start + c - n, 0)))
    if any(map(any, padding)):
        (top, bottom), (left, right) = padding
        height, width, channels = pixels.shape
        padded = np.full((top + height + bottom, left + width + right, channels), fill, dtype=np.uint8)
        padded[top : top + height, left : left + width] = pixels
        pixels = padded
    (top, left), (height, width) = starts, size
    return pixels[top : top + height, left : left + width]

"""Predictions as pictures, with numpy and Pillow only (no torch): the deployment runtime draws with these.

`draw_bounding_boxes`, `draw_segmentation_masks`, `draw_keypoints`, `flow_to_image`
and `make_grid` give the pixels torchvision's functions of the same names give for
the same inputs (torchvision takes uint8 3 x H x W tensors; these take uint8
H x W x 3 arrays or PIL images and return uint8 H x W x 3 arrays): they make the same
Pillow drawing calls, with the same colours (`palette` is torchvision's), the same
rounding (coordinates truncated to integers) and the same float32 arithmetic.
`class_overlay` (semantic segmentation with a legend) and `topk_bars` (classification)
have no torchvision counterpart.

Where these differ from torchvision, on purpose: boxes are axis-aligned only (no
rotated 8-coordinate boxes); `font_size` without `font` scales Pillow's default font
(torchvision ignores it); `make_grid` letterboxes images of different sizes instead
of refusing them; float images are not accepted (uint8 only).

Inputs are untrusted: images are bounded by `zoo.preprocessing.MAX_IMAGE_PIXELS`,
objects by `MAX_OBJECTS`, coordinates by `MAX_COORDINATE`, and every bad shape, dtype
or value raises a one-line `UsageError` saying what is accepted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Union

import numpy as np
from PIL import Image, ImageColor, ImageDraw, ImageFont

from zoo.errors import UsageError, excerpt
from zoo.preprocessing import MAX_SIDE, check_image_size, to_8bit

__all__ = ["draw_bounding_boxes", "draw_segmentation_masks", "draw_keypoints", "flow_to_image",
           "class_overlay", "topk_bars", "make_grid", "palette", "MAX_OBJECTS"]

#: A colour: a Pillow colour string ("red", "#ff00ff") or an (r, g, b) tuple of 0..255.
Color = Union[str, tuple[int, int, int]]
#: An image to draw on: uint8 H x W x 3 (or H x W grey), or a PIL image.
ImageLike = Union[np.ndarray, Image.Image]
#: Pillow's default font is a bitmap font where Pillow has no FreeType.
FontLike = Union[ImageFont.ImageFont, ImageFont.FreeTypeFont]

#: Most boxes, masks, keypoint instances, classes or grid images one call draws.
MAX_OBJECTS = 10_000
#: Largest absolute coordinate (boxes, keypoints) accepted: four times the largest image side.
MAX_COORDINATE = 4 * MAX_SIDE
#: Longest label drawn, in characters.
MAX_LABEL_CHARS = 200
#: Largest line width, keypoint radius, grid padding or font size, in pixels.
MAX_STROKE = 1024
#: torchvision's palette multipliers: colour i is ``(i * _PALETTE_STEPS) % 255``.
_PALETTE_STEPS = np.array([2**25 - 1, 2**15 - 1, 2**21 - 1], dtype=np.int64)
#: Segments of the Middlebury colour wheel (Baker et al., ICCV 2007), red-yellow, yellow-green,
#: green-cyan, cyan-blue, blue-magenta, magenta-red: (length, channel held at 255, channel
#: that ramps), ramping up in even segments and down in odd ones.
_WHEEL_SEGMENTS = ((15, 0, 1), (6, 1, 0), (4, 1, 2), (11, 2, 1), (13, 2, 0), (6, 0, 2))
#: Alpha of a box's fill when `draw_bounding_boxes(fill=True)`, as torchvision's.
_FILL_ALPHA = 100
#: Margin, in pixels, of the legend and bar panels.
_PANEL_MARGIN = 6


def palette(count: int) -> list[tuple[int, int, int]]:
    """`count` RGB colours, colour i being ``(i * (2**25 - 1, 2**15 - 1, 2**21 - 1)) % 255``.

    This is torchvision's default palette, so objects and classes get the colours
    torchvision would give them; colour 0 is black.
    """
    count = _count("palette size", count, MAX_OBJECTS)
    steps = (np.arange(count, dtype=np.int64)[:, None] * _PALETTE_STEPS) % 255
    return [(int(r), int(g), int(b)) for r, g, b in steps]


def draw_bounding_boxes(image: ImageLike, boxes: np.ndarray | Sequence[Sequence[float]],
                        labels: Sequence[str] | None = None, colors: Color | Sequence[Color] | None = None,
                        fill: bool = False, width: int = 1, font: str | None = None, font_size: int | None = None,
                        label_colors: Color | Sequence[Color] | None = None) -> np.ndarray:
    """`image` with boxes (K x 4: x1, y1, x2, y2 in pixels) drawn, and each box's label inside its top left.

    The pixels of torchvision's ``draw_bounding_boxes`` for the same inputs: coordinates
    truncated to integers, colours from `palette` unless given, boxes filled with their
    colour at alpha 100/255 when `fill`, labels in Pillow's default font or the TrueType
    `font` at `font_size` (10 when not given), in the box colour unless `label_colors`.
    """
    pixels = _rgb(image)
    box_array = _coordinates("boxes", boxes, (None, 4), "K x 4 (x1, y1, x2, y2)")
    count = len(box_array)
    if np.any(box_array[:, 0] > box_array[:, 2]) or np.any(box_array[:, 1] > box_array[:, 3]):
        raise UsageError("boxes must be (x1, y1, x2, y2) with x1 <= x2 and y1 <= y2")
    texts = _labels(labels, count)
    width = _count("width", width, MAX_STROKE)
    box_colors = _colors(colors, count)
    text_colors = box_colors if label_colors is None else _colors(label_colors, count)
    text_font = _font(font, font_size)
    if count == 0:
        return pixels.copy()
    canvas = Image.fromarray(pixels)
    draw = ImageDraw.Draw(canvas, "RGBA" if fill else None)
    for box, color, text, text_color in zip(box_array.astype(np.int64).tolist(), box_colors, texts, text_colors):
        draw.rectangle(box, outline=color, width=width, fill=color + (_FILL_ALPHA,) if fill else None)
        if text is not None:
            inset = width + 1
            draw.text((box[0] + inset, box[1] + inset), text, fill=text_color, font=text_font)
    return np.array(canvas)


def draw_segmentation_masks(image: ImageLike, masks: np.ndarray, alpha: float = 0.8,
                            colors: Color | Sequence[Color] | None = None) -> np.ndarray:
    """`image` with each of the K boolean masks (K x H x W, or H x W for one) blended in its colour.

    As torchvision's ``draw_segmentation_masks``: each pixel is ``image * (1 - alpha) +
    colour * alpha`` in float32, truncated; where masks overlap the colour is black;
    the last mask wins elsewhere. Colours come from `palette` unless given.
    """
    pixels = _rgb(image)
    if not isinstance(masks, np.ndarray) or masks.dtype != np.bool_ or masks.ndim not in (2, 3):
        raise UsageError(f"masks must be a bool numpy array, K x H x W or H x W; got {_described(masks)}")
    masks = masks[None] if masks.ndim == 2 else masks
    if masks.shape[1:] != pixels.shape[:2]:
        raise UsageError(f"masks are {masks.shape[1]} x {masks.shape[2]} but the image is "
                         f"{pixels.shape[0]} x {pixels.shape[1]}; they must be the same size")
    count = _count("number of masks", len(masks), MAX_OBJECTS)
    alpha = _fraction("alpha", alpha)
    mask_colors = _colors(colors, count)
    painted = pixels.copy()
    for mask, color in zip(masks, mask_colors):
        painted[mask] = color
    painted[np.count_nonzero(masks, axis=0) > 1] = 0
    return _blend(pixels, painted, alpha)


def draw_keypoints(image: ImageLike, keypoints: np.ndarray | Sequence[Sequence[Sequence[float]]],
                   connectivity: Sequence[tuple[int, int]] | None = None, colors: Color | None = None,
                   radius: int = 2, width: int = 3, visibility: np.ndarray | None = None) -> np.ndarray:
    """`image` with N instances of K keypoints (N x K x 2: x, y) drawn as discs, joined by `connectivity`.

    As torchvision's ``draw_keypoints``: coordinates truncated to integers, discs of
    `radius` in `colors`, connections as white lines of `width`; a keypoint whose
    `visibility` (N x K, or N x K x 1) is false is not drawn, nor are its connections.
    With `colors` None no discs are drawn at all (torchvision gives Pillow neither a
    fill nor an outline then), so pass a colour to see the points.
    """
    pixels = _rgb(image)
    points = _coordinates("keypoints", keypoints, (None, None, 2), "N x K x 2 (x, y)")
    if visibility is None:
        visible = np.ones(points.shape[:2], dtype=bool)
    else:
        visible = np.asarray(visibility)
        visible = visible[..., 0] if visible.ndim == 3 and visible.shape[2] == 1 else visible
        if visible.shape != points.shape[:2] or not (np.issubdtype(visible.dtype, np.number)
                                                     or visible.dtype == np.bool_):
            raise UsageError(f"visibility must be N x K ({points.shape[0]} x {points.shape[1]}), "
                             f"bool or numbers; got {_described(visibility)}")
        visible = visible.astype(bool)
    pairs = _connections(connectivity, points.shape[1])
    fill = None if colors is None else _color(colors)
    radius = _count("radius", radius, MAX_STROKE)
    width = _count("width", width, MAX_STROKE)
    canvas = Image.fromarray(pixels)
    draw = ImageDraw.Draw(canvas)
    for instance, shown in zip(points.astype(np.int64).tolist(), visible.tolist()):
        for (x, y), on in zip(instance, shown):
            if on:
                draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=fill, outline=None, width=0)
        for start, end in pairs:
            if shown[start] and shown[end]:
                draw.line((tuple(instance[start]), tuple(instance[end])), width=width)
    return np.array(canvas)


def flow_to_image(flow: np.ndarray) -> np.ndarray:
    """Optical flow (H x W x 2, or 2 x H x W: dx, dy) as a uint8 H x W x 3 picture on the Middlebury colour wheel.

    Direction is hue and length saturation, lengths scaled by the largest one in the
    field, in float32 as torchvision's ``flow_to_image``. An array whose first and last
    axes both have 2 entries is read as H x W x 2.
    """
    if not isinstance(flow, np.ndarray) or flow.ndim != 3 or 2 not in (flow.shape[0], flow.shape[2]) \
            or not np.issubdtype(flow.dtype, np.floating) or 0 in flow.shape:
        raise UsageError(f"flow must be a float numpy array, H x W x 2 or 2 x H x W; got {_described(flow)}")
    vectors = flow if flow.shape[2] == 2 else np.moveaxis(flow, 0, -1)
    check_image_size(vectors.shape[1], vectors.shape[0], "flow")
    vectors = vectors.astype(np.float32)
    if not np.isfinite(vectors).all():
        raise UsageError("flow must be finite (it has NaN or infinite values)")
    norm = np.sqrt(vectors[..., 0] ** 2 + vectors[..., 1] ** 2)
    vectors = vectors / (norm.max() + np.finfo(np.float32).eps)
    norm = np.sqrt(vectors[..., 0] ** 2 + vectors[..., 1] ** 2)
    wheel = _colour_wheel()
    angle = np.arctan2(-vectors[..., 1], -vectors[..., 0]) / np.float32(np.pi)
    position = (angle + 1) / 2 * (len(wheel) - 1)
    low = np.floor(position).astype(np.int64)
    high = np.where(low + 1 == len(wheel), 0, low + 1)
    between = (position - low.astype(np.float32))[..., None]
    colour = (1 - between) * (wheel[low] / 255) + between * (wheel[high] / 255)
    colour = 1 - norm[..., None] * (1 - colour)
    return np.floor(255 * colour).astype(np.uint8)


def class_overlay(image: ImageLike, mask: np.ndarray, categories: Sequence[str], alpha: float = 0.5) -> np.ndarray:
    """`image` with each pixel blended in its class's `palette` colour, and a legend strip on the right.

    `mask` is H x W class indices into `categories`; the legend shows a swatch and the
    name of each class present, in index order. The blend is `draw_segmentation_masks`'s
    with one mask per class.
    """
    pixels = _rgb(image)
    names = _labels(categories, None, "categories")
    if not isinstance(mask, np.ndarray) or mask.shape != pixels.shape[:2] or not np.issubdtype(mask.dtype, np.integer):
        raise UsageError(f"mask must be an integer numpy array of class indices, H x W as the image "
                         f"({pixels.shape[0]} x {pixels.shape[1]}); got {_described(mask)}")
    if mask.size and (mask.min() < 0 or mask.max() >= len(names)):
        raise UsageError(f"mask has class indices from {mask.min()} to {mask.max()}; "
                         f"accepted: 0 to {len(names) - 1} ({len(names)} categories)")
    colours = np.array(palette(len(names)), dtype=np.uint8).reshape(-1, 3)
    blended = _blend(pixels, colours[mask], _fraction("alpha", alpha))
    present = np.unique(mask).tolist()
    return _with_panel(blended, [(names[i], colours[i], None) for i in present])


def topk_bars(image: ImageLike, labels: Sequence[str], probabilities: Sequence[float] | np.ndarray) -> np.ndarray:
    """`image` with a panel on the right: one row per class (in the order given), its name,
    percentage and a horizontal bar as long as its probability."""
    pixels = _rgb(image)
    names = _labels(labels, None, "labels")
    try:
        values = np.asarray(probabilities, dtype=np.float64)
    except (TypeError, ValueError):
        raise UsageError(f"probabilities must be numbers in [0, 1]; got {excerpt(probabilities)}") from None
    if values.shape != (len(names),) or not np.all((values >= 0) & (values <= 1)):
        raise UsageError(f"probabilities must be {len(names)} numbers in [0, 1], one per label; "
                         f"got {excerpt(probabilities)}")
    colours = palette(len(names) + 1)[1:]  # colour 0 is black, the text's colour
    rows = [(f"{name}  {100 * p:.1f}%", colour, float(p)) for name, colour, p in zip(names, colours, values)]
    return _with_panel(pixels, rows)


def make_grid(images: Sequence[ImageLike] | np.ndarray, nrow: int = 8, padding: int = 2,
              pad_value: int = 0) -> np.ndarray:
    """The images in one uint8 picture, `nrow` to a row, `padding` pixels of `pad_value` around each.

    As torchvision's ``make_grid`` for same-size images (one image is returned as it
    is, unpadded). Images of different sizes are first letterboxed to the largest height
    and width: each is scaled (bilinear) to fit while keeping its aspect ratio, and
    centred on `pad_value`.
    """
    if isinstance(images, (np.ndarray, Image.Image)) and not (isinstance(images, np.ndarray) and images.ndim == 4):
        images = [images]
    if not isinstance(images, (Sequence, np.ndarray)):
        raise UsageError(f"images must be a list of images or a B x H x W x 3 array; got {_described(images)}")
    count = _count("number of images", len(images), MAX_OBJECTS)
    if count == 0:
        raise UsageError("make_grid needs at least one image")
    nrow = _count("nrow", nrow, MAX_OBJECTS, least=1)
    padding = _count("padding", padding, MAX_STROKE)
    pad_value = _count("pad_value", pad_value, 255)
    tiles = [_rgb(image) for image in images]
    height, width = max(t.shape[0] for t in tiles), max(t.shape[1] for t in tiles)
    columns = min(nrow, count)
    rows = -(-count // columns)
    grid_h, grid_w = rows * (height + padding) + padding, columns * (width + padding) + padding
    check_image_size(grid_w, grid_h, "the grid")
    tiles = [_letterboxed(t, height, width, pad_value) for t in tiles]
    if count == 1:
        return tiles[0].copy()
    grid = np.full((grid_h, grid_w, 3), pad_value, dtype=np.uint8)
    for k, tile in enumerate(tiles):
        top, left = (k // columns) * (height + padding) + padding, (k % columns) * (width + padding) + padding
        grid[top:top + height, left:left + width] = tile
    return grid


# -- helpers -------------------------------------------------------------------------


def _described(value: object) -> str:
    """What a rejected array-like argument is, for an error message."""
    if isinstance(value, np.ndarray):
        return f"{value.dtype} array of shape {value.shape}"
    return type(value).__name__


def _count(name: str, value: object, most: int, least: int = 0) -> int:
    """`value` as an int from `least` to `most`, or a one-line `UsageError`."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not least <= value <= most:
        raise UsageError(f"{name} must be an integer from {least} to {most}; got {excerpt(value)}")
    return int(value)


def _fraction(name: str, value: object) -> float:
    """`value` as a float in [0, 1], or a one-line `UsageError`."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not 0 <= value <= 1:
        raise UsageError(f"{name} must be a number from 0 to 1; got {excerpt(value)}")
    return float(value)


def _rgb(image: ImageLike) -> np.ndarray:
    """`image` as a uint8 H x W x 3 array (a grey image repeated on three channels), bounded in size."""
    if isinstance(image, Image.Image):
        check_image_size(*image.size)
        return np.asarray(to_8bit(image).convert("RGB"))
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 \
            or not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (1, 3))) or 0 in image.shape:
        raise UsageError(f"image must be a PIL image or a non-empty uint8 numpy array, H x W x 3 or H x W; "
                         f"got {_described(image)}")
    check_image_size(image.shape[1], image.shape[0])
    if image.ndim == 2 or image.shape[2] == 1:
        image = np.repeat(image.reshape(image.shape[0], image.shape[1], 1), 3, axis=2)
    return np.ascontiguousarray(image)


def _coordinates(name: str, value: object, shape: tuple[int | None, ...], accepted: str) -> np.ndarray:
    """`value` as a float64 array of `shape` (None: any length up to `MAX_OBJECTS`), finite and
    within `MAX_COORDINATE`, or a one-line `UsageError` naming `accepted`."""
    try:
        array = value if isinstance(value, np.ndarray) else np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise UsageError(f"{name} must be numbers, {accepted}; got {excerpt(value)}") from None
    if array.size == 0 and array.ndim < len(shape):
        array = array.reshape((0,) + tuple(s or 0 for s in shape[1:]))
    if array.ndim != len(shape) or any(s is not None and s != n for s, n in zip(shape, array.shape)) \
            or not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise UsageError(f"{name} must be a numeric array, {accepted}; got {_described(array)}")
    for axis, n in enumerate(array.shape[:-1]):
        _count(f"{name}.shape[{axis}]", n, MAX_OBJECTS)
    array = array.astype(np.float64)
    if not np.isfinite(array).all() or np.abs(array).max(initial=0) > MAX_COORDINATE:
        raise UsageError(f"{name} must be finite pixel coordinates within +-{MAX_COORDINATE}")
    return array


def _labels(labels: Sequence[str] | None, count: int | None, name: str = "labels") -> list[str | None]:
    """`labels` as a list (`count` Nones when None), each a string of at most `MAX_LABEL_CHARS`."""
    if labels is None and count is not None:
        return [None] * count
    if isinstance(labels, str) or not isinstance(labels, Sequence) \
            or not all(isinstance(t, str) and len(t) <= MAX_LABEL_CHARS for t in labels):
        raise UsageError(f"{name} must be a list of strings of at most {MAX_LABEL_CHARS} characters; "
                         f"got {excerpt(labels)}")
    if count is not None and len(labels) != count:
        raise UsageError(f"{name} has {len(labels)} entries for {count} boxes; give one per box")
    _count(f"number of {name}", len(labels), MAX_OBJECTS)
    return list(labels)


def _color(color: object) -> tuple[int, int, int]:
    """One colour (Pillow colour string or (r, g, b) of 0..255) as an (r, g, b) tuple."""
    if isinstance(color, str):
        try:
            return ImageColor.getrgb(color)[:3]
        except ValueError:
            raise UsageError(f"unknown colour {excerpt(color)}: use a Pillow colour name, '#rrggbb' "
                             f"or an (r, g, b) tuple") from None
    if isinstance(color, tuple) and len(color) == 3 \
            and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and 0 <= v <= 255 for v in color):
        return tuple(int(v) for v in color)
    raise UsageError(f"a colour must be a Pillow colour string or an (r, g, b) tuple of integers "
                     f"0 to 255; got {excerpt(color)}")


def _colors(colors: object, count: int) -> list[tuple[int, int, int]]:
    """`count` colours: `palette` for None, one colour repeated, or the first `count` of a list."""
    if colors is None:
        return palette(count)
    if isinstance(colors, str) or (isinstance(colors, tuple) and len(colors) == 3
                                   and not any(isinstance(c, (str, tuple)) for c in colors)):
        return [_color(colors)] * count
    if not isinstance(colors, Sequence) or len(colors) < count:
        raise UsageError(f"colors must be one colour or a list of at least {count} colours; got {excerpt(colors)}")
    return [_color(c) for c in colors[:count]]


def _connections(connectivity: Sequence[tuple[int, int]] | None, count: int) -> list[tuple[int, int]]:
    """`connectivity` as (start, end) keypoint index pairs, each index below `count`."""
    if connectivity is None:
        return []
    pairs = list(connectivity) if isinstance(connectivity, Sequence) else None
    if pairs is None or len(pairs) > MAX_OBJECTS or not all(
            isinstance(p, Sequence) and len(p) == 2
            and all(isinstance(i, (int, np.integer)) and not isinstance(i, bool) and 0 <= i < count for i in p)
            for p in pairs):
        raise UsageError(f"connectivity must be a list of (start, end) keypoint indices from 0 to {count - 1}; "
                         f"got {excerpt(connectivity)}")
    return [(int(a), int(b)) for a, b in pairs]


def _font(font: str | None, size: int | None) -> FontLike:
    """Pillow's default font (at `size` when given), or the TrueType file `font` at `size` (10 when None)."""
    if size is not None:
        size = _count("font_size", size, MAX_STROKE, least=1)
    if font is None:
        return ImageFont.load_default() if size is None else ImageFont.load_default(size)
    try:
        return ImageFont.truetype(font=font, size=size or 10)
    except OSError as exc:
        raise UsageError(f"cannot load the TrueType font {excerpt(font)}: {exc}") from None


def _blend(pixels: np.ndarray, painted: np.ndarray, alpha: float) -> np.ndarray:
    """``pixels * (1 - alpha) + painted * alpha`` in float32, truncated to uint8 (torchvision's mask blend)."""
    keep, put = np.float32(1 - alpha), np.float32(alpha)
    return (pixels.astype(np.float32) * keep + painted.astype(np.float32) * put).astype(np.uint8)


def _colour_wheel() -> np.ndarray:
    """The 55 x 3 float32 Middlebury colour wheel, as torchvision's ``_make_colorwheel``."""
    segments = []
    for index, (length, held, moving) in enumerate(_WHEEL_SEGMENTS):
        ramp = np.floor(255 * np.arange(length) / length)
        rows = np.zeros((length, 3))
        rows[:, held] = 255
        rows[:, moving] = ramp if index % 2 == 0 else 255 - ramp
        segments.append(rows)
    return np.concatenate(segments).astype(np.float32)


def _letterboxed(tile: np.ndarray, height: int, width: int, pad_value: int) -> np.ndarray:
    """`tile` scaled to fit `height` x `width` keeping its aspect ratio, centred on `pad_value`."""
    h, w = tile.shape[:2]
    if (h, w) == (height, width):
        return tile
    scale = min(height / h, width / w)
    new_h, new_w = max(1, min(height, round(h * scale))), max(1, min(width, round(w * scale)))
    resized = np.asarray(Image.fromarray(tile).resize((new_w, new_h), Image.Resampling.BILINEAR))
    out = np.full((height, width, 3), pad_value, dtype=np.uint8)
    top, left = (height - new_h) // 2, (width - new_w) // 2
    out[top:top + new_h, left:left + new_w] = resized
    return out


def _with_panel(pixels: np.ndarray, rows: list[tuple[str, Sequence[int], float | None]]) -> np.ndarray:
    """`pixels` with a white panel on the right listing `rows` (text, colour, bar fraction or None).

    A row with a fraction is its text over a bar that long; a row without one is a
    colour swatch before the text (a legend entry). The canvas grows downwards when the
    rows need more height than the image has.
    """
    font = ImageFont.load_default(max(10, min(pixels.shape[0] // 30, 48)))
    line = int(font.getbbox("Ag")[3]) + 2
    bars = any(fraction is not None for _, _, fraction in rows)
    row_h = 2 * line + _PANEL_MARGIN if bars else line + _PANEL_MARGIN
    text_w = max((int(font.getlength(text)) for text, _, _ in rows), default=0)
    panel_w = text_w + line + 3 * _PANEL_MARGIN if not bars else max(text_w, 8 * line) + 2 * _PANEL_MARGIN
    height = max(pixels.shape[0], len(rows) * row_h + _PANEL_MARGIN)
    check_image_size(pixels.shape[1] + panel_w, height, "the drawing")
    canvas = Image.new("RGB", (pixels.shape[1] + panel_w, height), "white")
    canvas.paste(Image.fromarray(pixels), (0, 0))
    draw = ImageDraw.Draw(canvas)
    left = pixels.shape[1] + _PANEL_MARGIN
    for i, (text, colour, fraction) in enumerate(rows):
        top = _PANEL_MARGIN + i * row_h
        fill = tuple(int(c) for c in colour)
        if fraction is None:
            draw.rectangle([left, top, left + line - 1, top + line - 1], fill=fill, outline="black")
            draw.text((left + line + _PANEL_MARGIN, top), text, fill="black", font=font)
        else:
            draw.text((left, top), text, fill="black", font=font)
            bar_w = round(fraction * (panel_w - 2 * _PANEL_MARGIN))
            if bar_w:
                draw.rectangle([left, top + line, left + bar_w - 1, top + 2 * line - 2], fill=fill)
    return np.array(canvas)

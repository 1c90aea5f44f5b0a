"""zoo.runtime.drawing against torchvision.utils on scikit-image's sample photographs.

Boxes, masks and keypoints are made from the photos' content (Otsu threshold, connected
regions), with fractional coordinates so that truncation to integers is exercised.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import color, data, filters, measure
from torchvision import utils as tv

from zoo.runtime import drawing
from zoo.errors import UsageError

PHOTOS = {"astronaut": data.astronaut, "coffee": data.coffee, "chelsea": data.chelsea}


def _chw(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).contiguous()


def _hwc(tensor: torch.Tensor) -> np.ndarray:
    return tensor.permute(1, 2, 0).numpy()


def _regions(image: np.ndarray, most: int = 12) -> list:
    """The photo's largest bright connected regions (Otsu threshold on grey)."""
    grey = color.rgb2gray(image)
    labelled = measure.label(grey > filters.threshold_otsu(grey))
    regions = sorted(measure.regionprops(labelled), key=lambda r: -r.area)[:most]
    assert len(regions) >= 3
    return regions


def _boxes(image: np.ndarray) -> np.ndarray:
    rows = [(c0 + 0.7, r0 + 0.3, c1 - 0.2, r1 + 0.9) for r0, c0, r1, c1 in (r.bbox for r in _regions(image))]
    return np.array(rows, dtype=np.float32)


def _masks(image: np.ndarray) -> np.ndarray:
    grey = color.rgb2gray(image)
    labelled = measure.label(grey > filters.threshold_otsu(grey))
    masks = np.stack([labelled == r.label for r in _regions(image, 6)])
    # one more mask overlapping the others, so that the black overlap is exercised
    overlap = np.zeros_like(masks[0])
    overlap[image.shape[0] // 4: image.shape[0] // 2, image.shape[1] // 4: image.shape[1] // 2] = True
    return np.concatenate([masks, overlap[None]])


@pytest.mark.parametrize("name", sorted(PHOTOS))
def test_boxes_with_labels_match_torchvision_pixel_for_pixel(name: str) -> None:
    image = PHOTOS[name]()
    boxes = _boxes(image)
    labels = [f"region {i}: {boxes[i, 2] - boxes[i, 0]:.0f} px" for i in range(len(boxes))]
    got = drawing.draw_bounding_boxes(image, boxes, labels=labels, width=2)
    want = _hwc(tv.draw_bounding_boxes(_chw(image), torch.from_numpy(boxes), labels=labels, width=2))
    assert got.dtype == np.uint8 and got.shape == image.shape
    np.testing.assert_array_equal(got, want)
    assert (got != image).any(axis=2).sum() > 1000  # something was drawn


@pytest.mark.parametrize("name", sorted(PHOTOS))
def test_filled_boxes_named_colours_match_torchvision(name: str) -> None:
    image = PHOTOS[name]()
    boxes = _boxes(image)
    colours = ["red", "#00ff80", (240, 10, 157)] * len(boxes)
    labels = [str(i) for i in range(len(boxes))]
    got = drawing.draw_bounding_boxes(Image.fromarray(image), boxes, labels=labels, colors=colours[:len(boxes)],
                                      fill=True, label_colors="white")
    want = tv.draw_bounding_boxes(_chw(image), torch.from_numpy(boxes), labels=labels, colors=colours[:len(boxes)],
                                  fill=True, label_colors="white")
    np.testing.assert_array_equal(got, _hwc(want))


def test_grey_image_boxes_match_torchvision() -> None:
    grey = data.camera()  # 512 x 512, one channel
    boxes = _boxes(np.repeat(grey[..., None], 3, axis=2))
    got = drawing.draw_bounding_boxes(grey, boxes, labels=[f"{i}" for i in range(len(boxes))], colors="orange")
    want = tv.draw_bounding_boxes(torch.from_numpy(grey)[None], torch.from_numpy(boxes),
                                  labels=[f"{i}" for i in range(len(boxes))], colors="orange")
    np.testing.assert_array_equal(got, _hwc(want))


def test_font_size_scales_the_default_font() -> None:
    """Unlike torchvision (which ignores font_size without a font), the default font is scaled."""
    image, boxes = data.astronaut(), np.array([[10.0, 10.0, 400.0, 300.0]])
    plain = drawing.draw_bounding_boxes(image, boxes)
    changed = [(drawing.draw_bounding_boxes(image, boxes, labels=["astronaut"], font_size=size) != plain).any(axis=2)
               for size in (None, 30)]
    assert changed[1].sum() > 4 * changed[0].sum() > 0


def test_masks_match_torchvision_within_one_level() -> None:
    for name, photo in PHOTOS.items():
        image = photo()
        masks = _masks(image)
        for alpha, colours in ((0.8, None), (0.35, "blue"), (0.6, [(10, 200, 30)] * len(masks))):
            got = drawing.draw_segmentation_masks(image, masks, alpha=alpha, colors=colours)
            want = _hwc(tv.draw_segmentation_masks(_chw(image), torch.from_numpy(masks), alpha=alpha, colors=colours))
            diff = np.abs(got.astype(np.int16) - want.astype(np.int16))
            assert diff.max() <= 1, (name, alpha)
            assert (got != image).any(axis=2).sum() > 1000


def test_keypoints_with_connectivity_match_torchvision() -> None:
    image = data.astronaut()
    regions = _regions(image)
    points = np.array([[(c0 + 0.5, r0 + 0.5), (c1 - 0.5, r0 + 0.5), (c1 - 0.5, r1 - 0.5), (c0 + 0.5, r1 - 0.5),
                        (r.centroid[1], r.centroid[0])] for r in regions for r0, c0, r1, c1 in [r.bbox]],
                      dtype=np.float32)
    edges = [(0, 1), (1, 2), (2, 3), (3, 0), (0, 4), (2, 4)]
    visibility = np.ones(points.shape[:2], dtype=bool)
    visibility[::2, 4] = False  # every other instance hides its centre, and the centre's edges
    for kwargs in ({}, {"colors": "yellow", "radius": 4, "width": 2, "visibility": visibility}):
        got = drawing.draw_keypoints(image, points, connectivity=edges, **kwargs)
        tv_kwargs = {**kwargs, "visibility": torch.from_numpy(kwargs["visibility"])} if "visibility" in kwargs else {}
        want = tv.draw_keypoints(_chw(image), torch.from_numpy(points), connectivity=edges,
                                 **{**kwargs, **tv_kwargs})
        np.testing.assert_array_equal(got, _hwc(want))
        assert (got != image).any(axis=2).sum() > 500


def test_flow_colour_wheel_matches_torchvision_within_one_level() -> None:
    y, x = np.mgrid[0:90, 0:130].astype(np.float32)
    # a swirl around a centre plus an expansion: every direction and a range of lengths
    u, v = -(y - 40.5) + 0.3 * (x - 70.2), (x - 70.2) + 0.3 * (y - 40.5)
    flow = np.stack([u, v])
    want = _hwc(tv.flow_to_image(torch.from_numpy(flow)))
    got = drawing.flow_to_image(np.moveaxis(flow, 0, -1))
    assert got.shape == (90, 130, 3) and got.dtype == np.uint8
    assert np.abs(got.astype(np.int16) - want.astype(np.int16)).max() <= 1
    np.testing.assert_array_equal(drawing.flow_to_image(flow), got)  # 2 x H x W reads the same
    assert len(np.unique(got.reshape(-1, 3), axis=0)) > 1000  # a wheel, not one colour


def test_make_grid_matches_torchvision() -> None:
    image = data.astronaut()
    tiles = [np.ascontiguousarray(image[r:r + 100, c:c + 120]) for r, c in ((0, 0), (50, 60), (200, 10), (300, 300),
                                                                             (400, 380))]
    for nrow, padding, pad_value in ((3, 4, 255), (8, 2, 0), (2, 0, 17)):
        got = drawing.make_grid(tiles, nrow=nrow, padding=padding, pad_value=pad_value)
        want = tv.make_grid([_chw(t) for t in tiles], nrow=nrow, padding=padding, pad_value=pad_value)
        np.testing.assert_array_equal(got, _hwc(want))
    np.testing.assert_array_equal(drawing.make_grid(np.stack(tiles), nrow=3), _hwc(
        tv.make_grid(torch.from_numpy(np.stack(tiles)).permute(0, 3, 1, 2), nrow=3)))
    np.testing.assert_array_equal(drawing.make_grid([tiles[0]]), tiles[0])  # one image: as it is, unpadded


def test_make_grid_letterboxes_images_of_different_sizes() -> None:
    big, wide = data.astronaut(), data.coffee()  # 512 x 512 and 400 x 600
    grid = drawing.make_grid([big, wide], nrow=2, padding=2, pad_value=255)
    assert grid.shape == (2 + 512 + 2, 2 + 2 * (600 + 2), 3)
    np.testing.assert_array_equal(grid[2:514, 2 + 44:2 + 44 + 512], big)  # centred in its 512 x 600 cell
    assert (grid[2:514, 2:2 + 44] == 255).all()  # the letterbox bars
    coffee_cell = grid[2:514, 604:1204]
    assert (coffee_cell[:56] == 255).all() and (coffee_cell[56 + 400:] == 255).all()
    np.testing.assert_array_equal(coffee_cell[56:456], wide)  # same width: placed without scaling


def test_palette_is_torchvisions() -> None:
    want = [tuple(int(v) for v in c) for c in tv._generate_color_palette(40)]
    assert drawing.palette(40) == want


def test_class_overlay_blends_classes_and_draws_a_legend() -> None:
    image = data.chelsea()
    grey = color.rgb2gray(image)
    classes = np.digitize(grey, filters.threshold_multiotsu(grey, classes=3)).astype(np.int64)  # 0, 1, 2
    categories = ["__background__", "dark fur", "light fur", "absent class"]
    got = drawing.class_overlay(image, classes, categories, alpha=0.5)
    height, width = image.shape[:2]
    assert got.shape[0] == height and got.shape[1] > width + 40
    per_class = np.stack([classes == i for i in range(len(categories))])
    want = drawing.draw_segmentation_masks(image, per_class, alpha=0.5, colors=drawing.palette(len(categories)))
    np.testing.assert_array_equal(got[:, :width], want)
    legend = got[:, width:].reshape(-1, 3)
    present = {tuple(c) for c in legend.tolist()}
    colours = drawing.palette(len(categories))
    assert colours[1] in present and colours[2] in present and colours[3] not in present  # swatches of present classes
    assert (legend == 0).all(axis=1).sum() > 50  # black text and outlines


def test_class_overlay_legend_taller_than_the_image_extends_the_canvas_downwards() -> None:
    image = data.chelsea()[:24, :40]
    classes = np.arange(24 * 40).reshape(24, 40) % 6
    got = drawing.class_overlay(image, classes, [f"class {i}" for i in range(6)])
    assert got.shape[0] > 24 and got.shape[1] > 40
    assert (got[24:, :40] == 255).all()  # white below the image


def test_topk_bars_draws_one_bar_per_class_as_long_as_its_probability() -> None:
    image = data.coffee()
    labels, probabilities = ["espresso", "cup", "coffee mug"], [0.62, 0.25, 0.05]
    got = drawing.topk_bars(image, labels, probabilities)
    height, width = image.shape[:2]
    assert got.shape[0] == height and got.shape[1] > width
    np.testing.assert_array_equal(got[:, :width], image)
    panel = got[:, width:].reshape(-1, 3)
    bar_pixels = [np.all(panel == c, axis=1).sum() for c in drawing.palette(4)[1:]]
    assert bar_pixels[0] > bar_pixels[1] > bar_pixels[2] > 0
    assert bar_pixels[0] / bar_pixels[1] == pytest.approx(0.62 / 0.25, rel=0.1)


def test_empty_inputs_draw_nothing() -> None:
    image = data.chelsea()
    np.testing.assert_array_equal(drawing.draw_bounding_boxes(image, np.zeros((0, 4))), image)
    np.testing.assert_array_equal(drawing.draw_segmentation_masks(image, np.zeros((0,) + image.shape[:2], bool)),
                                  image)
    np.testing.assert_array_equal(drawing.draw_keypoints(image, np.zeros((0, 17, 2))), image)


@pytest.mark.parametrize(("call", "message"), [
    (lambda im: drawing.draw_bounding_boxes(im.astype(np.float32), [[0, 0, 5, 5]]), "uint8 numpy array"),
    (lambda im: drawing.draw_bounding_boxes(im, [[0, 0, 5]]), "K x 4"),
    (lambda im: drawing.draw_bounding_boxes(im, [[9, 0, 5, 5]]), "x1 <= x2"),
    (lambda im: drawing.draw_bounding_boxes(im, [[0, 0, np.nan, 5]]), "finite"),
    (lambda im: drawing.draw_bounding_boxes(im, np.zeros((drawing.MAX_OBJECTS + 1, 4))), "from 0 to 10000"),
    (lambda im: drawing.draw_bounding_boxes(im, [[0, 0, 5, 5]], labels=["a", "b"]), "one per box"),
    (lambda im: drawing.draw_bounding_boxes(im, [[0, 0, 5, 5]], colors="no such colour"), "unknown colour"),
    (lambda im: drawing.draw_bounding_boxes(im, [[0, 0, 5, 5]], colors=(0, 300, 0)), "(r, g, b)"),
    (lambda im: drawing.draw_bounding_boxes(im, [[0, 0, 5, 5]], labels=["a"], font="/no/such/font.ttf"),
     "TrueType font"),
    (lambda im: drawing.draw_segmentation_masks(im, np.zeros((1, 5, 5), np.uint8)), "bool numpy array"),
    (lambda im: drawing.draw_segmentation_masks(im, np.zeros((1, 5, 5), bool)), "same size"),
    (lambda im: drawing.draw_segmentation_masks(im, np.zeros(im.shape[:2], bool), alpha=2), "alpha"),
    (lambda im: drawing.draw_keypoints(im, np.zeros((1, 3, 2)), connectivity=[(0, 3)]), "from 0 to 2"),
    (lambda im: drawing.draw_keypoints(im, np.zeros((1, 3, 2)), visibility=np.ones((1, 4), bool)), "N x K"),
    (lambda im: drawing.flow_to_image(np.zeros((3, 4, 5), np.float32)), "H x W x 2"),
    (lambda im: drawing.class_overlay(im, np.full(im.shape[:2], 3), ["a", "b"]), "0 to 1"),
    (lambda im: drawing.topk_bars(im, ["a", "b"], [0.5]), "one per label"),
    (lambda im: drawing.flow_to_image(np.zeros((0, 0, 2), np.float32)), "H x W x 2"),
    (lambda im: drawing.make_grid([im], nrow=0), "nrow"),
    (lambda im: drawing.make_grid(iter([im])), "list of images"),
    (lambda im: drawing.make_grid([im[:0]]), "non-empty uint8"),
    (lambda im: drawing.draw_bounding_boxes(Image.new("1", (9000, 9000)), [[0, 0, 5, 5]]), "scale it down"),
])
def test_bad_input_is_a_one_line_usage_error(call, message: str) -> None:
    with pytest.raises(UsageError) as info:
        call(data.chelsea())
    text = str(info.value)
    assert message in text and "\n" not in text


def test_drawing_imports_neither_torch_nor_sqlalchemy() -> None:
    code = "import sys, zoo.runtime.drawing; print(sorted(m for m in ('torch', 'sqlalchemy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"

"""Preprocessing specs: the JSON contract, the v2 equivalents of torchvision's presets,
and the numpy + Pillow path, on real photographs.

The photographs are scikit-image's bundled samples (no network): nobody in this
project made them. Differences are reported in two units: normalised (what the model
sees) and pixel units, the normalised difference times std, where 1/255 is one step
of a uint8 pixel. Run with ``-s`` to see the tables.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import fields, replace
from functools import partial

import numpy as np
import pytest
import skimage.data
import torch
import torchvision.models as tvm
from PIL import Image
from torchvision.transforms import InterpolationMode, _presets, v2
from torchvision.transforms.functional import resize as resize_v1

from zoo.errors import UsageError
from zoo.modeling.transforms import spec_from_transforms, to_torchvision
from zoo.preprocessing import PreprocessSpec, preprocess_numpy, resized_size, to_8bit
from zoo_digits.data import load_heldout
from zoo_digits.model import DigitsCNN_Weights, digits_cnn

ONE_STEP = 1 / 255
FLOAT_EPS = 1e-6  # float32 rounding, in pixel units
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "camera")  # camera is grey


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """These tensors are small: on a busy 2-core machine, handing them between threads
    costs ten times the work (30 ms instead of 1 ms for a Normalize)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _all_weights() -> list:
    return [w for name in tvm.list_models() for w in tvm.get_model_weights(name)] + list(DigitsCNN_Weights)


def _distinct_presets() -> dict[str, object]:
    """One weights entry per distinct preset configuration (type and settings), by name."""
    found: dict[tuple[str, str], object] = {}
    for weights in _all_weights():
        preset = weights.transforms()
        settings = {k: v for k, v in vars(preset).items() if not k.startswith("_") and k != "training"}
        found.setdefault((type(preset).__name__, repr(settings)), weights)
    return {str(w): w for w in found.values()}


PRESETS = _distinct_presets()


def _photo(name: str) -> np.ndarray:
    return getattr(skimage.data, name)()


def _tensor(image: np.ndarray) -> torch.Tensor:
    """H x W (x C) uint8 -> C x H x W uint8 tensor, as a user would build it."""
    image = image if image.ndim == 3 else image[:, :, None]
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))


def _clip() -> np.ndarray:
    """Four T x H x W x C frames: a window panning across coffee() (400 x 600)."""
    coffee = _photo("coffee")
    return np.stack([coffee[10 * t : 10 * t + 240, 40 * t : 40 * t + 320] for t in range(4)])


def _errors(spec: PreprocessSpec, got, want) -> tuple[float, float, float, float]:
    """Max and mean |got - want| in pixel units, then normalised; batches welcome."""
    got, want = (np.asarray(x, dtype=np.float64) for x in (got, want))
    assert got.shape == want.shape
    std = np.asarray((spec.normalisation() or ((), (1.0,)))[1])
    diff = np.abs(got - want)
    pixels = diff * std.reshape(-1, *[1] * (len(spec.layout) - 1))  # C of CHW or CTHW
    return float(pixels.max()), float(pixels.mean()), float(diff.max()), float(diff.mean())


def test_importing_and_the_numpy_path_need_no_torch() -> None:
    code = (
        "import sys, numpy as np, zoo.introspect, zoo.preprocessing as p\n"
        "spec = p.PreprocessSpec.from_json({'kind': 'classification', 'resize_size': [36],"
        " 'resize_mode': 'shorter_side', 'crop_size': [32, 32], 'interpolation': 'bilinear',"
        " 'antialias': True, 'mean': [0.5, 0.5, 0.5], 'std': [0.25, 0.25, 0.25]})\n"
        "assert p.preprocess_numpy(spec, np.zeros((40, 60, 3), np.uint8)).shape == (3, 32, 32)\n"
        "assert not [m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision')]\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_every_weights_entry_has_a_spec_that_round_trips_through_json() -> None:
    kinds = {
        _presets.ImageClassification: "classification",
        _presets.ObjectDetection: "detection",
        _presets.SemanticSegmentation: "segmentation",
        _presets.VideoClassification: "video",
        _presets.OpticalFlow: "optical_flow",
    }
    for weights in _all_weights():
        spec = spec_from_transforms(weights.transforms)
        data = json.loads(json.dumps(spec.to_json(), allow_nan=False))
        assert list(data) == [f.name for f in fields(PreprocessSpec) if f.name != "pad_fill"]  # a later field, unset
        assert data == spec.to_json() and PreprocessSpec.from_json(data) == spec, weights
        assert spec.kind == kinds[type(weights.transforms())]
    assert spec_from_transforms(None) is None


def test_spec_reads_the_presets_settings_and_their_hard_coded_constants() -> None:
    resnet = tvm.ResNet50_Weights.IMAGENET1K_V2.transforms()
    assert spec_from_transforms(tvm.ResNet50_Weights.IMAGENET1K_V2.transforms) == PreprocessSpec(
        kind="classification", resize_size=(232,), resize_mode="shorter_side", crop_size=(224, 224),
        interpolation="bilinear", antialias=True, mean=tuple(resnet.mean), std=tuple(resnet.std))
    video = spec_from_transforms(tvm.video.R3D_18_Weights.DEFAULT.transforms)
    assert (video.resize_size, video.resize_mode, video.crop_size) == ((128, 171), "exact", (112, 112))
    assert video.antialias is False and video.layout == "CTHW"
    assert spec_from_transforms(tvm.detection.FasterRCNN_ResNet50_FPN_Weights.DEFAULT.transforms) == (
        PreprocessSpec(kind="detection"))
    flow = spec_from_transforms(tvm.optical_flow.Raft_Large_Weights.DEFAULT.transforms)
    assert (flow.mean, flow.std, flow.resize_size) == ((0.5,) * 3, (0.5,) * 3, None)
    segmentation = spec_from_transforms(tvm.segmentation.FCN_ResNet50_Weights.DEFAULT.transforms)
    assert (segmentation.resize_size, segmentation.crop_size) == ((520,), None)
    digits = spec_from_transforms(DigitsCNN_Weights.DEFAULT.transforms)
    assert digits.channel_order == "L" and digits.crop_size == (8, 8) and len(digits.mean) == 1


def test_unknown_transforms_are_an_error() -> None:
    with pytest.raises(UsageError, match=r"cannot describe transforms .*Resize: not one of torchvision's presets"):
        spec_from_transforms(partial(v2.Resize, 32))


VALID = spec_from_transforms(tvm.ResNet50_Weights.DEFAULT.transforms).to_json()


@pytest.mark.parametrize("change, message", [
    ({"kind": "keypoints"}, r'kind="keypoints" is not accepted; use "classification" or "detection"'),
    ({"resize_size": [1, 2, 3]}, r"resize_size=\[1, 2, 3\] is not accepted; use \[n\] \(shorter side\), \[h, w\]"),
    ({"resize_size": 256}, r"resize_size=256 is not accepted; use a list of numbers"),
    ({"resize_mode": "exact"}, r'resize_mode="exact" is not accepted; use "shorter_side"'),
    ({"interpolation": "bilnear"}, r'interpolation="bilnear" is not accepted; use "nearest" or .* or "bicubic"'),
    ({"antialias": 1}, r"antialias=1 is not accepted; use true or false"),
    ({"resize_size": None}, r'resize_mode="shorter_side" is not accepted; use null'),
    ({"crop_size": [224]}, r"crop_size=\[224\] is not accepted; use \[h, w\]"),
    ({"mean": [0.5]}, r"mean=\[0.5\] is not accepted; use 3 numbers, one per channel of 'RGB'"),
    ({"std": None}, r"std=null is not accepted; .*mean and std come together"),
    ({"std": [0.2, 0.0, 0.2]}, r"std=\[0.2, 0.0, 0.2\] is not accepted; use positive numbers"),
    ({"channel_order": "BGR"}, r'channel_order="BGR" is not accepted; use "RGB" or "L"'),
    ({"value_range": [1, 0]}, r"value_range=\[1, 0\] is not accepted; use \[low, high\] with low < high"),
    ({"layout": "CTHW"}, r'layout="CTHW" is not accepted; use "CHW"'),
    ({"crop": [224, 224]}, r"unknown field 'crop'; fields: kind, resize_size,"),
    ({"resize_mode": "contain"}, r'resize_mode="contain" is not accepted; use "shorter_side"$'),
    ({"resize_size": [256, 256], "resize_mode": "fit"},
     r'resize_mode="fit" is not accepted; use "exact" or "contain" or "cover"$'),
    ({"pad_fill": [128, 128]}, r"pad_fill=\[128, 128\] is not accepted; use 3 integers from 0 to 255, one per "
                               r"channel of 'RGB', or null$"),
    ({"pad_fill": [0, 256, 0]}, r"pad_fill=\[0, 256, 0\] is not accepted; use 3 integers from 0 to 255"),
    ({"pad_fill": [0.5, 0.5, 0.5]}, r"pad_fill=\[0.5, 0.5, 0.5\] is not accepted; use 3 integers from 0 to 255"),
    ({"pad_fill": [True, 0, 0]}, r"pad_fill=\[true, 0, 0\] is not accepted; use 3 integers from 0 to 255"),
    ({"pad_fill": [-1, 0, 0]}, r"pad_fill=\[-1, 0, 0\] is not accepted; use 3 integers from 0 to 255"),
    ({"pad_fill": 128}, r"pad_fill=128 is not accepted; use a list of numbers"),
    ({"pad_fill": [128] * 100_000}, r"pad_fill=\[128, 128, .*\.\.\. \(\d+ characters\) is not accepted; use 3 integers"),
    ({"pad_fill": [1, 2, 3], "crop_size": None},
     r"pad_fill=\[1, 2, 3\] is not accepted; use null: it colours a center crop's padding, and there is no crop"),
])
def test_bad_specs_say_which_field_and_what_is_accepted(change: dict, message: str) -> None:
    with pytest.raises(UsageError, match=message) as caught:
        PreprocessSpec.from_json({**VALID, **change})
    assert "\n" not in str(caught.value)


def test_to_torchvision_equals_every_distinct_preset() -> None:
    """On chelsea (PIL and tensor), a coffee() clip, stereo_motorcycle pairs and digits.

    Measured: at most 1.6e-7 in pixel units, 7.2e-7 normalised (1.5e-5 for vgg16
    features, whose std is 1/255): float32 rounding, as v2 scales uint8 by multiplying
    by 1/255 where the presets divide by 255.
    """
    left, right, _ = skimage.data.stereo_motorcycle()
    clip = torch.from_numpy(_clip()).permute(0, 3, 1, 2).contiguous()
    worst: dict[str, tuple[float, float]] = {}
    for name, weights in PRESETS.items():
        preset, spec = weights.transforms(), spec_from_transforms(weights.transforms)
        ours = to_torchvision(spec)
        if spec.kind == "video":
            cases = [(clip,), (clip[None],)]  # T x C x H x W, and a batch of one
        elif spec.kind == "optical_flow":
            cases = [(Image.fromarray(left), Image.fromarray(right)), (_tensor(left), _tensor(right))]
        elif spec.channel_order == "L":
            images = load_heldout()[0]
            cases = [(Image.fromarray(images[0]),), (torch.from_numpy(images[:64])[:, None],)]
        else:
            cases = [(Image.fromarray(_photo("chelsea")),), (_tensor(_photo("chelsea")),)]
        for inputs in cases:
            want, got = preset(*inputs), ours(*inputs)
            pairs = zip(got, want) if spec.kind == "optical_flow" else [(got, want)]
            for g, w in pairs:
                assert type(g) is torch.Tensor and g.dtype == torch.float32 and g.shape == w.shape
                pixels, _, normalised, _ = _errors(spec, g, w)
                worst[name] = max(worst.get(name, (0.0, 0.0)), (pixels, normalised))
    print("\nto_torchvision vs preset: max |difference| in pixel units, normalised")
    for name, (pixels, normalised) in worst.items():
        print(f"  {name:55s} {pixels:8.1e} {normalised:8.1e}")
    assert max(pixels for pixels, _ in worst.values()) <= FLOAT_EPS


CLASSIFICATION = {n: w for n, w in PRESETS.items() if isinstance(w.transforms(), _presets.ImageClassification)}


def test_numpy_matches_torchvision_on_photographs_for_every_classification_preset() -> None:
    """numpy + Pillow against `to_torchvision` on astronaut, chelsea, coffee, rocket, camera.

    Measured, in uint8 steps (1/255 pixel units; normalised is that / 255 / std, std
    about 0.22, or 1/255 for vgg16 features):
    - PIL input: at most 4e-5 steps (float32 rounding) for every configuration.
    - uint8 tensor input, bilinear: at most 1 step, mean 0.13 to 0.18 steps (0.40 for
      the 8 x 8 digits preset, which resizes a whole photograph to 8 pixels).
    - uint8 tensor input, bicubic: 4 to 15 steps at most, mean 0.09 to 0.16 steps. Not
      within 1/255, and not ours: `to_torchvision` equals the preset, and the preset on a
      tensor strays this far from the same preset on a PIL image; see
      `test_bicubic_tensor_gap_is_torchvisions_float_resize`.
    """
    rows = []
    for name, weights in CLASSIFICATION.items():
        spec = spec_from_transforms(weights.transforms)
        pipeline = to_torchvision(spec)
        errors: dict[str, list[tuple[float, ...]]] = {"tensor": [], "PIL": []}
        for photo in PHOTOS:
            image = _photo(photo)
            expected = preprocess_numpy(spec, image)
            errors["tensor"].append(_errors(spec, pipeline(_tensor(image)), expected))
            errors["PIL"].append(_errors(spec, pipeline(Image.fromarray(image)), expected))
        tensor, pil = _over_photographs(errors["tensor"]), _over_photographs(errors["PIL"])
        rows.append((name, spec, tensor, pil))
        assert pil[0] <= FLOAT_EPS, name
        if spec.interpolation == "bilinear":
            assert tensor[0] <= ONE_STEP + FLOAT_EPS, name
    print("\nnumpy + Pillow vs to_torchvision on 5 photographs: |difference| in uint8 steps"
          " (pixel units x 255) and normalised")
    columns = " ".join(f"{c:>8s}" for c in ("steps", "mean", "norm.", "mean"))
    print(f"  {'':65s} {'uint8 tensor input':^35s}   {'PIL input':^35s}")
    print(f"  {'weights':46s} {'config':18s} {columns}   {columns}")
    for name, spec, tensor, pil in rows:
        config = f"{spec.interpolation} {spec.resize_size[0]}/{spec.crop_size[0]}"
        figures = "   ".join(" ".join(f"{e * scale:8.2g}" for e, scale in zip(path, (255, 255, 1, 1)))
                               for path in (tensor, pil))
        print(f"  {name:46s} {config:18s} {figures}")


def _over_photographs(errors: list[tuple[float, ...]]) -> tuple[float, ...]:
    """The largest maximum and the mean of the means, in pixel units and normalised."""
    maxima, means, normalised_maxima, normalised_means = zip(*errors)
    return max(maxima), float(np.mean(means)), max(normalised_maxima), float(np.mean(normalised_means))


def test_bicubic_tensor_gap_is_torchvisions_float_resize() -> None:
    """Why bicubic presets on uint8 tensors stray from Pillow by more than 1/255.

    The preset resizes a uint8 tensor in float32 and clips to 0..255 once, at the end.
    Pillow resizes horizontally first and rounds and clips that pass to uint8 before
    resizing vertically; bicubic's negative lobes overshoot 0..255 at high-contrast
    edges, and clipped and unclipped overshoots then spread differently. Rounding the
    first pass as Pillow does brings torch's float resize from 6 steps off Pillow to 1
    (astronaut to 232 x 232).
    """
    photo = _photo("astronaut")  # 512 x 512
    pillow = np.asarray(Image.fromarray(photo).resize((232, 232), Image.Resampling.BICUBIC)).astype(int)
    resize = partial(torch.nn.functional.interpolate, mode="bicubic", antialias=True, align_corners=False)

    def steps_off_pillow(resized: torch.Tensor) -> int:
        return int(np.abs(resized.clamp(0, 255).round()[0].permute(1, 2, 0).numpy() - pillow).max())

    image = _tensor(photo)[None].float()
    horizontal = resize(image, size=(512, 232))
    assert horizontal.min() < -5 and horizontal.max() > 260  # the overshoot
    as_preset = resize(image, size=(232, 232))
    assert torch.equal(as_preset.clamp(0, 255).round()[0].to(torch.uint8),
                       resize_v1(_tensor(photo), [232], InterpolationMode.BICUBIC))  # what the preset calls
    assert steps_off_pillow(as_preset) > 3  # 6 measured
    assert steps_off_pillow(resize(horizontal.clamp(0, 255).round(), size=(232, 232))) <= 1


def test_numpy_matches_torchvision_for_the_other_kinds() -> None:
    """Measured, in pixel units: detection identical (6e-8) on PIL and tensors;
    segmentation identical on PIL (1.6e-7), on tensors at most 1/255 with mean 3.8e-4
    (as for bilinear classification); video (tensors only, no antialiasing, which numpy
    interpolates as torch does) at most 1/255 with mean at most 5.1e-7, that is one
    pixel in some 7,500 a step off; optical flow identical (6e-8)."""
    left, right, _ = skimage.data.stereo_motorcycle()
    clip = _clip()
    for name, weights in PRESETS.items():
        spec = spec_from_transforms(weights.transforms)
        pipeline = to_torchvision(spec)
        if spec.kind in ("segmentation", "detection"):
            photo = _photo("rocket")
            expected = preprocess_numpy(spec, photo)
            assert _errors(spec, pipeline(Image.fromarray(photo)), expected)[0] <= FLOAT_EPS
            assert _errors(spec, pipeline(_tensor(photo)), expected)[0] <= ONE_STEP + FLOAT_EPS
        elif spec.kind == "video":
            got = preprocess_numpy(spec, clip)
            want = pipeline(torch.from_numpy(clip).permute(0, 3, 1, 2).contiguous())
            max_, mean, *_ = _errors(spec, got, want)
            assert max_ <= ONE_STEP + FLOAT_EPS and mean < 1e-5, (name, max_, mean)
        elif spec.kind == "optical_flow":
            got = preprocess_numpy(spec, left, right)
            want = pipeline(Image.fromarray(left), Image.fromarray(right))
            assert all(_errors(spec, g, w)[0] <= FLOAT_EPS for g, w in zip(got, want))


@pytest.mark.parametrize("resize, crop", [((100,), (150, 131)), ((200,), (171, 301)), ((77, 99), (50, 60)),
                                          (None, (297, 460))])
def test_center_crop_pads_and_rounds_as_torchvision(resize, crop) -> None:
    """Crops larger than the image pad with zeros, split as torchvision splits them;
    smaller ones start at round((n - c) / 2), half to even."""
    resizing = {} if resize is None else {"resize_size": resize, "interpolation": "bilinear", "antialias": True,
                                          "resize_mode": "shorter_side" if len(resize) == 1 else "exact"}
    spec = PreprocessSpec(kind="classification", crop_size=crop, **resizing)
    photo = _photo("chelsea")  # 300 x 451
    got = preprocess_numpy(spec, photo)
    assert got.shape == (3, *crop)
    assert _errors(spec, got, to_torchvision(spec)(Image.fromarray(photo)))[0] <= FLOAT_EPS


def test_specs_without_the_later_fields_read_and_write_as_before() -> None:
    """A spec as the first version wrote it (README's example) loads and is written back
    unchanged, so an export that does not pad with a colour reads in that version too."""
    old = {"kind": "classification", "resize_size": [232], "resize_mode": "shorter_side",
           "crop_size": [224, 224], "interpolation": "bilinear", "antialias": True,
           "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
           "channel_order": "RGB", "value_range": [0.0, 1.0], "layout": "CHW"}
    spec = PreprocessSpec.from_json(old)
    assert spec.pad_fill is None and spec.to_json() == old
    border = replace(spec, resize_size=(256, 256), resize_mode="contain", pad_fill=(124, 116, 104))
    assert border.to_json() == {**old, "resize_size": [256, 256], "resize_mode": "contain",
                                "pad_fill": [124, 116, 104]}
    assert PreprocessSpec.from_json(json.loads(json.dumps(border.to_json()))) == border


@pytest.mark.parametrize("image, box, contain, cover", [
    ((300, 451), (200, 200), (133, 200), (200, 301)),  # chelsea: 300 / (451 / 200) = 133.04
    ((451, 300), (200, 200), (200, 133), (301, 200)),
    ((300, 451), (100, 300), (100, 150), (200, 300)),  # a box of another shape: 199.56 rounds to 200
    ((5, 8), (4, 4), (2, 4), (4, 6)),  # 2.5 rounds to 2 and 6.4 to 6: Python's round, as timm's
    ((7, 8), (4, 4), (4, 4), (4, 5)),  # 3.5 rounds to 4 and 4.57 to 5
    ((1, 2000), (64, 64), (1, 64), (64, 128000)),  # contain keeps at least one pixel (0.032 rounds to 0)
])
def test_contain_and_cover_scale_both_sides_by_one_ratio_and_round_to_nearest(image, box, contain, cover) -> None:
    for mode, expected in (("contain", contain), ("cover", cover)):
        spec = PreprocessSpec(kind="classification", resize_size=box, resize_mode=mode, interpolation="bilinear",
                              antialias=True)
        assert resized_size(*image, spec) == expected, mode


def _border_spec(mode: str, resize: tuple[int, int], crop: tuple[int, int], fill: tuple[int, ...],
                 interpolation: str = "bicubic") -> PreprocessSpec:
    grey = len(fill) == 1
    return PreprocessSpec(kind="classification", resize_size=resize, resize_mode=mode, crop_size=crop, pad_fill=fill,
                          interpolation=interpolation, antialias=True, mean=(0.5,) * len(fill), std=(0.25,) * len(fill),
                          channel_order="L" if grey else "RGB")


@pytest.mark.parametrize("spec", [
    _border_spec("contain", (224, 224), (224, 224), (124, 116, 104)),  # timm's border crop: pads only
    _border_spec("contain", (256, 320), (224, 288), (124, 116, 104)),  # pads one axis, crops the other
    _border_spec("cover", (256, 320), (224, 288), (255, 0, 7)),  # timm's non-square center crop
    _border_spec("contain", (200, 200), (240, 180), (77,), "bilinear"),  # grey
], ids=["contain", "contain-crop", "cover", "grey"])
def test_keep_ratio_resizes_and_coloured_padding_agree_on_both_paths(spec: PreprocessSpec) -> None:
    """Wide, tall and small photographs; PIL input exact, uint8 tensors (resized as the
    presets resize tensors) within a step where bilinear."""
    astronaut = _photo("astronaut")
    images = {"chelsea": _photo("chelsea"), "tall": astronaut[:, 150:350], "wide": astronaut[200:300],
              "small": astronaut[:30, :20], "camera": _photo("camera")}
    for name, image in images.items():
        image = np.array(Image.fromarray(image).convert(spec.channel_order))
        got = preprocess_numpy(spec, image)
        assert got.shape == (len(spec.channel_order), *spec.crop_size), name
        assert _errors(spec, got, to_torchvision(spec)(Image.fromarray(image)))[0] <= FLOAT_EPS, name
        if spec.interpolation == "bilinear":
            assert _errors(spec, got, to_torchvision(spec)(_tensor(image)))[0] <= ONE_STEP + FLOAT_EPS, name


@pytest.mark.parametrize("fill", [(10, 200, 30), (77,)], ids=["RGB", "L"])
def test_a_crop_larger_than_the_image_pads_with_the_fill_colour_on_both_paths(fill: tuple[int, ...]) -> None:
    """chelsea (300 x 451) cropped to 350 x 400: 25 rows of fill above and below, on numpy,
    PIL and uint8 tensors (one image and a batch) alike; without a fill, zeros."""
    spec = _border_spec("contain", (8, 8), (350, 400), fill)
    spec = replace(spec, resize_size=None, resize_mode=None, interpolation=None, antialias=None)
    image = np.array(Image.fromarray(_photo("chelsea")).convert(spec.channel_order))
    got = preprocess_numpy(spec, image)
    colour = (np.asarray(fill, np.float32)[:, None, None] / 255 - 0.5) / 0.25
    for rows in (got[:, :25], got[:, -25:]):
        np.testing.assert_array_equal(rows, np.broadcast_to(colour, rows.shape))
    assert not np.allclose(got[:, 25], colour)  # the photograph starts there
    np.testing.assert_array_equal(got[:, 25:-25], preprocess_numpy(replace(spec, crop_size=(300, 400)), image))
    pipeline = to_torchvision(spec)
    tensor = _tensor(image)
    for inputs in (Image.fromarray(image), tensor, tensor[None].expand(2, -1, -1, -1)):
        want = pipeline(inputs)
        for sample in want if want.ndim == 4 else [want]:
            assert _errors(spec, got, sample)[0] <= FLOAT_EPS
    zeros = preprocess_numpy(replace(spec, pad_fill=None), image)
    np.testing.assert_array_equal(zeros[:, :25], np.full_like(zeros[:, :25], -2.0))  # (0 - 0.5) / 0.25


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
@pytest.mark.parametrize("size", [(128, 171), (700, 900)])
def test_resizing_without_antialiasing_interpolates_as_torch_does_tensors(interpolation, size) -> None:
    """Down and up, astronaut (512 x 512): at most one step, mean at most 2e-6 (pixel units)."""
    spec = PreprocessSpec(kind="segmentation", resize_size=size, resize_mode="exact",
                          interpolation=interpolation, antialias=False)
    photo = _photo("astronaut")
    max_, mean, *_ = _errors(spec, preprocess_numpy(spec, photo), to_torchvision(spec)(_tensor(photo)))
    assert max_ <= ONE_STEP + FLOAT_EPS and mean < 1e-5


def test_images_are_converted_to_the_specs_channel_order() -> None:
    rgb = spec_from_transforms(tvm.ResNet50_Weights.DEFAULT.transforms)
    grey = _photo("camera")
    as_rgb = preprocess_numpy(rgb, np.repeat(grey[:, :, None], 3, axis=2))
    for image in (grey, Image.fromarray(grey), grey[:, :, None]):
        np.testing.assert_array_equal(preprocess_numpy(rgb, image), as_rgb)
    digits = spec_from_transforms(DigitsCNN_Weights.DEFAULT.transforms)
    colour = np.asarray(Image.fromarray(_photo("coffee")).resize((8, 8)))
    got, want = preprocess_numpy(digits, colour), to_torchvision(digits)(Image.fromarray(colour))
    assert _errors(digits, got, want)[0] <= FLOAT_EPS
    with pytest.raises(UsageError, match="expected a uint8 H x W or H x W x C image, got float64"):
        preprocess_numpy(rgb, grey.astype(float))
    with pytest.raises(UsageError, match="optical_flow preprocessing takes 2 input"):
        preprocess_numpy(replace(rgb, kind="optical_flow", resize_size=None, resize_mode=None, crop_size=None,
                                 interpolation=None, antialias=None), grey)


def test_numpy_preprocessing_reproduces_the_digits_accuracy() -> None:
    """The shipped digits weights, fed by the numpy path one image at a time, score
    exactly what their record says (446/450 held out)."""
    weights = DigitsCNN_Weights.DEFAULT
    spec = PreprocessSpec.from_json(spec_from_transforms(weights.transforms).to_json())
    images, labels = load_heldout()
    batch = torch.from_numpy(np.stack([preprocess_numpy(spec, image) for image in images]))
    assert torch.equal(batch, weights.transforms()(torch.from_numpy(images)[:, None]))
    model = digits_cnn(weights=weights).eval()
    with torch.inference_mode():
        accuracy = float((model(batch).argmax(1).numpy() == labels).mean())
    assert round(accuracy * 100, 3) == weights.meta["_metrics"]["sklearn-digits-heldout"]["acc@1"]


# -- untrusted specs and images -------------------------------------------------------


@pytest.mark.parametrize("change, message", [
    ({"resize_size": [100000]}, r"resize_size=\[100000\] is not accepted; .*integers from 1 to 8192"),
    ({"resize_size": [8193, 8], "resize_mode": "exact"}, r"resize_size=\[8193, 8\] is not accepted"),
    ({"crop_size": [224, 10**12]}, r"crop_size=\[224, 1000000000000\] is not accepted; .* 1 to 8192"),
    ({"resize_size": list(range(1, 100_000))}, r"resize_size=\[1, 2, 3, .*\.\.\. \(\d+ characters\) is not accepted"),
    ({"mean": ["x" * 100_000] * 3}, r"mean=\[\"xxx.*\.\.\. \(\d+ characters\) is not accepted"),
    ({"y" * 100_000: 1}, r"unknown field 'yyy.*\.\.\. \(100002 characters\); fields: kind,"),
])
def test_spec_sizes_are_bounded_and_huge_values_not_echoed(change: dict, message: str) -> None:
    with pytest.raises(UsageError, match=message) as caught:
        PreprocessSpec.from_json({**VALID, **change})
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 300


@pytest.mark.parametrize("size, mode", [((8192,), "shorter_side"), ((8192, 8192), "cover")])
def test_a_resize_to_more_than_the_pixel_limit_is_refused_before_allocating(size, mode) -> None:
    """A shorter-side or cover resize of a long thin image: 8192 x (8192 * 2000) pixels."""
    spec = PreprocessSpec(kind="classification", resize_size=size, resize_mode=mode,
                          interpolation="bilinear", antialias=True)
    with pytest.raises(UsageError, match=re.escape(f"the 2000 x 1 image resized to {list(size)} is 16384000 x 8192 "
                                                   "pixels, more than zoo's limit of 67108864 (8192 x 8192)")):
        preprocess_numpy(spec, np.zeros((1, 2000), np.uint8))


DIGITS_SPEC = spec_from_transforms(DigitsCNN_Weights.DEFAULT.transforms)
RESNET_SPEC = spec_from_transforms(tvm.ResNet50_Weights.DEFAULT.transforms)


def _deep(image: np.ndarray) -> dict[str, Image.Image]:
    """A uint8 grey image as 8-bit, 16-bit (the same levels, x 257) and float (/ 255) PIL images."""
    return {"L": Image.fromarray(image), "I;16": Image.fromarray(image.astype(np.uint16) * 257),
            "I": Image.fromarray(image.astype(np.int32) * 257), "F": Image.fromarray(image.astype(np.float32) / 255)}


@pytest.mark.parametrize("spec", [DIGITS_SPEC, RESNET_SPEC], ids=["digits", "resnet50"])
def test_16bit_and_float_images_preprocess_as_the_8bit_image_they_encode(spec: PreprocessSpec) -> None:
    """On both paths: not clipped at 255 (16-bit half grey is not white) nor rounded to 0 or 1 (float is not black)."""
    grey = _photo("camera")
    images = _deep(grey)
    assert images["I;16"].mode == "I;16" and images["I"].mode == "I" and images["F"].mode == "F"
    want = preprocess_numpy(spec, images["L"])
    for mode, image in images.items():
        np.testing.assert_array_equal(preprocess_numpy(spec, image), want, err_msg=mode)
        assert _errors(spec, to_torchvision(spec)(image), want)[0] <= FLOAT_EPS, mode
    half, white = (preprocess_numpy(spec, Image.fromarray(np.full((64, 64), v, np.uint16))) for v in (0x8080, 0xFFFF))
    np.testing.assert_array_equal(half, preprocess_numpy(spec, np.full((64, 64), 128, np.uint8)))
    assert not np.array_equal(half, white)


def test_16bit_and_float_scaling_is_torchvisions_to_dtype() -> None:
    """Every 16-bit value, and floats across [0, 1], against torchvision's own uint8 conversion."""
    from torchvision.transforms.v2.functional import to_dtype

    values = np.arange(1 << 16, dtype=np.uint16).reshape(256, 256)
    want = to_dtype(torch.from_numpy(values.astype(np.int32)).to(torch.uint16), torch.uint8, scale=True)
    got = np.asarray(to_8bit(Image.fromarray(values)))
    np.testing.assert_array_equal(got, want.numpy())
    floats = np.linspace(0, 1, 256 * 256, dtype=np.float32).reshape(256, 256)
    want = to_dtype(torch.from_numpy(floats), torch.uint8, scale=True)
    np.testing.assert_array_equal(np.asarray(to_8bit(Image.fromarray(floats))), want.numpy())


def test_16bit_and_float_images_agree_with_the_preset_within_one_step() -> None:
    """The digits preset takes 16-bit and float PIL images itself (as uint16 and float tensors):
    it keeps all their bits, zoo's paths 8 of them, so they differ by less than one uint8 step."""
    images, _ = load_heldout()
    preset = DigitsCNN_Weights.DEFAULT.transforms()
    for image in images[:20]:
        for mode, deep in _deep(image).items():
            if mode == "I":
                continue  # the preset cannot scale int32 images
            assert _errors(DIGITS_SPEC, preprocess_numpy(DIGITS_SPEC, deep), preset(deep))[0] < ONE_STEP, mode


@pytest.mark.parametrize("pixels, message", [
    (np.full((4, 4), 1.5, np.float32), r"float \(mode F\) image must have values in \[0, 1\].* 16 pixel.*e\.g\. 1\.5"),
    (np.full((4, 4), np.nan, np.float32), r"float \(mode F\) image must have values in \[0, 1\].*e\.g\. nan"),
    (np.where(np.eye(4) > 0, np.nan, 0.5).astype(np.float32), r"has 4 pixel\(s\) outside, e\.g\. nan"),
    (np.where(np.eye(4) > 0, -1.0, 0.5).astype(np.float32), r"has 4 pixel\(s\) outside, e\.g\. -1"),
    (np.full((4, 4), 70000, np.int32), r"32-bit integer \(mode I\) image .* 70000 to 70000"),
    (np.full((4, 4), -3, np.int32), r"32-bit integer \(mode I\) image .* -3 to -3"),
])
def test_images_that_cannot_be_scaled_are_refused_on_both_paths(pixels: np.ndarray, message: str) -> None:
    image = Image.fromarray(pixels)
    for run in (partial(preprocess_numpy, RESNET_SPEC), to_torchvision(RESNET_SPEC)):
        with pytest.raises(UsageError, match=message):
            run(image)

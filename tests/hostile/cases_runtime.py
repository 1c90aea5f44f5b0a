"""Untrusted model files and images on ``zoo predict FILE IMAGE...`` (and files ``zoo view`` refuses).

A model file's ``zoo.*`` metadata is input: each case rewrites one field of a real,
verified digits export with the ``onnx`` package (sizes that would allocate gigabytes,
values of the wrong type, JSON nested too deeply, too much of it), or replaces the
file with something that is not ONNX. Images: decompression bombs, headers that
declare absurd sizes, truncated and fake files, and 16-bit and float images, which
must predict exactly as the 8-bit image they encode does.
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from PIL import Image

from hostile.harness import Case, digits_export
from zoo_digits.data import load_heldout

MODEL = "model.onnx"
#: A held-out digit of the digits data set (8 x 8 uint8): bright strokes on black.
DIGIT = load_heldout()[0][0]


def _model(ws: Path) -> Path:
    return Path(shutil.copyfile(digits_export(), ws / MODEL))


def _copy_model(ws: Path) -> None:
    _model(ws)


def _digit(ws: Path) -> None:
    Image.fromarray(DIGIT).save(ws / "digit.png")


def _metadata(**values: str | Callable[[dict[str, str]], str]) -> Callable[[Path], None]:
    """Setup: the digits export with ``zoo.KEY`` metadata values replaced (or added), and a digit.

    A value may be a function of the export's own metadata (key: value).
    """
    def setup(ws: Path) -> None:
        model = onnx.load(str(_model(ws)))
        props = {p.key: p.value for p in model.metadata_props}
        props.update({f"zoo.{key}": value(props) if callable(value) else value for key, value in values.items()})
        onnx.helper.set_model_props(model, props)
        onnx.save(model, str(ws / MODEL))
        _digit(ws)
    return setup


def _spec(**changes: object) -> Callable[[Path], None]:
    """Setup: the export's preprocessing spec with `changes`."""
    return _metadata(preprocessing=lambda props: json.dumps({**json.loads(props["zoo.preprocessing"]), **changes}))


def _input_side(side: int) -> Callable[[Path], None]:
    """Setup: the export's input declared as 1 x 1 x side x side."""
    def setup(ws: Path) -> None:
        model = onnx.load(str(_model(ws)))
        dims = model.graph.input[0].type.tensor_type.shape.dim
        dims[2].dim_value = dims[3].dim_value = side
        onnx.save(model, str(ws / MODEL))
        _digit(ws)
    return setup


def _file(content: bytes) -> Callable[[Path], None]:
    """Setup: model.onnx with `content` instead of a model."""
    def setup(ws: Path) -> None:
        (ws / MODEL).write_bytes(content)
        _digit(ws)
    return setup


def _truncated_model(ws: Path) -> None:
    _model(ws)
    data = (ws / MODEL).read_bytes()
    (ws / MODEL).write_bytes(data[: len(data) // 2])
    _digit(ws)


def _image(name: str, make: Callable[[Path], None]) -> Callable[[Path], None]:
    """Setup: the digits export and the image file `name` that `make(path)` writes."""
    def setup(ws: Path) -> None:
        _model(ws)
        make(ws / name)
    return setup


def _bomb(path: Path) -> None:
    Image.new("1", (20000, 20000)).save(path)  # 1-bit, all black: about 50 kB


def _png_header(width: int, height: int) -> Callable[[Path], None]:
    """A PNG whose IHDR declares `width` x `height` 8-bit grey pixels, followed by one tiny row."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    def make(path: Path) -> None:
        header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                         + chunk(b"IDAT", zlib.compress(b"\0" * 9)) + chunk(b"IEND", b""))
    return make


def _truncated_png(path: Path) -> None:
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _deep_digits(ws: Path) -> None:
    """The digit as 8-bit, 16-bit (x 257: the same levels) and float (/ 255) images."""
    _model(ws)
    Image.fromarray(DIGIT).save(ws / "digit.png")
    Image.fromarray(DIGIT.astype(np.uint16) * 257).save(ws / "digit16.png")
    Image.fromarray(DIGIT.astype(np.float32) / 255).save(ws / "digit.tiff")
    Image.fromarray(np.full((8, 8), 0x8080, np.uint16)).save(ws / "half16.png")
    Image.fromarray(np.full((8, 8), 0xFFFF, np.uint16)).save(ws / "white16.png")
    Image.fromarray(np.full((8, 8), 128, np.uint8)).save(ws / "half.png")
    Image.fromarray(np.full((8, 8), 255, np.uint8)).save(ws / "white.png")


def _same_predictions(*groups: tuple[int, ...]) -> Callable[[Path, subprocess.CompletedProcess], None]:
    """Check: the images at the indices of each group got identical results, and groups differ."""
    def check(ws: Path, done: subprocess.CompletedProcess) -> None:
        tops = [r["top"] for r in json.loads(done.stdout)["results"]]
        for group in groups:
            assert all(tops[i] == tops[group[0]] for i in group), f"images {group} differ: {tops}"
        firsts = [tops[g[0]] for g in groups]
        assert all(a != b for i, a in enumerate(firsts) for b in firsts[i + 1:]), f"groups agree: {tops}"
    return check


PREDICT = ("predict", MODEL, "digit.png")

CASES = [
    # -- the model file's metadata
    Case("runtime-resize-100000", PREDICT, r"model\.onnx: metadata zoo\.preprocessing .*resize_size=\[100000\].*8192",
         setup=_spec(resize_size=[100000]), timeout=60),
    Case("runtime-crop-huge", PREDICT, r"model\.onnx: metadata zoo\.preprocessing .*crop_size",
         setup=_spec(crop_size=[8, 10**12]), timeout=60),
    Case("runtime-spec-list", PREDICT, r"model\.onnx: metadata zoo\.preprocessing .*JSON object",
         setup=_metadata(preprocessing="[8, 8]")),
    Case("runtime-spec-text", PREDICT, r"model\.onnx: metadata zoo\.preprocessing .*JSON object.*'resize it",
         setup=_metadata(preprocessing="resize it to 8 pixels")),
    Case("runtime-spec-bad-mean", PREDICT, r"model\.onnx: metadata zoo\.preprocessing .*mean",
         setup=_spec(mean=["a"], std=[1.0])),
    Case("runtime-spec-unknown-field", PREDICT, r"model\.onnx: metadata zoo\.preprocessing .*unknown field",
         setup=_spec(sharpen=True)),
    Case("runtime-categories-not-a-list", PREDICT, r"model\.onnx: metadata zoo\.categories .*list",
         setup=_metadata(categories='{"0": "zero"}')),
    Case("runtime-categories-huge", PREDICT, r"model\.onnx: metadata zoo\.categories .*at most 100000",
         setup=_metadata(categories=json.dumps([str(i) for i in range(200_000)]))),
    Case("runtime-category-name-huge", PREDICT, r"model\.onnx: metadata zoo\.categories .*characters",
         setup=_metadata(categories=json.dumps(["x" * 5000] * 10))),
    Case("runtime-task-unknown", PREDICT, r"model\.onnx: metadata zoo\.task .*'teleportation'",
         setup=_metadata(task="teleportation")),
    Case("runtime-task-not-a-string", PREDICT, r"model\.onnx: metadata zoo\.task",
         setup=_metadata(task='["classification"]')),
    Case("runtime-spec-video", PREDICT, r"model\.onnx: metadata zoo\.preprocessing .*kind 'video'",
         setup=_spec(kind="video", layout="CTHW")),
    Case("runtime-spec-rgb-for-grey-input", PREDICT, r"model\.onnx: .*RGB images of 3 channel\(s\); its input takes 1",
         setup=_spec(channel_order="RGB", mean=[0.5] * 3, std=[0.5] * 3)),
    Case("runtime-task-segmentation-on-a-classifier", PREDICT, r"model\.onnx: a segmentation model's outputs",
         setup=_metadata(task="segmentation")),
    Case("runtime-task-detection-on-a-classifier", PREDICT, r"model\.onnx: a detection model's outputs are boxes",
         setup=_metadata(task="detection")),
    Case("runtime-metadata-too-long", PREDICT, r"model\.onnx: metadata zoo\.verification is \d+ characters",
         setup=_metadata(verification=json.dumps(["x" * 1000] * 5000))),
    Case("runtime-metadata-nested", PREDICT, r"model\.onnx: metadata zoo\.categories is JSON nested too deeply",
         setup=_metadata(categories="[" * 100_000 + "]" * 100_000)),
    Case("runtime-input-huge", PREDICT, r"model\.onnx: its input has shape \(N, 1, 100000, 100000\).*8192",
         setup=_input_side(100_000), timeout=60),
    # -- files that are not models
    Case("runtime-model-empty", PREDICT, r"cannot load model\.onnx", setup=_file(b"")),
    Case("runtime-model-text", PREDICT, r"cannot load model\.onnx", setup=_file(b"this is not a model\n" * 50)),
    Case("runtime-model-truncated", PREDICT, r"cannot load model\.onnx", setup=_truncated_model),
    Case("runtime-model-missing", ("predict", "nothing.onnx", "digit.png"), r"no ONNX file at nothing\.onnx",
         setup=lambda ws: _digit(ws)),
    Case("runtime-view-text", ("view", MODEL, "--no-browser"), r"model\.onnx is not an ONNX model",
         setup=_file(b"not a model\n")),
    Case("runtime-view-empty", ("view", MODEL, "--no-browser"), r"model\.onnx is not an ONNX model",
         setup=_file(b"")),
    Case("runtime-view-directory", ("view", "folder.onnx", "--no-browser"), r"folder\.onnx is not a file",
         setup=lambda ws: (ws / "folder.onnx").mkdir()),
    Case("runtime-view-host-huge", ("view", MODEL, "--no-browser", "--host", "h" * 100_000),
         r"cannot serve on 'hhh.*\(100002 characters\)", setup=_copy_model),
    # -- images
    Case("runtime-image-bomb", ("predict", MODEL, "bomb.png"), r"bomb\.png: .*8192 x 8192",
         setup=_image("bomb.png", _bomb), timeout=60),
    Case("runtime-image-bomb-warning", ("predict", MODEL, "warn.png"), r"warn\.png: .*could be decompression bomb",
         setup=_image("warn.png", lambda p: Image.new("1", (10000, 10000)).save(p)), timeout=60),
    Case("runtime-image-over-limit", ("predict", MODEL, "big.png"), r"big\.png: image is 9000 x 9000 pixels",
         setup=_image("big.png", lambda p: Image.new("1", (9000, 9000)).save(p)), timeout=60),
    Case("runtime-image-header-absurd", ("predict", MODEL, "absurd.png"), r"absurd\.png: ",
         setup=_image("absurd.png", _png_header(2**31 - 1, 2**31 - 1)), timeout=60),
    Case("runtime-image-header-wide", ("predict", MODEL, "wide.png"), r"wide\.png: image is 1000000 x 70 pixels",
         setup=_image("wide.png", _png_header(1_000_000, 70)), timeout=60),
    Case("runtime-image-truncated", ("predict", MODEL, "cut.png"), r"cut\.png is not an image .*truncated",
         setup=_image("cut.png", _truncated_png)),
    Case("runtime-image-text", ("predict", MODEL, "text.png"), r"text\.png is not an image",
         setup=_image("text.png", lambda p: p.write_text("a picture of a seven\n"))),
    Case("runtime-image-directory", ("predict", MODEL, "folder.png"), r"folder folder\.png has no image files \(\.apng, ",
         setup=_image("folder.png", lambda p: p.mkdir())),
    Case("runtime-image-float-out-of-range", ("predict", MODEL, "hdr.tiff"), r"hdr\.tiff: .*values in \[0, 1\]",
         setup=_image("hdr.tiff", lambda p: Image.fromarray(np.full((8, 8), 3.5, np.float32)).save(p))),
    Case("runtime-image-float-nan", ("predict", MODEL, "nan.tiff"), r"nan\.tiff: .*values in \[0, 1\]",
         setup=_image("nan.tiff", lambda p: Image.fromarray(np.full((8, 8), np.nan, np.float32)).save(p))),
    Case("runtime-image-int32-negative", ("predict", MODEL, "neg.tiff"), r"neg\.tiff: .*32-bit",
         setup=_image("neg.tiff", lambda p: Image.fromarray(np.full((8, 8), -5, np.int32)).save(p))),
    Case("runtime-image-16bit-and-float", ("predict", MODEL, "digit.png", "digit16.png", "digit.tiff", "half.png",
                                           "half16.png", "white.png", "white16.png", "--json"), None,
         setup=_deep_digits, check=_same_predictions((0, 1, 2), (3, 4), (5, 6))),
]

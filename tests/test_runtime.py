"""The deployment runtime: real exports and hand-built ONNX files run by ONNX Runtime, without torch.

PyTorch appears only as the reference the runtime's answers are compared with; the
runtime itself also runs in child processes where torch, torchvision and onnx
cannot be imported.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from PIL import Image

import zoo
from zoo.errors import UsageError, ZooError
from zoo.export import export_onnx
from zoo.preprocessing import PreprocessSpec
from zoo.runtime import (Classification, Detections, Predictor, Segmentation, create_session, cuda_device_count,
                         predict, select_providers, session_metadata)
from zoo_digits.data import load_heldout
from conftest import NOT_ON_DEPLOYMENT_HOST, python_without

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
NO_GPU = pytest.mark.skipif(cuda_device_count() > 0, reason="this machine has a GPU")


def _child(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True)


def _one_line(error: pytest.ExceptionInfo[BaseException]) -> str:
    message = str(error.value)
    assert "\n" not in message and isinstance(error.value, ZooError)
    return message


@pytest.fixture(scope="module")
def digits(synced_catalog: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("digits") / "digits.onnx"
    return export_onnx("digits_cnn", path, weights="DEFAULT").path


@pytest.fixture(scope="module")
def heldout() -> tuple[np.ndarray, np.ndarray]:
    return load_heldout()


# -- torch-free -----------------------------------------------------------------------


def test_import_leaves_torch_torchvision_and_onnx_out() -> None:
    done = _child("""
        import sys, zoo.runtime
        print(sorted(m for m in ("torch", "torchvision", "onnx") if m in sys.modules))
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_prediction_runs_where_torch_and_onnx_cannot_be_imported(digits: Path, heldout) -> None:
    done = python_without(NOT_ON_DEPLOYMENT_HOST, "-c", textwrap.dedent(f"""
        import json
        from zoo.runtime import predict
        from zoo_digits.data import load_heldout

        images, _ = load_heldout()
        print(json.dumps([r.to_json() for r in predict({str(digits)!r}, list(images[:20]), topk=2)]))
    """))
    assert done.returncode == 0, done.stderr
    expected = [r.to_json() for r in Predictor(digits).predict(list(heldout[0][:20]), topk=2)]
    assert json.loads(done.stdout) == expected


# -- real exports, against PyTorch -----------------------------------------------------


def test_digits_agree_with_pytorch_on_the_heldout_split(digits: Path, heldout) -> None:
    images, labels = heldout
    predictor = Predictor(digits)
    assert predictor.providers[-1] == CPU and predictor.task == "classification"
    results = predictor.predict(list(images), topk=3)  # uint8 8x8 arrays, as a user has them
    onnx_top1 = np.array([int(r.labels[0]) for r in results])

    model = zoo.get_model("digits_cnn", weights="DEFAULT").eval()
    weights = zoo.get_weight("digits_cnn.DEFAULT")
    with torch.inference_mode():
        logits = model(weights.transforms()(torch.from_numpy(images).unsqueeze(1)))
    torch_top1 = logits.argmax(1).numpy()

    assert len(images) > 400
    assert float((onnx_top1 == torch_top1).mean()) >= 0.995
    assert float((onnx_top1 == labels).mean()) == float((torch_top1 == labels).mean()) > 0.9
    probabilities = torch.softmax(logits, 1).numpy()
    first = results[0]
    assert isinstance(first, Classification) and len(first.labels) == 3
    assert first.indices[0] == torch_top1[0]
    np.testing.assert_allclose(first.probabilities[0], probabilities[0, torch_top1[0]], rtol=1e-4)
    # outputs: what predict decodes, by output name: the logits themselves
    outputs = predictor.outputs(list(images[:40]))
    assert len(outputs) == 40 and list(outputs[0]) == predictor.output_names
    np.testing.assert_allclose(np.stack([o[predictor.output_names[0]] for o in outputs]), logits[:40].numpy(),
                               rtol=1e-4, atol=1e-4)
    assert first.probabilities == sorted(first.probabilities, reverse=True)
    # the same images as PIL images give the same answers
    as_pil = predictor.predict([Image.fromarray(image) for image in images[:50]], topk=3)
    assert [r.to_json() for r in as_pil] == [r.to_json() for r in results[:50]]


def test_images_from_files_and_readable_results(digits: Path, heldout, tmp_path: Path) -> None:
    images, _ = heldout
    paths = []
    for i in range(3):
        Image.fromarray(images[i]).save(tmp_path / f"digit{i}.png")
        paths.append(tmp_path / f"digit{i}.png")
    results = predict(digits, [str(paths[0]), *paths[1:]], topk=2)
    assert [r.source for r in results] == [str(p) for p in paths]
    in_memory = Predictor(digits).predict(list(images[:3]), topk=2)
    assert [r.labels for r in results] == [r.labels for r in in_memory]
    text = str(results[0])
    assert text.startswith(f"{paths[0]}: {results[0].labels[0]} ") and "%" in text
    data = json.loads(json.dumps(results[0].to_json()))
    assert data["source"] == str(paths[0]) and [t["label"] for t in data["top"]] == results[0].labels


@pytest.fixture(scope="module")
def segmenter(synced_catalog: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("segmentation") / "lraspp.onnx"
    return export_onnx("lraspp_mobilenet_v3_large", path, input_shape=(1, 3, 64, 64)).path


def test_segmentation_mask_matches_pytorch_argmax(segmenter: Path) -> None:
    predictor = Predictor(segmenter)
    assert predictor.task == "segmentation" and predictor.categories is None  # random weights: no names
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 64, 64), dtype=np.float32)  # preprocessed already
    results = predictor.predict(x)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # as export_onnx seeds random weights
        model = zoo.get_model("lraspp_mobilenet_v3_large", weights_backbone=None).eval()
    with torch.inference_mode():
        expected = model(torch.from_numpy(x))["out"].argmax(1).numpy()
    assert all(isinstance(r, Segmentation) for r in results)
    for result, want in zip(results, expected):
        assert result.mask.shape == (64, 64) and result.mask.dtype == np.int64
        np.testing.assert_array_equal(result.mask, want)
        assert result.classes == [str(c) for c in np.unique(want)]
        assert sum(result.pixels) == 64 * 64
    # an image of another shape is resized to the size the model was exported at
    (photo,) = predictor.predict(rng.integers(0, 256, (50, 80, 3), dtype=np.uint8))
    assert photo.mask.shape == (64, 64)
    assert json.loads(json.dumps(photo.to_json()))["shape"] == [64, 64]


# -- hand-built models ----------------------------------------------------------------


def _save(graph: onnx.GraphProto, path: Path, metadata: dict[str, object] | None = None) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for key, value in (metadata or {}).items():
        model.metadata_props.add(key=f"zoo.{key}", value=value if isinstance(value, str) else json.dumps(value))
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


WEIGHTS = np.random.default_rng(1).standard_normal((64, 4)).astype(np.float32)


def _linear(path: Path, batch: int | str) -> Path:
    """A 4-class linear classifier of 8x8 grey images, no zoo metadata (as another tool would export it)."""
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["input"], ["flat"]), helper.make_node("MatMul", ["flat", "w"], ["output"])],
        "plain",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 1, 8, 8])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [batch, 4])],
        [helper.make_tensor("w", TensorProto.FLOAT, WEIGHTS.shape, WEIGHTS.ravel())],
    )
    return _save(graph, path)


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _linear(tmp_path_factory.mktemp("plain") / "plain.onnx", "batch")


def test_model_without_metadata_asks_for_it_and_runs_once_given(plain: Path) -> None:
    image = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    with pytest.raises(UsageError, match=r"no zoo metadata for task and preprocessing; pass task=, "
                                         r"preprocessing=") as error:
        Predictor(plain).predict(image)
    assert "plain.onnx" in _one_line(error)

    spec = PreprocessSpec(kind="classification", channel_order="L")
    predictor = Predictor(plain, task="classification", preprocessing=spec.to_json(), categories=list("abcd"))
    (result,) = predictor.predict(image, topk=4)
    logits = (image.astype(np.float32) / 255).reshape(1, 64) @ WEIGHTS
    order = np.argsort(-logits[0])
    assert result.indices == order.tolist() and result.labels == ["abcd"[i] for i in order]
    np.testing.assert_allclose(result.probabilities, np.sort(np.exp(logits[0]) / np.exp(logits[0]).sum())[::-1],
                               rtol=1e-5)
    assert session_metadata(predictor.session) == {}
    # the raw run needs no metadata at all
    assert Predictor(plain).run(np.zeros((3, 1, 8, 8), np.float32))["output"].shape == (3, 4)


def test_a_fixed_batch_is_filled_up_and_the_filler_dropped(plain: Path, tmp_path: Path) -> None:
    spec = PreprocessSpec(kind="classification", channel_order="L")
    images = list(np.random.default_rng(2).integers(0, 256, (5, 8, 8), dtype=np.uint8))
    fixed = Predictor(_linear(tmp_path / "fixed.onnx", 2), task="classification", preprocessing=spec)
    dynamic = Predictor(plain, task="classification", preprocessing=spec)
    assert fixed.input_shape == [2, 1, 8, 8]
    assert [r.to_json() for r in fixed.predict(images)] == [r.to_json() for r in dynamic.predict(images)]


BOXES = np.array([[0.1, 0.2, 0.5, 0.6], [0.0, 0.0, 1.0, 1.0], [0.5, 0.5, 0.9, 0.8]], np.float32)
LABELS = np.array([1, 3, 2], np.int64)
SCORES = np.array([0.6, 0.9, 0.3], np.float32)
COCO_LIKE = ["__background__", "person", "bicycle", "car"]


@pytest.fixture(scope="module")
def detector(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A detector's interface: one image of any size in, fixed detections scaled to its pixels out."""
    def constant(name: str, array: np.ndarray) -> onnx.NodeProto:
        return helper.make_node("Constant", [], [name], value=helper.make_tensor(
            name + "_value", helper.np_dtype_to_tensor_dtype(array.dtype), array.shape, array.ravel()))

    nodes = [
        helper.make_node("Shape", ["input"], ["shape"]),
        constant("xyxy_axes", np.array([3, 2, 3, 2], np.int64)),
        helper.make_node("Gather", ["shape", "xyxy_axes"], ["size_int"]),
        helper.make_node("Cast", ["size_int"], ["size"], to=TensorProto.FLOAT),
        constant("unit_boxes", BOXES),
        helper.make_node("Mul", ["unit_boxes", "size"], ["boxes"]),
        constant("labels", LABELS),
        constant("scores", SCORES),
    ]
    graph = helper.make_graph(
        nodes, "detector",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, "height", "width"])],
        [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["detections", 4]),
         helper.make_tensor_value_info("labels", TensorProto.INT64, ["detections"]),
         helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["detections"])],
    )
    metadata = {"task": "detection", "model": "fake_detector", "categories": COCO_LIKE,
                "preprocessing": PreprocessSpec(kind="detection").to_json(),
                "inputs": [{"name": "input", "layout": "NCHW", "export_shape": [1, 3, 40, 60]}],
                "outputs": [{"name": "boxes", "layout": "K4"}, {"name": "labels", "layout": "K"},
                            {"name": "scores", "layout": "K"}]}
    return _save(graph, tmp_path_factory.mktemp("detector") / "detector.onnx", metadata)


def test_detections_per_image_in_its_pixels_with_names_and_threshold(detector: Path) -> None:
    predictor = Predictor(detector)
    assert predictor.task == "detection" and predictor.metadata["model"] == "fake_detector"
    wide = np.zeros((40, 60, 3), np.uint8)
    tall = Image.new("RGB", (30, 50))  # PIL sizes are (width, height)
    results = predictor.predict([wide, tall], score_threshold=0.5)
    assert all(isinstance(r, Detections) for r in results)
    first, second = results
    assert first.labels == ["car", "person"] and first.label_ids.tolist() == [3, 1]  # by descending score
    np.testing.assert_allclose(first.scores, [0.9, 0.6])
    np.testing.assert_allclose(first.boxes, [[0, 0, 60, 40], [6, 8, 30, 24]], rtol=1e-6)
    np.testing.assert_allclose(second.boxes, [[0, 0, 30, 50], [3, 10, 15, 30]], rtol=1e-6)
    assert first.masks is None and first.keypoints is None

    (everything,) = predictor.predict(wide, score_threshold=0.0)
    assert everything.labels == ["car", "person", "bicycle"]
    data = json.loads(json.dumps(everything.to_json()))
    assert [d["label"] for d in data["detections"]] == ["car", "person", "bicycle"]
    assert data["detections"][0]["box"] == [0.0, 0.0, 60.0, 40.0]
    assert str(everything).splitlines()[:2] == ["image: 3 detection(s)", "  car 90.0% at (0, 0, 60, 40)"]


# -- errors ---------------------------------------------------------------------------


def test_a_file_that_is_not_an_image(digits: Path, tmp_path: Path) -> None:
    notes = tmp_path / "notes.png"
    notes.write_text("not a picture")
    with pytest.raises(UsageError, match="notes.png is not an image") as error:
        Predictor(digits).predict([str(notes)])
    assert "image files Pillow can read" in _one_line(error)
    with pytest.raises(UsageError, match="no image file at .*missing.png"):
        Predictor(digits).predict(tmp_path / "missing.png")


@pytest.mark.parametrize("array", [np.zeros((2, 3, 8, 8), np.float32), np.zeros((1, 8, 8), np.float64),
                                   np.zeros((1, 8), np.float32)], ids=["channels", "dtype", "rank"])
def test_an_array_of_the_wrong_shape_or_dtype_names_the_expected_one(digits: Path, array: np.ndarray) -> None:
    with pytest.raises(UsageError, match=r"expected float32 of shape \(N, 1, 8, 8\)") as error:
        Predictor(digits).predict(array)
    assert str(array.shape) in _one_line(error)


def test_bad_predict_arguments(digits: Path, detector: Path) -> None:
    with pytest.raises(UsageError, match="topk must be a positive integer"):
        Predictor(digits).predict(np.zeros((8, 8), np.uint8), topk=0)
    with pytest.raises(UsageError, match="cannot predict with a 'video' model"):
        Predictor(digits, task="video")
    with pytest.raises(UsageError, match="no ONNX file at"):
        Predictor(digits.parent / "absent.onnx")
    with pytest.raises(UsageError, match="expected float32 of shape \\(1, 3, height, width\\)"):
        Predictor(detector).run(np.zeros((2, 3, 8, 8), np.float32))


def _with_metadata(source: Path, target: Path, **values: str) -> Path:
    """A copy of the model at `source` with its ``zoo.KEY`` metadata values replaced."""
    model = onnx.load(str(source))
    props = {p.key: p.value for p in model.metadata_props}
    helper.set_model_props(model, {**props, **{f"zoo.{key}": value for key, value in values.items()}})
    onnx.save(model, str(target))
    return target


SPEC_TEXT = json.dumps(PreprocessSpec(kind="classification", channel_order="L").to_json())


@pytest.mark.parametrize("key, value, message", [
    ("preprocessing", json.dumps({**json.loads(SPEC_TEXT), "resize_size": [100000], "resize_mode": "shorter_side",
                                  "interpolation": "bilinear", "antialias": True}),
     r"metadata zoo\.preprocessing is not accepted: .*resize_size=\[100000\].*from 1 to 8192"),
    ("preprocessing", "[8, 8]", r"metadata zoo\.preprocessing is not accepted: .*JSON object.*got list \[8, 8\]"),
    ("preprocessing", "crop the middle", r"metadata zoo\.preprocessing is not accepted: .*got str 'crop the middle'"),
    ("preprocessing", json.dumps({**json.loads(SPEC_TEXT), "kind": "optical_flow"}), r"kind 'optical_flow'"),
    ("categories", '{"0": "zero"}', r"metadata zoo\.categories is not accepted: categories must be a list"),
    ("categories", "zero one two", r"metadata zoo\.categories is not accepted: categories must be a list"),
    ("categories", json.dumps(["c"] * 100_001), r"metadata zoo\.categories .*at most 100000 class names"),
    ("categories", json.dumps(["x" * 1001]), r"metadata zoo\.categories .*strings of at most 1000 characters"),
    ("task", "teleportation", r"metadata zoo\.task is not accepted: cannot predict with a 'teleportation' model"),
    ("task", "segmentation", r"a segmentation model's outputs are output of rank 4; this model's are output \(N, 10\)"),
    ("task", "keypoints", r"a keypoints model's outputs are boxes of rank 2, labels of rank 1, scores of rank 1"),
    ("exporter", "x" * (1 << 22 + 1), r"metadata zoo\.exporter is 8388608 characters long; zoo reads at most 4194304"),
    ("categories", "[" * 50_000 + "]" * 50_000, r"metadata zoo\.categories is JSON nested too deeply"),
])
def test_the_model_files_metadata_is_checked_and_bounded(digits: Path, tmp_path: Path, key: str, value: str,
                                                          message: str) -> None:
    """A model file is untrusted: each field zoo reads, wrong or huge, is one line naming the file and field."""
    hostile = _with_metadata(digits, tmp_path / "hostile.onnx", **{key: value})
    with pytest.raises(UsageError, match=message) as error:
        Predictor(hostile)
    assert _one_line(error).startswith(f"{hostile}: ") and len(str(error.value)) < 500


def test_an_input_too_large_to_fill_is_refused(digits: Path, tmp_path: Path) -> None:
    model = onnx.load(str(digits))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[0].dim_value, dims[2].dim_value, dims[3].dim_value = 1, 100_000, 100_000
    onnx.save(model, str(tmp_path / "huge.onnx"))
    with pytest.raises(UsageError, match=r"huge.onnx: its input has shape \(1, 1, 100000, 100000\); .*at most 8192"):
        Predictor(tmp_path / "huge.onnx")


def test_open_image_scales_deep_images_and_bounds_sizes(digits: Path, heldout, tmp_path: Path) -> None:
    """16-bit and float files predict exactly as the 8-bit image they encode; oversized headers are one line."""
    from zoo.runtime import open_image

    image = heldout[0][0]
    Image.fromarray(image).save(tmp_path / "digit.png")
    Image.fromarray(image.astype(np.uint16) * 257).save(tmp_path / "digit16.png")
    Image.fromarray(image.astype(np.float32) / 255).save(tmp_path / "digit.tiff")
    for name in ("digit16.png", "digit.tiff"):
        np.testing.assert_array_equal(np.asarray(open_image(tmp_path / name)), image)
    results = Predictor(digits).predict([tmp_path / n for n in ("digit.png", "digit16.png", "digit.tiff")])
    assert results[0].probabilities == results[1].probabilities == results[2].probabilities
    Image.new("1", (9000, 9000)).save(tmp_path / "big.png")
    Image.new("1", (20000, 20000)).save(tmp_path / "bomb.png")
    with pytest.raises(UsageError, match=r"big.png: image is 9000 x 9000 pixels, more than zoo's limit"):
        open_image(tmp_path / "big.png")
    with pytest.raises(UsageError, match=r"bomb.png: .*decompression bomb.*zoo reads images of at most 67108864"):
        open_image(tmp_path / "bomb.png")
    Image.fromarray(np.full((8, 8), 2.0, np.float32)).save(tmp_path / "bright.tiff")
    with pytest.raises(UsageError, match=r"bright.tiff: a float \(mode F\) image must have values in \[0, 1\]"):
        open_image(tmp_path / "bright.tiff")
    data = (tmp_path / "digit.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(UsageError, match=r"cut.png is not an image Pillow can read") as error:
        open_image(tmp_path / "cut.png")
    _one_line(error)


# -- providers and sessions -----------------------------------------------------------


def test_default_providers_resolve_without_error_output(digits: Path) -> None:
    done = _child(f"""
        from zoo.runtime import Predictor, select_providers
        p = Predictor({str(digits)!r})
        print(select_providers(), p.providers)
    """)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no CUDA loading errors on a machine without a GPU
    if cuda_device_count() == 0:
        assert done.stdout.strip() == "['CPUExecutionProvider'] ['CPUExecutionProvider']"


def test_cuda_gets_no_default_options() -> None:
    # ONNX Runtime >= 1.26 logs "No registered plugin EP device found" at every CUDA
    # session that is given a device_id, even the default one: give only what differs
    from zoo.runtime.predictor import _with_options

    assert _with_options([CUDA, CPU], cuda_graph=False) == [CUDA, CPU]
    assert _with_options([CUDA, CPU], cuda_graph=True) == [(CUDA, {"enable_cuda_graph": "1"}), CPU]


def test_provider_names() -> None:
    assert select_providers("cpu") == select_providers(["CPU"]) == select_providers(CPU) == [CPU]
    with pytest.raises(UsageError, match="unknown execution provider 'tpu'; use cpu, cuda, tensorrt") as error:
        select_providers("tpu")
    _one_line(error)
    with pytest.raises(UsageError, match="no execution provider given"):
        select_providers([])


@NO_GPU
@pytest.mark.parametrize("name", ["cuda", "tensorrt", "CUDAExecutionProvider"])
def test_asking_for_a_gpu_where_there_is_none_says_so(name: str, digits: Path) -> None:
    with pytest.raises(UsageError, match="needs an NVIDIA GPU and the CUDA driver reports none here") as error:
        Predictor(digits, providers=name)
    _one_line(error)
    with pytest.raises(UsageError, match="cuda_graph runs on CUDAExecutionProvider only"):
        create_session(digits, providers="cpu", cuda_graph=True)


def test_session_options(digits: Path, tmp_path: Path) -> None:
    cache = tmp_path / "digits.optimized.onnx"
    session = create_session(digits, providers="cpu", threads=1, optimization="extended",
                             optimized_model_path=cache)
    options = session.get_session_options()
    assert options.intra_op_num_threads == 1 and int(options.graph_optimization_level) == 2
    assert cache.is_file() and session.get_providers() == [CPU]
    # the cached optimised model runs as the original, metadata included
    cached = Predictor(cache, providers="cpu", optimization="disable")
    x = np.random.default_rng(0).standard_normal((4, 1, 8, 8), dtype=np.float32)
    np.testing.assert_allclose(cached.run(x)["output"], Predictor(digits).run(x)["output"], rtol=1e-4, atol=1e-5)
    assert cached.task == "classification"
    for bad, message in ((dict(threads=0), "threads must be a positive integer"),
                         (dict(optimization="max"), "unknown optimization level 'max'; use disable, basic")):
        with pytest.raises(UsageError, match=message):
            create_session(digits, **bad)


def test_fp16_with_io_binding_keeps_float32_io_and_the_answers(digits: Path, heldout) -> None:
    images, _ = heldout
    full = Predictor(digits, providers="cpu")
    half = Predictor(digits, providers="cpu", fp16=True, io_binding=True)
    assert [i.type for i in half.session.get_inputs()] == ["tensor(float)"]
    assert half.metadata == full.metadata  # the conversion keeps the provenance
    x = np.stack([full._preprocess(image) for image in images])
    out = half.run(x)["output"]
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, full.run(x)["output"], atol=0.05)
    agreement = (out.argmax(1) == full.run(x)["output"].argmax(1)).mean()
    assert agreement >= 0.99
    assert [r.labels for r in half.predict(list(images[:10]))] == [r.labels for r in full.predict(list(images[:10]))]

"""The runtime side of each task adapter: decoding raw outputs, drawing results, ``zoo predict --draw``.

Outputs are made by hand (numpy), so each expectation is worked out here from the
numbers given: no model and no torch. The models run at the end are tiny ONNX graphs
built with onnx's helper: an optical flow "model" whose flow is the difference of its
two images, and a classifier of the mean colour.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from zoo.errors import UsageError
from zoo.preprocessing import PreprocessSpec
from zoo.runtime import (Classification, Detections, Embedding, Flow, Predictor, Segmentation, draw, make_grid,
                         save_drawings)
from zoo.export.tasks import DecodeOptions, adapter
from conftest import run_zoo

OPTIONS = DecodeOptions(categories=["cat", "dog", "bird"], topk=2, score_threshold=0.5)
PHOTO = np.full((40, 60, 3), 90, np.uint8)  # a plain grey picture: whatever is drawn shows


def _changed(drawn: Image.Image, original: np.ndarray) -> np.ndarray:
    """Where `drawn` differs from `original`, over `original`'s area (H x W bool)."""
    pixels = np.asarray(drawn.convert("RGB"))[: original.shape[0], : original.shape[1]]
    return np.any(pixels != original, axis=2)


def _one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


# -- decoding ---------------------------------------------------------------------------


def test_classification_decodes_the_topk_classes_with_softmax_probabilities() -> None:
    logits = np.array([1.0, 3.0, 2.0], np.float32)
    result = adapter("classification").decode({"logits": logits}, "a.png", OPTIONS)
    assert isinstance(result, Classification) and result.task == "classification"
    exp = np.exp([1.0, 3.0, 2.0])
    assert result.labels == ["dog", "bird"] and result.indices == [1, 2] and result.top_class == 1
    np.testing.assert_allclose(result.probabilities, [exp[1] / exp.sum(), exp[2] / exp.sum()], rtol=1e-12)
    assert result.to_json()["top"][0] == {"label": "dog", "index": 1, "probability": result.probabilities[0]}
    # a clip's logits read the same way
    clip = adapter("video").decode({"logits": logits}, None, OPTIONS)
    assert clip.labels == ["dog", "bird"] and str(clip).startswith("image: dog ")


def test_embedding_decodes_the_feature_vector() -> None:
    result = adapter("embedding").decode({"features": np.array([3.0, 4.0], np.float32)}, None, OPTIONS)
    assert isinstance(result, Embedding) and result.task == "embedding" and result.top_class is None
    assert result.vector.dtype == np.float32 and result.vector.tolist() == [3.0, 4.0]
    assert result.norm == 5.0 and result.to_json()["dimensions"] == 2
    assert str(result) == "image: 2-d embedding, norm 5: [3, 4]"


def test_detections_keep_the_scores_above_the_threshold_best_first() -> None:
    outputs = {
        "boxes": np.array([[0, 0, 10, 10], [5, 5, 20, 30], [1, 2, 3, 4]], np.float32),
        "labels": np.array([2, 1, 0], np.int64),
        "scores": np.array([0.6, 0.9, 0.4], np.float32),
        "masks": np.stack([np.full((1, 4, 4), v, np.float32) for v in (0.7, 0.2, 0.9)]),
    }
    result = adapter("instance_segmentation").decode(outputs, "b.png", OPTIONS)
    assert isinstance(result, Detections) and result.task == "instance_segmentation"
    assert result.labels == ["dog", "bird"] and result.label_ids.tolist() == [1, 2]
    np.testing.assert_array_equal(result.boxes, outputs["boxes"][[1, 0]])
    assert result.masks.dtype == bool and result.masks.shape == (2, 4, 4)
    assert not result.masks[0].any() and result.masks[1].all()  # 0.2 and 0.7 against 0.5
    assert [d["mask_pixels"] for d in result.to_json()["detections"]] == [0, 16]

    keypoints = {**{k: v for k, v in outputs.items() if k != "masks"},
                 "keypoints": np.arange(3 * 17 * 3, dtype=np.float32).reshape(3, 17, 3),
                 "keypoints_scores": np.ones((3, 17), np.float32)}
    people = adapter("keypoints").decode(keypoints, None, OPTIONS)
    assert people.task == people.to_json()["task"] == "keypoints" and people.keypoints.shape == (2, 17, 3)
    np.testing.assert_array_equal(people.keypoints[0], keypoints["keypoints"][1])


def test_segmentation_decodes_the_argmax_and_the_classes_present() -> None:
    logits = np.zeros((3, 2, 3), np.float32)
    logits[2, 0, :] = 1  # the top row is class 2 (bird), the bottom row class 0 (cat)
    result = adapter("segmentation").decode({"out": logits, "aux": -logits}, None, OPTIONS)
    assert isinstance(result, Segmentation) and result.mask.tolist() == [[2, 2, 2], [0, 0, 0]]
    assert result.classes == ["cat", "bird"] and result.pixels == [3, 3]


def test_optical_flow_decodes_channels_last() -> None:
    flow = np.zeros((2, 3, 4), np.float32)
    flow[0, 1, 2], flow[1, 1, 2] = 3.0, 4.0
    result = adapter("optical_flow").decode({"flow": flow}, "f0.png", OPTIONS)
    assert isinstance(result, Flow) and result.flow.shape == (3, 4, 2)
    assert result.flow[1, 2].tolist() == [3.0, 4.0] and result.magnitude.max() == 5.0
    assert result.to_json()["max_motion"] == 5.0


@pytest.mark.parametrize("task, shapes, message", [
    ("classification", {"logits": ["N", 10, 2]}, r"a classification model's outputs are logits of rank 2"),
    ("embedding", {"features": ["N"]}, r"an embedding model's output features is N x D"),
    ("optical_flow", {"flow": ["N", 3, 8, 8]}, r"output flow is N x 2 x H x W; this model's is \(N, 3, 8, 8\)"),
    ("detection", {"boxes": ["n", 4], "scores": ["n"]}, r"a detection model's outputs are boxes of rank 2, labels"),
    ("video", {"logits": ["N", 400]}, r"cannot predict with a 'video' model: zoo predicts on images"),
])
def test_outputs_a_task_cannot_read_are_one_line(task: str, shapes: dict, message: str) -> None:
    with pytest.raises(UsageError, match=message) as error:
        adapter(task).check_outputs("m.onnx", shapes)
    assert _one_line(error).startswith("m.onnx: ")


# -- drawing ----------------------------------------------------------------------------


def test_classification_draws_bars_beside_the_image() -> None:
    result = adapter("classification").decode({"logits": np.array([1.0, 3.0, 2.0])}, None, OPTIONS)
    drawn = draw(result, PHOTO)
    assert drawn.mode == "RGB" and drawn.height >= 40 and drawn.width > 60  # a panel beside it
    assert not _changed(drawn, PHOTO).any()  # the picture itself is left as it is
    panel = np.asarray(drawn)[:, 60:]
    assert len(np.unique(panel.reshape(-1, 3), axis=0)) > 2  # bars and text


def test_detections_draw_boxes_masks_and_keypoints_where_they_are() -> None:
    masks = np.zeros((1, 1, 40, 60), np.float32)
    masks[0, 0, 20:30, 40:50] = 1
    keypoints = np.zeros((1, 17, 3), np.float32)
    keypoints[0, :, :2] = [[3 + i, 35] for i in range(17)]
    keypoints[0, :, 2] = 1
    outputs = {"boxes": np.array([[10, 5, 30, 15]], np.float32), "labels": np.array([1]),
               "scores": np.array([0.8], np.float32), "masks": masks, "keypoints": keypoints}
    result = adapter("keypoints").decode(outputs, None, OPTIONS)
    drawn = draw(result, Image.fromarray(PHOTO))
    assert drawn.size == (60, 40)
    changed = _changed(drawn, PHOTO)
    assert changed[5, 10:31].all() and changed[15, 10:31].all()  # the box's top and bottom edges
    assert changed[20:30, 40:50].all()  # the mask, blended
    assert changed[35, 3:20].any()  # the keypoints
    assert not changed[22:30, 0:2].any() and not changed[0:3, 55:].any()  # elsewhere, the photo


def test_segmentation_draws_a_colour_overlay_and_a_legend() -> None:
    logits = np.zeros((3, 4, 6), np.float32)
    logits[1, :2, :] = 1  # the top half is a dog; the mask is a tenth of the picture's size
    result = adapter("segmentation").decode({"out": logits}, None, OPTIONS)
    drawn = draw(result, PHOTO)
    assert drawn.height >= 40 and drawn.width > 60  # the legend beside the picture
    changed = _changed(drawn, PHOTO)
    assert changed.all()  # every pixel has a class, tinted by its colour
    pixels = np.asarray(drawn)
    assert (pixels[5, 5] != pixels[35, 5]).any()  # the mask, scaled to the picture: dog above, cat below


def test_flow_draws_the_colour_wheel_at_the_image_size() -> None:
    flow = np.zeros((2, 10, 15), np.float32)
    flow[0, :, 8:] = 5  # the right half moves right
    result = adapter("optical_flow").decode({"flow": flow}, None, OPTIONS)
    pixels = np.asarray(draw(result, PHOTO))
    assert pixels.shape == (40, 60, 3)
    assert (pixels[:, :25] == 255).all()  # no motion is white on the wheel
    assert (pixels[:, 40:] != 255).any(axis=2).all()


def test_embedding_draws_its_summary_under_the_image() -> None:
    result = adapter("embedding").decode({"features": np.array([3.0, 4.0])}, None, OPTIONS)
    drawn = draw(result, PHOTO)
    assert drawn.height > 40 and not _changed(drawn, PHOTO).any()
    assert (np.asarray(drawn)[40:] < 100).any()  # dark text on the white strip below


def test_draw_refuses_what_is_not_a_result_or_an_image() -> None:
    with pytest.raises(UsageError, match="draw takes a result of Predictor.predict, not dict"):
        draw({"top": []}, PHOTO)
    result = adapter("embedding").decode({"features": np.array([3.0])}, None, OPTIONS)
    with pytest.raises(UsageError, match=r"not float64 array of shape \(4, 4\)"):
        draw(result, np.zeros((4, 4)))


# -- predicting with two inputs, and drawing into files --------------------------------------


def _save(graph: onnx.GraphProto, path: Path, metadata: dict[str, object]) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for key, value in metadata.items():
        model.metadata_props.add(key=f"zoo.{key}", value=json.dumps(value))
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def difference_flow(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An optical flow model whose flow is image2 - image1 in its first two channels."""
    shape = ["batch", 3, "height", "width"]
    graph = helper.make_graph(
        [helper.make_node("Sub", ["image2", "image1"], ["difference"]),
         helper.make_node("Slice", ["difference", "starts", "ends", "axes"], ["flow"])],
        "difference",
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape) for name in ("image1", "image2")],
        [helper.make_tensor_value_info("flow", TensorProto.FLOAT, ["batch", 2, "height", "width"])],
        [numpy_helper.from_array(np.array([v], np.int64), name) for v, name in ((0, "starts"), (2, "ends"),
                                                                               (1, "axes"))],
    )
    spec = PreprocessSpec(kind="optical_flow", mean=(0.5,) * 3, std=(0.5,) * 3)
    return _save(graph, tmp_path_factory.mktemp("flow") / "flow.onnx",
                 {"task": "optical_flow", "preprocessing": spec.to_json()})


def test_optical_flow_predicts_on_consecutive_pairs(difference_flow: Path) -> None:
    frames = [np.full((6, 8, 3), value, np.uint8) for value in (0, 255, 51)]
    results = Predictor(difference_flow).predict(frames)
    assert len(results) == 2 and all(isinstance(r, Flow) for r in results)
    # preprocessing maps 0..255 to -1..1: a step of v grey levels is 2 v / 255
    np.testing.assert_allclose(results[0].flow, 2.0, rtol=1e-6)
    np.testing.assert_allclose(results[1].flow, 2 * (51 - 255) / 255, rtol=1e-6)
    bound = Predictor(difference_flow, providers="cpu", io_binding=True).predict(frames)  # both inputs bound
    assert all(np.array_equal(a.flow, b.flow) for a, b in zip(bound, results))
    with pytest.raises(UsageError, match=r"flow.onnx runs on 2 consecutive images at a time \(optical_flow\); got 1"):
        Predictor(difference_flow).predict(frames[:1])


@pytest.fixture(scope="module")
def colour_classifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Classifies an image by its mean colour: logits are the mean of R, G and B."""
    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
         helper.make_node("Flatten", ["pooled"], ["logits"])],
        "colour",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])],
    )
    spec = PreprocessSpec(kind="classification", resize_size=(8, 8), resize_mode="exact", interpolation="bilinear",
                          antialias=True)
    return _save(graph, tmp_path_factory.mktemp("colour") / "colour.onnx",
                 {"task": "classification", "preprocessing": spec.to_json(), "categories": ["red", "green", "blue"]})


def _photos(folder: Path) -> list[Path]:
    folder.mkdir()
    paths = []
    for i, name in enumerate(["red", "green", "blue"]):
        pixels = np.zeros((12, 20, 3), np.uint8)
        pixels[..., i] = 200
        Image.fromarray(pixels).save(folder / f"{name}.png")
        paths.append(folder / f"{name}.png")
    (folder / "notes.txt").write_text("not an image: a folder's other files are left out")
    return paths


def test_save_drawings_writes_one_png_per_image_and_a_grid(colour_classifier: Path, tmp_path: Path) -> None:
    paths = _photos(tmp_path / "photos")
    results = Predictor(colour_classifier).predict(paths, topk=1)
    assert [r.labels for r in results] == [["red"], ["green"], ["blue"]]
    written = save_drawings(results, tmp_path / "drawn" / "here")
    assert written == [tmp_path / "drawn" / "here" / n for n in ("red.png", "green.png", "blue.png", "grid.png")]
    drawings = [np.asarray(Image.open(p)) for p in written[:3]]
    np.testing.assert_array_equal(np.asarray(Image.open(written[3])), make_grid(drawings, nrow=3))
    np.testing.assert_array_equal(drawings[0], np.asarray(draw(results[0], paths[0])))
    with pytest.raises(UsageError, match="these results came from images in memory"):
        save_drawings(Predictor(colour_classifier).predict(np.zeros((12, 20, 3), np.uint8)), tmp_path)


def test_zoo_predict_draw_writes_pngs_and_replaces_only_with_force(colour_classifier: Path, tmp_path: Path) -> None:
    _photos(tmp_path / "photos")
    out = tmp_path / "drawn"
    done = run_zoo("predict", str(colour_classifier), str(tmp_path / "photos"), "--draw", str(out), "--topk", "1")
    assert done.stdout.splitlines()[-1] == f"drew 4 file(s) in {out}"
    assert sorted(p.name for p in out.iterdir()) == ["blue.png", "green.png", "grid.png", "red.png"]

    again = run_zoo("predict", str(colour_classifier), str(tmp_path / "photos"), "--draw", str(out), "--topk", "1")
    assert again.stdout.splitlines()[-1] == f"drew 4 file(s) in {out}"  # zoo's own drawings: replaced

    unrelated = out / "green.png"
    unrelated.write_text("someone's notes")
    refused = run_zoo("predict", str(colour_classifier), str(tmp_path / "photos"), "--draw", str(out),
                      check=False)
    assert refused.returncode != 0 and len(refused.stderr.strip().splitlines()) == 1
    assert "exists and is not a file zoo wrote" in refused.stderr and "--force" in refused.stderr
    assert unrelated.read_text() == "someone's notes"

    run_zoo("predict", str(colour_classifier), str(tmp_path / "photos"), "--draw", str(out), "--force")
    with Image.open(unrelated) as picture:
        assert picture.format == "PNG" and picture.width > 20  # the photo and its bars


def test_zoo_predict_draw_refuses_clashing_names_and_force_without_draw(colour_classifier: Path,
                                                                       tmp_path: Path) -> None:
    paths = _photos(tmp_path / "photos")
    (tmp_path / "again").mkdir()
    Image.open(paths[0]).save(tmp_path / "again" / "red.jpg")
    clash = run_zoo("predict", str(colour_classifier), str(paths[0]), str(tmp_path / "again"), "--draw",
                    str(tmp_path / "out"), check=False)
    assert clash.returncode != 0 and "red.png would be written twice" in clash.stderr
    assert not (tmp_path / "out").exists()
    lone = run_zoo("predict", str(colour_classifier), str(paths[0]), "--force", check=False)
    assert lone.returncode != 0 and "--force replaces drawings; it needs --draw DIR" in lone.stderr


def test_raft_predicts_the_flow_of_each_consecutive_pair_as_pytorch_does(raft_export: Any, tmp_path: Path) -> None:
    import torch

    import zoo
    from zoo.preprocessing import preprocess_numpy

    exported = raft_export  # random weights, seeded with 0
    photo = np.random.default_rng(0).integers(0, 256, (128, 128, 3), dtype=np.uint8)
    frames = [np.roll(photo, shift, axis=1) for shift in (0, 2, 5)]
    paths = []
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(tmp_path / f"frame{i}.png")
        paths.append(str(tmp_path / f"frame{i}.png"))
    predictor = Predictor(exported.path)
    results = predictor.predict(paths)
    assert [r.source for r in results] == paths[:2] and all(r.flow.shape == (128, 128, 2) for r in results)

    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = zoo.get_model("raft_small").eval()
    for result, (first, second) in zip(results, zip(frames, frames[1:])):
        image1, image2 = (torch.from_numpy(x)[None] for x in preprocess_numpy(predictor.preprocessing, first, second))
        with torch.inference_mode():
            expected = model(image1, image2)[-1][0].permute(1, 2, 0).numpy()
        scale = max(1.0, float(np.abs(expected).max()))
        assert np.abs(result.flow - expected).max() <= 1e-3 * scale


def test_int8_evaluation_asks_the_task_for_a_top_class(tmp_path: Path) -> None:
    """quantize_int8 scores top-1 accuracy on what the task's results name; a segmentation mask names none."""
    from zoo.tools.quantize import quantize_int8

    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["input"], ["out"])], "mean",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 8, 8])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", 3, 1, 1])],
    )
    spec = PreprocessSpec(kind="segmentation", resize_size=(8, 8), resize_mode="exact", interpolation="bilinear",
                          antialias=True)
    model = _save(graph, tmp_path / "seg.onnx", {"task": "segmentation", "preprocessing": spec.to_json()})
    images = [np.full((8, 8, 3), 9, np.uint8)] * 2
    with pytest.raises(UsageError, match="evaluation scores top-1 accuracy; the results of a segmentation model "
                                         "name no class") as error:
        quantize_int8(model, tmp_path / "seg.int8.onnx", images, evaluation=(images, [0, 1]))
    assert _one_line(error) and not (tmp_path / "seg.int8.onnx").exists()


def test_bench_asks_the_task_what_it_can_time(difference_flow: Path) -> None:
    from zoo.tools.bench import bench

    with pytest.raises(UsageError, match=r"bench times models that take one batch tensor; flow.onnx is a model of "
                                         r"task optical_flow, which takes 2 inputs \(image1, image2\)") as error:
        bench(difference_flow, int8=False)
    assert _one_line(error)

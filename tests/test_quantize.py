"""INT8 static quantisation: the digits model quantised for real, scored on its held-out split."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from zoo.errors import UsageError, ZooError
from zoo.export import ExportResult, export_onnx, read_metadata
from zoo.preprocessing import PreprocessSpec, preprocess_numpy
from zoo.tools.quantize import QuantizeResult, quantize_int8
from zoo_digits.data import load_heldout
from conftest import python_without

CALIBRATION = 50  # the first held-out images calibrate; the others evaluate


@pytest.fixture(scope="module")
def heldout() -> tuple[np.ndarray, np.ndarray]:
    return load_heldout()


@pytest.fixture(scope="module")
def digits(synced_catalog: str, tmp_path_factory: pytest.TempPathFactory) -> ExportResult:
    return export_onnx("digits_cnn", tmp_path_factory.mktemp("float") / "digits.onnx", weights="DEFAULT")


@pytest.fixture(scope="module")
def int8(digits: ExportResult, heldout: tuple[np.ndarray, np.ndarray],
         tmp_path_factory: pytest.TempPathFactory) -> QuantizeResult:
    images, labels = heldout
    out = tmp_path_factory.mktemp("int8") / "digits.int8.onnx"
    return quantize_int8(digits.path, out, list(images[:CALIBRATION]),
                         evaluation=(images[CALIBRATION:], labels[CALIBRATION:]))


def _accuracy(path: Path, images: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy computed here, independently of quantize_int8's own evaluation."""
    spec = PreprocessSpec.from_json(read_metadata(path)["preprocessing"])
    batch = np.stack([preprocess_numpy(spec, image) for image in images])
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return float((session.run(None, {"input": batch})[0].argmax(1) == labels).mean())


def test_int8_accuracy_is_within_one_point_of_float(int8: QuantizeResult, digits: ExportResult,
                                                     heldout: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = heldout[0][CALIBRATION:], heldout[1][CALIBRATION:]
    scored = int8.evaluation
    assert scored is not None and scored.samples == len(labels)
    assert scored.float_accuracy == pytest.approx(_accuracy(digits.path, images, labels))
    assert scored.int8_accuracy == pytest.approx(_accuracy(int8.path, images, labels))
    assert scored.float_accuracy > 0.97  # the shipped weights score 99.1% on all 450
    assert abs(scored.accuracy_drop) <= 0.01
    assert scored.accuracy_drop == pytest.approx(scored.float_accuracy - scored.int8_accuracy)
    assert scored.top1_agreement >= 0.98


def test_int8_model_has_integer_convolutions_and_is_smaller(int8: QuantizeResult, digits: ExportResult) -> None:
    proto = onnx.load(str(int8.path))
    ops = Counter(node.op_type for node in proto.graph.node)
    producers = {out: node for node in proto.graph.node for out in node.output}
    initializers = {t.name: t for t in proto.graph.initializer}
    convs = [n for n in proto.graph.node if n.op_type == "Conv"]
    assert len(convs) == 3 and ops["QuantizeLinear"] >= 3
    for conv in convs:  # QDQ: activations and weights of every Conv come through DequantizeLinear
        data, weight = (producers[name] for name in conv.input[:2])
        assert data.op_type == weight.op_type == "DequantizeLinear"
        assert initializers[weight.input[0]].data_type == onnx.TensorProto.INT8
    assert int8.size == int8.path.stat().st_size < digits.size
    assert int8.source_size == digits.size
    assert (int8.quant_format, int8.per_channel, int8.calibration_images) == ("QDQ", True, CALIBRATION)


def test_weights_are_quantised_per_output_channel(int8: QuantizeResult) -> None:
    proto = onnx.load(str(int8.path))
    producers = {out: node for node in proto.graph.node for out in node.output}
    initializers = {t.name: onnx.numpy_helper.to_array(t) for t in proto.graph.initializer}
    conv = next(n for n in proto.graph.node if n.op_type == "Conv")
    weight_dq = producers[conv.input[1]]
    scales = initializers[weight_dq.input[1]]
    assert scales.shape == (initializers[weight_dq.input[0]].shape[0],)  # one scale per output channel


def test_metadata_is_kept_and_quantization_added(int8: QuantizeResult, digits: ExportResult) -> None:
    source, quantised = read_metadata(digits.path), read_metadata(int8.path)
    assert {k: v for k, v in quantised.items() if k != "quantization"} == source
    info = quantised["quantization"]
    assert info == int8.metadata
    assert info["method"] == "static" and info["format"] == "QDQ" and info["calibration_images"] == CALIBRATION
    assert info["source_sha256"] == digits.sha256
    assert (info["activation_type"], info["weight_type"], info["per_channel"]) == ("uint8", "int8", True)
    assert set(info["evaluation"]) == {"samples", "float_accuracy", "int8_accuracy", "accuracy_drop",
                                       "top1_agreement"}
    assert int8.to_json()["path"] == str(int8.path)
    _only(int8.path.parent, int8.path.name)


def test_qoperator_format_has_qlinear_convolutions(digits: ExportResult, heldout: tuple[np.ndarray, np.ndarray],
                                                   tmp_path: Path) -> None:
    result = quantize_int8(digits.path, tmp_path / "q.onnx", list(heldout[0][:8]), quant_format="qoperator")
    ops = Counter(node.op_type for node in onnx.load(str(result.path)).graph.node)
    assert ops["QLinearConv"] == 3 and ops["Conv"] == 0
    assert result.evaluation is None and "evaluation" not in read_metadata(result.path)["quantization"]


def test_explicit_preprocessing_for_a_model_without_metadata(digits: ExportResult, tmp_path: Path,
                                                             heldout: tuple[np.ndarray, np.ndarray]) -> None:
    import torch

    bare = export_onnx(torch.nn.Conv2d(1, 4, 3), tmp_path / "bare.onnx", input_shape=(1, 1, 8, 8))
    images = list(heldout[0][:4])
    with pytest.raises(UsageError, match="no preprocessing metadata; pass preprocessing="):
        quantize_int8(bare.path, tmp_path / "bare.int8.onnx", images)
    _only(tmp_path, "bare.onnx")
    spec = read_metadata(digits.path)["preprocessing"]
    result = quantize_int8(bare.path, tmp_path / "bare.int8.onnx", images, preprocessing=spec)
    assert result.path.is_file() and result.calibration_images == 4


@pytest.mark.parametrize(("source", "images", "message"), [
    ("missing.onnx", [np.zeros((8, 8), np.uint8)], "no ONNX file at"),
    (None, [], "at least one image"),
    (None, "image.png", "at least one image"),
    (None, ["no/such/image.png"], "no image file at no/such/image.png"),
    (None, [np.zeros((8, 8), np.float32)], "expected a uint8"),
])
def test_bad_input_is_one_line_usage_error(digits: ExportResult, tmp_path: Path, source: str | None,
                                           images: list, message: str) -> None:
    src = tmp_path / source if source else digits.path
    with pytest.raises(UsageError, match=message) as caught:
        quantize_int8(src, tmp_path / "out.onnx", images)
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "out.onnx").exists()


def test_bad_options_are_usage_errors(digits: ExportResult, tmp_path: Path) -> None:
    image = [np.zeros((8, 8), np.uint8)]
    with pytest.raises(UsageError, match="quant_format must be one of qdq, qoperator"):
        quantize_int8(digits.path, tmp_path / "out.onnx", image, quant_format="int4")
    with pytest.raises(UsageError, match="does not exist"):
        quantize_int8(digits.path, tmp_path / "nowhere" / "out.onnx", image)
    with pytest.raises(UsageError, match="as many labels as images"):
        quantize_int8(digits.path, tmp_path / "out.onnx", image, evaluation=(image, [1, 2]))


def test_failure_leaves_nothing_behind(digits: ExportResult, tmp_path: Path) -> None:
    rgb = {**read_metadata(digits.path)["preprocessing"], "channel_order": "RGB", "mean": [0.5] * 3,
           "std": [0.5] * 3}  # three channels into a one-channel model: calibration fails in ONNX Runtime
    (tmp_path / "out.onnx").write_bytes(b"earlier")
    with pytest.raises(ZooError, match="int8 quantisation of .* failed"):
        quantize_int8(digits.path, tmp_path / "out.onnx", [np.zeros((8, 8, 3), np.uint8)], preprocessing=rgb,
                      overwrite=True)
    _only(tmp_path, "out.onnx")
    assert (tmp_path / "out.onnx").read_bytes() == b"earlier"


def test_the_output_replaces_only_what_zoo_wrote(digits: ExportResult, tmp_path: Path) -> None:
    image = [np.full((8, 8), 9, np.uint8)]
    out, elsewhere = tmp_path / "q.onnx", tmp_path / "elsewhere.txt"
    out.write_bytes(b"my notes")
    with pytest.raises(UsageError, match="q.onnx' exists and is not a file zoo wrote; pass --force"):
        quantize_int8(digits.path, out, image)
    assert out.read_bytes() == b"my notes"
    quantize_int8(digits.path, out, image, overwrite=True)
    assert "quantization" in read_metadata(out)
    quantize_int8(digits.path, out, image, quant_format="qoperator")  # an earlier int8 model: zoo's own
    assert read_metadata(out)["quantization"]["format"] == "QOperator"
    elsewhere.write_bytes(b"precious")
    out.unlink()
    out.symlink_to(elsewhere.name)
    with pytest.raises(UsageError, match="q.onnx' is a symbolic link"):
        quantize_int8(digits.path, out, image, overwrite=True)
    assert elsewhere.read_bytes() == b"precious" and out.is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere.txt", "q.onnx"]


def test_quantisation_runs_without_torch(digits: ExportResult, tmp_path: Path) -> None:
    code = (
        "import numpy as np\n"
        "from zoo.tools.quantize import quantize_int8\n"
        f"r = quantize_int8({str(digits.path)!r}, {str(tmp_path / 'q.onnx')!r}, [np.full((8, 8), 9, np.uint8)])\n"
        "print(r.quant_format)\n"
    )
    done = python_without(("torch", "torchvision", "sqlalchemy"), "-c", code)  # onnx it needs
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "QDQ"


def _only(directory: Path, name: str) -> None:
    """No temporary files are left next to the output."""
    assert sorted(p.name for p in directory.iterdir()) == [name]

"""ONNX export: real exports, checked by onnx and run by ONNX Runtime (CPU) against PyTorch."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import zoo
from zoo.errors import UnknownModelError, UsageError, ZooError
from zoo.export import ExportResult, ExportVerificationError, export_onnx, read_metadata
from zoo.fetch import sha256_of
from conftest import run_zoo

CPU = ["CPUExecutionProvider"]


def _session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=CPU)


def _batch_dim(path: Path) -> onnx.TensorShapeProto.Dimension:
    return onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim[0]


def _only_the_export(directory: Path, name: str) -> None:
    """No temporary files are left next to an export."""
    assert sorted(p.name for p in directory.iterdir()) == [name]


@pytest.fixture(scope="module")
def digits(synced_catalog: str, tmp_path_factory: pytest.TempPathFactory) -> ExportResult:
    directory = tmp_path_factory.mktemp("digits")
    return export_onnx("digits_cnn", directory / "digits.onnx", weights="DEFAULT")


def test_digits_export_is_checked_inferred_and_verified(digits: ExportResult) -> None:
    assert digits.path.is_file()
    _only_the_export(digits.path.parent, "digits.onnx")
    proto = onnx.load(str(digits.path))
    onnx.checker.check_model(proto, full_check=True)
    assert digits.opset == max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    assert proto.ir_version == digits.ir_version
    assert digits.exporter in ("dynamo", "torchscript")
    assert (digits.fallback_reason is None) == (digits.exporter == "dynamo")
    # every intermediate tensor has a shape, stored in the file
    assert digits.shape_inference_complete and digits.tensors_without_shape == []
    assert digits.intermediate_tensors > 5
    assert len(proto.graph.value_info) >= digits.intermediate_tensors
    assert digits.input_shape == (1, 1, 8, 8)  # from the weights' crop size and grey channel order
    assert [(c.input_shape[0], c.passed) for c in digits.verification] == [(1, True), (5, True)]
    assert max(c.max_abs_error for c in digits.verification) < 1e-4
    assert _batch_dim(digits.path).dim_param  # symbolic batch
    assert digits.dynamic_axes["input"] == {0: _batch_dim(digits.path).dim_param}
    assert digits.weights == "DigitsCNN_Weights.SKLEARN_DIGITS_V1"
    import hashlib

    assert digits.sha256 == hashlib.sha256(digits.path.read_bytes()).hexdigest()
    assert digits.size == digits.path.stat().st_size


def test_digits_metadata_round_trips(digits: ExportResult) -> None:
    meta = read_metadata(digits.path)
    record = zoo.describe("digits_cnn")["weights"][0]
    assert meta["model"] == "digits_cnn" and meta["task"] == "classification"
    assert meta["weights"] == record["name"] and meta["weights_sha256"] == record["sha256"]
    assert meta["preprocessing"] == record["transforms"]
    assert zoo.PreprocessSpec.from_json(meta["preprocessing"]).channel_order == "L"
    assert meta["categories"] == [str(d) for d in range(10)]
    assert meta["inputs"] == [{"name": "input", "layout": "NCHW", "export_shape": [1, 1, 8, 8]}]
    assert meta["outputs"] == [{"name": "output", "layout": "NC"}]
    assert meta["exporter"] == digits.exporter and meta["opset"] == digits.opset
    assert set(meta["versions"]) >= {"torch", "torchvision", "onnx"}
    assert [c["passed"] for c in meta["verification"]] == [True, True]
    assert meta == digits.metadata
    # every value is a string in the file; structured ones are JSON
    raw = {p.key: p.value for p in onnx.load(str(digits.path)).metadata_props}
    assert json.loads(raw["zoo.categories"]) == meta["categories"]


def test_read_metadata_needs_no_torch(digits: ExportResult) -> None:
    code = ("import sys; from zoo.export import read_metadata; "
            f"m = read_metadata({str(digits.path)!r}); "
            "assert 'torch' not in sys.modules, 'torch imported'; print(m['model'])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "digits_cnn"


def test_digits_onnx_agrees_with_pytorch_on_the_heldout_split(digits: ExportResult) -> None:
    from zoo.preprocessing import preprocess_numpy
    from zoo_digits.data import load_heldout

    images, labels = load_heldout()
    spec = zoo.PreprocessSpec.from_json(read_metadata(digits.path)["preprocessing"])
    batch = np.stack([preprocess_numpy(spec, image) for image in images])  # numpy and Pillow only
    onnx_pred = _session(digits.path).run(None, {"input": batch})[0].argmax(1)

    model = zoo.get_model("digits_cnn", weights="DEFAULT").eval()
    weights = zoo.get_weight("digits_cnn.DEFAULT")
    with torch.inference_mode():
        torch_pred = model(weights.transforms()(torch.from_numpy(images).unsqueeze(1))).argmax(1).numpy()
    agreement = float((onnx_pred == torch_pred).mean())
    assert len(images) > 400
    assert agreement >= 0.995, agreement
    assert float((onnx_pred == labels).mean()) > 0.9  # the shipped weights really are in the file


def test_torchvision_classifier_with_dynamic_batch(synced_catalog: str, tmp_path: Path) -> None:
    # resnet18, not mobilenet_v3: a freshly initialised mobilenet_v3 outputs logits of ~1e-13,
    # which any atol passes; resnet18's are of order 1, so the comparison means something
    path = tmp_path / "resnet18.onnx"
    result = export_onnx("resnet18", path, input_shape=(1, 3, 112, 112))
    assert (result.exporter, result.fallback_reason) == ("dynamo", None)  # the current exporter by default
    assert result.max_abs_error > 0  # real float differences, within tolerance
    assert [(c.input_shape[0], c.passed) for c in result.verification] == [(1, True), (5, True)]
    assert all(c.rtol == 1e-3 and c.atol == 1e-5 for c in result.verification)
    assert result.shape_inference_complete
    assert result.weights is None and read_metadata(path)["weights"] is None
    assert _batch_dim(path).dim_param and not _batch_dim(path).HasField("dim_value")
    x = np.random.default_rng(0).standard_normal((3, 3, 112, 112), dtype=np.float32)
    (logits,) = _session(path).run(None, {"input": x})
    assert logits.shape == (3, 1000)


def test_static_batch(tmp_path: Path) -> None:
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.LazyLinear(2))
    model(torch.zeros(2, 3, 6, 6))
    result = export_onnx(model, tmp_path / "s.onnx", input_shape=(2, 3, 6, 6), dynamic_batch=False)
    assert _batch_dim(result.path).dim_value == 2
    assert result.dynamic_axes == {}
    assert [c.input_shape for c in result.verification] == [(2, 3, 6, 6)]


def test_segmentation_model(synced_catalog: str, tmp_path: Path) -> None:
    path = tmp_path / "lraspp.onnx"
    result = export_onnx("lraspp_mobilenet_v3_large", path, input_shape=(1, 3, 128, 128))
    assert result.output_names == ["out"]
    assert result.exporter == "dynamo"
    assert all(c.passed for c in result.verification), result.verification
    assert all(c.atol == 1e-4 for c in result.verification)
    assert [c.output_shape for c in result.verification] == [(1, 21, 128, 128), (5, 21, 128, 128)]
    assert result.shape_inference_complete, result.tensors_without_shape
    assert read_metadata(path)["outputs"] == [{"name": "out", "layout": "NCHW"}]


@pytest.fixture(scope="module")
def detector(synced_catalog: str, tmp_path_factory: pytest.TempPathFactory) -> ExportResult:
    """Faster R-CNN, random weights, made smaller through its own builder arguments (as torchvision's tests)."""
    path = tmp_path_factory.mktemp("detection") / "frcnn.onnx"
    return export_onnx("fasterrcnn_resnet50_fpn", path, builder_kwargs={"min_size": 200, "max_size": 300})


def test_detection_model_is_exported_for_any_image_size_and_verified_after_matching(
        detector: ExportResult) -> None:
    assert detector.exporter == "torchscript"  # torch.export cannot trace the data-dependent NMS
    # why, recorded: the root cause, not torch.onnx's generic wrapper and its terminal colours
    assert "data-dependent" in detector.fallback_reason and "\x1b" not in detector.fallback_reason
    onnx.checker.check_model(str(detector.path), full_check=True)
    assert detector.shape_inference_complete and detector.intermediate_tensors > 1000
    assert detector.output_names == ["boxes", "labels", "scores"]
    assert detector.input_shape == (1, 3, 200, 200)  # a square of the model's own min_size
    assert detector.dynamic_axes["input"] == {2: "height", 3: "width"}
    assert detector.dynamic_axes["boxes"] == {0: "detections"}
    # three images: the export size, another size, and a blank grey image with no detections
    by_input = {}
    for check in detector.verification:
        by_input.setdefault(check.input_shape, []).append(check)
    assert list(by_input) == [(1, 3, 200, 200), (1, 3, 150, 200)]
    found = [c.detections for c in detector.verification if c.name == "boxes"]
    assert found[0] > 10 and found[1] > 10 and found[2] == 0
    assert all(c.passed for c in detector.verification)
    assert [c.unmatched for c in detector.verification if c.name == "boxes"] == [0, 0, 0]
    assert {c.output_shape for c in detector.verification if c.name == "boxes"} >= {(0, 4)}
    assert 0 < max(c.max_abs_error for c in detector.verification) < 0.1
    meta = read_metadata(detector.path)
    assert meta["task"] == "detection" and meta["preprocessing"]["kind"] == "detection"
    assert [o["name"] for o in meta["outputs"]] == ["boxes", "labels", "scores"]
    assert meta["outputs"][0]["layout"].startswith("K4")


def test_detection_export_runs_at_a_size_it_never_saw(detector: ExportResult) -> None:
    with torch.random.fork_rng():
        torch.manual_seed(0)  # export_onnx seeds random weights with 0, so this is the exported model
        model = zoo.get_model("fasterrcnn_resnet50_fpn", weights_backbone=None, min_size=200, max_size=300)
    image = torch.rand((3, 170, 260), generator=torch.Generator().manual_seed(7))
    with torch.inference_mode():
        expected = model.eval()([image])[0]
    boxes, labels, scores = _session(detector.path).run(None, {"input": image[None].numpy()})
    assert labels.dtype == np.int64 and boxes.shape == (len(labels), 4) and len(labels) > 10
    assert sorted(labels.tolist()) == sorted(expected["labels"].tolist())
    np.testing.assert_allclose(np.sort(scores), np.sort(expected["scores"].numpy()), rtol=5e-3, atol=1e-3)
    assert boxes[:, 2].max() <= 260 and boxes[:, 3].max() <= 170  # in this image's pixels


def _detections(boxes: list[list[float]], scores: list[float], labels: list[int]) -> list[np.ndarray]:
    return [np.array(boxes, np.float32), np.array(labels, np.int64), np.array(scores, np.float32)]


def test_detections_pair_by_twin_boxes_even_without_area_and_a_moved_box_fails() -> None:
    from zoo.export.tasks.detection import compare_detections as _compare_detections

    names = ["boxes", "labels", "scores"]
    # a random head's boxes often have no width (x1 == x2): IoU cannot pair them
    torch_out = _detections([[24, 229.5, 24, 232], [10, 10, 50, 60], [0, 0, 30, 30]], [0.9, 0.5, 0.3], [7, 3, 3])
    listed_otherwise = _detections([[10, 10, 50, 60.0002], [24.00003, 229.5, 24.00003, 232], [0, 0, 30, 30]],
                                   [0.5000001, 0.9, 0.3], [3, 7, 3])
    checks = _compare_detections(names, torch_out, listed_otherwise, (1, 3, 300, 300), 5e-3, 1e-3)
    assert all(c.passed and c.unmatched == 0 and c.detections == 3 for c in checks)

    moved = _detections([[24, 229.5, 24, 232], [18, 10, 58, 60], [0, 0, 30, 30]], [0.9, 0.5, 0.3], [7, 3, 3])
    boxes = _compare_detections(names, torch_out, moved, (1, 3, 300, 300), 5e-3, 1e-3)[0]
    assert not boxes.passed and boxes.max_abs_error == pytest.approx(8.0)

    lost = _detections([[24, 229.5, 24, 232], [0, 0, 30, 30]], [0.9, 0.3], [7, 3])  # not at the score cut
    assert not any(c.passed for c in _compare_detections(names, torch_out, lost, (1, 3, 300, 300), 5e-3, 1e-3))
    cut = _detections([[24, 229.5, 24, 232], [10, 10, 50, 60]], [0.9, 0.5], [7, 3])  # the lowest one, at the cut
    checks = _compare_detections(names, torch_out, cut, (1, 3, 300, 300), 5e-3, 1e-3)
    assert all(c.passed and c.unmatched == 1 for c in checks)


def test_instance_masks_may_move_an_edge_by_one_pixel_but_no_further() -> None:
    from zoo.export.tasks.detection import compare_detections as _compare_detections

    names = ["boxes", "labels", "scores", "masks"]
    mask = np.zeros((1, 1, 40, 40), np.float32)
    mask[..., 10:20, 10:30] = 1.0  # a box pasted at whole pixels: a rounding flip moves its edge

    def with_mask(m: np.ndarray) -> list[np.ndarray]:  # and a second, lower one: the first is not at the cut
        return [*_detections([[10, 10, 30, 20], [0, 30, 5, 35]], [0.8, 0.3], [1, 2]),
                np.concatenate([m, np.zeros_like(m)])]

    def compare(m: np.ndarray) -> dict[str, bool]:
        checks = _compare_detections(names, with_mask(mask), with_mask(m), (1, 3, 40, 40), 5e-3, 1e-3)
        return {c.name: c.passed for c in checks}

    assert compare(np.roll(mask, 1, axis=-1))["masks"]
    assert not compare(np.roll(mask, 3, axis=-1))["masks"]
    assert not compare(mask * 0.9)["masks"]  # inside the mask nothing moves: values must agree


class _CountsCalls(torch.nn.Module):
    """Scales by how often it has run: an exporter freezes the Python counter into a constant."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return x * self.calls


def test_export_that_does_not_match_pytorch_fails_loudly_and_leaves_nothing(tmp_path: Path) -> None:
    path = tmp_path / "wrong.onnx"
    with pytest.raises(ExportVerificationError, match=r"does not match PyTorch.*max abs error") as info:
        export_onnx(_CountsCalls(), path, input_shape=(1, 3, 4, 4))
    assert isinstance(info.value, ZooError)
    failed = [c for c in info.value.checks if not c.passed]
    assert failed and failed[0].max_abs_error > 1e-3
    assert not path.exists() and list(tmp_path.iterdir()) == []


def test_a_model_of_one_image_size_is_exported_at_that_size(tmp_path: Path) -> None:
    from torchvision.models import VisionTransformer

    # ViT takes only its own image_size (vit_h_14 built without weights: 224, not its weights' 518)
    vit = VisionTransformer(image_size=32, patch_size=16, num_layers=1, num_heads=2, hidden_dim=32, mlp_dim=64)
    result = export_onnx(vit, tmp_path / "vit.onnx")
    assert result.input_shape == (1, 3, 32, 32)
    assert all(c.passed for c in result.verification)


def test_zero_tolerance_fails_on_float_differences(synced_catalog: str, tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    path.write_bytes(b"an older export")
    with pytest.raises(ExportVerificationError, match="rtol=0, atol=0"):
        export_onnx("digits_cnn", path, rtol=0, atol=0, overwrite=True)
    assert path.read_bytes() == b"an older export"  # replaced only by a verified file
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda p: export_onnx("no_such_model", p), UnknownModelError, "unknown model 'no_such_model'"),
        (lambda p: export_onnx("digits_cnn", p, input_shape="1,a,8"), UsageError, "input_shape"),
        (lambda p: export_onnx("digits_cnn", p, input_shape=(1, 0, 8, 8)), UsageError, "input_shape"),
        (lambda p: export_onnx("digits_cnn", p, input_shape=(1, 3, 8, 8)), UsageError,
         "cannot run on an input of shape 1x3x8x8"),
        (lambda p: export_onnx(torch.nn.ReLU(), p), UsageError, "pass input_shape"),
        (lambda p: export_onnx("raft_small", p, input_shape=(1, 3, 100, 100)), UsageError,
         "raft_small cannot run on an input of shape 1x3x100x100: .*divisible by 8"),
        (lambda p: export_onnx("ssd300_vgg16", p, dynamic_batch=True), UsageError, "cannot have a dynamic batch"),
        (lambda p: export_onnx("ssd300_vgg16", p, builder_kwargs=["min_size"]), UsageError,
         "builder_kwargs must be a mapping"),
        (lambda p: export_onnx("digits_cnn", p, opset=99), UsageError, "opset 99"),
        (lambda p: export_onnx("digits_cnn", p.parent / "missing" / "m.onnx"), UsageError, "does not exist"),
    ],
    ids=["unknown-name", "shape-text", "shape-zero", "wrong-channels", "module-no-shape", "optical-flow",
         "detection-batch", "builder-argument", "opset", "no-dir"],
)
def test_bad_input_is_one_clear_line(synced_catalog: str, tmp_path: Path, call, error, message) -> None:
    with pytest.raises(error, match=message) as info:
        call(tmp_path / "m.onnx")
    assert "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_external_data_path(synced_catalog: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The >2 GB code path, forced on a small model: tensors in <name>.data next to the file."""
    import zoo.export

    monkeypatch.setattr(zoo.export, "_EXTERNAL_DATA_BYTES", 0)
    path = tmp_path / "big.onnx"
    result = export_onnx("digits_cnn", path, weights="DEFAULT")
    assert result.external_data == tmp_path / "big.onnx.data"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.onnx", "big.onnx.data"]
    data = tmp_path / "big.onnx.data"
    assert path.stat().st_size + data.stat().st_size == result.size
    assert data.stat().st_size > 4 * 20_000 > path.stat().st_size  # the (BN-folded) weights live in the sidecar
    initializers = onnx.load(str(path), load_external_data=False).graph.initializer
    large = [t for t in initializers if 4 * int(np.prod(t.dims)) >= 1024]  # onnx keeps tiny tensors inline
    assert large and all(t.data_location == onnx.TensorProto.EXTERNAL for t in large)
    assert all(c.passed for c in result.verification)
    assert read_metadata(path)["model"] == "digits_cnn"
    x = np.zeros((2, 1, 8, 8), dtype=np.float32)
    assert _session(path).run(None, {"input": x})[0].shape == (2, 10)


def test_exports_are_recorded_and_reused_while_valid(synced_catalog: str, tmp_path: Path) -> None:
    path = tmp_path / "digits.onnx"
    first = export_onnx("digits_cnn", path, weights="DEFAULT")
    written = path.stat().st_mtime_ns
    assert first.reused is False
    record = next(r for r in zoo.list_exports() if r["path"] == str(path.resolve()))
    assert (record["model"], record["weights"], record["sha256"]) == (
        "digits_cnn", "DigitsCNN_Weights.SKLEARN_DIGITS_V1", first.sha256)
    assert record["verification"] == [c.to_json() for c in first.verification] and record["exists"]

    again = export_onnx("DIGITS_CNN", path, weights="digits_cnn.DEFAULT")  # the same request, spelled otherwise
    assert again.reused is True and again.sha256 == first.sha256 and again.verification == first.verification
    assert path.stat().st_mtime_ns == written  # not rewritten

    static = export_onnx("digits_cnn", path, weights="DEFAULT", dynamic_batch=False)  # other options
    assert static.reused is False and static.dynamic_axes == {}

    path.write_bytes(path.read_bytes() + b"\0")  # changed on disk: no longer a model, so replaced only if forced
    assert export_onnx("digits_cnn", path, weights="DEFAULT", dynamic_batch=False, overwrite=True).reused is False
    path.unlink()  # gone
    assert export_onnx("digits_cnn", path, weights="DEFAULT", dynamic_batch=False).reused is False

    listed = json.loads(run_zoo("exports", "--json").stdout)
    assert [r["sha256"] for r in listed if r["path"] == str(path.resolve())] == [sha256_of(path)]


def test_an_existing_file_is_replaced_only_if_zoo_wrote_it_or_when_forced(synced_catalog: str, tmp_path: Path) -> None:
    notes = tmp_path / "notes.onnx"
    notes.write_bytes(b"my notes")
    notes.chmod(0o640)
    done = run_zoo("export", "digits_cnn", "-o", str(notes), check=False)
    assert done.returncode == 1 and done.stderr.count("\n") == 1
    assert "exists and is not a file zoo wrote; pass --force" in done.stderr
    assert notes.read_bytes() == b"my notes" and stat.S_IMODE(notes.stat().st_mode) == 0o640
    random = run_zoo("export", "digits_cnn", "-o", str(notes), "--force").stdout
    assert read_metadata(notes)["model"] == "digits_cnn" and read_metadata(notes)["weights"] is None
    assert "weights: none: random initialisation, its predictions mean nothing (--weights DEFAULT" in random
    assert stat.S_IMODE(notes.stat().st_mode) == 0o640  # the replacement keeps the file's mode
    again = export_onnx("digits_cnn", notes, weights="DEFAULT")  # an earlier zoo export: no overwrite needed
    assert again.reused is False and read_metadata(notes)["weights"] == again.weights
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.onnx"]


@pytest.mark.parametrize("make", [lambda p: p.symlink_to("target.onnx"), os.mkfifo], ids=["symlink", "fifo"])
def test_export_writes_only_regular_files(synced_catalog: str, tmp_path: Path, make) -> None:
    (tmp_path / "target.onnx").write_bytes(b"elsewhere")
    make(tmp_path / "m.onnx")
    with pytest.raises(UsageError, match="m.onnx' is a (symbolic link|fifo)"):
        export_onnx("digits_cnn", tmp_path / "m.onnx", overwrite=True)
    assert (tmp_path / "target.onnx").read_bytes() == b"elsewhere"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "target.onnx"]


def test_the_next_export_cleans_up_after_a_killed_one(synced_catalog: str, tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    child = subprocess.Popen([sys.executable, "-m", "zoo", "export", "digits_cnn", "-o", str(path)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".m.onnx.*.tmp")) and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    child.send_signal(signal.SIGKILL)
    assert child.wait() == -signal.SIGKILL
    assert list(tmp_path.glob(".m.onnx.*.tmp")) and not path.exists()  # killed half way: its folder stays
    export_onnx("digits_cnn", path)
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]


@pytest.mark.parametrize("opset", [7, 17, 18])
def test_the_opset_recorded_is_the_one_in_the_file(synced_catalog: str, tmp_path: Path, opset: int) -> None:
    """Asked for opset 7, the dynamo exporter writes 18 (its converter cannot go lower); TorchScript writes 7."""
    result = export_onnx("digits_cnn", tmp_path / "m.onnx", weights="DEFAULT", opset=opset)
    written = [o.version for o in onnx.load(str(result.path)).opset_import if o.domain in ("", "ai.onnx")]
    assert written == [opset] and result.opset == opset and read_metadata(result.path)["opset"] == opset
    assert all(c.passed for c in result.verification)
    assert (result.exporter == "torchscript") == bool(result.fallback_reason)
    listed = json.loads(run_zoo("exports", "--json").stdout)
    assert [r["opset"] for r in listed if r["path"] == str(result.path.resolve())] == [opset]

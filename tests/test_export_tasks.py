"""Export through the task adapters: optical flow (two inputs), default shapes, and the exporters' quiet logging."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

import zoo
from zoo.errors import UsageError
from zoo.export import export_onnx, read_metadata
from zoo.export.exporters import _quiet
from zoo.export.tasks import TaskAdapter, adapter


def test_optical_flow_exports_two_inputs_and_the_final_flow(raft_export: zoo.ExportResult) -> None:
    assert raft_export.task == "optical_flow"
    assert raft_export.input_names == ["image1", "image2"] and raft_export.output_names == ["flow"]
    assert raft_export.input_shape == (1, 3, 128, 128)  # the weights' min_size
    # torch.export specialises RAFT's batch (its chunk of the two images' features guards on it)
    assert raft_export.exporter == "torchscript" and "static" in raft_export.fallback_reason
    assert raft_export.dynamic_axes["image1"] == raft_export.dynamic_axes["image2"] == {0: "batch"}
    assert [(c.input_shape, c.output_shape, c.passed) for c in raft_export.verification] == [
        ((1, 3, 128, 128), (1, 2, 128, 128), True), ((5, 3, 128, 128), (5, 2, 128, 128), True)]
    assert all(c.scale > 1 for c in raft_export.verification)  # flows of several pixels: atol counts in their unit
    meta = read_metadata(raft_export.path)
    assert [i["name"] for i in meta["inputs"]] == ["image1", "image2"]
    assert meta["inputs"][0] == {"name": "image1", "layout": "NCHW", "export_shape": [1, 3, 128, 128]}
    assert meta["outputs"] == [{"name": "flow", "layout": "N2HW (dx, dy in pixels)"}]
    assert meta["preprocessing"]["kind"] == "optical_flow"


def test_optical_flow_export_agrees_with_raft_on_a_moved_image(raft_export: zoo.ExportResult) -> None:
    with torch.random.fork_rng():
        torch.manual_seed(0)  # export_onnx seeds random weights with 0, so this is the exported model
        model = zoo.get_model("raft_small").eval()
    image1 = torch.rand((2, 3, 128, 128), generator=torch.Generator().manual_seed(5)) * 2 - 1
    image2 = torch.roll(image1, shifts=3, dims=-1)  # a batch of two other than the export's
    with torch.inference_mode():
        expected = model(image1, image2)[-1].numpy()
    session = ort.InferenceSession(str(raft_export.path), providers=["CPUExecutionProvider"])
    (flow,) = session.run(None, {"image1": image1.numpy(), "image2": image2.numpy()})
    assert flow.shape == (2, 2, 128, 128)
    scale = max(1.0, float(np.abs(expected).max()))
    assert np.abs(flow - expected).max() <= 1e-5 * scale + 1e-3 * np.abs(expected).max()


def test_optical_flow_shape_must_be_a_multiple_of_eight(synced_catalog: str, tmp_path: Path) -> None:
    flow = adapter("optical_flow")
    assert flow.default_shape(None, name="f", preprocessing=None, min_size=None, input_size=None) == (1, 3, 128, 128)
    assert flow.default_shape(None, name="f", preprocessing=None, min_size=(100, 130), input_size=None) == (
        1, 3, 104, 136)
    with pytest.raises(UsageError, match="cannot run on an input of shape 1x3x60x64: .*divisible by 8"):
        export_onnx("raft_small", tmp_path / "f.onnx", input_shape=(1, 3, 60, 64))
    assert list(tmp_path.iterdir()) == []


def test_default_shapes_come_from_the_adapter() -> None:
    plain = TaskAdapter()
    spec = {"crop_size": [224, 200], "channel_order": "L"}
    assert plain.default_shape(None, name="m", preprocessing=spec, min_size=None, input_size=None) == (1, 1, 224, 200)
    assert plain.default_shape(None, name="m", preprocessing={"resize_size": [256]}, min_size=None,
                               input_size=None) == (1, 3, 256, 256)
    assert plain.default_shape(None, name="m", preprocessing=None, min_size=None, input_size=(3, 32, 48)) == (
        1, 3, 32, 48)
    with pytest.raises(UsageError, match="m declares no input size: pass input_shape"):
        plain.default_shape(None, name="m", preprocessing=None, min_size=None, input_size=None)
    with pytest.raises(UsageError, match="v takes video clips: pass input_shape"):
        adapter("video").default_shape(None, name="v", preprocessing=None, min_size=None, input_size=None)


def test_verification_inputs_give_each_input_its_own_tensor() -> None:
    runs = adapter("optical_flow").verification_inputs((1, 3, 16, 24), dynamic_batch=True, dynamic_image_size=True)
    assert [tuple(tuple(x.shape) for x in run) for run in runs] == [
        ((1, 3, 16, 24),) * 2, ((5, 3, 16, 24),) * 2, ((1, 3, 12, 24),) * 2]
    assert all(-1 <= float(x.min()) and float(x.max()) <= 1 for run in runs for x in run)
    assert not torch.equal(*runs[0])  # two different images
    grey = adapter("detection").verification_inputs((1, 3, 16, 16), dynamic_batch=False, dynamic_image_size=True)[-1]
    assert set(torch.unique(grey[0] * 255).round().tolist()) <= {127.0, 128.0}


def test_exporting_quiets_torchs_loggers_by_name_and_restores_them(caplog: pytest.LogCaptureFixture) -> None:
    mine, theirs = logging.getLogger("my.app"), logging.getLogger("torch.export.some_pass")
    theirs.setLevel(logging.INFO)
    with caplog.at_level(logging.INFO), _quiet():
        mine.warning("still heard")
        theirs.warning("a failed guard")
        logging.getLogger("torch._dynamo.new_child").error("traced graph")
    assert [r.getMessage() for r in caplog.records] == ["still heard"]
    assert theirs.level == logging.INFO and logging.getLogger("torch.export").level == logging.NOTSET

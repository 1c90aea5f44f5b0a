"""zoo.tools.summary: per-layer summaries and torch.fx features, on real models (no mocks)."""

from __future__ import annotations

import json

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_320_fpn
from torchvision.models.feature_extraction import create_feature_extractor
from torchvision.models.optical_flow import raft_small

import zoo
from conftest import sweep
from zoo.tools.summary import (
    LayerRow,
    ModelSummary,
    extract_features,
    feature_nodes,
    features_model,
    summarize,
)

IMAGE = (1, 3, 224, 224)
SMALL = (1, 3, 64, 64)  # where the spatial size does not matter: faster
#: the catalog tasks whose torchvision models torch.fx cannot trace whole (measured by the loop below)
UNTRACEABLE_TASKS = {"detection", "instance_segmentation", "keypoints", "optical_flow"}


def row(summary: ModelSummary, path: str) -> LayerRow:
    return next(r for r in summary.rows if r.path == path)


def test_resnet18_rows_and_totals() -> None:
    model = torchvision.models.resnet18(weights=None)
    summary = summarize(model, IMAGE)
    conv = row(summary, "layer4.1.conv2")
    assert (conv.type, conv.output_shape, conv.trainable) == ("Conv2d", (1, 512, 7, 7), "all")
    assert conv.params == 512 * 512 * 9
    assert row(summary, "layer1.0.relu").calls == 2  # a BasicBlock applies its ReLU twice
    assert row(summary, "").output_shape == (1, 1000)
    total = sum(p.numel() for p in model.parameters())
    assert summary.total_params == sum(r.params for r in summary.rows) == total == summary.trainable_params
    assert summary.buffers == sum(b.numel() for b in model.buffers())
    tensors = [*model.parameters(), *model.buffers()]
    assert summary.parameter_memory == sum(t.numel() * t.element_size() for t in tensors)
    assert summary.input_bytes == 3 * 224 * 224 * 4


def test_frozen_parameters_are_counted_apart() -> None:
    model = torchvision.models.resnet18(weights=None)
    total = sum(p.numel() for p in model.parameters())
    for p in model.fc.parameters():
        p.requires_grad_(False)
    summary = summarize(model, SMALL)
    assert summary.trainable_params == total - 512 * 1000 - 1000
    assert summary.non_trainable_params == 512 * 1000 + 1000
    assert row(summary, "fc").trainable == "none"
    model.fc.weight.requires_grad_(True)
    assert row(summarize(model, SMALL), "fc").trainable == "partial"


def test_depth_rolls_parameters_up() -> None:
    model = torchvision.models.resnet18(weights=None)
    summary = summarize(model, SMALL, depth=1)
    assert {r.path.count(".") for r in summary.rows} == {0, 1}
    assert row(summary, "layer4.1").params == sum(p.numel() for p in model.layer4[1].parameters())
    assert sum(r.params for r in summary.rows) == summary.total_params == sum(p.numel() for p in model.parameters())
    top = summarize(model, SMALL, depth=0)
    assert [r.path for r in top.rows] == ["", *(name for name, _ in model.named_children())]
    assert row(top, "layer4").params == sum(p.numel() for p in model.layer4.parameters())
    with pytest.raises(zoo.UsageError, match="depth"):
        summarize(model, SMALL, depth=-1)


def test_json_and_table() -> None:
    model = torchvision.models.resnet18(weights=None)
    summary = summarize(model, IMAGE)
    data = summary.to_json()
    assert json.loads(json.dumps(data)) == data
    conv = next(r for r in data["layers"] if r["path"] == "layer4.1.conv2")
    assert conv["output_shape"] == [1, 512, 7, 7] and conv["params"] == 512 * 512 * 9
    assert data["totals"]["params"] == summary.total_params and data["inputs"] == [list(IMAGE)]
    lines = summary.table().splitlines()
    assert lines[0].split() == ["Layer", "Output", "shape", "Params", "Trainable"]
    assert "layer4.1.conv2 (Conv2d)" in summary.table()
    assert "Params: 11,689,512 (44.6 MiB)" in lines


def test_modes_restored_and_hooks_removed_even_on_error() -> None:
    model = torchvision.models.resnet18(weights=None)
    model.layer1.eval()
    summarize(model, SMALL)
    with pytest.raises(zoo.UsageError, match=r"does not run on input 1,1,64,64"):
        summarize(model, (1, 1, 64, 64))
    assert model.training and not model.layer1.training and model.layer2.training
    assert not any(m._forward_hooks for m in model.modules())


def test_digits_model(synced_catalog: str) -> None:
    model = zoo.get_model("digits_cnn", weights="DEFAULT")
    summary = summarize(model, (1, 1, 8, 8))
    assert summary.total_params == 24_058
    assert row(summary, "features.6").output_shape == (1, 32, 4, 4)
    # Distinct outputs: conv and BN per block (ReLUs are in place), max-pool, pool, classifier;
    # the Sequential, dropout (eval), flatten view and root repeat storages already counted.
    floats = 2 * 16 * 64 + 2 * 32 * 64 + 32 * 16 + 2 * 64 * 16 + 64 + 10
    assert summary.activation_bytes == 4 * floats


def test_detection_model_takes_a_list_of_images() -> None:
    model = fasterrcnn_mobilenet_v3_large_320_fpn(weights=None, weights_backbone=None)
    summary = summarize(model, (1, 3, 320, 320), depth=1)
    detections = row(summary, "").output_shape
    assert len(detections) == 1 and set(detections[0]) == {"boxes", "labels", "scores"}
    assert set(row(summary, "backbone").output_shape) == {"0", "1", "pool"}
    assert summary.total_params == sum(r.params for r in summary.rows) == sum(p.numel() for p in model.parameters())
    assert json.loads(json.dumps(summary.to_json())) == summary.to_json()


def test_optical_flow_takes_two_inputs() -> None:
    summary = summarize(raft_small(weights=None), [(1, 3, 128, 128), (1, 3, 128, 128)], depth=0)
    assert row(summary, "update_block").calls == 12  # one per flow update
    assert "[12 x (1, 2, 128, 128)]" in summary.table()


def test_features_of_resnet18() -> None:
    model = torchvision.models.resnet18(weights=None)
    features = extract_features(model, ["layer1", "layer4"], torch.rand(IMAGE))
    assert {k: tuple(v.shape) for k, v in features.items()} == {"layer1": (1, 64, 56, 56), "layer4": (1, 512, 7, 7)}
    assert list(extract_features(model, {"layer4.1.conv2": "last"}, torch.rand(IMAGE))) == ["last"]
    assert model.training
    with pytest.raises(zoo.UsageError, match=r"no feature node 'layer5'; did you mean: layer4"):
        extract_features(model, ["layer5"], torch.rand(IMAGE))


def test_features_through_the_catalog(synced_catalog: str) -> None:
    assert "features.5" in feature_nodes("digits_cnn")[1]
    extractor = features_model("digits_cnn", {"features.5": "stage1"}, weights="DEFAULT")
    model = zoo.get_model("digits_cnn", weights="DEFAULT").eval()
    x = torch.rand(4, 1, 8, 8)
    with torch.inference_mode():
        assert torch.equal(extractor.eval()(x)["stage1"], model.features[:6](x))


def test_untraceable_models_point_at_traceable_parts(synced_catalog: str) -> None:
    name = "fasterrcnn_mobilenet_v3_large_320_fpn"
    with pytest.raises(zoo.UsageError, match=rf"{name} \(FasterRCNN\) cannot be traced.*submodule='backbone'"):
        feature_nodes(name)
    assert feature_nodes(name, submodule="backbone")[1][-2:] == ["body.16", "fpn"]
    extractor = features_model("raft_small", ["layer3"], submodule="feature_encoder")
    assert tuple(extractor(torch.rand(1, 3, 64, 64))["layer3"].shape) == (1, 96, 8, 8)
    with pytest.raises(zoo.UsageError, match="no submodule 'backbone'; top-level names: feature_encoder, "):
        features_model("raft_small", ["layer3"], submodule="backbone")


class InPlaceUpdate(nn.Module):
    """Updates a tensor in place and ignores the call's result, as MViT does."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x * 2
        y.add_(1)
        return y - 1


def test_nodes_after_a_dropped_in_place_update_are_refused() -> None:
    model, x = InPlaceUpdate(), torch.ones(2)
    assert feature_nodes(model)[1] == ["x", "mul", "add_", "sub"]
    # torchvision's extractor drops the unused in-place call, so its 'sub' is wrong
    assert create_feature_extractor(model, ["sub"])(x)["sub"].tolist() == [1.0, 1.0] != model(x).tolist()
    with pytest.raises(zoo.UsageError, match=r"'sub' would come out wrong.*drops add_, an in-place update"):
        extract_features(model, ["sub"], x)
    assert extract_features(model, ["mul"], x)["mul"].tolist() == [2.0, 2.0]
    with torch.device("meta"):
        mvit = torchvision.models.video.mvit_v2_s()
    with pytest.raises(zoo.UsageError, match=r"'head' would come out wrong.*drops blocks.0.attn._add_shortcut"):
        features_model(mvit, ["head"])


@pytest.mark.filterwarnings("ignore:The default weight initialization:FutureWarning")  # googlenet, inception_v3
def test_every_catalog_model_traces_or_says_why(synced_catalog: str) -> None:
    """Built without weights (on the meta device; RegNets on the CPU); measured, not assumed."""
    tasks = {m["name"]: m["task"] for m in zoo.summarize_models()}
    untraceable = {}
    names = sweep(zoo.list_models())
    for name in names:
        try:
            train, evaluation = feature_nodes(name)
        except zoo.UsageError as exc:
            untraceable[name] = str(exc)
        else:
            assert evaluation and set(evaluation) <= set(train)
    assert untraceable and set(untraceable) == {name for name in names if tasks[name] in UNTRACEABLE_TASKS}
    for name, message in untraceable.items():
        part = "feature_encoder" if tasks[name] == "optical_flow" else "backbone"
        assert message.startswith(f"{name} (") and f"submodule='{part}'" in message

"""The deployment runtime with timm's border crop: a spec that pads its crop with a colour
(`PreprocessSpec.pad_fill`) runs in `zoo.runtime.Predictor`, also where the model's fixed
input size is not the crop's and the Predictor resizes straight to it instead."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
import skimage.data
from onnx import TensorProto, helper

from zoo.preprocessing import PreprocessSpec, preprocess_numpy
from zoo.runtime import Predictor

WEIGHTS = np.random.default_rng(3).standard_normal((3 * 8 * 8, 4)).astype(np.float32)
BORDER = PreprocessSpec(kind="classification", resize_size=(8, 8), resize_mode="contain", crop_size=(8, 8),
                        pad_fill=(128, 128, 128), interpolation="bicubic", antialias=True,
                        mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))


@pytest.fixture(scope="module")
def linear(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-class linear classifier of 3 x 8 x 8 images, batch fixed at 1."""
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["input"], ["flat"]), helper.make_node("MatMul", ["flat", "w"], ["output"])],
        "linear",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor("w", TensorProto.FLOAT, WEIGHTS.shape, WEIGHTS.ravel())],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = tmp_path_factory.mktemp("border") / "linear.onnx"
    onnx.save(model, str(path))
    return path


def _probabilities(sample: np.ndarray) -> np.ndarray:
    logits = sample.reshape(1, -1).astype(np.float64) @ WEIGHTS
    return np.exp(logits[0]) / np.exp(logits[0]).sum()


@pytest.mark.parametrize("spec, reference", [
    (BORDER, BORDER),  # the crop is the model's size: padded with grey
    # a 6 x 6 crop for an 8 x 8 model: the Predictor resizes straight to 8 x 8, nothing to pad
    (replace(BORDER, crop_size=(6, 6)), replace(BORDER, resize_mode="exact", crop_size=None, pad_fill=None)),
], ids=["border", "other-size"])
def test_predictor_preprocesses_a_border_spec_as_the_numpy_path(linear: Path, spec: PreprocessSpec,
                                                                reference: PreprocessSpec) -> None:
    tall = skimage.data.astronaut()[:, 150:330]  # 512 x 180: resized to 8 x 3, padded to 8 x 8
    predictor = Predictor(linear, task="classification", preprocessing=spec.to_json(), categories=list("abcd"))
    (result,) = predictor.predict(tall, topk=4)
    want = _probabilities(preprocess_numpy(reference, tall))
    np.testing.assert_allclose(result.probabilities, np.sort(want)[::-1], rtol=1e-5)
    assert result.indices == np.argsort(-want).tolist()

"""`zoo predict` and `zoo bench`, run as a user runs them, in child processes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

import zoo
from zoo.export import export_onnx
from zoo.runtime import cuda_device_count
from zoo_digits.data import load_heldout
from conftest import NOT_ON_DEPLOYMENT_HOST, python_without, run_zoo


@pytest.fixture(scope="module")
def digits(synced_catalog: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_onnx("digits_cnn", tmp_path_factory.mktemp("digits") / "digits.onnx", weights="DEFAULT").path


def test_predict_labels_digit_images_without_torch(digits: Path, tmp_path: Path) -> None:
    images, labels = load_heldout()
    paths = []
    for i in range(8):
        paths.append(tmp_path / f"digit{i}.png")
        Image.fromarray(images[i]).save(paths[-1])
    done = python_without(NOT_ON_DEPLOYMENT_HOST, "-m", "zoo", "predict", str(digits), *map(str, paths),
                          "--topk", "2", "--json")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no provider warnings on a machine without a GPU
    answer = json.loads(done.stdout)
    assert answer["providers"] == ["CPUExecutionProvider"]
    predicted = [r["top"][0]["label"] for r in answer["results"]]

    model, weights = zoo.get_model("digits_cnn", weights="DEFAULT").eval(), zoo.get_weight("digits_cnn.DEFAULT")
    with torch.inference_mode():
        expected = model(weights.transforms()(torch.from_numpy(images[:8]).unsqueeze(1))).argmax(1)
    assert predicted == [str(int(d)) for d in expected]
    assert sum(p == str(int(y)) for p, y in zip(predicted, labels[:8])) >= 7

    text = run_zoo("predict", str(digits), str(paths[0]), "--topk", "1").stdout.splitlines()
    assert text[0] == f"{digits}: classification on CPUExecutionProvider"
    assert text[1].startswith(f"{paths[0]}: {predicted[0]} ")


@pytest.mark.parametrize(("args", "message"), [
    (["predict", "{model}", "{model}"], "is not an image"),
    (["predict", "{model}", "missing.png"], "missing.png"),
    (["predict", "{model}", "{image}", "--provider", "npu"], "npu"),
    pytest.param(["predict", "{model}", "{image}", "--provider", "cuda"], "CUDAExecutionProvider needs an NVIDIA GPU",
                 marks=pytest.mark.skipif(cuda_device_count() > 0, reason="this machine has a GPU")),
    (["bench", "digits_cnn", "--batch", "1,x"], "batch sizes '1,x'"),
])
def test_mistakes_are_one_line_and_nonzero(digits: Path, tmp_path: Path, args: list[str], message: str) -> None:
    image = tmp_path / "digit.png"
    Image.fromarray(load_heldout()[0][0]).save(image)
    done = run_zoo(*[a.format(model=digits, image=image) for a in args], check=False, cwd=tmp_path)
    assert done.returncode == 1, done.stdout
    assert done.stderr.startswith("zoo: error: ") and message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_bench_times_every_engine_in_one_run(synced_catalog: str) -> None:
    done = run_zoo("bench", "digits_cnn", "--batch", "1,4", "--iterations", "5", "--warmup", "1", "--json")
    result = json.loads(done.stdout)
    engines = {(row["engine"], row["batch"]) for row in result["rows"]}
    assert engines == {(e, b) for e in ("eager", "onnxruntime", "int8") for b in (1, 4)}
    for row in result["rows"]:
        assert 0 < row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"]
    text = run_zoo("bench", "digits_cnn", "--iterations", "3", "--warmup", "0", "--no-int8").stdout
    assert "eager" in text and "onnxruntime" in text and "int8" not in text.split("engine", 1)[1]

"""The zoo-digits plugin: shipped weights, held-out split, catalog round trip, recipe.

Everything runs for real: the shipped files are hashed, the split is recomputed with
scikit-learn, the model is built through the catalog and the recipe is rerun.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import zoo
from zoo.modeling.weights import Weights, WeightsEnum, load_state_dict
from zoo_digits.data import HELDOUT, load_heldout, load_record
from zoo_digits.model import DigitsCNN_Weights, digits_cnn, evaluate
from zoo_digits.train import ACC_TOLERANCE

SHIPPED = DigitsCNN_Weights.SKLEARN_DIGITS_V1


def weights_path(member: WeightsEnum) -> Path:
    return Path(url2pathname(urlparse(member.url).path))


def test_shipped_weights_file_matches_enum() -> None:
    path = weights_path(SHIPPED)
    data = path.read_bytes()
    assert path.parent == HELDOUT.parent
    assert hashlib.sha256(data).hexdigest() == SHIPPED.value.sha256
    assert len(data) == SHIPPED.value.file_size
    assert path.name == f"digits_cnn-{SHIPPED.value.sha256[:8]}.pth"
    assert DigitsCNN_Weights.DEFAULT is SHIPPED


def test_heldout_split_is_load_digits_at_recorded_indices_and_unseen_in_training() -> None:
    record = load_record()
    images, labels = load_heldout()
    with np.load(HELDOUT) as data:
        indices = data["indices"]
    x, y = load_digits(return_X_y=True)
    assert images.dtype == np.uint8 and images.shape == (record["n_test"], 8, 8)
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(images, np.rint(x[indices] * 255 / 16).astype(np.uint8).reshape(-1, 8, 8))
    np.testing.assert_array_equal(labels, y[indices])

    train, test = train_test_split(np.arange(len(y)), test_size=0.25, random_state=record["seed"], stratify=y)
    np.testing.assert_array_equal(indices, test)
    assert len(train) == record["n_train"]
    assert not set(train.tolist()) & set(indices.tolist())


def test_builder_follows_torchvision_conventions() -> None:
    assert digits_cnn(num_classes=3)(torch.zeros(2, 1, 8, 8)).shape == (2, 3)
    with pytest.raises(ValueError, match="num_classes"):
        digits_cnn(weights=SHIPPED, num_classes=3)
    with pytest.raises(TypeError):
        digits_cnn(weights=torchvision.models.ResNet18_Weights.DEFAULT)


def test_catalog_model_reproduces_recorded_accuracy(synced_catalog: str) -> None:
    record = load_record()
    model = zoo.get_model("digits_cnn", weights="DEFAULT")
    weights = zoo.get_weight("digits_cnn.DEFAULT")
    assert weights is SHIPPED

    acc = evaluate(model, weights)

    assert round(acc * record["n_test"]) == record["correct"]
    assert acc == record["acc"]
    assert acc >= 0.97


def test_describe_shows_hash_size_and_metric(synced_catalog: str) -> None:
    record = load_record()
    described = zoo.describe("digits_cnn")
    (entry,) = described["weights"]
    assert described["default_weights"] == "DigitsCNN_Weights.SKLEARN_DIGITS_V1"
    assert described["plugin"]["distribution"] == "zoo-digits"
    assert described["num_params"] == record["num_params"]
    assert entry["sha256"] == record["sha256"]
    assert entry["file_size"] == record["file_size"]
    assert entry["meta"]["_metrics"] == {"sklearn-digits-heldout": {"acc@1": round(record["acc"] * 100, 3)}}
    assert entry["transforms"]["mean"] == [record["mean"]]


def test_transforms_accept_a_pil_digit_like_a_batch(synced_catalog: str) -> None:
    images, _ = load_heldout()
    preprocess = zoo.get_weight("digits_cnn.DEFAULT").transforms()
    pil = Image.fromarray(images[7])
    assert pil.mode == "L"

    single = preprocess(pil)
    batched = preprocess(torch.from_numpy(images[:8]).unsqueeze(1))

    assert single.shape == (1, 8, 8) and single.dtype == torch.float32
    assert torch.equal(single, batched[7])


def test_tampered_weights_are_refused_before_loading(tmp_path: Path) -> None:
    data = bytearray(weights_path(SHIPPED).read_bytes())
    data[len(data) // 2] ^= 0xFF
    tampered = tmp_path / "digits_cnn-tampered.pth"
    tampered.write_bytes(data)
    actual = hashlib.sha256(data).hexdigest()

    class Tampered(WeightsEnum):
        V1 = Weights(url=tampered.as_uri(), transforms=None, meta={},
                     sha256=SHIPPED.value.sha256, file_size=len(data))

    with pytest.raises(zoo.WeightsError) as raised:
        load_state_dict(Tampered.V1)
    message = str(raised.value)
    assert str(tampered) in message
    assert SHIPPED.value.sha256 in message
    assert actual in message


def test_importing_the_plugin_and_its_data_needs_no_torch() -> None:
    code = "import sys, zoo_digits, zoo_digits.data; zoo_digits.data.load_heldout(); print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def rerun_recipe(out: Path, *extra: str) -> dict:
    done = subprocess.run([sys.executable, "-m", "zoo_digits.train", "--out", str(out), *extra],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return json.loads((out / "digits_cnn.json").read_text())


def test_recipe_rerun_is_bit_identical_on_the_same_machine(tmp_path: Path) -> None:
    # a short run: identity of the whole training loop does not need all 40 epochs
    first = rerun_recipe(tmp_path / "first", "--epochs", "3")
    second = rerun_recipe(tmp_path / "second", "--epochs", "3")

    assert first["sha256"] == second["sha256"]
    assert (tmp_path / "first" / first["weights_file"]).read_bytes() == \
        (tmp_path / "second" / second["weights_file"]).read_bytes()
    assert first["acc"] == second["acc"]


def test_recipe_rerun_reaches_the_shipped_accuracy_on_any_machine(tmp_path: Path) -> None:
    rerun = rerun_recipe(tmp_path)
    shipped = load_record()

    # what does not depend on the CPU's kernels is identical: split, normalisation, architecture
    for key in ("n_train", "n_test", "mean", "std", "num_params", "file_size", "epochs"):
        assert rerun[key] == shipped[key], key
    with np.load(tmp_path / HELDOUT.name) as data, np.load(HELDOUT) as reference:
        np.testing.assert_array_equal(data["indices"], reference["indices"])
    # the trained weights may differ by CPU; their accuracy stays within the stated tolerance
    assert abs(rerun["acc"] - shipped["acc"]) <= ACC_TOLERANCE
    saved = (tmp_path / rerun["weights_file"]).read_bytes()
    assert hashlib.sha256(saved).hexdigest() == rerun["sha256"]

"""``zoo eval`` and `zoo.evaluate`: a classifier measured on a folder of class folders, as a PyTorch model of the
catalog and as its ONNX export on the runtime (without torch), with the same numbers.

The data is scikit-learn's digits: the held-out quarter that the shipped `digits_cnn` weights never saw
(`zoo_digits.data`), 20 images per class written as 8 x 8 grey PNG files, the size and grey levels the
weights' own preprocessing takes (resize and crop at 8, one channel, their mean and std).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import zoo
from zoo.datasets import image_data
from zoo.errors import UsageError
from zoo.runtime import Predictor
from zoo.runtime.evaluation import OTHER, draw_confusion, evaluate_logits, export_logits
from zoo_digits.data import load_heldout
from zoo.cli import main
from conftest import NOT_ON_DEPLOYMENT_HOST, python_without

PER_CLASS = 20
DIGITS_FILE = Path(__file__).resolve().parents[1] / "plugins" / "zoo-digits" / "zoo_digits" / "digits_cnn-fb1204b6.pth"


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """DIGITS/<digit>/<index>.png: the first `PER_CLASS` held-out images of each digit."""
    root = tmp_path_factory.mktemp("data") / "digits"
    images, labels = load_heldout()
    for digit in range(10):
        (root / str(digit)).mkdir(parents=True)
        for index in np.flatnonzero(labels == digit)[:PER_CLASS]:
            Image.fromarray(images[index]).save(root / str(digit) / f"{index}.png")
    return root


@pytest.fixture(scope="module")
def export(synced_catalog: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return zoo.export_onnx("digits_cnn", tmp_path_factory.mktemp("export") / "digits.onnx", weights="DEFAULT").path


@pytest.fixture(scope="module")
def measured(synced_catalog: str, digits: Path) -> zoo.Evaluation:
    """`digits_cnn` with its DEFAULT weights, in PyTorch, on every image of the folder."""
    return zoo.evaluate("digits_cnn", digits, split="all")


def plugin_logits(files: list[Path]) -> np.ndarray:
    """`digits_cnn`'s logits on the grey 8 x 8 `files`, as the plugin's own evaluation feeds them: a uint8
    N x 1 x 8 x 8 batch through ``weights.transforms()``."""
    weights = zoo.get_weight("digits_cnn.DEFAULT")
    model = zoo.get_model("digits_cnn", weights="DEFAULT").eval()
    pixels = torch.stack([torch.from_numpy(np.array(Image.open(f)))[None] for f in files])
    with torch.inference_mode():
        return model(weights.transforms()(pixels)).numpy()


def test_metrics_of_a_small_case_worked_by_hand() -> None:
    categories = ["ant", "bee", "cat", "dog", "eel", "fox"]  # the model's head
    classes = ["bee", "cat", "dog"]  # the data's, scored on the outputs of those names
    logits = np.array([
        [0, 5, 1, 0, 0, 0],  # bee: right
        [5, 4, 0, 0, 0, 0],  # bee: taken for ant, a category the data lacks; bee second (top-5)
        [1, 2, -9, 9, 4, 5],  # cat: taken for dog; cat last of the six (not top-5)
        [0, 0, 0, 7, 7, 0],  # dog: tied with eel, the lower output first: right
        [0, 0, 7, 7, 0, 0],  # dog: tied with cat, which comes first: taken for cat
    ], dtype=np.float32)
    result = evaluate_logits(logits, [0, 0, 1, 2, 2], classes, categories=categories)
    assert result.columns == ("bee", "cat", "dog", OTHER)
    assert result.confusion == ((1, 0, 0, 1), (0, 0, 1, 0), (0, 1, 1, 0))
    assert (result.images, result.correct, result.acc1, result.acc5) == (5, 2, 40.0, 80.0)
    assert result.per_class == (50.0, 0.0, 50.0)
    assert (result.matched_by, result.categories) == ("name", 6)
    assert result.to_json()["per_class"]["dog"] == {"images": 2, "correct": 1, "acc@1": 50.0}


def test_a_model_without_categories_is_matched_by_index_only_when_the_counts_agree() -> None:
    logits = np.array([[2.0, 1.0, 0.0], [0.0, 1.0, 2.0], [0.0, 3.0, 1.0]], dtype=np.float32)
    result = evaluate_logits(logits, [0, 1, 1], ["x", "y", "z"])
    assert result.matched_by == "index" and result.columns == ("x", "y", "z")
    assert result.confusion == ((1, 0, 0), (0, 1, 1), (0, 0, 0))
    assert result.per_class == (100.0, 50.0, None)  # no image of z
    assert result.acc5 == 100.0  # three outputs: every class is in the top 5
    with pytest.raises(UsageError, match="names no categories and has 3 outputs; the data has 2 classes"):
        evaluate_logits(logits, [0, 1, 1], ["x", "y"])


def test_digits_model_on_its_held_out_digits(measured: zoo.Evaluation, digits: Path) -> None:
    data = image_data(digits)
    assert measured.images == 10 * PER_CLASS and measured.split == "all"
    assert measured.manifest_sha256 == data.manifest_sha256 and measured.classes == data.classes
    assert measured.evaluated["weights"] == "DigitsCNN_Weights.SKLEARN_DIGITS_V1" and measured.matched_by == "name"
    # measured at 99.1% on the whole held-out quarter (plugin record); chance is 10%
    assert measured.acc1 >= 90 and measured.acc5 >= measured.acc1
    assert [sum(row) for row in measured.confusion] == [PER_CLASS] * 10
    assert all(acc >= 75 for acc in measured.per_class)
    held_out = zoo.evaluate("digits_cnn", digits)  # the default: the seeded validation fifth
    assert held_out.split == "val" and held_out.images == len(data.val) == 10 * PER_CLASS // 5


def test_model_is_measured_on_the_weights_own_preprocessing(measured: zoo.Evaluation, digits: Path) -> None:
    """The same numbers as the plugin's own torchvision transforms on the same files give."""
    data = image_data(digits)
    samples = data.train + data.val
    expected = evaluate_logits(plugin_logits([data.file(s) for s in samples]), [s.label for s in samples],
                               data.classes, categories=zoo.get_weight("digits_cnn.DEFAULT").meta["categories"])
    assert measured.confusion == expected.confusion and measured.acc5 == expected.acc5


def test_export_measures_as_the_model_does_also_without_torch(
        measured: zoo.Evaluation, export: Path, digits: Path, tmp_path: Path) -> None:
    data = image_data(digits)
    files = [data.file(s) for s in data.train + data.val]
    reference = plugin_logits(files)
    onnx = export_logits(Predictor(export), files)
    # the export's own tolerance (README "Exporting to ONNX"): |onnx - torch| <= atol * scale + rtol * |torch|
    check = zoo.read_metadata(export)["verification"][0]
    bound = check["atol"] * max(1.0, np.abs(reference).max()) + check["rtol"] * np.abs(reference)
    assert (np.abs(onnx - reference) <= bound).all()
    # no image is a near-tie at that tolerance, so the metrics below must be equal, not merely close: the top two
    # logits (the predicted class) and the true class's logit and every other (its rank: acc@1, acc@5) are further
    # apart than the two runtimes can move them
    top2 = np.sort(reference, axis=1)[:, -2:]
    assert (top2[:, 1] - top2[:, 0] > 2 * bound.max()).all()
    labels = np.array([s.label for s in data.train + data.val])
    own = reference[np.arange(len(labels)), labels]
    others = np.abs(reference - own[:, None])[np.arange(10)[None, :] != labels[:, None]]
    assert (others > 2 * bound.max()).all()

    drawing = tmp_path / "confusion.png"
    done = python_without(NOT_ON_DEPLOYMENT_HOST, "-m", "zoo", "eval", str(export), str(digits), "--split", "all",
                          "--draw", str(drawing), "--json")
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["evaluated"]["kind"] == "export" and answer["evaluated"]["weights"] == measured.evaluated["weights"]
    assert {k: v for k, v in answer.items() if k not in ("evaluated", "drawing")} == \
        {k: v for k, v in measured.to_json().items() if k != "evaluated"}

    with Image.open(drawing) as picture:
        assert picture.format == "PNG" and picture.mode == "RGB"
        assert 200 <= picture.width <= 1500 and 200 <= picture.height <= 1500
        assert len(picture.getcolors(1 << 16)) > 10  # cells shaded by count, text: not a blank canvas
    # drawn again: zoo's own drawing is replaced; a picture zoo did not draw only with --force
    again = python_without(NOT_ON_DEPLOYMENT_HOST, "-m", "zoo", "eval", str(export), str(digits),
                           "--draw", str(drawing))
    assert again.returncode == 0, again.stderr
    Image.new("RGB", (4, 4)).save(drawing)
    refused = python_without(NOT_ON_DEPLOYMENT_HOST, "-m", "zoo", "eval", str(export), str(digits),
                             "--draw", str(drawing))
    assert refused.returncode == 1 and len(refused.stderr.splitlines()) == 1
    assert "is not a file zoo wrote; pass --force" in refused.stderr
    with Image.open(drawing) as picture:
        assert picture.size == (4, 4)


def test_a_label_outside_the_head_is_one_line(synced_catalog: str, export: Path, digits: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    for name, digit in (("0", "0"), ("1", "1"), ("seven", "7")):
        (data / name).mkdir(parents=True)
        for image in sorted((digits / digit).iterdir())[:3]:
            (data / name / image.name).write_bytes(image.read_bytes())
    status = main(["eval", "digits_cnn", str(data)])
    on_model = subprocess.CompletedProcess([], status, *capsys.readouterr())
    on_export = python_without(NOT_ON_DEPLOYMENT_HOST, "-m", "zoo", "eval", str(export), str(data))
    for done in (on_model, on_export):
        assert done.returncode == 1 and done.stdout == "" and len(done.stderr.splitlines()) == 1, done.stderr
        assert done.stderr.startswith("zoo: error: data class 'seven' is not one of the 10 categories of ")
        assert "(a label outside its head)" in done.stderr


def test_published_weights_are_matched_to_the_data_by_category_name(
        digits: Path, use_catalog, sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Weights published with a 3-class head whose outputs name the digits 2, 0, 1 (in that order) score the
    folders 0, 1 and 2 as well as the shipped head does: by name, not by position."""
    monkeypatch.setenv("ZOO_ARTIFACTS", str(tmp_path / "artifacts"))
    use_catalog(sqlite_url, "digits")
    state = torch.load(DIGITS_FILE, weights_only=True)
    for name in ("classifier.weight", "classifier.bias"):
        state[name] = state[name][[2, 0, 1]].clone()
    torch.save(state, tmp_path / "201.pt")
    zoo.publish_weights("digits_cnn", tmp_path / "201.pt", name="acme/digits-201", categories=["2", "0", "1"],
                        from_weights="digits_cnn.DEFAULT")  # the preprocessing is inherited
    data = tmp_path / "data"
    for digit in "012":
        (data / digit).mkdir(parents=True)
        for image in sorted((digits / digit).iterdir()):
            (data / digit / image.name).write_bytes(image.read_bytes())
    result = zoo.evaluate("acme/digits-201", data, split="all")  # published weights as the name
    assert result.evaluated["model"] == "digits_cnn" and result.evaluated["weights"] == "acme/digits-201:1"
    assert (result.matched_by, result.categories, result.columns) == ("name", 3, ("0", "1", "2"))
    assert result.acc1 >= 90 and result.acc5 == 100.0


def test_bad_requests_are_one_line(export: Path, digits: Path) -> None:
    with pytest.raises(UsageError, match="an export carries its weights"):
        zoo.evaluate(export, digits, weights="DEFAULT")
    with pytest.raises(UsageError, match="split must be one of val, all, train"):
        zoo.evaluate(export, digits, split="test")
    with pytest.raises(UsageError, match="measures classification models; raft_small's task is optical_flow"):
        zoo.evaluate("raft_small", digits)


def test_a_confusion_matrix_of_a_hundred_classes_is_drawn_to_scale() -> None:
    rng = np.random.default_rng(0)
    classes = [f"class {i} of a long-winded data set" for i in range(100)]
    labels = rng.integers(0, 100, 2000)
    logits = rng.normal(size=(2000, 100)).astype(np.float32)
    logits[np.arange(2000), labels] += 3
    picture = draw_confusion(evaluate_logits(logits, labels, classes))
    assert 100 * 16 < picture.width < 2500 and 100 * 16 < picture.height < 2500

"""``zoo finetune`` / `zoo.finetune` on image folders made from data that ships in packages: scikit-learn's
digits (upscaled PNGs, classes named by words so that the weights' own head does not fit them) and
scikit-image's photographs (crops and flips of three photographs as three classes).

``--nproc 2`` trains on two CPU processes (gloo) through torchrun, and is compared with one process.

Training runs single-threaded (here and in the child processes): on a loaded machine with two cores,
two torch threads make these small models several times slower, and one thread makes a run repeatable.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import zoo
from conftest import run_zoo
from zoo.datasets import image_data

WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
PHOTOS = ("astronaut", "chelsea", "coffee")
#: The digits recipe of these tests: a new 10-class head on the pretrained backbone; no flips (digits are not
#: symmetric). Its best validation acc@1 was 85-100% (34-40 of 40 images) with seeds 0 to 5 on this machine.
DIGITS_RECIPE = {"epochs": 4, "batch_size": 16, "lr": 1e-2, "flip": False, "quiet": True}
#: The floor checked: well below what the recipe reaches, far above chance (10%).
DIGITS_FLOOR = 75.0


@pytest.fixture(autouse=True)
def one_thread(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # for the command-line runs in child processes
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """10 class folders (digit names as words) of 20 of scikit-learn's 8x8 digits each, upscaled 4x as PNGs (for
    the digits weights' split as 8x8 PNGs, `zoo_digits.data.write_image_folder`)."""
    from zoo_digits.data import digits_uint8

    root = tmp_path_factory.mktemp("data") / "digits"
    images, labels = digits_uint8()
    for digit, word in enumerate(WORDS):
        (root / word).mkdir(parents=True)
        for index in np.flatnonzero(labels == digit)[:20]:
            Image.fromarray(images[index]).resize((32, 32), Image.Resampling.NEAREST).save(root / word / f"{index}.png")
    return root


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 class folders of 12 small (48x48) crops of scikit-image's photographs, every other one flipped; and in
    one folder a file named .png that is not an image."""
    from skimage import data as skdata

    root = tmp_path_factory.mktemp("data") / "photos"
    rng = np.random.default_rng(0)
    for name in PHOTOS:
        photo = Image.fromarray(getattr(skdata, name)())
        (root / name).mkdir(parents=True)
        for i in range(12):
            side = int(min(photo.size) * rng.uniform(0.5, 0.9))
            x, y = (int(rng.integers(0, limit - side + 1)) for limit in photo.size)
            crop = photo.crop((x, y, x + side, y + side)).resize((48, 48), Image.Resampling.BILINEAR)
            (crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if i % 2 else crop).save(root / name / f"{i}.png")
    (root / "coffee" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n but then not an image")
    return root


def test_digits_cnn_learns_new_classes_on_its_pretrained_backbone(synced_catalog: str, digits: Path,
                                                                  tmp_path: Path) -> None:
    result = zoo.finetune("digits_cnn", digits, output=tmp_path / "run", **DIGITS_RECIPE)
    assert result.weights == "DigitsCNN_Weights.SKLEARN_DIGITS_V1"
    assert len(result.epochs) == 4 and result.best.acc1 >= DIGITS_FLOOR
    assert result.best.acc1 == max(e.acc1 for e in result.epochs)
    record = json.loads(result.run_path.read_text())
    assert record["head"] == "a new head of 10 classes" and record["status"] == "finished"
    assert record["base_weights"] == {"name": "DigitsCNN_Weights.SKLEARN_DIGITS_V1",
                                      "sha256": zoo.describe("digits_cnn")["weights"][0]["sha256"]}

    # best.safetensors holds the best epoch's model: measured again here, through the weights' own preset
    model = zoo.get_model("digits_cnn", num_classes=10).eval()
    model.load_state_dict(load_file(result.best_path))
    preset = zoo.get_weight("digits_cnn.DEFAULT").transforms()
    data = image_data(digits)  # the split finetune made: the default fraction and seed
    with torch.no_grad():
        inputs = torch.stack([preset(Image.open(data.file(s))) for s in data.val])
        predicted = model(inputs).argmax(dim=1)
    correct = int((predicted == torch.tensor([s.label for s in data.val])).sum())
    assert 100 * correct / len(data.val) == pytest.approx(result.best.acc1)


def test_frozen_modules_stay_pretrained_and_the_head_gets_its_own_rate(synced_catalog: str, digits: Path,
                                                                       tmp_path: Path) -> None:
    result = zoo.finetune("digits_cnn", digits, epochs=1, batch_size=32, optimizer="sgd", lr=1e-3, head_lr=5e-2,
                          freeze_until="features.5", augment=False, output=tmp_path / "run", quiet=True)
    record = json.loads(result.run_path.read_text())
    # two conv blocks and their BatchNorms: 16*9 + 2*16 + 32*16*9 + 2*32 parameters
    assert record["frozen"].startswith("4,848 of ")
    pretrained = zoo.get_model("digits_cnn", weights="DEFAULT").state_dict()
    tuned = load_file(result.best_path)
    assert torch.equal(tuned["features.0.weight"], pretrained["features.0.weight"])  # frozen
    assert torch.equal(tuned["features.4.running_mean"], pretrained["features.4.running_mean"])  # FrozenBatchNorm
    assert not torch.equal(tuned["features.7.weight"], pretrained["features.7.weight"])  # trained
    groups = torch.load(result.checkpoint_path, weights_only=True)["optimizer"]["param_groups"]
    rates = {name: group["initial_lr"] for group in groups for name in group["param_names"]}
    assert rates["classifier.weight"] == rates["classifier.bias"] == 5e-2
    assert rates["features.7.weight"] == 1e-3 and "features.0.weight" not in rates
    assert {group["momentum"] for group in groups} == {0.9} and all(g["weight_decay"] in (0, 1e-4) for g in groups)


def test_a_model_without_weights_trains_and_writes_its_files_and_record(synced_catalog: str, photos: Path,
                                                                        tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = zoo.finetune("mobilenet_v3_small", photos, weights=None, epochs=1, batch_size=8, output=out,
                          quiet=True)
    assert result.weights is None and result.output == out and len(result.epochs) == 1

    record = json.loads((out / "run.json").read_text())
    recipe = record["recipe"]
    assert (recipe["model"], recipe["data"], recipe["weights"], recipe["epochs"], recipe["batch_size"]) == (
        "mobilenet_v3_small", str(photos), None, 1, 8)
    assert (recipe["seed"], recipe["optimizer"], recipe["weight_decay"], recipe["output"]) == (0, "adamw", 0.05,
                                                                                                str(out))
    assert record["model"] == "torchvision/mobilenet_v3_small"
    assert record["base_weights"] == {"name": None, "sha256": None}
    # no weights: the preprocessing of the model's default weights, as zoo export takes it
    assert record["preprocessing"] == zoo.describe("mobilenet_v3_small")["weights"][0]["transforms"]
    data = record["data"]
    assert data["classes"] == list(PHOTOS) and data["skipped"] == 1 and data["train"] + data["val"] == 36
    assert data["manifest_sha256"] == image_data(photos).manifest_sha256
    assert [s["path"] for s in record["skipped_images"]] == ["coffee/broken.png"]
    assert record["steps"] == data["train"] // 8 == result.steps  # whole batches of 8 only
    assert [e["epoch"] for e in record["epochs"]] == [1] and record["best"]["epoch"] == 1
    assert set(record["epochs"][0]) == {"epoch", "train_loss", "val_loss", "acc@1", "acc@5", "images_per_s", "lr",
                                        "seconds"}
    assert record["versions"]["torch"] == torch.__version__ and record["device"] == "cpu"

    tensors = load_file(out / "best.safetensors")
    expected = zoo.get_model("mobilenet_v3_small", num_classes=3).state_dict()
    assert {k: list(v.shape) for k, v in tensors.items()} == {k: list(v.shape) for k, v in expected.items()}
    checkpoint = torch.load(out / "checkpoint.pt", weights_only=True)  # tensors and plain data only
    assert (checkpoint["epoch"], checkpoint["step"]) == (1, result.steps)

    # the folder holds a run: neither overwritten nor resumed with another recipe
    with pytest.raises(zoo.UsageError, match="holds a fine-tuning run already; pass --resume"):
        zoo.finetune("mobilenet_v3_small", photos, weights=None, epochs=1, batch_size=8, output=out, quiet=True)
    with pytest.raises(zoo.UsageError, match=r"with another recipe \(epochs: 2 vs 1\)"):
        zoo.finetune("mobilenet_v3_small", photos, weights=None, epochs=2, batch_size=8, output=out, quiet=True,
                     resume=True)


def test_publish_once_with_the_runs_metrics_categories_and_preprocessing(
        sqlite_url: str, use_catalog, digits: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_catalog(sqlite_url, "digits")
    monkeypatch.setenv("ZOO_ARTIFACTS", str(tmp_path / "artifacts"))
    out = tmp_path / "run"
    command = ["finetune", "digits_cnn", str(digits), "--epochs", "2", "--batch-size", "16", "--lr", "0.01",
               "--no-flip", "--output", str(out), "--publish", "acme/digit-words"]
    result = json.loads(run_zoo(*command, "--json").stdout)
    assert result["published"] == "acme/digit-words:1"
    best = result["best"]

    [published] = zoo.list_published("acme/digit-words")
    assert published.metrics == {"digits:acc@1": best["acc@1"], "digits:acc@5": best["acc@5"]}
    assert published.categories == sorted(WORDS)
    assert published.preprocessing == zoo.describe("digits_cnn")["weights"][0]["transforms"]
    assert published.from_weights == "DigitsCNN_Weights.SKLEARN_DIGITS_V1"
    assert published.sha256 == hashlib.sha256((out / "best.safetensors").read_bytes()).hexdigest()
    model = zoo.get_model("digits_cnn", weights="acme/digit-words")
    assert model.classifier.out_features == 10
    assert torch.equal(model.classifier.weight, load_file(out / "best.safetensors")["classifier.weight"])
    assert json.loads((out / "run.json").read_text())["published"] == "acme/digit-words:1"

    # the finished run resumed: nothing to train, nothing published again
    again = zoo.finetune("digits_cnn", digits, epochs=2, batch_size=16, lr=0.01, flip=False, output=out,
                         publish="acme/digit-words", resume=True, quiet=True)
    assert again.published == "acme/digit-words:1" and again.best.to_json() == best
    assert [p.version for p in zoo.list_published("acme/digit-words")] == [1]

    # --recipe-from: the published recipe again, on other data (the photographs' folder), one option overridden
    other = tmp_path / "photos-digits"
    for word in ("one", "seven"):
        (other / word).mkdir(parents=True)
        for image in sorted((digits / word).iterdir())[:6]:
            (other / word / image.name).write_bytes(image.read_bytes())
    rerun = json.loads(run_zoo("finetune", "--recipe-from", "acme/digit-words", str(other), "--epochs", "1",
                               "-o", str(tmp_path / "again"), "--quiet", "--json").stdout)
    first, second = (json.loads(Path(path).read_text()) for path in (out / "run.json", rerun["files"]["run"]))
    assert second["recipe"]["recipe_from"] == "acme/digit-words:1" and second["recipe"]["epochs"] == 1
    assert second["recipe"]["data"] == str(other) and second["recipe"]["publish"] is None
    assert second["base_weights"] == first["base_weights"] and second["model"] == first["model"]
    same = ("batch_size", "lr", "optimizer", "weight_decay", "flip", "seed", "val_fraction", "min_scale")
    assert {k: second["recipe"][k] for k in same} == {k: first["recipe"][k] for k in same}
    assert second["data"]["classes"] == ["one", "seven"] and second["head"] == "a new head of 2 classes"

    def refused(*args: str) -> str:
        done = run_zoo("finetune", *args, "-o", str(tmp_path / "never"), check=False)
        assert done.returncode == 1 and len(done.stderr.splitlines()) == 1, done.stderr
        return done.stderr

    assert "give DATA alone" in refused("--recipe-from", "acme/digit-words", "digits_cnn", str(other))
    assert "give MODEL and DATA" in refused("digits_cnn")
    assert "unknown weights 'acme/nothing'" in refused("--recipe-from", "acme/nothing", str(other))
    zoo.publish_weights("digits_cnn", out / "best.safetensors", name="acme/by-hand", categories=sorted(WORDS))
    assert "has no run record" in refused("--recipe-from", "acme/by-hand:1", str(other))
    assert not (tmp_path / "never").exists()


def test_resume_after_a_kill_mid_epoch_ends_with_the_steps_of_an_unbroken_run(synced_catalog: str, digits: Path,
                                                                               tmp_path: Path) -> None:
    out = tmp_path / "killed"
    arguments = ["finetune", "digits_cnn", str(digits), "--epochs", "3", "--batch-size", "1", "--lr", "0.003",
                 "--no-flip", "--output", str(out)]
    with (tmp_path / "stderr").open("w+") as errors, subprocess.Popen(
            [sys.executable, "-m", "zoo", *arguments], stdout=subprocess.PIPE, stderr=errors, text=True) as child:
        try:
            for line in child.stdout:  # the first epoch's line comes once its checkpoint is written
                if line.startswith("epoch 1/3"):
                    break
        finally:
            child.kill()  # SIGKILL, during the second epoch (160 steps of one image each)
        child.wait()
        errors.seek(0)
        assert child.returncode == -signal.SIGKILL, errors.read()
    killed_after = torch.load(out / "checkpoint.pt", weights_only=True)["epoch"]
    assert killed_after < 3 and json.loads((out / "run.json").read_text())["status"] == "running"

    run_zoo(*arguments, "--resume", "--quiet")
    resumed = json.loads((out / "run.json").read_text())
    unbroken = zoo.finetune("digits_cnn", digits, epochs=3, batch_size=1, lr=0.003, flip=False,
                            output=tmp_path / "unbroken", quiet=True)
    assert resumed["resumed_after"] == [killed_after] and resumed["status"] == "finished"
    assert resumed["steps"] == unbroken.steps == 3 * 160  # 160 training images, batches of one
    # one thread, the same seeds, every state restored: the resumed run is the unbroken one
    assert resumed["epochs"] == [{**e.to_json(), **_timings(resumed["epochs"][e.epoch - 1])} for e in unbroken.epochs]
    assert not [p for p in out.iterdir() if p.name.endswith(".part")]


def _timings(epoch: dict) -> dict:
    """The fields of an epoch's record that are measured in time, which no two runs share."""
    return {"images_per_s": epoch["images_per_s"], "seconds": epoch["seconds"]}


def test_bad_data_and_arguments_are_one_line_each(synced_catalog: str, tmp_path: Path) -> None:
    def refused(data: Path, **options) -> str:
        with pytest.raises(zoo.UsageError) as caught:
            zoo.finetune("digits_cnn", data, output=tmp_path / "never", quiet=True, **options)
        assert len(str(caught.value).splitlines()) == 1
        return str(caught.value)

    assert "does not exist" in refused(tmp_path / "missing")
    (tmp_path / "none").mkdir()
    (tmp_path / "none" / "notes.txt").write_text("no images here")
    assert "has no class folders" in refused(tmp_path / "none")
    one = tmp_path / "one" / "cat"
    one.mkdir(parents=True)
    Image.new("L", (8, 8)).save(one / "a.png")
    Image.new("L", (8, 8)).save(one / "b.png")
    assert "need at least 2 classes; found only 'cat'" in refused(tmp_path / "one")
    (tmp_path / "one" / "dog").mkdir()
    assert "class folder" in refused(tmp_path / "one") and "has no images" in refused(tmp_path / "one")
    Image.new("L", (8, 8)).save(tmp_path / "one" / "dog" / "c.png")
    Image.new("L", (8, 8)).save(tmp_path / "one" / "dog" / "d.png")
    assert "epochs must be a whole number from 1" in refused(tmp_path / "one", epochs=0)
    assert "published weights name 'Acme Digits'" in refused(tmp_path / "one", publish="Acme Digits")
    assert "give one of them" in refused(tmp_path / "one", resume=True, force=True)
    assert "nothing to resume" in refused(tmp_path / "one", resume=True)
    assert "its options are the fields" in refused(tmp_path / "one", epoch=3)
    assert not (tmp_path / "never" / "run.json").exists()

    done = run_zoo("finetune", "digits_cnn", str(tmp_path / "missing"), check=False)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith("zoo: error: data ") and len(done.stderr.splitlines()) == 1


#: ``--nproc 2`` with batches of 8 takes the same images per step as one process with batches of 16: the seeded
#: order is dealt out in turns (DistributedSampler), so step k's 16 images are the same, and the gradients are
#: averaged. What differs is the BatchNorm statistics (of 8 images per process, not 16) and the order floating-point
#: sums are reduced in: the runs are close, not equal. Their final validation acc@1 (after 8 epochs) may differ by
#: this many percentage points (4 of the 40 validation images); with seeds 0 to 3 they differed by 0 to 5 on this
#: machine (after 3 epochs, still far from converged, by up to 12.5).
DDP_TOLERANCE = 10.0


def test_two_processes_train_as_one_publish_once_and_resume_after_a_kill(
        sqlite_url: str, use_catalog, digits: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_catalog(sqlite_url, "digits")
    monkeypatch.setenv("ZOO_ARTIFACTS", str(tmp_path / "artifacts"))
    one = zoo.finetune("digits_cnn", digits, epochs=8, batch_size=16, lr=0.01, flip=False, quiet=True,
                       output=tmp_path / "one")

    out = tmp_path / "two"
    arguments = ["finetune", "digits_cnn", str(digits), "--nproc", "2", "--batch-size", "8", "--epochs", "8",
                 "--lr", "0.01", "--no-flip", "--output", str(out), "--publish", "acme/digits-ddp"]
    with (tmp_path / "stderr").open("w+") as errors, subprocess.Popen(
            [sys.executable, "-m", "zoo", *arguments], stdout=subprocess.PIPE, stderr=errors, text=True,
            start_new_session=True) as child:
        try:
            for line in child.stdout:  # rank 0's line of the first epoch comes once its checkpoint is written
                if line.startswith("epoch 1/8"):
                    break
        finally:
            os.killpg(child.pid, signal.SIGKILL)  # the command alone: torchrun and its processes die with it
        child.wait()
        errors.seek(0)
        assert child.returncode == -signal.SIGKILL, errors.read()
    killed_after = torch.load(out / "checkpoint.pt", weights_only=True)["epoch"]
    assert killed_after < 8 and json.loads((out / "run.json").read_text())["status"] == "running"

    # resumed through the API: the same launch, from this process
    options = {"epochs": 8, "lr": 0.01, "flip": False, "quiet": True, "nproc": 2, "batch_size": 8, "output": out,
               "publish": "acme/digits-ddp"}
    result = zoo.finetune("digits_cnn", digits, resume=True, **options)
    record = json.loads((out / "run.json").read_text())
    assert record["resumed_after"] == [killed_after] and record["status"] == "finished"
    assert (record["world_size"], record["backend"], record["images_per_step"]) == (2, "gloo", 16)
    assert record["recipe"]["nproc"] == 2 and record["recipe"]["batch_size"] == 8
    # 160 training images, 80 per process in batches of 8: the steps of one process in batches of 16
    assert result.steps == record["steps"] == one.steps == 8 * 10
    assert [e.epoch for e in result.epochs] == list(range(1, 9))
    assert abs(result.epochs[-1].acc1 - one.epochs[-1].acc1) <= DDP_TOLERANCE
    assert abs(result.best.acc1 - one.best.acc1) <= DDP_TOLERANCE

    # rank 0 alone wrote and published: one set of files, one version
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in (tmp_path / "one").iterdir())
    assert [p.version for p in zoo.list_published("acme/digits-ddp")] == [1]
    assert result.published == record["published"] == "acme/digits-ddp:1"

    # a process's error reaches the caller in one line, of its own kind: here rank 0's, the folder holds a run
    with pytest.raises(zoo.UsageError, match="holds a fine-tuning run already") as caught:
        zoo.finetune("digits_cnn", digits, **options)
    assert len(str(caught.value).splitlines()) == 1


def test_bad_process_counts_and_rendezvous_are_one_line_each(digits: Path, tmp_path: Path) -> None:
    def refused(**options) -> str:
        with pytest.raises(zoo.UsageError) as caught:
            zoo.finetune("digits_cnn", digits, output=tmp_path / "never", quiet=True, **options)
        assert len(str(caught.value).splitlines()) == 1
        return str(caught.value)

    assert refused(nproc=0) == "nproc must be a whole number from 1 to 1024, not 0"
    assert "nproc must be a whole number" in refused(nproc=1.5)
    assert "nproc must be a whole number" in refused(nproc=True)
    assert "give the address the machines meet at" in refused(nproc=2, nnodes=2)
    assert "node_rank must be a whole number from 0 to 1" in refused(nnodes=2, node_rank=2, master_addr="10.0.0.1")
    assert "rdzv_endpoint must be HOST:PORT" in refused(nproc=2, rdzv_endpoint="10.0.0.1")
    assert "not both" in refused(nnodes=2, rdzv_endpoint="10.0.0.1:29400", master_addr="10.0.0.1")
    assert "names one GPU" in refused(nproc=2, device="cuda:1")
    assert not (tmp_path / "never").exists()

    for value, expected in (("0", "nproc must be a whole number from 1"), ("two", "argument --nproc: invalid int")):
        done = run_zoo("finetune", "digits_cnn", str(digits), "--nproc", value, check=False)
        assert done.returncode != 0 and done.stdout == ""
        assert expected in done.stderr.splitlines()[-1]


def test_warm_up_then_cosine_and_the_preprocessing_of_a_model_without_any() -> None:
    from zoo.training.finetune import warmup_cosine
    from zoo.training.images import default_spec

    factor = warmup_cosine(4, 12)  # 4 warm-up steps of 12
    assert [factor(step) for step in (0, 1, 3, 4, 12)] == [0.25, 0.5, 1.0, 1.0, 0.0]
    assert factor(8) == pytest.approx(0.5)  # half-way through the cosine
    spec = default_spec((3, 64, 48), "tiny")  # torchvision's 224-of-256 ratio, at the catalog's input size
    assert (spec.resize_size, spec.crop_size, spec.mean, spec.channel_order) == ((55,), (64, 48),
                                                                                 (0.485, 0.456, 0.406), "RGB")
    assert default_spec((1, 28, 28), "grey").channel_order == "L"
    with pytest.raises(zoo.UsageError, match="declares no input size"):
        default_spec(None, "unsized")


def test_patience_stops_after_that_many_epochs_without_a_better_one(synced_catalog: str, digits: Path,
                                                                     tmp_path: Path) -> None:
    # only the head trains, by steps of about 1e-12: below float32's resolution of its weights, so every epoch
    # validates the same model and none is better than the first
    result = zoo.finetune("digits_cnn", digits, epochs=10, batch_size=32, lr=1e-12, weight_decay=0.0,
                          freeze=["features"], patience=2, flip=False, output=tmp_path / "run", quiet=True)
    assert result.stopped_early and len(result.epochs) == 3 and result.best_epoch == 1
    assert len({(e.acc1, e.val_loss) for e in result.epochs}) == 1
    record = json.loads(result.run_path.read_text())
    assert record["status"] == "stopped early" and record["stopped_early"] and len(record["epochs"]) == 3

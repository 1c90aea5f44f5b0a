"""``zoo finetune`` end to end, through a registry service: fine-tuned and published by a client
(``ZOO_REGISTRY_URL=http://...``), fetched and exported by another, predicted where torch cannot be imported.

digits_cnn from its pretrained weights on odd/even digits (the digits weights' own split,
`zoo_digits.data.write_image_folder`); mobilenet_v3_small on crops of three scikit-image photographs, from
base weights published to the service first (`photographs_base`: its BatchNorm statistics measured on other
photographs, as a team publishes the backbone it fine-tunes from; no ImageNet weights can be downloaded here, and
from random initialisation its running statistics are too far from settled for eval mode to beat chance).
Each run must reach its validation accuracy floor; the published version must carry its metrics and run record;
the export, run by ONNX Runtime without torch, must predict what the fine-tuned PyTorch model predicts on every
validation image.

The training processes run single-threaded (``OMP_NUM_THREADS=1``): on a loaded machine with two cores,
two torch threads make these small models slower.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors.torch import load_file, save_file

import zoo
from tests.conftest import NOT_ON_DEPLOYMENT_HOST, python_without, run_zoo
from tests.test_serve import Service, digits_publishing_site
from zoo.datasets import image_data
from zoo_digits.data import write_image_folder


@dataclass(frozen=True)
class Case:
    model: str
    data: str  # the fixture of its image folder
    options: tuple[str, ...]  # zoo finetune's
    floor: float  # the validation acc@1 (percent) the best epoch must reach
    val_fraction: float = 0.2  # of each class (a folder without val/)
    base: str | None = None  # the fixture publishing the base weights (--weights) to the site; None: the default


CASES = {
    # The worked example's recipe (examples/finetune_digits.py), its best acc@1 98.9-99.6% over seeds 0 to 3 on
    # this machine; the floor is far below that and far above chance (50%).
    "digits_cnn": Case("digits_cnn", "parity_digits", (
        "--freeze-until", "features.6", "--lr", "0.001", "--head-lr", "0.01", "--epochs", "4", "--batch-size", "32",
        "--warmup-epochs", "0.5", "--min-scale", "0.8", "--no-flip"), 95.0),
    # A linear probe: the backbone frozen (its norms too, so eval mode sees the statistics it was published with),
    # the head trained; best acc@1 86.7-100% over seeds 0 to 7 on this machine (30 validation images), against
    # 33.3% (chance) with seeds 0 and 1 from random initialisation instead of the base weights.
    "mobilenet_v3_small": Case("mobilenet_v3_small", "photographs", (
        "--freeze-until", "features", "--lr", "0.01", "--epochs", "6", "--batch-size", "16", "--warmup-epochs", "0.5",
        "--min-scale", "0.5"), 75.0, val_fraction=0.25, base="photographs_base"),
}
#: The classes of the photographs' folder, and the other photographs the base weights' statistics come from.
PHOTOGRAPHS = ("astronaut", "chelsea", "coffee")
OTHER_PHOTOGRAPHS = ("rocket", "immunohistochemistry", "hubble_deep_field", "retina", "camera", "coins", "brick",
                     "grass")
#: Code run where torch cannot be imported: the export's top-1 class index of each image file.
TORCH_FREE_TOP1 = """
import json, sys
from zoo.runtime import Predictor

predictor = Predictor(sys.argv[1])
print(json.dumps([r.indices[0] for r in predictor.predict(sys.argv[2:], topk=1)]))
"""


@pytest.fixture(scope="module")
def parity_digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """scikit-learn's digits as odd and even, split as the digits weights were trained (val: the held-out split)."""
    root = tmp_path_factory.mktemp("data") / "digits-parity"
    write_image_folder(root, task="parity")
    return root


def random_crops(photograph: str, rng: np.random.Generator) -> Iterator[Image.Image]:
    """Square crops of scikit-image's `photograph` (RGB), each side 40-90% of the photograph's shorter one."""
    from skimage import data as skdata

    photo = Image.fromarray(getattr(skdata, photograph)()).convert("RGB")
    while True:
        side = int(min(photo.size) * rng.uniform(0.4, 0.9))
        x, y = (int(rng.integers(0, limit - side + 1)) for limit in photo.size)
        yield photo.crop((x, y, x + side, y + side))


@pytest.fixture(scope="module")
def photographs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 class folders of 40 crops (64x64) of a photograph each, every other one flipped."""
    root = tmp_path_factory.mktemp("data") / "photographs"
    rng = np.random.default_rng(0)
    for name in PHOTOGRAPHS:
        (root / name).mkdir(parents=True)
        for i, crop in zip(range(40), random_crops(name, rng)):
            crop = crop.resize((64, 64), Image.Resampling.BILINEAR)
            (crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if i % 2 else crop).save(root / name / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Service, str]]:
    """`zoo serve` on a catalog of the digits and torchvision plugins, and a publisher's token."""
    with digits_publishing_site(tmp_path_factory.mktemp("serve"), "digits,torchvision") as served:
        yield served


@pytest.fixture(scope="module")
def photographs_base(site: tuple[Service, str], tmp_path_factory: pytest.TempPathFactory) -> str:
    """mobilenet_v3_small from random initialisation with the BatchNorm statistics of 128 crops of other
    photographs (a cumulative average, no gradient), published to the site with its default weights'
    preprocessing; its version."""
    import torch

    from zoo.preprocessing import PreprocessSpec
    from zoo.training.images import eval_transform

    served, token = site
    with pytest.MonkeyPatch.context() as env:
        env.setenv("ZOO_REGISTRY_URL", served.url)
        env.setenv("ZOO_TOKEN", token)
        preprocessing = zoo.describe("mobilenet_v3_small")["weights"][0]["transforms"]
        preset = eval_transform(PreprocessSpec.from_json(preprocessing))
        torch.manual_seed(0)
        model = zoo.get_model("mobilenet_v3_small").train()
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.momentum = None  # a cumulative average
        rng = np.random.default_rng(1)
        crops = [random_crops(name, rng) for name in OTHER_PHOTOGRAPHS]
        with torch.no_grad():
            for _ in range(16):
                model(torch.stack([preset(next(photo)) for photo in crops]))
        file = tmp_path_factory.mktemp("base") / "base.safetensors"
        save_file(model.state_dict(), file)
        return zoo.publish_weights("mobilenet_v3_small", file, name="e2e/photographs-base", preprocessing=preprocessing,
                                   description="random weights, BatchNorm statistics of photographs").spec


@pytest.mark.parametrize("case", CASES.values(), ids=CASES)
def test_finetuned_published_fetched_exported_and_predicted_without_torch(
        case: Case, site: tuple[Service, str], request: pytest.FixtureRequest, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    served, token = site
    data: Path = request.getfixturevalue(case.data)
    base = () if case.base is None else ("--weights", request.getfixturevalue(case.base))
    name = f"e2e/{case.model.replace('_', '-')}"
    # a client of the service, with a weights cache of its own: whatever it builds is fetched from the service
    client = {"ZOO_REGISTRY_URL": served.url, "ZOO_TOKEN": token, "TORCH_HOME": str(tmp_path / "cache"),
              "OMP_NUM_THREADS": "1"}
    out = tmp_path / "run"
    result = json.loads(run_zoo("finetune", case.model, str(data), *case.options, *base, "--val-fraction",
                                str(case.val_fraction), "--output", str(out), "--publish", name, "--quiet", "--json",
                                env=client).stdout)
    best = result["best"]
    assert best["acc@1"] >= case.floor
    version = result["published"]
    assert version == f"{name}:1"

    # the published version, as a client sees it: the best epoch's weights, metrics and the run record
    for key, value in client.items():
        monkeypatch.setenv(key, value)
    published = zoo.resolve_published(version)
    record = json.loads((out / "run.json").read_text())
    assert published.metrics == {f"{data.name}:acc@1": best["acc@1"], f"{data.name}:acc@5": best["acc@5"]}
    assert published.categories == list(record["data"]["classes"])
    assert published.run["status"] == "finished" and published.run["best"] == record["best"] == best
    for part in ("recipe", "epochs", "data", "base_weights", "versions", "preprocessing"):
        assert published.run[part] == record[part], part
    if base:  # fine-tuned from the published base: its lineage names it, by hash
        assert record["base_weights"] == {"name": base[1], "sha256": zoo.resolve_published(base[1]).sha256}
    model = zoo.get_model(case.model, weights=version).eval()  # fetched from the service, verified by SHA-256
    tuned = load_file(out / "best.safetensors")
    assert all(tensor.equal(tuned[key]) for key, tensor in model.state_dict().items())

    # exported by a client, then run on the validation images where torch cannot be imported
    onnx = tmp_path / "tuned.onnx"
    run_zoo("export", case.model, "--weights", version, "-o", str(onnx), env=client)
    split = image_data(data, val_fraction=case.val_fraction)  # the split the run made (the seed too)
    files = [str(split.root / sample.path) for sample in split.val]
    done = python_without(NOT_ON_DEPLOYMENT_HOST, "-c", TORCH_FREE_TOP1, str(onnx), *files)
    assert done.returncode == 0, done.stderr
    torch_free = json.loads(done.stdout)

    from zoo.preprocessing import PreprocessSpec
    from zoo.training.evaluate import model_logits
    from zoo.training.images import ImageDataset, eval_transform

    logits = model_logits(model, ImageDataset(split, split.val,
                                              eval_transform(PreprocessSpec.from_json(published.preprocessing))))
    assert torch_free == logits.argmax(axis=1).tolist()
    correct = sum(p == s.label for p, s in zip(torch_free, split.val))
    assert 100 * correct / len(split.val) == pytest.approx(best["acc@1"])

"""A plugin adds a task: the pip-installed ``zoo-fixture-counting`` registers the task
``counting`` (its adapter, through ``zoo_register_tasks``) and a model of it, ``counter``.

With no change to zoo's modules, the model exports and verifies, a `Predictor` predicts
its counts (the same as PyTorch's, and the bright pixels the test painted), and its
results draw, in Python and through ``zoo predict --draw``.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

import zoo
import zoo.runtime.tasks
import zoo.export.tasks
from zoo.export import export_onnx
from zoo.preprocessing import preprocess_numpy
from zoo.runtime import Predictor, draw
from conftest import FIXTURES, pip_install, run_zoo

#: Side of the test images: the model's own input size, so that no resize blurs the squares.
SIDE = 32
#: The white squares painted on black, one image each: how many pixels the counter should count.
SQUARES = {"ten": 10, "five": 5, "none": 0}


@pytest.fixture(scope="module")
def counting_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    site = tmp_path_factory.mktemp("counting-site")
    pip_install(FIXTURES / "zoo-fixture-counting", site)
    return site


@pytest.fixture
def counting(counting_site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """The plugin importable here and in child processes, its weights file written, a catalog of it alone.

    The task adapters a process knows are looked up once (`zoo.runtime.tasks.plugin_tasks`): they
    are forgotten before and after, so that this test's plugin is found and no other test
    sees it.
    """
    monkeypatch.syspath_prepend(str(counting_site))
    importlib.invalidate_caches()
    from zoo_fixture_counting.model import bright_pixel_weights

    save_file(bright_pixel_weights(), tmp_path / "counter.safetensors")
    env = {"PYTHONPATH": str(counting_site), "ZOO_FIXTURE_COUNTING_DIR": str(tmp_path),
           "ZOO_REGISTRY_URL": f"sqlite:///{tmp_path / 'registry.db'}", "ZOO_LOAD_PLUGINS": "counting",
           "TORCH_HOME": str(tmp_path / "torch-home")}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(zoo.export.tasks, "_adapters", {})  # the export sides known, and the runtime sides
    monkeypatch.setattr(zoo.runtime.tasks, "_adapters", {})
    zoo.runtime.tasks.plugin_tasks.cache_clear()
    yield env
    zoo.runtime.tasks.plugin_tasks.cache_clear()


def _images(folder: Path) -> list[Path]:
    """Black images with a white square of each size in `SQUARES`, saved as PNG."""
    folder.mkdir()
    paths = []
    for name, side in SQUARES.items():
        pixels = np.zeros((SIDE, SIDE, 3), np.uint8)
        pixels[4:4 + side, 6:6 + side] = 255
        Image.fromarray(pixels).save(folder / f"{name}.png")
        paths.append(folder / f"{name}.png")
    return paths


def test_a_plugin_task_exports_verifies_predicts_and_draws(counting: dict[str, str], tmp_path: Path) -> None:
    assert "counting" in zoo.export.tasks.known_tasks()
    exported = export_onnx("counter", tmp_path / "counter.onnx", weights="DEFAULT")
    assert exported.verification and all(check.passed for check in exported.verification)

    predictor = Predictor(exported.path)
    assert predictor.task == "counting"
    paths = _images(tmp_path / "images")
    results = predictor.predict(paths)
    counts = np.array([r.count for r in results])
    np.testing.assert_allclose(counts, [side * side for side in SQUARES.values()], atol=1e-3)

    model = zoo.get_model("counter", weights="DEFAULT").eval()
    spec = predictor.preprocessing
    batch = torch.from_numpy(np.stack([preprocess_numpy(spec, Image.open(p)) for p in paths]))
    with torch.inference_mode():
        expected = model(batch)[:, 0].numpy()
    np.testing.assert_allclose(counts, expected, rtol=1e-5, atol=1e-4)
    assert [r.to_json() for r in results][0] == {"source": str(paths[0]), "task": "counting",
                                                  "count": results[0].count}

    drawn = draw(results[0], paths[0])
    original = np.asarray(Image.open(paths[0]).convert("RGB"))
    assert drawn.size == (SIDE, SIDE)
    changed = np.any(np.asarray(drawn) != original, axis=2)
    assert changed[:8, :8].any() and not changed[20:, 20:].any()  # the count, written in the top left only


def test_zoo_predict_draws_a_plugin_tasks_results(counting: dict[str, str], tmp_path: Path) -> None:
    exported = export_onnx("counter", tmp_path / "counter.onnx", weights="DEFAULT")
    folder = tmp_path / "images"
    _images(folder)
    out = tmp_path / "drawn"
    done = run_zoo("predict", str(exported.path), str(folder), "--draw", str(out), "--json", env=counting)
    data = json.loads(done.stdout)
    assert [r["task"] for r in data["results"]] == ["counting"] * 3
    assert sorted(p.name for p in out.iterdir()) == ["five.png", "grid.png", "none.png", "ten.png"]
    assert data["drawings"] == [str(out / name) for name in ("five.png", "none.png", "ten.png", "grid.png")]
    with Image.open(out / "ten.png") as picture:
        assert picture.size == (SIDE, SIDE)

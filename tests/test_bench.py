"""The benchmark: real runs of the digits model on every CPU engine; no timing assertions (shared machines)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from zoo.tools.bench import BenchResult, BenchRow, bench, parse_batches
from zoo.errors import UnknownModelError, UsageError
from zoo.export import export_onnx

ENGINES = ["eager", "onnxruntime", "int8"]


@pytest.fixture(scope="module")
def result(synced_catalog: str) -> BenchResult:
    return bench("digits_cnn", batches=(1, 4), warmup=2, iterations=10, weights="DEFAULT")


def _sane(row: BenchRow) -> None:
    assert 0 < row.min_ms <= row.p50_ms <= row.p90_ms <= row.p99_ms
    assert row.min_ms <= row.mean_ms
    # images per second over the timed calls: the batch over the mean latency
    assert row.throughput == pytest.approx(row.batch * 1000 / row.mean_ms, rel=1e-9)


def test_rows_for_every_engine_and_batch(result: BenchResult) -> None:
    assert [(r.engine, r.batch) for r in result.rows] == [(e, b) for b in (1, 4) for e in ENGINES]
    for row in result.rows:
        _sane(row)
        eager = next(r for r in result.rows if r.engine == "eager" and r.batch == row.batch)
        assert row.speedup == pytest.approx(row.throughput / eager.throughput)  # the images/s column's ratio
    assert {r.provider for r in result.rows} == {"torch-cpu", "CPUExecutionProvider"}


def test_result_says_what_it_ran_on(result: BenchResult) -> None:
    assert result.model == "digits_cnn" and result.source == "digits_cnn"
    machine = result.machine
    assert machine["cpu"] and machine["logical_cores"] >= machine["usable_cores"] >= 1
    assert machine["threads"] == result.settings["threads"] == machine["usable_cores"]
    assert {"torch", "onnxruntime", "numpy"} <= set(machine)
    assert result.settings["input_shape"] == ["N", 1, 8, 8]
    assert result.settings["iterations"] == 10 and result.settings["batches"] == [1, 4]
    assert result.calibration["source"] == "scikit-image sample photographs"
    assert result.calibration["count"] == len(result.calibration["images"]) > 0
    assert result.settings["precisions"] == ["fp32"] and {r.precision for r in result.rows} == {"fp32"}


def test_json_and_table(result: BenchResult) -> None:
    data = json.loads(json.dumps(result.to_json()))
    assert [r["engine"] for r in data["rows"]] == [r.engine for r in result.rows]
    assert data["rows"][0]["p50_ms"] == result.rows[0].p50_ms
    table = result.table()
    assert str(result) == table
    assert "scikit-image sample photographs" in table and result.machine["cpu"] in table
    lines = table.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("engine"))
    assert lines[header].split() == ["engine", "precision", "provider", "batch", "p50", "ms", "p90", "ms", "p99", "ms",
                                     "images/s", "vs", "eager"]
    assert [line.split()[0] for line in lines[header + 1:]] == [r.engine for r in result.rows]


def test_onnx_file_outside_the_catalog(synced_catalog: str, tmp_path: Path) -> None:
    import torch

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten())
    path = export_onnx(model, tmp_path / "tiny.onnx", input_shape=(1, 3, 6, 6)).path
    Image.new("RGB", (6, 6), (10, 200, 30)).save(tmp_path / "green.png")
    done = bench(path, batches="2", warmup=1, iterations=3, calibration=[tmp_path / "green.png"])
    # no eager (Sequential is no catalog model) and no int8 (no preprocessing metadata to calibrate with)
    assert [r.engine for r in done.rows] == ["onnxruntime"]
    assert done.rows[0].speedup is None and done.calibration is None
    assert any(note.startswith("eager skipped: unknown model 'Sequential'") for note in done.notes)
    assert any(note.startswith("int8 skipped: the model carries no preprocessing") for note in done.notes)
    _sane(done.rows[0])


def test_exported_catalog_model_with_calibration_paths(synced_catalog: str, tmp_path: Path) -> None:
    path = export_onnx("digits_cnn", tmp_path / "digits.onnx").path
    for value in (0, 255):
        Image.fromarray(np.full((8, 8), value, np.uint8)).save(tmp_path / f"{value}.png")
    paths = [tmp_path / "0.png", tmp_path / "255.png"]
    done = bench(path, warmup=1, iterations=2, calibration=paths)
    assert [r.engine for r in done.rows] == ENGINES  # the metadata names a catalog model: eager runs
    assert done.calibration == {"source": "calibration paths", "count": 2, "images": [str(p) for p in paths]}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0.png", "255.png", "digits.onnx"]


@pytest.mark.parametrize(("text", "expected"), [("1", (1,)), ("1, 8,32", (1, 8, 32)), ("4,4,1", (4, 1)),
                                                (8, (8,)), ([2, 3], (2, 3))])
def test_parse_batches(text: object, expected: tuple[int, ...]) -> None:
    assert parse_batches(text) == expected


@pytest.mark.parametrize("text", ["", "1,x", "0", "1,,2", "-1", "1.5", [], [0], [1.5], [True]])
def test_bad_batches_are_one_line_usage_errors(text: object) -> None:
    with pytest.raises(UsageError, match="batch sizes") as caught:
        parse_batches(text)
    assert "\n" not in str(caught.value)


def test_bad_arguments_fail_before_any_work(synced_catalog: str, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="use e.g. 1,8,32"):
        bench("digits_cnn", batches="1,a")
    with pytest.raises(UsageError, match="iterations must be an integer of at least 1"):
        bench("digits_cnn", iterations=0)
    with pytest.raises(UsageError, match="precision bf16 is not benchmarked"):
        bench("digits_cnn", precisions="fp32,bf16")
    with pytest.raises(UsageError, match="no ONNX file at"):
        bench(tmp_path / "missing.onnx")
    with pytest.raises(UnknownModelError, match="digits_cnn"):
        bench("digits_cn")


def test_a_killed_bench_leaves_a_folder_the_next_bench_removes(synced_catalog: str, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A bench killed while its export is being verified (as a timeout kills it) leaves its work folder, the
    export's staging folder inside; the next bench removes it (`zoo.outputs.scratch_folder`)."""
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    code = ("import sys\nimport zoo.export\n"
            "def verifying(*args, **kwargs):\n"
            "    print('verifying', flush=True)\n"
            "    sys.stdin.readline()\n"  # killed here
            "zoo.export._verify = verifying\n"
            "from zoo.tools.bench import bench\n"
            "bench('digits_cnn', warmup=0, iterations=1, int8=False)\n")
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env={**os.environ, "TMPDIR": str(temporary)})
    try:
        said = child.stdout.readline()
        assert said == "verifying\n", child.communicate()[1]
    finally:
        child.kill()
        child.wait()
    (left,) = zoo_bench_entries(temporary, folders=True)
    staging = [p for p in left.iterdir() if p.is_dir()]  # export_onnx's folder, with the export being verified
    assert [p.name[:17] for p in staging] == [".digits_cnn.onnx."] and (staging[0] / "digits_cnn.onnx").is_file()

    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    done = bench("digits_cnn", warmup=0, iterations=1, int8=False)
    assert [r.engine for r in done.rows] == ["eager", "onnxruntime"]
    assert not left.exists() and zoo_bench_entries(temporary) == []  # its lock file too; torch's caches stay


def zoo_bench_entries(folder: Path, folders: bool = False) -> list[Path]:
    """What bench keeps in `folder` (the temporary folder): its work folders (only those, with `folders`), their
    lock files and the lock of making them."""
    return [p for p in folder.iterdir() if "zoo-bench" in p.name and (p.is_dir() or not folders)]

"""The export coverage sweep (benchmarks/export_coverage.py), run as a user runs it, on two small models."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

SCRIPT = ROOT / "benchmarks" / "export_coverage.py"
MODELS = ("digits_cnn", "squeezenet1_1")


def run_sweep(*args: str) -> subprocess.CompletedProcess[str]:
    """The script in a child process; the environment (the test catalog) is inherited."""
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def swept(synced_catalog: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """Rows and table of one sweep over `MODELS`, and what the sweep printed."""
    out = tmp_path_factory.mktemp("coverage")
    rows, table = out / "rows.jsonl", out / "table.md"
    done = run_sweep(*MODELS, "--results", str(rows), "--table", str(table))
    assert done.returncode == 0, done.stdout + done.stderr
    return rows, table, done.stdout


def test_rows_record_a_verified_export_per_model(swept: tuple[Path, Path, str]) -> None:
    rows = [json.loads(line) for line in swept[0].read_text().splitlines()]
    assert sorted(r["name"] for r in rows) == list(MODELS)
    for row in rows:
        assert row["task"] == "classification"
        assert row["exported"] and row["checker"] and row["verified"] and row["shape_inference_complete"]
        assert row["exporter"] == "dynamo" and row["fallback_reason"] is None
        assert row["file_size"] > 0 and row["peak_rss_mb"] > 0 and row["seconds"] > 0
        assert row["tensors_without_shape"] == 0 < row["intermediate_tensors"]
        assert row["checked_shapes"][0] == row["input_shape"] and len(row["checked_shapes"]) == 2
        assert row["max_abs_error"] < 1e-3
        assert row["versions"]["torch"] and row["versions"]["onnxruntime"]
        assert "error" not in row
    assert {tuple(r["input_shape"]) for r in rows} == {(1, 1, 8, 8), (1, 3, 224, 224)}


def test_table_has_a_summary_per_task_and_a_line_per_model(swept: tuple[Path, Path, str]) -> None:
    table = swept[1].read_text()
    assert "- **classification**: 2/" in table and "not run yet" in table
    assert "- **optical_flow**: 0/2 exported" in table
    lines = {line.split(" | ")[1]: line for line in table.splitlines() if line.startswith("| classification |")}
    assert set(lines) == set(MODELS)
    assert "| 1x3x224x224 | - | yes | yes | yes (0/" in lines["squeezenet1_1"]
    assert "| dynamo |" in lines["digits_cnn"]


def test_resume_skips_models_with_a_row(swept: tuple[Path, Path, str]) -> None:
    rows, table, _ = swept
    before = rows.read_text()
    done = run_sweep(*MODELS, "--resume", "--results", str(rows), "--table", str(table))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("0 model(s) to export")
    assert rows.read_text() == before


def test_chunks_split_the_sorted_selection() -> None:
    spec = importlib.util.spec_from_file_location("export_coverage", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    names = list("abcdefg")
    chunks = [script.chunk_of(names, i, 3) for i in (1, 2, 3)]
    assert sum(chunks, []) == names and [len(c) for c in chunks] == [2, 2, 3]


def test_unknown_pattern_is_one_line_and_fails(synced_catalog: str, tmp_path: Path) -> None:
    done = run_sweep("digits_cnn", "no_such_model*", "--results", str(tmp_path / "rows.jsonl"))
    assert done.returncode != 0
    assert done.stderr.strip() == "export_coverage: error: no model matches 'no_such_model*'; see `zoo list`"
    assert not (tmp_path / "rows.jsonl").exists()

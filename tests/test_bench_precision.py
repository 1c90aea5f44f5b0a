"""The benchmark across precisions, devices and torch.compile: real runs of the digits model on the CPU; no timing
assertions (shared machines). CUDA's rows are checked on a GPU by benchmarks/gpu_deploy.py, not here."""

from __future__ import annotations

import json

import pytest

from conftest import run_zoo
from zoo.errors import UsageError
from zoo.runtime import cuda_device_count
from zoo.tools.bench import BenchResult, bench, parse_precisions


@pytest.fixture(scope="module")
def result(synced_catalog: str) -> BenchResult:
    return bench("digits_cnn", batches=(1, 4), warmup=1, iterations=4, weights="DEFAULT", int8=False,
                 precisions="fp32,fp16", device="cpu", compile=True)


def test_rows_for_every_precision_and_engine(result: BenchResult) -> None:
    engines = [("eager", "fp32"), ("compile", "fp32"), ("onnxruntime", "fp32"),
               ("eager", "fp16"), ("compile", "fp16"), ("onnxruntime", "fp16")]
    assert [(r.engine, r.precision, r.batch) for r in result.rows] == [(e, p, b) for b in (1, 4) for e, p in engines]
    for row in result.rows:
        eager = next(r for r in result.rows if r.engine == "eager" and (r.batch, r.precision) == (row.batch,
                                                                                                  row.precision))
        assert row.speedup == pytest.approx(row.throughput / eager.throughput)  # against eager at its precision
        assert row.gpu_memory_mb is None  # memory is a CUDA column
    assert {r.provider for r in result.rows} == {"torch-cpu", "CPUExecutionProvider"}
    assert result.settings["precisions"] == ["fp32", "fp16"]


def test_table_and_json_name_the_precision(result: BenchResult) -> None:
    lines = result.table().splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("engine"))
    assert lines[header].split()[:3] == ["engine", "precision", "provider"] and "GPU" not in lines[header]
    assert [line.split()[1] for line in lines[header + 1:]] == [r.precision for r in result.rows]
    data = json.loads(json.dumps(result.to_json()))
    assert [r["precision"] for r in data["rows"]] == [r.precision for r in result.rows]


@pytest.mark.parametrize(("options", "message"), [
    (dict(precisions="fp32,bf16"), "precision bf16 is not benchmarked"),
    (dict(precisions="fp64"), "precisions 'fp64' are not a comma-separated list of fp32, fp16"),
    (dict(precisions=""), "are not a comma-separated list"),
    (dict(device="tpu"), "unknown device 'tpu'; use cpu or cuda"),
    (dict(device="cpu", providers="cpu"), "give a device or providers, not both"),
])
def test_bad_arguments_are_one_line(synced_catalog: str, options: dict, message: str) -> None:
    with pytest.raises(UsageError, match=message) as caught:
        bench("digits_cnn", **options)
    assert "\n" not in str(caught.value)


@pytest.mark.skipif(cuda_device_count() > 0, reason="this machine has a GPU")
def test_cuda_is_refused_in_one_line_without_a_gpu(synced_catalog: str) -> None:
    with pytest.raises(UsageError, match="device cuda needs an NVIDIA GPU .*; here the CUDA driver reports no GPU; "
                                         "use device cpu") as caught:
        bench("digits_cnn", device="cuda")
    assert "\n" not in str(caught.value)
    refused = run_zoo("bench", "digits_cnn", "--device", "cuda", check=False)
    assert refused.returncode != 0 and len(refused.stderr.strip().splitlines()) == 1


def test_one_image_models_are_timed_at_batch_one_only(synced_catalog: str) -> None:
    with pytest.raises(UsageError, match="takes one image per call: bench it at batch 1"):
        bench("fasterrcnn_mobilenet_v3_large_320_fpn", batches="1,8")


def test_parse_precisions() -> None:
    assert parse_precisions("fp16, fp32,fp16") == ("fp16", "fp32")
    assert parse_precisions(["fp32"]) == ("fp32",)


def test_cli_precision_rows(synced_catalog: str) -> None:
    done = run_zoo("bench", "digits_cnn", "--precision", "fp32,fp16", "--device", "cpu", "--no-int8",
                   "--iterations", "2", "--warmup", "0", "--json")
    rows = json.loads(done.stdout)["rows"]
    assert [(r["engine"], r["precision"]) for r in rows] == [("eager", "fp32"), ("onnxruntime", "fp32"),
                                                             ("eager", "fp16"), ("onnxruntime", "fp16")]

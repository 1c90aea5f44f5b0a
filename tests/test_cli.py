"""The ``zoo`` command line, run as a user runs it: in a child process."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torchvision.models as tvm
from sqlalchemy import create_engine, text

from conftest import run_zoo


def test_list_json_is_torchvision_plus_digits(synced_catalog: str) -> None:
    listed = json.loads(run_zoo("list", "--json").stdout)
    assert [m["name"] for m in listed] == sorted([*tvm.list_models(), "digits_cnn"])
    resnet50 = next(m for m in listed if m["name"] == "resnet50")
    assert resnet50["default_weights"] == "ResNet50_Weights.IMAGENET1K_V2"
    assert resnet50["num_params"] == tvm.ResNet50_Weights.DEFAULT.meta["num_params"]


def test_list_filters_and_table(synced_catalog: str) -> None:
    done = run_zoo("list", "resnet*", "--exclude", "*1*", "--max-params", "30M",
                   "--min-metric", "ImageNet-1K:acc@1=75")
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["NAME", "TASK", "PARAMS", "GFLOPS", "ImageNet-1K:acc@1", "WEIGHTS", "PLUGIN"]
    # resnet18/101/152 are excluded by pattern; resnet34 tops out at acc@1 73.3
    assert [line.split()[0] for line in lines[1:-1]] == ["resnet50"]
    assert lines[-1] == "1 model(s)"


def test_show_json_has_both_resnet50_weights(synced_catalog: str) -> None:
    shown = json.loads(run_zoo("show", "resnet50", "--json").stdout)
    assert [w["member"] for w in shown["weights"]] == ["IMAGENET1K_V1", "IMAGENET1K_V2"]
    for w, member in zip(shown["weights"], tvm.ResNet50_Weights):
        assert w["meta"]["_metrics"] == member.meta["_metrics"]
        assert w["meta"]["num_params"] == member.meta["num_params"]
        assert w["meta"]["recipe"] == member.meta["recipe"]
        assert w["transforms"]["kind"] == "classification"
        assert w["transforms"]["resize_size"] == member.transforms().resize_size
        assert w["transforms"]["crop_size"] == member.transforms().crop_size * 2
    text = run_zoo("show", "resnet50").stdout
    assert "ResNet50_Weights.IMAGENET1K_V2  *" in text and "acc@1=80.858" in text


def test_plugins_lists_both_bundled_plugins(synced_catalog: str) -> None:
    plugins = json.loads(run_zoo("plugins", "--json").stdout)
    assert [(p["name"], p["distribution"], p["status"], p["models"]) for p in plugins] == [
        ("digits", "zoo-digits", "loaded", 1),
        ("torchvision", "zoo-torchvision", "loaded", len(tvm.list_models())),
    ]


def test_user_mistakes_are_one_line_and_nonzero(synced_catalog: str) -> None:
    cases = {
        ("show", "resnet5"): "zoo: error: unknown model 'resnet5'; did you mean: resnet50",
        ("list", "--task", "nope"): "zoo: error: unknown task 'nope'; tasks in the catalog:",
        ("list", "--max-params", "lots"): "argument --max-params: 'lots' is not a count; use e.g. 10M",
        ("list", "--min-metric", "acc@1"): "argument --min-metric: 'acc@1' is not NAME=VALUE",
        ("export", "ssd300_vgg16", "-o", "m.onnx", "--builder-arg", "min_size"):
            "argument --builder-arg: 'min_size' is not KEY=VALUE; use e.g. min_size=320",
        ("export", "digits_cnn", "-o", "m.onnx", "--static", "--dynamic-image-size"):
            "zoo: error: --static and --dynamic-image-size contradict each other; give one",
        ("export", "ssd300_vgg16", "-o", "m.onnx", "--input-shape", "2,3,300,300"):
            "zoo: error: ssd300_vgg16 takes one image: input_shape must start with 1, not 2",
    }
    for args, message in cases.items():
        done = run_zoo(*args, check=False)
        assert done.returncode in (1, 2), args
        assert message in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr
    done = run_zoo("list", env={"ZOO_REGISTRY_URL": "postgresql://postgres@127.0.0.1:1/none"}, check=False)
    assert done.returncode == 1
    assert done.stderr.startswith("zoo: error: cannot use the catalog at postgresql")
    assert len(done.stderr.strip().splitlines()) == 1


def test_listing_imports_no_torch_even_when_the_catalog_is_stale(tmp_path: Path) -> None:
    # A fresh catalog: the lookup must sync it (in a child process) and still stay light.
    code = ("import sys, zoo; names = zoo.list_models('resnet*'); zoo.describe('resnet50'); "
            "heavy = [m for m in ('torch', 'torchvision', 'zoo_torchvision', 'zoo_digits') if m in sys.modules]; "
            "assert names and not heavy, heavy; print(len(names))")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "ZOO_REGISTRY_URL": "", "ZOO_LOAD_PLUGINS": "digits,torchvision"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(len(tvm.list_models(include="resnet*")))
    assert (tmp_path / "registry.db").exists()  # the default catalog is registry.db in the working directory


def test_eight_processes_sync_one_fresh_registry_at_once(tmp_path: Path) -> None:
    env = {"ZOO_REGISTRY_URL": "", "ZOO_LOAD_PLUGINS": "digits,torchvision"}
    commands = [("sync",)] * 4 + [("list", "--json")] * 4
    with ThreadPoolExecutor(len(commands)) as pool:
        results = list(pool.map(lambda args: run_zoo(*args, env=env, cwd=tmp_path, check=False), commands))
    for done in results:
        assert done.returncode == 0, done.stderr
    expected = sorted([*tvm.list_models(), "digits_cnn"])
    for done in results[4:]:
        assert [m["name"] for m in json.loads(done.stdout)] == expected
    with sqlite3.connect(tmp_path / "registry.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert db.execute("SELECT count(*), count(DISTINCT name) FROM models").fetchone() == (len(expected),) * 2
        assert db.execute("SELECT name, status FROM plugins ORDER BY name").fetchall() == [
            ("digits", "loaded"), ("torchvision", "loaded")]
        assert db.execute("PRAGMA foreign_key_check").fetchall() == []


def test_processes_syncing_one_postgresql_catalog_at_once(postgresql_url: str) -> None:
    env = {"ZOO_REGISTRY_URL": postgresql_url, "ZOO_LOAD_PLUGINS": "digits"}
    commands = [("sync",)] * 3 + [("list", "--json")] * 3
    with ThreadPoolExecutor(len(commands)) as pool:
        results = list(pool.map(lambda args: run_zoo(*args, env=env, check=False), commands))
    for done in results:
        assert done.returncode == 0, done.stderr
    for done in results[3:]:
        assert [m["name"] for m in json.loads(done.stdout)] == ["digits_cnn"]
    with create_engine(postgresql_url).connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM models")).scalar() == 1
        assert conn.execute(text("SELECT count(*) FROM plugins")).scalar() == 1
        assert conn.execute(text("SELECT count(*) FROM weights")).scalar() == 1


def test_summary_table_json_and_mistakes(synced_catalog: str) -> None:
    lines = run_zoo("summary", "resnet18", "--input", "1,3,224,224", "--depth", "0").stdout.splitlines()
    assert lines[0].split() == ["Layer", "Output", "shape", "Params", "Trainable"]
    assert "Params: 11,689,512 (44.6 MiB)" in lines
    data = json.loads(run_zoo("summary", "digits_cnn", "--input", "1,1,8,8", "--weights", "DEFAULT", "--json").stdout)
    assert data["name"] == "digits_cnn" and data["totals"]["params"] == 24_058
    bad = run_zoo("summary", "resnet18", "--input", "1,3,22x", check=False)
    assert bad.returncode == 2 and "input size '1,3,22x' is not positive integers separated by ','" in bad.stderr
    wrong = run_zoo("summary", "digits_cnn", "--input", "1,3,8,8", check=False)
    assert wrong.returncode == 1 and wrong.stderr.startswith("zoo: error: DigitsCNN does not run on input 1,3,8,8")
    assert len(wrong.stderr.splitlines()) == 1


def test_features_lists_extracts_and_explains(synced_catalog: str) -> None:
    assert "features.5" in run_zoo("features", "digits_cnn").stdout.split()
    shapes = json.loads(run_zoo("features", "resnet18", "--nodes", "layer1,layer4", "--input", "1,3,224,224",
                                "--json").stdout)
    assert shapes == {"layer1": [1, 64, 56, 56], "layer4": [1, 512, 7, 7]}
    untraceable = run_zoo("features", "fasterrcnn_mobilenet_v3_large_320_fpn", check=False)
    assert untraceable.returncode == 1 and "--module backbone" in untraceable.stderr
    assert "fpn" in run_zoo("features", "fasterrcnn_mobilenet_v3_large_320_fpn", "--module", "backbone").stdout.split()


def test_output_into_a_closed_pipe_is_not_an_error(synced_catalog: str) -> None:
    # ~90 KB of node names: more than a pipe holds, so the writer sees the reader leave.
    command = f"{sys.executable} -m zoo features maxvit_t | head -1; echo rc=${{PIPESTATUS[0]}}"
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True)
    assert done.stdout.split() == ["x", "rc=0"]
    assert done.stderr == ""

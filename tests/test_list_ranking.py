"""Ranking a listing: ``zoo list --sort KEY --limit N`` and ``zoo.summarize_models(sort=..., limit=...)``.

Against a real synced catalog on SQLite and PostgreSQL (`tests.test_serve.service`), in this process, through
the same catalog served by ``zoo serve`` (client mode), and from the command line in both modes. The values
ranked are checked against torchvision's own weights metadata.
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pytest
import torchvision.models as tvm

import zoo
from tests.conftest import run_zoo
from tests.test_client import client_env, zoo_client  # noqa: F401 - the fixture
from tests.test_serve import API, Service, in_process, one_line_error, service  # noqa: F401 - fixtures
from zoo.registry import metric_names

TOP1 = "ImageNet-1K:acc@1"


def _best_top1() -> dict[str, float]:
    """Each torchvision model's best ImageNet-1K acc@1 over its weights, from torchvision itself."""
    best = {}
    for name in tvm.list_models():
        values = [w.meta["_metrics"]["ImageNet-1K"]["acc@1"] for w in tvm.get_model_weights(name)
                  if "ImageNet-1K" in w.meta.get("_metrics", {})]
        if values:
            best[name] = max(values)
    return best


def _ordered(rows: list[dict], metric: str, descending: bool) -> None:
    """`rows` are ranked by `metric`: values in order (ties by name), models without one last, by name."""
    values = [r["metrics"].get(metric) for r in rows]
    having = [v for v in values if v is not None]
    assert values[:len(having)] == having, "models without a value come last"
    assert having == sorted(having, reverse=descending)
    for first, second in itertools.pairwise(rows):
        if first["metrics"].get(metric) == second["metrics"].get(metric):
            assert first["name"] < second["name"]


def test_ranking_by_a_metric_matches_the_values(in_process: Service) -> None:  # noqa: F811
    ranked = zoo.summarize_models(sort=TOP1)
    assert sorted(r["name"] for r in ranked) == zoo.list_models(), "sorting drops no model"
    _ordered(ranked, TOP1, descending=True)
    assert {r["name"]: r["metrics"][TOP1] for r in ranked if TOP1 in r["metrics"]} == _best_top1()
    resnet50 = next(r for r in ranked if r["name"] == "resnet50")
    assert resnet50["gflops"] == tvm.ResNet50_Weights.DEFAULT.meta["_ops"]
    assert resnet50["metrics"]["ImageNet-1K:acc@5"] == max(
        w.meta["_metrics"]["ImageNet-1K"]["acc@5"] for w in tvm.ResNet50_Weights)

    worst_first = zoo.summarize_models(task="classification", sort=f"+{TOP1}")
    _ordered(worst_first, TOP1, descending=False)
    assert worst_first[-1]["name"] == "digits_cnn", "no ImageNet-1K acc@1: last either way"


def test_limit_and_filters_keep_the_top(in_process: Service) -> None:  # noqa: F811
    small = {name: top1 for name, top1 in _best_top1().items()
             if tvm.get_model_weights(name).DEFAULT.meta["num_params"] <= 10_000_000 and top1 >= 75}
    expected = sorted(small, key=lambda name: (-small[name], name))[:5]
    filters = {"task": "classification", "max_params": 10_000_000, "min_metric": {TOP1: 75}}
    top = zoo.summarize_models(sort=TOP1, limit=5, **filters)
    assert [r["name"] for r in top] == expected
    assert zoo.list_models(sort=TOP1, limit=5, **filters) == expected
    assert zoo.list_models(tvm.quantization, sort="params", limit=2) == sorted(
        tvm.list_models(tvm.quantization),
        key=lambda name: (tvm.get_model_weights(name).DEFAULT.meta["num_params"], name))[:2]


@pytest.mark.parametrize(("sort", "column", "descending"), [
    ("name", "name", False), ("-name", "name", True), ("params", "num_params", False),
    ("-params", "num_params", True), ("gflops", "gflops", False), ("+GFLOPS", "gflops", False)])
def test_named_keys_sort_ascending_unless_told(in_process: Service, sort: str, column: str,  # noqa: F811
                                               descending: bool) -> None:
    ranked = zoo.summarize_models("*net*", sort=sort)
    values = [r[column] for r in ranked]
    having = [v for v in values if v is not None]
    assert values[:len(having)] == having == sorted(having, reverse=descending) and len(having) > 10


def test_a_metric_without_a_dataset_is_the_one_dataset_with_it(in_process: Service) -> None:  # noqa: F811
    by_box = zoo.summarize_models(sort="box_map", limit=3)
    assert by_box == zoo.summarize_models(sort="COCO-val2017:box_map", limit=3)
    _ordered(by_box, "COCO-val2017:box_map", descending=True)
    assert zoo.list_models(min_metric={"miou": 66}) == zoo.list_models(min_metric={"COCO-val2017-VOC-labels:miou": 66})
    for ask in ({"sort": "acc@1"}, {"min_metric": {"acc@1": 75}}):
        with pytest.raises(zoo.UsageError) as refused:
            zoo.list_models(**ask)
        assert str(refused.value) == ("acc@1 is measured on several datasets: ImageNet-1K, Kinetics-400, "
                                      "sklearn-digits-heldout; give DATASET:acc@1, e.g. ImageNet-1K:acc@1")


@pytest.mark.parametrize(("ask", "says"), [
    ({"sort": "size"}, ("unknown sort key 'size'; sort by name, params, gflops or [DATASET:]METRIC (metrics in "
                        "the catalog: acc@1, acc@5, box_map")),
    ({"sort": "-"}, "unknown sort key '-'"),
    ({"sort": ""}, "unknown sort key ''"),
    ({"sort": "COCO-val2017:acc@1"}, "no dataset of metric 'COCO-val2017:acc@1'; datasets with acc@1: ImageNet-1K"),
    ({"sort": 3}, "sort key must be name, params, gflops or [DATASET:]METRIC, not 3"),
    ({"sort": "x" * 1000}, "sort key must be"),
    ({"limit": 0}, "limit must be a whole number from 1 to 2147483647, not 0"),
    ({"limit": True}, "limit must be a whole number"),
    ({"limit": "5"}, "limit must be a whole number"),
    ({"limit": 2**40}, "limit must be a whole number"),
])
def test_bad_sort_keys_and_limits_are_one_line(in_process: Service, ask: dict, says: str) -> None:  # noqa: F811
    for lookup in (zoo.summarize_models, zoo.list_models):
        with pytest.raises(zoo.UsageError) as refused:
            lookup(**ask)
        assert str(refused.value).startswith(says) and "\n" not in str(refused.value)


def test_client_mode_ranks_as_the_catalog(in_process: Service, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    asks = [{"sort": TOP1, "limit": 7}, {"sort": "-params", "task": "detection"}, {"sort": "box_map", "limit": 1},
            {"sort": "gflops", "limit": 1500}, {"limit": 3}, {"min_metric": {"miou": 60}, "sort": "+miou"}]
    local = [(zoo.summarize_models(**ask), zoo.list_models(**ask)) for ask in asks]
    names = metric_names()
    monkeypatch.setenv("ZOO_REGISTRY_URL", in_process.url)
    assert [(zoo.summarize_models(**ask), zoo.list_models(**ask)) for ask in asks] == local
    assert metric_names() == names and TOP1 in names
    assert [len(summaries) for summaries, _ in local[:3]] == [7, len(local[1][1]), 1] and local[1][1]
    with pytest.raises(zoo.UsageError, match=r"^acc@1 is measured on several datasets: ImageNet-1K, "):
        zoo.list_models(sort="acc@1")
    with pytest.raises(zoo.UsageError, match=r"^limit must be a whole number"):
        zoo.list_models(sort=TOP1, limit=0)


def test_the_service_pages_a_ranking_and_checks_sort_keys(in_process: Service) -> None:  # noqa: F811
    with in_process.client() as client:
        page = client.get(f"{API}/models", params={"sort": f"-{TOP1}", "limit": 3, "offset": 1}).json()
        refused = [client.get(f"{API}/models", params={"sort": key}) for key in ("acc@1", "size", "x" * 401)]
        names = client.get(f"{API}/metric-names").json()
    ranked = zoo.list_models(sort=TOP1)
    assert [m["name"] for m in page["models"]] == ranked[1:4] and page["total"] == len(ranked)
    assert [r.status_code for r in refused] == [400, 400, 400]
    assert one_line_error(refused[0]).startswith("acc@1 is measured on several datasets")
    assert one_line_error(refused[1]).startswith("unknown sort key 'size'")
    assert "query parameter 'sort'" in one_line_error(refused[2])
    assert names == metric_names() and TOP1 in names


def _table(text: str) -> tuple[list[str], list[list[str]], str]:
    lines = text.splitlines()
    return lines[0].split(), [line.split() for line in lines[1:-1]], lines[-1]


def test_zoo_list_ranks_in_a_table_locally_and_in_client_mode(
        service: Service, client_env: dict[str, str], tmp_path: Path) -> None:  # noqa: F811 - fixtures
    args = ("list", "--task", "classification", "--max-params", "10M", "--min-metric", "acc@5=90", "--sort",
            "ImageNet-1K:acc@1", "--limit", "4")
    refused = run_zoo(*args, env=service.env, check=False)
    assert refused.returncode != 0 and refused.stderr.strip() == (
        "zoo: error: acc@5 is measured on several datasets: ImageNet-1K, Kinetics-400; give DATASET:acc@5, "
        "e.g. ImageNet-1K:acc@5")
    args = tuple(a.replace("acc@5=90", "ImageNet-1K:acc@5=90") for a in args)
    local, remote = run_zoo(*args, env=service.env), zoo_client(client_env, *args, cwd=tmp_path)
    assert remote.stdout == local.stdout and not local.stderr
    header, rows, count = _table(local.stdout)
    assert header == ["NAME", "TASK", "PARAMS", "GFLOPS", TOP1, "ImageNet-1K:acc@5", "WEIGHTS", "PLUGIN"]
    assert count == "4 model(s)" and len(rows) == 4
    top1 = [float(row[4]) for row in rows]
    assert top1 == sorted(top1, reverse=True) and all(float(row[5]) >= 90 for row in rows)
    best = _best_top1()
    assert [math.isclose(value, best[row[0]]) for value, row in zip(top1, rows)] == [True] * 4

    as_json = json.loads(zoo_client(client_env, *args, "--json", cwd=tmp_path).stdout)
    assert [r["name"] for r in as_json] == [row[0] for row in rows]
    assert [r["metrics"][TOP1] for r in as_json] == top1
    assert all(isinstance(r["gflops"], float) and r["num_params"] <= 10_000_000 for r in as_json)

    note = zoo_client(client_env, "list", "--sort", "box_map", "--limit", "2", cwd=tmp_path)
    assert note.stderr.splitlines() == [
        "zoo: box_map is measured on COCO-val2017 only in this catalog; reading it as COCO-val2017:box_map"]
    assert _table(note.stdout)[0][4] == "COCO-val2017:box_map"
    missing = run_zoo("list", "--sort", "box_map", "resnet1*", env=service.env)
    assert [row[4] for row in _table(missing.stdout)[1]] == ["-", "-", "-"], "no box_map: a dash"
    for bad, says in ((("--sort", "size"), "zoo: error: unknown sort key 'size'; sort by name, params, gflops"),
                      (("--limit", "0"), "zoo list: error: argument --limit: limit must be a whole number from 1")):
        done = zoo_client(client_env, "list", *bad, cwd=tmp_path, check=False)
        assert done.returncode != 0 and done.stderr.strip().splitlines()[-1].startswith(says)


def test_default_listing_keeps_its_table(synced_catalog: str) -> None:
    header, rows, count = _table(run_zoo("list", "resnet50").stdout)
    assert header == ["NAME", "TASK", "PARAMS", "GFLOPS", "WEIGHTS", "PLUGIN"]
    assert rows == [["resnet50", "classification", "25.6M", "4.089", "2", "torchvision"]] and count == "1 model(s)"

"""The web catalog's per-layer summary (``/layers/NAME``) builds models on the server, so it is bounded.

A model is built once whatever name reaches it (kept by its qualified name; the
``X-Zoo-Summary`` header says built, cached or refused), one build at a time with a
short queue (others 503 with Retry-After, one line), and never above a size: a lower one
for readers without a token. Checked against a real ``zoo serve`` on a synced catalog.
"""

from __future__ import annotations

import html
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from zoo.service.web.catalog import SUMMARY_QUEUE, Summary, SummaryBusy, _Summaries
from tests.conftest import ALL_PLUGINS, run_zoo
from tests.test_serve import Service, running_service

HEADER = "X-Zoo-Summary"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """`zoo serve` on a catalog synced with torchvision's models, with a read token."""
    folder = tmp_path_factory.mktemp("layers")
    env = {"ZOO_REGISTRY_URL": f"sqlite:///{folder / 'registry.db'}", "ZOO_LOAD_PLUGINS": ALL_PLUGINS,
           "ZOO_ARTIFACTS": str(folder / "artifacts")}
    run_zoo("sync", env=env)
    reader = run_zoo("token", "create", "reader", "--scope", "read", env=env).stdout.strip()
    with running_service(env, log=folder / "serve.log") as served:
        served.tokens["reader"] = reader
        yield served


def error_line(page: httpx.Response) -> str:
    """The one-line reason of an error page."""
    found = re.search(r'<p class="error" id="error">([^<]*)</p>', page.text)
    assert found is not None and "\n" not in found[1], page.text
    return html.unescape(found[1])


def test_every_name_of_a_model_reaches_one_kept_summary(site: Service) -> None:
    with site.client() as client:
        answers = [client.get(f"/layers/{name}") for name in
                   ("squeezenet1_1", "torchvision/squeezenet1_1", "SqueezeNet1_1", "squeezenet1_1")]
    assert [a.status_code for a in answers] == [200] * 4
    assert [a.headers[HEADER] for a in answers] == ["built", "cached", "cached", "cached"]
    tables = {re.search(r"<table class=\"layers\">.*</table>", a.text, re.DOTALL)[0] for a in answers}
    assert len(tables) == 1


def test_readers_without_a_token_get_smaller_models(site: Service) -> None:
    with site.client() as anonymous:
        refused = anonymous.get("/layers/resnext50_32x4d")  # 25,028,904 parameters
        assert refused.status_code == 200 and refused.headers[HEADER] == "refused"
        assert re.search(r"resnext50_32x4d has 25,028,904 parameters: more than the server builds for a summary "
                         r"without a token \(25,000,000; 100,000,000 with a read token\); run zoo summary "
                         r"resnext50_32x4d", html.unescape(refused.text))
        unknown = anonymous.get("/layers/resnext50_32x4d", headers={"Authorization": "Bearer nope"})
        assert unknown.status_code == 401 and "unknown or revoked" in unknown.json()["error"]
    with site.client("reader") as reader:
        built = reader.get("/layers/resnext50_32x4d")
        assert built.status_code == 200 and built.headers[HEADER] == "built" and "25,028,904 parameters" in built.text
        largest = max(reader.get("/api/v1/models", params={"limit": 1000}).json()["models"],
                      key=lambda m: m["num_params"] or 0)
        too_large = reader.get(f"/layers/{largest['name']}")
    assert too_large.status_code == 200 and too_large.headers[HEADER] == "refused"
    assert f"more than the server builds for a summary (100,000,000); run zoo summary {largest['name']}" in (
        html.unescape(too_large.text))


def test_concurrent_summaries_are_built_once_each_or_refused_with_retry_after(site: Service) -> None:
    models = ["shufflenet_v2_x0_5", "mnasnet0_5", "mobilenet_v3_small", "squeezenet1_0"]
    names = [spelled for model in models for spelled in (model, f"torchvision/{model}")] * 2

    def get(name: str) -> httpx.Response:
        with site.client() as client:
            return client.get(f"/layers/{name}")

    with ThreadPoolExecutor(len(names)) as pool:
        answers = list(pool.map(get, names))
    assert {a.status_code for a in answers} <= {200, 503} and 200 in {a.status_code for a in answers}
    for busy in (a for a in answers if a.status_code == 503):
        assert int(busy.headers["Retry-After"]) > 0 and "one per-layer summary at a time" in error_line(busy)
    asked = list(zip(names, answers))
    asked += [(name, get(name)) for name, a in asked if a.status_code == 503]  # one at a time now: no queue
    assert asked[-1][1].status_code == 200 and all(a.status_code == 200 for _, a in asked[len(names):])
    built = Counter(name.rpartition("/")[2] for name, a in asked if a.headers.get(HEADER) == "built")
    assert built == Counter(models)  # each model built exactly once, however many asked for it at once


def test_one_build_at_a_time_and_a_full_queue_is_refused() -> None:
    summaries, started, release = _Summaries(), threading.Event(), threading.Event()
    builds: list[str] = []

    def slow_build() -> Summary:
        builds.append("slow")
        started.set()
        assert release.wait(60)
        return Summary({"layers": []}, None)

    with ThreadPoolExecutor(SUMMARY_QUEUE) as pool:
        first = pool.submit(summaries.get, "a/slow", slow_build)
        assert started.wait(60)
        waiting = [pool.submit(summaries.get, "a/slow", slow_build) for _ in range(SUMMARY_QUEUE - 1)]
        deadline = time.monotonic() + 60
        while summaries._queued < SUMMARY_QUEUE and time.monotonic() < deadline:  # until every waiter is queued
            time.sleep(0.01)
        with pytest.raises(SummaryBusy, match=rf"busy \({SUMMARY_QUEUE} requests are building or waiting for one\)"):
            summaries.get("b/other", lambda: Summary(None, "never built"))
        release.set()
        assert first.result(60).how == "built" and [w.result(60).how for w in waiting] == ["cached"] * 3
    assert builds == ["slow"]
    assert summaries.get("a/slow", slow_build).how == "cached"

"""The web catalog of ``zoo serve`` in a real browser: Playwright driving the installed Chromium
(tests/browser.py), every request to another server aborted and recorded (none may be made).

One `zoo serve` process (``--max-upload 1M``) serves a synced catalog with the digits model's
export and weights published, and the export of the test plugin zoo-fixture-counting's
``tiny_segmenter`` (pip-installed: a segmenter with hand-set weights that exports in seconds, so that
"try it" draws an overlay on a photograph); one browser serves the module. What the pages show is
compared with the command line (``zoo list --json``, ``zoo show --json``) on the same catalog.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import httpx
import numpy as np
import pytest
from PIL import Image
from safetensors.torch import save_file

from tests.browser import chromium, offline_page
from tests.conftest import ALL_PLUGINS, FIXTURES, ROOT, pip_install, run_zoo
from tests.test_serve import DIGITS_WEIGHTS, MAX_UPLOAD, Service, raw_request, running_service
from zoo.testing import ObjectStore

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page


#: digits_cnn's weights, by their canonical name.
BASE = "DigitsCNN_Weights.SKLEARN_DIGITS_V1"
#: How long a test waits for the per-layer summary: the server builds the model (or waits up to its
#: SUMMARY_WAIT_SECONDS for its turn, then answers 503), however loaded the machine; the page says when it ends.
LAYERS_WAIT_MS = 300_000


def write_segmenter_weights(plugins: Path, folder: Path) -> None:
    """tiny_segmenter's hand-set weights (the plugin's `bright_region_weights`), written where it looks for them."""
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(plugins))
        from zoo_fixture_counting import SEGMENTER_WEIGHTS_FILE
        from zoo_fixture_counting.model import bright_region_weights
    save_file(bright_region_weights(), folder / SEGMENTER_WEIGHTS_FILE)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, s3_server: ObjectStore) -> Iterator[Service]:
    """`zoo serve --artifacts redirect` on a synced catalog where digits_cnn's export and weights (as team/digits,
    "fine-tuned" from its own weights) are published, and tiny_segmenter's export (its image-sized mask: any image size, no resize), the files in the
    session's object store (the other stores and modes are the API tests' in test_serve.py)."""
    folder = tmp_path_factory.mktemp("web")
    plugins = folder / "site-packages"
    pip_install(FIXTURES / "zoo-fixture-counting", plugins)
    write_segmenter_weights(plugins, folder)
    env = {"ZOO_REGISTRY_URL": f"sqlite:///{folder / 'registry.db'}", "ZOO_LOAD_PLUGINS": f"{ALL_PLUGINS},counting",
           **s3_server.env, "ZOO_ARTIFACTS": s3_server.location(f"web-{uuid.uuid4().hex[:12]}"),
           "PYTHONPATH": str(plugins), "ZOO_FIXTURE_COUNTING_DIR": str(folder)}
    run_zoo("sync", env=env)
    run_zoo("export", "digits_cnn", "--weights", "DEFAULT", "-o", str(folder / "digits.onnx"), env=env)
    run_zoo("publish", "export", str(folder / "digits.onnx"), env=env)
    run_zoo("export", "tiny_segmenter", "--weights", "DEFAULT", "--dynamic-image-size", "-o",
            str(folder / "segmenter.onnx"), env=env)
    run_zoo("publish", "export", str(folder / "segmenter.onnx"), env=env)
    run_zoo("publish", "weights", "digits_cnn", str(DIGITS_WEIGHTS), "--name", "team/digits", "--from", BASE,
            "--metric", "sklearn-digits-heldout:acc@1=99.1", env=env)
    with running_service(env, "--max-upload", str(MAX_UPLOAD), "--artifacts", "redirect",
                         log=folder / "serve.log") as served:
        served.tokens["export"] = str(folder / "digits.onnx")  # where the published exports' files came from
        served.tokens["segmenter"] = str(folder / "segmenter.onnx")
        yield served


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as running:
        yield running


@pytest.fixture
def page(browser: Browser, site: Service) -> Iterator[tuple[Page, list[str]]]:
    """A page that reaches only the service, and the other URLs it tried (which must stay none)."""
    opened, elsewhere = offline_page(browser, site.url)
    try:
        yield opened, elsewhere
    finally:
        opened.context.close()


def zoo_list(site: Service, *args: str) -> list[dict[str, Any]]:
    return json.loads(run_zoo("list", *args, "--json", env=site.env).stdout)


def shown_names(page: Page) -> list[str]:
    return page.eval_on_selector_all("#catalog tbody tr", "rows => rows.map(r => r.dataset.name)")


def export_sha256(site: Service, export: str = "export") -> str:
    """The SHA-256 of a published export: digits_cnn's, or (``"segmenter"``) tiny_segmenter's."""
    return hashlib.sha256(Path(site.tokens[export]).read_bytes()).hexdigest()


@pytest.mark.parametrize("query, args", [
    ({"plugin": "digits"}, ["--plugin", "digits"]),
    ({"task": "detection"}, ["--task", "detection"]),
    ({"max_params": "5M"}, ["--max-params", "5M"]),
    ({"min_metric": "ImageNet-1K:acc@1=82.5"}, ["--min-metric", "ImageNet-1K:acc@1=82.5"]),
    ({"q": "*net*", "task": "classification", "max_params": "30M"},
     ["*net*", "--task", "classification", "--max-params", "30M"]),
])
def test_catalog_filters_list_what_zoo_list_lists(page: tuple[Page, list[str]], site: Service,
                                                  query: dict[str, str], args: list[str]) -> None:
    tab, elsewhere = page
    tab.goto(f"{site.url}/?{urlencode({**query, 'per': 500})}")
    expected = [r["name"] for r in zoo_list(site, *args)]
    assert expected and shown_names(tab) == expected
    assert tab.text_content("#total") == str(len(expected))
    assert elsewhere == []


def test_typing_a_pattern_and_choosing_a_task_filter_the_table(page: tuple[Page, list[str]], site: Service) -> None:
    tab, elsewhere = page
    tab.goto(f"{site.url}/")
    tab.fill("#q", "resnet")  # no wildcard: names containing it
    with tab.expect_navigation():
        tab.select_option("#task", "classification")  # a changed menu applies the form
    named = zoo_list(site, "*resnet*", "--task", "classification")  # and those a search for the word finds
    searched = zoo_list(site, "--search", "resnet", "--task", "classification")
    assert shown_names(tab) == sorted({r["name"] for r in named + searched})
    assert elsewhere == []


def test_sorting_by_a_column_matches_zoo_lists_numbers(page: tuple[Page, list[str]], site: Service) -> None:
    tab, elsewhere = page
    records = zoo_list(site)
    tab.goto(f"{site.url}/?per=500")
    with tab.expect_navigation():
        tab.click("th a[data-sort=params]")  # numbers sort largest first, unknown counts last
    known = sorted((r for r in records if r["num_params"] is not None),
                   key=lambda r: (r["num_params"], r["name"]), reverse=True)
    unknown = sorted((r for r in records if r["num_params"] is None), key=lambda r: r["name"])
    assert shown_names(tab) == [r["name"] for r in known + unknown]
    with tab.expect_navigation():
        tab.click("th a[data-sort=weights]")
    with tab.expect_navigation():
        tab.click("th a[data-sort=weights]")  # again: the other way
    assert "order" not in tab.url
    counts = [len(r["weights"]) for r in sorted(records, key=lambda r: (len(r["weights"]), r["name"]))]
    assert [int(c) for c in tab.eval_on_selector_all("#catalog tbody td:nth-child(6)",
                                                      "cells => cells.map(c => c.textContent)")] == counts
    assert elsewhere == []


def test_a_bookmarked_url_restores_the_view(browser: Browser, site: Service) -> None:
    first, elsewhere = offline_page(browser, site.url)
    first.goto(f"{site.url}/?per=10")
    first.fill("#q", "*net*")
    with first.expect_navigation():
        first.select_option("#task", "classification")
    with first.expect_navigation():
        first.click("th a[data-sort=params]")
    with first.expect_navigation():
        first.click("#pager a[rel=next]")
    bookmark, rows = first.url, shown_names(first)
    first.context.close()
    assert len(rows) == 10 and "page=2" in bookmark and "sort=params" in bookmark

    second, elsewhere_too = offline_page(browser, site.url)  # a new browser context: nothing kept but the URL
    second.goto(bookmark)
    assert shown_names(second) == rows
    assert second.input_value("#q") == "*net*" and second.input_value("#task") == "classification"
    assert "page 2 of" in second.text_content("#count")
    second.context.close()
    assert elsewhere == elsewhere_too == []


def test_the_model_card_shows_the_hashes_of_the_catalog(page: tuple[Page, list[str]], site: Service) -> None:
    tab, elsewhere = page
    record = json.loads(run_zoo("show", "digits_cnn", "--json", env=site.env).stdout)
    tab.goto(f"{site.url}/models/digits_cnn")
    assert tab.text_content("#model-name") == "digits_cnn"
    weights = tab.eval_on_selector_all("section.weights code.sha256", "codes => codes.map(c => c.textContent)")
    assert weights == [w["sha256"] for w in record["weights"]]
    assert tab.text_content("#published code.sha256") == hashlib.sha256(DIGITS_WEIGHTS.read_bytes()).hexdigest()
    assert tab.text_content("section.export code.sha256") == export_sha256(site)
    assert "passed" in tab.text_content("section.export table.checks")
    assert not tab.is_visible("details.categories p")  # categories start collapsed
    assert tab.locator("button.copy").count() == tab.locator("pre.usage").count() == 2  # weights, published
    tab.click("#layers summary")  # the per-layer summary is built on the server when opened
    tab.wait_for_selector("#layers[data-state=loaded], #layers[data-state=failed]", timeout=LAYERS_WAIT_MS)
    assert tab.get_attribute("#layers", "data-state") == "loaded"
    assert tab.locator("#layers table.layers").count() == 1 and "24,058 parameters" in tab.text_content("#layers")
    assert elsewhere == []


def test_no_card_shows_a_server_path_raw_rest_or_a_none_bullet(site: Service) -> None:
    server_paths = [str(ROOT), str(Path(site.tokens["export"]).parent), sys.prefix, "file://"]
    with site.client() as client:
        for name in (r["name"] for r in zoo_list(site)):
            card = client.get(f"/models/{name}").text
            found = [text for text in (*server_paths, ":class:`", "``", "<li>none</li>", "unknown") if text in card]
            assert not found, f"the card of {name} shows {found}"
        digits = client.get("/models/digits_cnn").text
    assert "<code>digits_cnn-fb1204b6.pth</code> (bundled with the plugin)" in digits  # its file's name only


def weights_sections(card: str) -> dict[str, str]:
    """The weights sections of a card's HTML, by weights name."""
    return dict(re.findall(r'<section class="weights" id="weights-([^"]+)"(.*?)</section>', card, flags=re.S))


def test_cards_show_the_sizes_zoo_show_knows_and_docs_as_text_with_links(site: Service) -> None:
    record = json.loads(run_zoo("show", "resnet50", "--json", env=site.env).stdout)
    with site.client() as client:
        resnet, raft, mobilenet = (client.get(f"/models/{name}").text
                                   for name in ("resnet50", "raft_large", "mobilenet_v3_large"))
    sections = weights_sections(resnet)
    for w in record["weights"]:  # declared by torchvision in MiB, as zoo show reads them
        assert f'{w["meta"]["_file_size"]:.1f} MiB' in sections[w["name"]]
    assert "<code>FlyingChairs</code>" in raft  # :class:`~torchvision.datasets.FlyingChairs`
    assert ('<a href="https://pytorch.org/blog/how-to-train-state-of-the-art-models-using-torchvision-latest-'
            'primitives/" rel="noreferrer">new training recipe</a>') in mobilenet


def test_docs_text_is_escaped_before_it_is_read() -> None:
    from zoo.service.web.pages import docs_html

    assert docs_html("""
        Uses ``<b>x</b>`` and :class:`~torchvision.datasets.Foo`, :func:`bar <pkg.bar>`, `cited`.
        See `the paper <https://arxiv.org/abs/1>`_ or `this <javascript:alert(1)>`_ <script>alert(1)</script>

        - one
          continued
        - two & "three"
    """) == ('<div class="docs"><p>Uses <code>&lt;b&gt;x&lt;/b&gt;</code> and <code>Foo</code>, <code>bar</code>, '
             '<em>cited</em>. See <a href="https://arxiv.org/abs/1" rel="noreferrer">the paper</a> or this '
             '&lt;script&gt;alert(1)&lt;/script&gt;</p><ul><li>one continued</li><li>two &amp; &quot;three&quot;</li>'
             '</ul></div>')


def test_the_cards_snippets_run_and_a_published_version_downloads(site: Service) -> None:
    with site.client() as client:
        card = client.get("/models/digits_cnn").text
        download = client.get(re.search(r'<a class="download" href="([^"]+)"', card)[1], follow_redirects=True)
    assert download.status_code == 200
    assert hashlib.sha256(download.content).hexdigest() == hashlib.sha256(DIGITS_WEIGHTS.read_bytes()).hexdigest()
    assert re.search(r'<td class="from"><a href="#weights-([^"]+)" rel="parent">', card)[1] == BASE  # fine-tuned from
    assert f'id="weights-{BASE}"' in card
    weights, published = (html.unescape(s) for s in re.findall(r'<pre class="usage"[^>]*><code>(.*?)</code>', card,
                                                                flags=re.S))
    assert f'model = zoo.get_model("digits_cnn", weights="{BASE}")' in weights
    assert f"zoo export digits_cnn --weights {BASE}" in weights
    assert f'predictor = Predictor.from_registry("digits_cnn", "{BASE}")' in weights  # its export is published
    assert 'model = zoo.get_model("digits_cnn", weights="team/digits:1")' in published
    python = [line for line in (weights + "\n" + published).splitlines() if not line.startswith("zoo ")]
    done = subprocess.run([sys.executable, "-c", "\n".join([*python, "print(type(model).__name__, predictor.task)"])],
                          env={**os.environ, **site.env}, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-1] == "classification"


@pytest.fixture(scope="module")
def timm_catalog(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A catalog synced with the timm plugin: its environment."""
    folder = tmp_path_factory.mktemp("web-timm")
    env = {"ZOO_REGISTRY_URL": f"sqlite:///{folder / 'registry.db'}", "ZOO_LOAD_PLUGINS": "timm",
           "ZOO_ARTIFACTS": str(folder / "artifacts")}
    run_zoo("sync", env=env)
    return env


#: The most bytes the card of timm's flexivit_base may have: 7 weights, 3 with ImageNet-1K's 1,000 categories
#: and 4 with ImageNet-21K's 21,843. Every tag inlining every field and its list made it 2.2 MB.
TIMM_CARD_BYTES = 60_000


def test_a_timm_card_says_what_its_weights_share_once(timm_catalog: dict[str, str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from fastapi.testclient import TestClient

    from zoo.service.app import create_app
    from zoo.service.web.pages import CATEGORIES_INLINE

    for key, value in timm_catalog.items():
        monkeypatch.setenv(key, value)
    client = TestClient(create_app(), base_url="http://127.0.0.1")
    card = client.get("/models/flexivit_base").text
    weights = client.get("/api/v1/models/flexivit_base").json()["weights"]
    assert len(card.encode()) < TIMM_CARD_BYTES
    common = re.search(r'<dl class="common">(.*?)</dl>', card, flags=re.S)[1]  # what all 7 have, said once
    assert "preprocessing" in common and card.count("<dt>preprocessing</dt>") == 1
    sections = weights_sections(card)
    for categories in {tuple(w["meta"]["categories"]) for w in weights}:
        having = [w["name"] for w in weights if tuple(w["meta"]["categories"]) == categories]
        first = sections[having[0]]
        assert all(f'the same {len(categories):,} as <a href="#weights-{having[0]}">' in sections[name]
                   for name in having[1:])
        if len(categories) <= CATEGORIES_INLINE:
            assert html.escape(categories[0]) in first
            continue
        assert categories[-1] not in card  # a list this long is a page of its own, opened on demand
        href = html.unescape(re.search(r'<details class="categories" data-src="([^"]+)"', first)[1])
        listed = re.findall(r"<li>(.*?)</li>", client.get(href).text)
        assert listed == [html.escape(c) for c in categories]
    assert client.get("/categories/flexivit_base?weights=nonesuch").status_code == 404


def test_unknown_models_and_bad_filters_are_one_line_pages(page: tuple[Page, list[str]], site: Service) -> None:
    tab, _ = page
    assert tab.goto(f"{site.url}/models/no_such_model").status == 404
    assert "no_such_model" in tab.text_content("#error")
    assert tab.goto(f"{site.url}/?sort=colour").status == 400
    assert "name, task, plugin" in tab.text_content("#error")
    assert tab.goto(f"{site.url}/?task=nonsense").status in (400, 404)
    assert "\n" not in tab.text_content("#error").strip()


def test_the_compare_view_marks_the_pareto_front(page: tuple[Page, list[str]], site: Service) -> None:
    tab, elsewhere = page
    tab.goto(f"{site.url}/compare?task=classification")
    assert tab.input_value("#metric") == "ImageNet-1K:acc@1"  # the most common metric of these models
    points = tab.eval_on_selector_all("#plot circle", "cs => cs.map(c => [c.dataset.name, +c.dataset.x, "
                                                      "+c.dataset.y, c.classList.contains('pareto')])")
    classifiers = {r["name"]: r["num_params"] for r in zoo_list(site, "--task", "classification")}
    assert len(points) > 20 and all(classifiers[name] == x for name, x, _, _ in points)
    for name, x, y, on_front in points:
        dominated = any(x2 <= x and y2 > y for other, x2, y2, _ in points if other != name)
        assert on_front == (not dominated), name
    assert [name for name, *_, on_front in points if on_front] == tab.eval_on_selector_all(
        "#front a", "links => links.map(a => a.textContent)")
    with tab.expect_navigation():
        tab.select_option("#x", "gflops")
    assert "x=gflops" in tab.url and tab.locator("#plot circle.pareto").count() >= 1
    assert elsewhere == []


def test_netron_draws_the_published_export_from_the_same_server(page: tuple[Page, list[str]], site: Service) -> None:
    import onnx

    tab, elsewhere = page
    nodes = [n.name for n in onnx.load(site.tokens["export"]).graph.node]
    tab.goto(f"{site.url}/models/digits_cnn")
    tab.click("section.export a:text('graph')")
    tab.wait_for_selector("#canvas .node", timeout=30_000)
    dom = tab.content()
    assert tab.url == f"{site.url}/graph/{export_sha256(site)}/"
    missing = [name for name in nodes if f'id="node-name-{name}"' not in dom]
    assert not missing, f"nodes not drawn by netron: {missing}"
    assert elsewhere == []


def drawn_picture(tab: Page) -> Image.Image:
    tab.click("#try button[type=submit]")
    tab.wait_for_selector("#try[data-done]")
    src = tab.get_attribute("#drawn", "src")
    assert src is not None and src.startswith("data:image/png;base64,")
    return Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).convert("RGB")


def test_an_uploaded_photograph_comes_back_drawn(page: tuple[Page, list[str]], site: Service,
                                                 tmp_path: Path) -> None:
    from skimage import data

    tab, elsewhere = page
    photo = tmp_path / "coffee.jpg"
    Image.fromarray(data.coffee()).save(photo, quality=90)
    tab.goto(f"{site.url}/models/digits_cnn")
    with tab.expect_navigation():
        tab.click("section.export a:text('try it')")
    assert tab.input_value("#export") == export_sha256(site)
    sample = drawn_picture(tab)  # a bundled sample photograph first
    assert sample.width > 100
    tab.set_input_files("#upload", str(photo))
    drawn = np.asarray(drawn_picture(tab)).astype(int)
    original = np.asarray(Image.open(photo).convert("RGB")).astype(int)
    height, width = original.shape[:2]
    assert drawn.shape[0] >= height and drawn.shape[1] > width  # the classes' bars beside the photograph
    assert np.array_equal(drawn[:height, :width], original)  # the photograph itself as it was
    panel = drawn[:, width:]
    background = np.median(panel.reshape(-1, 3), axis=0)
    assert np.mean(np.abs(panel - background).sum(axis=2) > 30) > 0.01  # text and bars drawn there
    assert re.fullmatch(r"classification in [0-9.]+ ms on \w+ExecutionProvider", tab.text_content("#status"))
    assert json.loads(tab.text_content("#result"))["task"] == "classification"
    assert elsewhere == []


def test_an_uploaded_photograph_comes_back_with_its_segmentation_drawn_on_it(
        page: tuple[Page, list[str]], site: Service, tmp_path: Path) -> None:
    from skimage import data

    from zoo.runtime.drawing import palette

    tab, elsewhere = page
    photo = tmp_path / "coffee.png"
    Image.fromarray(data.coffee()).save(photo)
    tab.goto(f"{site.url}/try")
    tab.select_option("#export", export_sha256(site, "segmenter"))
    tab.set_input_files("#upload", str(photo))
    drawn = np.asarray(drawn_picture(tab)).astype(int)
    original = np.asarray(Image.open(photo).convert("RGB")).astype(int)
    height, width = original.shape[:2]
    bright = original.mean(axis=2) > 255 / 2  # the mask the hand-set weights make: class 1 where R, G, B average > 0.5
    assert 0.1 < bright.mean() < 0.9  # a visible part of the photograph, not all of it
    assert drawn.shape[0] >= height and drawn.shape[1] > width  # the legend beside the photograph
    # Each pixel is blended half and half with its class's colour (background: black, bright: colour 1), truncated.
    colours = np.array(palette(2))
    assert np.abs(2 * drawn[:height, :width] - original - colours[bright.astype(int)]).max() <= 1
    legend = drawn[:, width:]
    assert np.all(legend == colours[1], axis=2).any()  # the swatch of the bright class
    assert re.fullmatch(r"segmentation in [0-9.]+ ms on \w+ExecutionProvider", tab.text_content("#status"))
    result = json.loads(tab.text_content("#result"))
    assert result["shape"] == [height, width]
    assert result["classes"] == [{"label": "background", "pixels": int((~bright).sum())},
                                 {"label": "bright", "pixels": int(bright.sum())}]
    assert elsewhere == []


def test_only_published_files_and_the_pages_files_are_reachable(site: Service) -> None:
    sha = export_sha256(site)
    for path in ("/static/../app.py", "/static/%2e%2e/app.py", "/static/..%2f__init__.py", f"/graph/{sha}/server.py",
                 f"/graph/{sha}/__init__.py", f"/graph/{sha}/..%2f__init__.py", f"/graph/{sha}/index.html",
                 f"/graph/{'0' * 64}/", "/no/such/page",
                 "/models/", "/etc/passwd"):
        status, _ = raw_request(site.port, f"GET {path} HTTP/1.1\nHost: 127.0.0.1:{site.port}\nConnection: close")
        assert status == 404, path
    with httpx.Client(base_url=site.url, timeout=60, follow_redirects=True) as client:
        assert client.get(f"/graph/{sha}/model.onnx").content == Path(site.tokens["export"]).read_bytes()
        assert client.get(f"/graph/{'0' * 64}/model.onnx").status_code == 404  # the API's file: published only
        assert client.get("/static/style.css").status_code == 200
        assert client.get("/graph/not-a-hash/").status_code == 400  # as the API answers a malformed SHA-256
        assert client.get("/", headers={"Host": "evil.example"}).status_code == 400  # DNS rebinding
        too_big = client.post(f"/try/{sha}", content=b"\xff" * (MAX_UPLOAD + 1))
        assert too_big.status_code == 413 and "at most" in too_big.json()["error"]
        not_image = client.post(f"/try/{sha}", content=b"not a picture")
        assert not_image.status_code == 400 and "the uploaded file" in not_image.json()["error"]
        unpublished = client.post(f"/try/{'0' * 64}", content=b"not a picture")
        assert unpublished.status_code == 404
        assert "Content-Security-Policy" in client.get("/").headers


def test_with_read_tokens_required_the_pages_need_one_too(site: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    from fastapi.testclient import TestClient

    from zoo.service.app import create_app

    for key, value in site.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.syspath_prepend(site.env["PYTHONPATH"])  # the catalog's plugins, as the served process has them
    secret = run_zoo("token", "create", "web-reader", "--scope", "read", env=site.env).stdout.strip()
    client = TestClient(create_app(read_token_required=True), base_url="http://127.0.0.1")
    for path in ("/", "/compare", "/models/digits_cnn", "/try", f"/graph/{export_sha256(site)}/"):
        refused = client.get(path)
        assert refused.status_code == 401 and "needs a token" in refused.json()["error"], path
        assert client.get(path, headers={"Authorization": f"Bearer {secret}"}).status_code == 200, path
    assert client.get("/static/style.css").status_code == 200  # the pages' own files are no secret


def test_models_too_large_to_build_get_a_line_instead_of_layers(site: Service) -> None:
    large = max(zoo_list(site, "--task", "classification"), key=lambda r: r["num_params"] or 0)
    with httpx.Client(base_url=site.url, timeout=60) as client:
        answer = client.get(f"/layers/{large['name']}")
    assert answer.status_code == 200
    assert re.search(rf"{large['name']} has [0-9,]+ parameters: more than the server builds", answer.text)


# -- every page on a phone and a desktop, light and dark ---------------------------------------------

#: What each page is checked at, and the element that says it is drawn (its data loaded, its script run).
SCREENS = {"catalog": ("/", "#catalog tbody tr"), "compare": ("/compare?task=classification", "#plot circle"),
           "card": ("/models/digits_cnn", "#published tbody tr"), "layers": ("/layers/digits_cnn", "table.layers"),
           "try": ("/try", "#try"), "graph": ("/graph/{export}/", "#canvas .node"),
           "docs": ("/api/v1/docs", ".opblock"), "error": ("/models/no_such_model", "#error")}
#: The axe rules the pages of others fail in their own markup, which these pages serve as they come: netron's
#: (an empty sidebar heading until a node is chosen, no page zoom since it zooms the graph itself, no main
#: landmark, and its welcome screen's logo links without text, which axe sees when the screen is still
#: fading out as the graph is drawn) and Swagger UI's (its colours, its headings, buttons inside its
#: operations' buttons).
THEIRS = {"graph": {"empty-heading", "meta-viewport", "landmark-one-main", "region", "link-name"},
          "docs": {"color-contrast", "heading-order", "nested-interactive"}}


@pytest.mark.parametrize("width", [1280, 390])
@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_every_page_fits_the_screen_and_passes_axe(browser: Browser, site: Service, width: int, scheme: str) -> None:
    from tests.browser import axe_violations

    tab, elsewhere = offline_page(browser, site.url, width=width, color_scheme=scheme)
    found: dict[str, list[str]] = {}
    try:
        for name, (path, drawn) in SCREENS.items():
            tab.goto(site.url + path.format(export=export_sha256(site)))
            tab.wait_for_selector(drawn, state="attached", timeout=30_000)
            if name == "try":  # with a prediction shown, its data unfolded
                tab.click("#try button[type=submit]")
                tab.wait_for_selector("#try[data-done]")
                tab.click(".drawn details summary")
            wide = _settled_width(tab, width)
            failed = sorted({v["id"] for v in axe_violations(tab)} - THEIRS.get(name, set()))
            if wide > width or failed:
                found[name] = [*([f"{wide} px wide"] if wide > width else []), *failed]
    finally:
        tab.context.close()
    assert found == {} and elsewhere == []


def _settled_width(tab: Page, width: int, patience_s: float = 30.0) -> int:
    """The document's width once it fits `width`, else its width when `patience_s` has passed: netron lays its
    graph out to the window after the first node is drawn (on a loaded machine, a while after), so a page's
    width may settle after its drawn signal; one that never fits is reported as it is at the end."""
    from tests.browser import evaluated

    deadline = time.monotonic() + patience_s
    while True:
        wide = evaluated(tab, "document.documentElement.scrollWidth")
        if wide <= width or time.monotonic() > deadline:
            return wide
        tab.wait_for_timeout(250)


def test_the_try_page_forgets_a_chosen_sample_when_opened_again(page: tuple[Page, list[str]], site: Service) -> None:
    tab, elsewhere = page
    tab.goto(f"{site.url}/try")
    samples = tab.locator("input[name=sample]")
    samples.nth(1).check()
    tab.goto(f"{site.url}/compare")
    tab.go_back()  # a browser restores a form's choices from its history unless the form says not to
    tab.wait_for_selector("#try")
    assert [samples.nth(i).is_checked() for i in range(samples.count())] == [True] + [False] * (samples.count() - 1)
    assert elsewhere == []


def test_a_prediction_is_summed_up_in_words(page: tuple[Page, list[str]], site: Service) -> None:
    tab, elsewhere = page
    tab.goto(f"{site.url}/try?export={export_sha256(site)}")
    assert not tab.is_visible(".drawn")  # nothing shown before a prediction
    drawn_picture(tab)
    top = json.loads(tab.text_content("#result"))["top"]
    assert tab.text_content("#summary") == "image: " + ", ".join(f"{t['label']} {t['probability']:.1%}" for t in top)
    assert not tab.is_visible("#result")  # the data only when asked for
    assert elsewhere == []


def test_the_graph_page_leads_back_to_the_model(page: tuple[Page, list[str]], site: Service) -> None:
    tab, elsewhere = page
    tab.goto(f"{site.url}/graph/{export_sha256(site)}/")
    tab.wait_for_selector("#canvas .node", timeout=30_000)
    with tab.expect_navigation():
        tab.click("header.zoo-bar a[rel=up]")
    assert tab.text_content("#model-name") == "digits_cnn"
    assert elsewhere == []

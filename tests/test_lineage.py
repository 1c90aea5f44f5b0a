"""A published version's run record (its lineage): stored with the version on SQLite and PostgreSQL, carried by
a registry service in client mode, kept by a catalog made before it, and shown by ``zoo show`` and the model card.

The weights are the digits model's shipped file; the run record is one of the shape ``zoo finetune`` writes
(zoo.training.finetune), with three epochs.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, text

import zoo
from tests.conftest import catalog_at, run_zoo
from tests.test_serve import Service, digits_publishing_site, one_line_error
from zoo.catalog import tables
from zoo.catalog.engine import open_engine
from zoo.catalog.fingerprint import SCHEMA_REVISION
from zoo.errors import UsageError
from zoo.publish import MAX_RUN_BYTES, list_published, publish_weights, resolve_published
from zoo.records import PublishedWeights
from zoo.settings import Settings
from zoo.store import open_store

DIGITS_FILE = Path(__file__).resolve().parents[1] / "plugins" / "zoo-digits" / "zoo_digits" / "digits_cnn-fb1204b6.pth"
DIGITS_SHA256 = "fb1204b6c80a07da996f8b9bdf1e0cce39fd3398cc7234244c41568a9b2cee59"
BASE = "DigitsCNN_Weights.SKLEARN_DIGITS_V1"  # digits_cnn's weights, by their canonical name
RUN: dict[str, Any] = {
    "format": "zoo-finetune-run/1", "status": "finished", "model": "digits/digits_cnn",
    "recipe": {"model": "digits_cnn", "data": "digits-folder", "epochs": 3, "lr": 0.001, "seed": 0,
               "freeze": ["features.0"], "optimizer": "adamw"},
    "base_weights": {"name": BASE, "sha256": DIGITS_SHA256},
    "data": {"classes": [str(d) for d in range(10)], "train": 1437, "val": 360, "skipped": 2, "split": "seeded",
             "manifest_sha256": "ab" * 32, "root": "/data/digits-folder"},
    "versions": {"python": "3.11.9", "torch": "2.5.1", "torchvision": "0.20.1", "timm": None, "zoo": "0.1.0"},
    "device": "cpu",
    "epochs": [{"epoch": n, "train_loss": loss, "val_loss": loss * 1.1, "acc@1": acc, "acc@5": 99.0,
                "images_per_s": 800.0, "lr": 0.001, "seconds": 2.0}
               for n, loss, acc in ((1, 1.9, 61.5), (2, 0.7, 90.25), (3, 0.4, 96.5))],
    "best": {"epoch": 3, "train_loss": 0.4, "val_loss": 0.44, "acc@1": 96.5, "acc@5": 99.0},
    "wall_s": 6.5, "stopped_early": False, "note": "ünïcode, <b>&\"quotes\"</b>",
}


@pytest.fixture
def catalog(catalog_url: str, use_catalog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A catalog of the digits plugin (SQLite, then PostgreSQL) with an artifact folder of its own."""
    monkeypatch.setenv("ZOO_ARTIFACTS", str(tmp_path / "artifacts"))
    return use_catalog(catalog_url, "digits")


def _rows(url: str) -> int:
    with open_engine(url).connect() as conn:
        return conn.scalar(select(func.count()).select_from(tables.published_weights))


def test_the_run_record_is_stored_with_the_version_and_read_back_identical(catalog: str) -> None:
    published = publish_weights("digits_cnn", DIGITS_FILE, name="acme/digits", metrics={"digits:acc@1": 96.5},
                                run=RUN)
    assert published.run == RUN
    assert published.from_weights == BASE  # "fine-tuned from": the record's base weights, kept in one column
    assert resolve_published("acme/digits:1") == published and list_published() == [published]
    assert zoo.describe("digits_cnn")["published"][0]["run"] == RUN
    assert PublishedWeights.from_json(json.loads(json.dumps(published.to_json()))) == published
    # Given both, they must agree; a version without a record has none.
    assert publish_weights("digits_cnn", DIGITS_FILE, name="acme/digits", from_weights="digits_cnn.DEFAULT",
                           run=RUN).run == RUN
    plain = publish_weights("digits_cnn", DIGITS_FILE, name="acme/digits")
    assert plain.run is None and plain.from_weights is None and resolve_published("acme/digits").run is None
    # NaN and infinities, which JSON lacks (a loss that diverged), are stored as null.
    diverged = {"epochs": [{"epoch": 1, "train_loss": float("nan"), "val_loss": float("inf")}]}
    assert publish_weights("digits_cnn", DIGITS_FILE, name="acme/nan", run=diverged).run == {
        "epochs": [{"epoch": 1, "train_loss": None, "val_loss": None}]}


def test_bad_run_records_are_refused_in_one_line_with_nothing_stored(catalog: str) -> None:
    too_large = {"blob": "x" * MAX_RUN_BYTES}
    cases = [([1, 2], "must be a JSON object"), ("run.json", "must be a JSON object"),
             ({"tags": {1, 2}}, "not plain JSON"), (too_large, f"at most {MAX_RUN_BYTES} are stored"),
             ({"base_weights": {"name": 7}}, "must be a weights name or null"),
             ({"base_weights": {"name": "digits_cnn.NOPE"}}, "unknown weights")]
    for run, message in cases:
        with pytest.raises(zoo.ZooError, match=message) as caught:
            publish_weights("digits_cnn", DIGITS_FILE, name="acme/x", run=run)
        assert "\n" not in str(caught.value), message
    for from_weights, run in (("digits_cnn.DEFAULT", {"base_weights": {"name": None}}), ("acme/other", RUN)):
        with pytest.raises(zoo.ZooError, match="is not the run record's base weights|unknown weights"):
            publish_weights("digits_cnn", DIGITS_FILE, name="acme/x", from_weights=from_weights, run=run)
    assert _rows(catalog) == 0 and list(open_store(Settings.from_environ())) == []


def test_a_catalog_made_before_run_records_is_upgraded(catalog_url: str, use_catalog, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZOO_ARTIFACTS", str(tmp_path / "artifacts"))
    use_catalog(catalog_url, "digits")
    with catalog_at(catalog_url, "0007") as conn:  # a catalog as the zoo left it before run records
        conn.execute(text("INSERT INTO published_weights (namespace, name, version, model, sha256, size, metrics, "
                          f"created_at) VALUES ('acme', 'old', 1, 'digits/digits_cnn', '{DIGITS_SHA256}', 1, '{{}}', "
                          "'2025-01-01 00:00:00')"))
    assert zoo.sync(catalog_url).repairs == ()
    with open_engine(catalog_url).connect() as conn:
        assert conn.scalar(text("SELECT version_num FROM alembic_version")) == SCHEMA_REVISION
    old = resolve_published("acme/old")
    assert (old.spec, old.run, old.lineage()) == ("acme/old:1", None, {})
    assert publish_weights("digits_cnn", DIGITS_FILE, name="acme/old", run=RUN).run == RUN


# -- through a registry service, and shown ---------------------------------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Service, str]]:
    """`zoo serve` on a digits catalog (SQLite, a folder store), and a publisher's token."""
    with digits_publishing_site(tmp_path_factory.mktemp("serve")) as site:
        yield site


def test_client_mode_carries_the_record_and_show_and_the_card_draw_it(
        site: tuple[Service, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    served, token = site
    monkeypatch.setenv("ZOO_REGISTRY_URL", served.url)
    monkeypatch.setenv("ZOO_TOKEN", token)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    big = copy.deepcopy(RUN)  # far more than a URL holds: the record travels in the body
    big["epochs"] += [{"epoch": n, "acc@1": 96.0, "train_loss": 0.3, "val_loss": 0.4, "lr": 1e-4}
                      for n in range(4, 400)]
    big["best"] = None  # a record may lack a part: nothing of it is shown
    big["device"] = "<cuda:0 & more>"  # text of a record is escaped on the card
    published = publish_weights("digits_cnn", DIGITS_FILE, name="acme/tuned", run=big)
    assert published.run == big and published.from_weights == BASE
    assert resolve_published("acme/tuned:1").run == big and list_published("acme/tuned")[0].run == big
    again = publish_weights("digits_cnn", DIGITS_FILE, name="acme/tuned", run=RUN, metrics={"digits:acc@1": 96.5})
    assert again.run == RUN and again.version == 2
    with pytest.raises(UsageError, match="must be a JSON object"):  # refused here, before an upload
        publish_weights("digits_cnn", DIGITS_FILE, name="acme/tuned", run=[1])
    # The service refuses a record that is not JSON, or longer than the bound, in one line, before the body.
    body = b"{not json" + DIGITS_FILE.read_bytes()
    headers = {"Authorization": f"Bearer {token}", "X-Zoo-SHA256": DIGITS_SHA256, "X-Zoo-Run-Length": "9"}
    with httpx.Client(base_url=served.url, timeout=60) as client:
        answer = client.post("/api/v1/published/acme/tuned", params={"model": "digits_cnn"}, content=body,
                             headers=headers)
        assert answer.status_code == 400 and "is not JSON" in one_line_error(answer)
        answer = client.post("/api/v1/published/acme/tuned", params={"model": "digits_cnn"}, content=body,
                             headers={**headers, "X-Zoo-Run-Length": str(MAX_RUN_BYTES + 1)})
        assert answer.status_code == 400 and "X-Zoo-Run-Length" in one_line_error(answer)
        card = client.get("/models/digits_cnn").text
    assert [p.version for p in list_published("acme/tuned")] == [1, 2]

    # zoo show: per version, what it was fine-tuned from, its data and training; --json has the record
    shown = run_zoo("show", "digits_cnn", env=served.env).stdout
    assert "acme/tuned:2  digits:acc@1=96.5" in shown
    assert f"fine-tuned from: {BASE} (sha256 {DIGITS_SHA256})" in shown
    assert f"data:            manifest {'ab' * 32}, 10 classes; images: 1437 training, 360 validation, " \
           "2 unreadable skipped" in shown
    assert "training:        3 epochs, on cpu, 6 s" in shown and "training:        399 epochs, on <cuda:0 & more>" in shown
    assert "best:            epoch 3, val acc@1 96.50%, acc@5 99.00%, val loss 0.44, train loss 0.4" in shown
    assert "final:           epoch 399, val acc@1 96.00%, val loss 0.4, train loss 0.3" in shown
    listed = json.loads(run_zoo("show", "digits_cnn", "--json", env=served.env).stdout)
    assert [p["run"] for p in listed["published"]] == [big, RUN]

    # the card: "fine-tuned from" links to the parent weights' section, curves with one point per epoch
    assert f'id="weights-{BASE}"' in card
    sections = re.findall(r'<section class="lineage".*?</section>', card, flags=re.S)
    assert len(sections) == 2
    for section, run in zip(sections, (big, RUN)):
        assert f'<a href="#weights-{BASE}" rel="parent">{BASE}</a>' in section
        svg = re.search(r"<svg[^>]*>", section).group()
        assert 'viewBox="0 0 ' in svg and 'width="100%"' in svg and "height" not in svg
        epochs = [str(e["epoch"]) for e in run["epochs"]]
        assert re.findall(r'<circle [^>]*class="acc1" data-epoch="(\d+)"', section) == epochs
        assert re.findall(r'<circle [^>]*class="val-loss" data-epoch="(\d+)"', section) == epochs
    assert "399 epochs, on &lt;cuda:0 &amp; more&gt;" in sections[0] and "<cuda:0" not in card

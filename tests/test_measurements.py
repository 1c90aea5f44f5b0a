"""Measured metrics (``zoo eval --record``, `zoo.record_evaluation`): a model's and its export's acc@1 and acc@5
on the digits folder stored in the catalog with the data's manifest hash, on SQLite and PostgreSQL, through a
registry service (a token needed, the body checked), kept by a catalog made before them, and shown apart from
the claimed figures by ``zoo show`` and the model card.

The data is `tests.test_evaluate`'s digits folder (scikit-learn's held-out digits, 20 per class); the default
validation fifth is measured.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import numpy as np
import pytest
from sqlalchemy import func, inspect, select, text

import zoo
from tests.conftest import NOT_ON_DEPLOYMENT_HOST, catalog_at, python_without, run_zoo
from tests.test_evaluate import digits  # noqa: F401  (a fixture: the digits folder)
from tests.test_lineage import BASE as WEIGHTS, DIGITS_FILE, DIGITS_SHA256
from tests.test_lineage import catalog, site  # noqa: F401  (fixtures: a digits catalog, SQLite then PostgreSQL; zoo serve)
from tests.test_serve import Service, one_line_error
from zoo.catalog import tables
from zoo.catalog.engine import open_engine
from zoo.catalog.fingerprint import SCHEMA_REVISION
from zoo.cli import main
from zoo.datasets import image_data
from zoo.errors import UsageError
from zoo.fetch import sha256_of
from zoo.measurements import MAX_MEASUREMENT_BYTES, list_measurements, record_measurement
from zoo.records import Measurement
from zoo.runtime.evaluation import evaluate_logits

@dataclasses.dataclass(frozen=True)
class Made:
    model: zoo.Evaluation  # digits_cnn with its DEFAULT weights, in PyTorch
    export: zoo.Evaluation  # its export, in ONNX Runtime
    file: Path  # the export


@pytest.fixture(scope="module")
def made(digits: Path, tmp_path_factory: pytest.TempPathFactory) -> Made:  # noqa: F811
    """The digits folder's validation images measured on a digits catalog of the module's own."""
    folder = tmp_path_factory.mktemp("made")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ZOO_REGISTRY_URL", f"sqlite:///{folder / 'registry.db'}")
        mp.setenv("ZOO_LOAD_PLUGINS", "digits")
        export = zoo.export_onnx("digits_cnn", folder / "digits.onnx", weights="DEFAULT").path
        return Made(zoo.evaluate("digits_cnn", digits), zoo.evaluate(export, digits), export)


def _rows(url: str) -> int:
    with open_engine(url).connect() as conn:
        return conn.scalar(select(func.count()).select_from(tables.measurements))


def test_a_model_and_its_export_are_recorded_as_measured_and_read_back(
        catalog: str, made: Made, digits: Path) -> None:  # noqa: F811
    manifest = image_data(digits).manifest_sha256
    measured = zoo.record_evaluation(made.model)
    assert (measured.model, measured.weights, measured.kind, measured.sha256) == (
        "digits/digits_cnn", WEIGHTS, "model", DIGITS_SHA256)
    assert (measured.acc1, measured.acc5, measured.images) == (made.model.acc1, made.model.acc5, made.model.images)
    assert measured.metrics == {"digits:acc@1": made.model.acc1, "digits:acc@5": made.model.acc5}
    assert (measured.manifest_sha256, measured.dataset, measured.split) == (manifest, "digits", "val")
    assert measured.zoo_version == zoo.__version__ and measured.measured_at.tzinfo is not None
    # An export is recorded under the model and weights its metadata names, with its own hash.
    exported = zoo.record_evaluation(made.export, dataset="heldout")
    assert (exported.model, exported.weights, exported.kind) == ("digits/digits_cnn", WEIGHTS, "export")
    assert exported.sha256 == sha256_of(made.file) and exported.manifest_sha256 == manifest
    assert exported.metrics == {"heldout:acc@1": made.export.acc1, "heldout:acc@5": made.export.acc5}

    assert list_measurements("digits_cnn") == [measured, exported] == zoo.list_measurements()
    assert list_measurements("digits_cnn", "digits_cnn.DEFAULT") == [measured, exported]  # any name of the weights
    assert Measurement.from_json(json.loads(json.dumps(measured.to_json()))) == measured
    # The same file measured again on the same data and split replaces its measurement.
    again = zoo.record_evaluation(made.model)
    assert list_measurements("digits_cnn") == [exported, again] and _rows(catalog) == 2
    # Weights whose hash the catalog does not know (a plugin's weights through a registry service) are hashed
    # from the verified file.
    unhashed = dataclasses.replace(made.model, evaluated={**made.model.evaluated, "sha256": None})
    assert zoo.record_evaluation(unhashed).sha256 == DIGITS_SHA256 and _rows(catalog) == 2

    # Published weights are recorded under their exact version.
    zoo.publish_weights("digits_cnn", DIGITS_FILE, name="acme/digits", from_weights=WEIGHTS)
    published = zoo.record_evaluation(zoo.evaluate("acme/digits", digits))
    assert (published.weights, published.sha256, published.acc1) == ("acme/digits:1", DIGITS_SHA256, measured.acc1)
    assert list_measurements("digits_cnn", "acme/digits") == [published]


def test_what_is_not_a_measurement_is_refused_in_one_line_with_nothing_stored(
        catalog: str, made: Made, digits: Path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    refused = [
        (dataclasses.replace(made.model, split="train"), "on the training images is not a measurement"),
        (dataclasses.replace(made.export, evaluated={**made.export.evaluated, "weights": None}),
         "nothing to record the measurement under"),
        (evaluate_logits(np.eye(2, 10, dtype=np.float32), [0, 1], ["0", "1"], categories=[str(d) for d in range(10)],
                         evaluated=made.model.evaluated, split="val"), "without a data set"),
        ("not an evaluation", "takes an Evaluation"),
    ]
    for evaluation, message in refused:
        with pytest.raises(UsageError, match=message) as caught:
            zoo.record_evaluation(evaluation)  # type: ignore[arg-type]
        assert "\n" not in str(caught.value)
    good = Measurement("digits_cnn", WEIGHTS, "model", DIGITS_SHA256, "digits", "val", 40, 97.5, 100.0, "ab" * 32,
                       datetime.now(timezone.utc), zoo.__version__)
    bad = [({"acc1": 100.5}, "acc@1 must be a percentage"), ({"acc5": 90.0}, "cannot be below its acc@1"),
           ({"acc1": float("nan")}, "acc@1 must be a percentage"), ({"dataset": "a:b"}, "dataset must be"),
           ({"sha256": "fb1204b6"}, "sha256 must be 64"), ({"kind": "script"}, "kind must be one of"),
           ({"images": 0}, "number of images"), ({"images": True}, "number of images"),
           ({"split": "test"}, "split must be one of"), ({"measured_at": datetime(2026, 1, 1)}, "time zone"),
           ({"measured_at": datetime.fromisoformat("0001-01-01T00:00+01:00")}, "not a time it can have been"),
           ({"measured_at": datetime.now(timezone.utc) + timedelta(days=2)}, "not a time it can have been"),
           ({"acc1": 10**400}, "acc@1 must be a percentage"), ({"weights": "digits_cnn.\x00"}, "printable"),
           ({"model": ""}, "model must be a name"), ({"weights": "acme/none"}, "nothing is published|unknown"),
           ({"weights": "digits_cnn.NOPE"}, "NOPE"), ({"model": "no_such_model"}, "no_such_model")]
    for change, message in bad:
        with pytest.raises(zoo.ZooError, match=message) as caught:
            record_measurement(dataclasses.replace(good, **change))
        assert "\n" not in str(caught.value), message
    assert _rows(catalog) == 0
    # zoo eval refuses --record with --split train before measuring
    assert main(["eval", "digits_cnn", str(digits), "--record", "--split", "train"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("zoo: error: a measurement on the training images") and err.count("\n") == 1
    assert record_measurement(good).model == "digits/digits_cnn" and _rows(catalog) == 1


def test_a_catalog_made_before_measurements_is_upgraded(catalog: str, made: Made) -> None:  # noqa: F811
    with catalog_at(catalog, "0008") as conn:  # a catalog as the zoo left it before measurements
        assert "measurements" not in inspect(conn).get_table_names()
    assert zoo.sync(catalog).repairs == ()
    with open_engine(catalog).connect() as conn:
        assert conn.scalar(text("SELECT version_num FROM alembic_version")) == SCHEMA_REVISION
    assert list_measurements() == []
    recorded = zoo.record_evaluation(made.model)
    assert list_measurements("digits_cnn") == [recorded]


# -- through a registry service, and shown ---------------------------------------------------


def test_client_mode_records_with_a_token_and_show_and_the_card_tell_measured_from_claimed(
        site: tuple[Service, str], made: Made, digits: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    served, token = site
    client = {**served.env, "ZOO_REGISTRY_URL": served.url}
    for key, value in client.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("ZOO_TOKEN", raising=False)
    with pytest.raises(zoo.ZooError, match="needs a token") as caught:
        zoo.record_evaluation(made.model)
    assert "\n" not in str(caught.value)
    monkeypatch.setenv("ZOO_TOKEN", token)
    measured = zoo.record_evaluation(made.model)
    assert (measured.model, measured.weights, measured.acc1) == ("digits/digits_cnn", WEIGHTS, made.model.acc1)
    assert list_measurements("digits_cnn") == [measured]
    # zoo eval --record on the export, where neither torch nor SQLAlchemy is installed: recorded by the service
    done = python_without(NOT_ON_DEPLOYMENT_HOST, "-m", "zoo", "eval", str(made.file), str(digits), "--record",
                          "--json")
    assert done.returncode == 0, done.stderr
    exported = Measurement.from_json(json.loads(done.stdout)["measurement"])
    assert (exported.kind, exported.sha256, exported.acc1) == ("export", sha256_of(made.file), made.export.acc1)
    text_run = python_without(NOT_ON_DEPLOYMENT_HOST, "-m", "zoo", "eval", str(made.file), str(digits), "--record")
    assert text_run.returncode == 0, text_run.stderr
    said = text_run.stdout.splitlines()[-1]
    assert said.startswith(f"recorded as measured for digits/digits_cnn {WEIGHTS}: digits:acc@1 ")
    # in the service's own catalog: the model's measurement and the export's (recorded twice: replaced)
    assert [m.kind for m in _served(served, "digits_cnn")] == ["model", "export"]

    # zoo show, here (client) and on the service's machine: measured figures apart from the claimed ones
    for env in (client, served.env):
        shown = run_zoo("show", "digits_cnn", env=env).stdout
        claimed, _, measured_part = shown.partition("measured (zoo eval --record; the metrics above are claimed):")
        assert "sklearn-digits-heldout acc@1=" in claimed and "digits:acc@1" not in claimed
        assert f"    {WEIGHTS}\n      measured: digits:acc@1 " in measured_part
        assert f"on 40 validation images (data sha256 {exported.manifest_sha256[:8]}\u2026, " in measured_part
        assert f"; export sha256 {exported.sha256[:8]}\u2026)" in measured_part
        listed = json.loads(run_zoo("show", "digits_cnn", "--json", env=env).stdout)
        assert [Measurement.from_json(m).kind for m in listed["measurements"]] == ["model", "export"]

    with httpx.Client(base_url=served.url, timeout=60) as http:
        card = http.get("/models/digits_cnn").text
        assert f'<dt>measured metrics</dt><dd><ul class="measured" aria-label="measured by zoo eval --record">' \
               f'<li data-kind="model">{measured.summary()}</li><li data-kind="export">' in card
        assert "<dt>claimed metrics</dt>" in card

        # hostile bodies: each refused in one line, nothing stored
        auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        good = measured.to_json()
        cases = [(b"{not json", 400, "not a measurement's JSON"), (b"[1, 2]", 400, "not a measurement's JSON"),
                 (json.dumps({**good, "metrics": {}}).encode(), 400, "not a measurement's JSON"),
                 (json.dumps({**good, "images": "40"}).encode(), 400, "number of images"),
                 (json.dumps({**good, "metrics": {"digits:acc@1": 1e9, "digits:acc@5": 1e9}}).encode(), 400,
                  "acc@1 must be a percentage"),
                 (json.dumps({**good, "model": "x" * 500}).encode(), 400, "model must be a name"),
                 (b"[" * 5000 + b"]" * 5000, 400, "not a measurement's JSON"),
                 (b" " * (MAX_MEASUREMENT_BYTES + 1), 413, f"at most {MAX_MEASUREMENT_BYTES} bytes")]
        for body, status, message in cases:
            answer = http.post("/api/v1/measurements", content=body, headers=auth)
            assert answer.status_code == status and message in one_line_error(answer), (body[:40], answer.text)
        answer = http.post("/api/v1/measurements", json=good)  # no token
        assert answer.status_code == 401 and "needs a token" in one_line_error(answer)
        assert http.get("/api/v1/measurements", params={"model": "digits_cnn"}).json() == [
            m.to_json() for m in _served(served, "digits_cnn")]
    assert len(_served(served, "digits_cnn")) == 2


def _served(served: Service, model: str) -> list[Measurement]:
    """The measurements of `model` in the service's own catalog, read there (not through the service)."""
    return [Measurement.from_json(m) for m in json.loads(run_zoo("show", model, "--json", env=served.env).stdout)[
        "measurements"]]

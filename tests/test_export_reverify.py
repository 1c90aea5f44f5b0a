"""Published exports are verified by the registry, not by their own record (zoo.export.verify_file, zoo.publish).

One export of digits_cnn with its weights (``zoo export``, once for the module) is published as it is, and
with a tensor changed or its metadata edited (its verification record still says "passed"); then through a
real ``zoo serve``, where a client uploads it and a publisher without the digits plugin records a copy as
"claimed": its API, its pages and the client mode show who verified each export. A client of a service
older than the field reads "claimed".
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import onnx
import pytest
from onnx import numpy_helper
from sqlalchemy import select, text

import zoo
from tests.conftest import catalog_at, python_without, run_zoo
from tests.test_serve import digits_publishing_site, one_line_error
from zoo.catalog import tables
from zoo.catalog.engine import open_engine
from zoo.context import current
from zoo.errors import ZooWarning
from zoo.export import ExportVerificationError, verify_file
from zoo.publish import find_export, publish_export
from zoo.settings import Settings
from zoo.store import open_store

API = "/api/v1"
DIGITS_WEIGHTS = "DigitsCNN_Weights.SKLEARN_DIGITS_V1"


@pytest.fixture(scope="module")
def digits_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """digits_cnn exported with its weights by ``zoo export`` on a catalog of its own."""
    folder = tmp_path_factory.mktemp("export")
    run_zoo("export", "digits_cnn", "--weights", "DEFAULT", "-o", str(folder / "digits.onnx"),
            env={"ZOO_REGISTRY_URL": f"sqlite:///{folder / 'registry.db'}", "ZOO_LOAD_PLUGINS": "digits"})
    return folder / "digits.onnx"


@pytest.fixture
def catalog(sqlite_url: str, use_catalog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A catalog of the digits plugin with an artifact store of its own."""
    monkeypatch.setenv("ZOO_ARTIFACTS", str(tmp_path / "artifacts"))
    return use_catalog(sqlite_url, "digits")


def edited(source: Path, target: Path, change: Callable[[onnx.ModelProto], None]) -> Path:
    """A copy of the export `source` at `target`, `change`d; every other byte of its metadata as it was."""
    proto = onnx.load(str(source))
    change(proto)
    onnx.save(proto, str(target))
    return target


def bias_shifted(proto: onnx.ModelProto) -> None:
    """Add 0.5 to the classifier's bias: the file still runs, and says it was verified, but is not the model."""
    bias = next(t for t in proto.graph.initializer if t.name.endswith("classifier.bias"))
    bias.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(bias) + 0.5, bias.name))


def metadata_set(key: str, value: str) -> Callable[[onnx.ModelProto], None]:
    def change(proto: onnx.ModelProto) -> None:
        prop = next((p for p in proto.metadata_props if p.key == key), None) or proto.metadata_props.add(key=key)
        prop.value = value
    return change


def published_rows(url: str) -> list[tuple[str, str]]:
    with open_engine(url).connect() as conn:
        return [tuple(r) for r in conn.execute(select(tables.published_exports.c.sha256,
                                                      tables.published_exports.c.verified_by))]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- publishing here ---------------------------------------------------------------------


def test_a_published_export_is_verified_again_and_recorded_as_verified_by_the_registry(
        catalog: str, digits_export: Path) -> None:
    checks = verify_file(digits_export)
    assert checks and all(c.passed for c in checks)
    published = publish_export(digits_export)
    assert (published.verified_by, published.weights) == ("registry", DIGITS_WEIGHTS)
    assert published_rows(catalog) == [(sha256(digits_export), "registry")]
    assert find_export("digits_cnn", DIGITS_WEIGHTS) == published
    assert published.to_json()["verified_by"] == "registry"


#: Files that are not the export their metadata says (each still records its verification as "passed"), and
#: what the refusal names.
NOT_WHAT_THEY_SAY = [
    (bias_shifted, r"exported digits_cnn does not match PyTorch \(rtol=0\.001, atol=1e-05\): output at 1x1x8x8"),
    (metadata_set("zoo.categories", json.dumps([f"class {i}" for i in range(10)])), "categories differs"),
    (metadata_set("zoo.weights_sha256", "0" * 64), "weights_sha256 differs"),
    (metadata_set("zoo.inputs", json.dumps([{"name": "image", "layout": "NCHW", "export_shape": [1, 1, 8, 8]}])),
     "inputs differs"),
]


def test_an_export_that_is_not_what_its_metadata_says_is_refused_and_nothing_is_stored(
        catalog: str, digits_export: Path, tmp_path: Path) -> None:
    for i, (change, found) in enumerate(NOT_WHAT_THEY_SAY):
        bad = edited(digits_export, tmp_path / f"bad{i}.onnx", change)
        assert all(c["passed"] for c in zoo.read_metadata(bad)["verification"])  # its own record says "passed"
        with pytest.raises(ExportVerificationError, match=found) as refused:
            publish_export(bad)
        assert "\n" not in str(refused.value) and str(refused.value).endswith("nothing was published")
    assert published_rows(catalog) == []
    assert list(open_store(Settings.from_environ())) == []


def test_a_model_above_the_size_limit_is_claimed_without_being_built(catalog: str, digits_export: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import zoo.export

    limit = zoo.describe("digits_cnn")["num_params"] - 1
    monkeypatch.setattr(zoo.export, "MAX_VERIFY_PARAMETERS", limit)
    monkeypatch.setattr(zoo.export, "make_plan", None)  # building it would fail the test
    with pytest.warns(ZooWarning, match=f"exports of models of at most {limit:,} are verified again"):
        assert publish_export(digits_export).verified_by == "claimed"


# -- a 0006 catalog, migrated ------------------------------------------------------------


def test_exports_published_before_the_migration_are_claimed(catalog_url: str, use_catalog) -> None:
    use_catalog(catalog_url, "digits")
    with catalog_at(catalog_url, "0006") as conn:  # a catalog as the zoo left it before verified_by
        conn.execute(text("INSERT INTO published_exports (sha256, size, model, weights, metadata, created_at) "
                          f"VALUES ('{'ab' * 32}', 1, 'digits/digits_cnn', '{DIGITS_WEIGHTS}', '{{}}', "
                          "'2025-01-01 00:00:00')"))
    assert zoo.sync(catalog_url).repairs == ()
    assert published_rows(catalog_url) == [("ab" * 32, "claimed")]
    assert [e.verified_by for e in current().catalog.exports()] == ["claimed"]


# -- through a registry service -----------------------------------------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, str], str, str]]:
    """`zoo serve` on a digits catalog: its environment, base URL and a publisher's token."""
    with digits_publishing_site(tmp_path_factory.mktemp("serve")) as (served, token):
        yield served.env, served.url, token


def test_the_service_verifies_uploads_and_shows_who_verified_each_export(
        site: tuple[dict[str, str], str, str], digits_export: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    env, url, token = site
    client_env = {"ZOO_REGISTRY_URL": url, "ZOO_TOKEN": token, "TORCH_HOME": str(tmp_path / "torch")}
    # a client uploads: the service verifies the file again, and refuses a changed one in one line
    done = run_zoo("publish", "export", str(digits_export), "--json", env=client_env, cwd=tmp_path)
    assert json.loads(done.stdout)["verified_by"] == "registry" and not done.stderr
    bad = edited(digits_export, tmp_path / "bad.onnx", bias_shifted)
    done = run_zoo("publish", "export", str(bad), env=client_env, cwd=tmp_path, check=False)
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("zoo: error: the registry service at ") and (
        "exported digits_cnn does not match PyTorch" in done.stderr and "nothing was published" in done.stderr)
    # the same model's file (another byte in it) published into the service's catalog where the plugin is missing
    claimed = edited(digits_export, tmp_path / "claimed.onnx", metadata_set("note", "another file"))
    for key, value in env.items():  # the service's own catalog, plugins and store, in this process and its children
        monkeypatch.setenv(key, value)
    done = python_without(["zoo_digits"], "-m", "zoo", "publish", "export", str(claimed), "--json")
    assert done.returncode == 0 and json.loads(done.stdout)["verified_by"] == "claimed", done.stderr
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("zoo: warning: "), done.stderr
    assert ("not verified again here: digits_cnn with DigitsCNN_Weights.SKLEARN_DIGITS_V1 cannot be built here: "
            "digits/digits_cnn needs its plugin digits installed here: pip install 'zoo-digits==") in done.stderr
    assert publish_export(claimed).verified_by == "claimed"  # published once: its first record stays
    verified_sha, claimed_sha, bad_sha = sha256(digits_export), sha256(claimed), sha256(bad)
    assert sorted(published_rows(env["ZOO_REGISTRY_URL"])) == sorted([(verified_sha, "registry"),
                                                                       (claimed_sha, "claimed")])

    with httpx.Client(base_url=url, timeout=120) as http:
        listed = {e["sha256"]: e["verified_by"] for e in http.get(f"{API}/exports").json()}
        assert listed == {verified_sha: "registry", claimed_sha: "claimed"}
        assert http.get(f"{API}/exports/{verified_sha}").json()["verified_by"] == "registry"
        refused = http.post(f"{API}/exports", content=bad.read_bytes(),
                            headers={"X-Zoo-SHA256": bad_sha, "Authorization": f"Bearer {token}"})
        assert refused.status_code == 400
        assert one_line_error(refused).startswith("exported digits_cnn does not match PyTorch")
        assert http.get(f"{API}/exports/{bad_sha}").status_code == 404

        card = http.get("/models/digits_cnn").text
        assert (f'data-sha256="{verified_sha}"' in card and 'data-verified-by="registry">verified by this registry'
                in card and 'data-verified-by="claimed">claimed by its publisher, not verified again' in card)
        page = http.get("/try").text
        assert f'value="{verified_sha}" data-verified-by="registry"' in page
        assert f'value="{claimed_sha}" data-verified-by="claimed"' in page and "claimed, not verified</option>" in page
        assert '<p id="verification-note"' in page and '1 marked "claimed" was verified by their publisher only' in page

    # client mode reads the field
    monkeypatch.setenv("ZOO_REGISTRY_URL", url)
    assert {e.sha256: e.verified_by for e in current().catalog.exports()} == listed
    assert find_export("digits_cnn", DIGITS_WEIGHTS).sha256 in listed


def test_a_client_of_a_service_older_than_the_field_reads_claimed(monkeypatch: pytest.MonkeyPatch,
                                                                  digits_export: Path) -> None:
    old = {"sha256": sha256(digits_export), "size": digits_export.stat().st_size, "model": "digits/digits_cnn",
           "weights": DIGITS_WEIGHTS, "metadata": zoo.read_metadata(digits_export),
           "created_at": "2025-01-01T00:00:00+00:00"}  # as a service before verified_by answered

    class Old(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            body = json.dumps(old).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Old)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("ZOO_REGISTRY_URL", f"http://127.0.0.1:{server.server_address[1]}")
        found = find_export("digits_cnn", DIGITS_WEIGHTS)
        assert found is not None and (found.sha256, found.verified_by) == (old["sha256"], "claimed")
    finally:
        server.shutdown()
        server.server_close()

"""Publishing weights and exports (zoo.publish) into the artifact store (zoo.store), on SQLite with a folder
store and on PostgreSQL with an object store (S3, a SeaweedFS server the session starts).

The weights are the digits model's shipped file (a "fine-tuned copy": the same state
dict) and a copy with a 3-class head; resnet18 shows the head of a torchvision model.
"""

from __future__ import annotations

import hashlib
import os
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import onnx
import pytest
import torch
from sqlalchemy import func, select

import zoo
from zoo.catalog import tables
from zoo.catalog.engine import open_engine
from zoo.catalog.fingerprint import ensure_current
from zoo.errors import (
    ArtifactTooLargeError,
    HashMismatchError,
    UnknownArtifactError,
    UnknownNameError,
    UnknownWeightsError,
    UsageError,
    WeightsError,
)
from zoo.publish import find_export, list_published, publish_export, publish_weights, resolve_published, set_alias
from zoo.settings import Settings
from zoo.store import DirectoryStore, open_store
from conftest import FULL_SWEEP_ENV, CodeOnLoad, damage_blob, run_zoo

DIGITS_FILE = Path(__file__).resolve().parents[1] / "plugins" / "zoo-digits" / "zoo_digits" / "digits_cnn-fb1204b6.pth"
DIGITS_SHA256 = "fb1204b6c80a07da996f8b9bdf1e0cce39fd3398cc7234244c41568a9b2cee59"


# -- the artifact store ---------------------------------------------------------------


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def _blob(root: Path, sha256: str) -> Path:
    """Where a directory store at `root` keeps the blob of `sha256`."""
    return root / "sha256" / sha256[:2] / sha256


def _store_root() -> Path:
    """The folder of the artifact store the environment configures."""
    store = open_store(Settings.from_environ())
    assert isinstance(store, DirectoryStore)
    return store.root


def test_store_keeps_files_by_content_and_deduplicates(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path / "store")
    source = tmp_path / "a.bin"
    source.write_bytes(b"weights")
    first = store.put_file(source)
    assert first.sha256 == _sha(b"weights") and first.size == 7
    path = _blob(tmp_path / "store", first.sha256)
    assert path.read_bytes() == b"weights" and path.stat().st_mode & 0o777 == 0o444
    before = path.stat()
    again = store.put_stream([b"wei", b"ghts"], sha256=first.sha256, max_bytes=7)
    assert again == first and path.stat().st_ino == before.st_ino  # the existing blob is kept
    assert store.exists(first.sha256) and store.stat(first.sha256) == 7 and list(store) == [first]
    with store.open(first.sha256) as f:
        assert f.read() == b"weights"
    assert store.read(first.sha256) == b"weights"
    assert _files(tmp_path / "store") == [path]  # no temporary file left
    assert store.delete(first.sha256) and not store.exists(first.sha256) and store.stat(first.sha256) is None
    assert not store.delete(first.sha256) and list(store) == []


def test_store_refuses_a_wrong_hash_an_oversize_stream_and_leaves_nothing(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path / "store")
    with pytest.raises(HashMismatchError, match="declared; nothing was stored"):
        store.put_stream([b"abc"], sha256=_sha(b"abd"), max_bytes=10)
    consumed = []

    def endless() -> Iterator[bytes]:
        while True:
            consumed.append(1)
            yield b"x" * 1000

    with pytest.raises(ArtifactTooLargeError, match="larger than the limit of 2500 bytes") as caught:
        store.put_stream(endless(), sha256=_sha(b""), max_bytes=2500)
    assert caught.value.limit == 2500 and len(consumed) == 3  # stopped as soon as the limit was passed

    def cut() -> Iterator[bytes]:
        yield b"half"
        raise ConnectionResetError("the client went away")

    with pytest.raises(ConnectionResetError):
        store.put_stream(cut(), sha256=_sha(b"half of it"), max_bytes=100)
    assert _files(tmp_path / "store") == []
    assert not store.exists(_sha(b"abc")) and not store.exists(_sha(b"half"))


def test_store_bounds_hashes_and_reads_regular_files_only(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path / "store")
    for bad in ["ABC", "0" * 63, "G" * 64, "A" * 64, "../" + "0" * 61, 7]:
        with pytest.raises(UsageError, match="64 lowercase hex digits"):
            store.exists(bad)
    with pytest.raises(UnknownArtifactError, match="no file with SHA-256"):
        store.open("0" * 64)
    with pytest.raises(UsageError, match="not a regular file"):
        store.put_file(tmp_path)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(UsageError, match="not a regular file"):
        store.put_file(fifo)
    with pytest.raises(UsageError, match="max_bytes"):
        store.put_stream([b""], sha256=_sha(b""), max_bytes=-1)
    blob = _blob(tmp_path / "store", store.put_stream([b"good"], sha256=_sha(b"good"), max_bytes=4).sha256)
    blob.chmod(0o644)
    blob.write_bytes(b"evil")
    with pytest.raises(HashMismatchError, match="the store is damaged"):
        store.read(_sha(b"good"))


def test_default_store_is_configurable_else_beside_a_sqlite_catalog(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("ZOO_ARTIFACTS", raising=False)
    monkeypatch.setenv("ZOO_REGISTRY_URL", f"sqlite:///{tmp_path / 'cat' / 'registry.db'}")
    assert _store_root() == tmp_path / "cat" / "artifacts"
    monkeypatch.setenv("ZOO_REGISTRY_URL", "postgresql://user@db.example:5432/zoo")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert _store_root() == tmp_path / "cache" / "zoo" / "artifacts"
    monkeypatch.setenv("ZOO_ARTIFACTS", str(tmp_path / "shared"))
    assert _store_root() == tmp_path / "shared"


# -- publishing weights ---------------------------------------------------------------


@pytest.fixture
def catalog(catalog_url: str, use_catalog, tmp_path: Path, monkeypatch, request: pytest.FixtureRequest) -> str:
    """A catalog of the digits plugin with an artifact store of its own: SQLite with a folder, then PostgreSQL
    with an object store (a prefix in the session's SeaweedFS), so each store and each catalog is tried."""
    on_postgresql = catalog_url.startswith("postgresql")
    monkeypatch.setenv("ZOO_ARTIFACTS", request.getfixturevalue("s3_artifacts") if on_postgresql
                       else str(tmp_path / "artifacts"))
    return use_catalog(catalog_url, "digits")


@pytest.fixture(scope="module")
def three_class_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The digits weights with a 3-class head (the first three rows of the 10-class one)."""
    state = torch.load(DIGITS_FILE, weights_only=True)
    state["classifier.weight"] = state["classifier.weight"][:3].clone()
    state["classifier.bias"] = state["classifier.bias"][:3].clone()
    path = tmp_path_factory.mktemp("weights") / "three.pt"
    torch.save(state, path)
    return path


def _outputs(model: torch.nn.Module) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(torch.linspace(-1, 2, 4 * 64).reshape(4, 1, 8, 8))


def _by_hand(path: Path, num_classes: int) -> torch.Tensor:
    from zoo_digits.cnn import DigitsCNN

    model = DigitsCNN(num_classes=num_classes)
    model.load_state_dict(torch.load(path, weights_only=True))
    return _outputs(model)


def _stored() -> list:
    """The blobs of the artifact store the environment configures."""
    return list(open_store(Settings.from_environ()))


def _published_rows(url: str) -> int:
    with ensure_current(url).connect() as conn:
        return conn.scalar(select(func.count()).select_from(tables.published_weights))


def test_round_trip_inherits_from_the_weights_it_was_tuned_from(catalog: str) -> None:
    published = publish_weights("digits_cnn", DIGITS_FILE, name="examples/digits-parity",
                                metrics={"sklearn-digits-heldout:acc@1": 99.111}, from_weights="digits_cnn.DEFAULT",
                                description="the shipped weights, republished")
    assert (published.spec, published.model, published.sha256, published.size) == (
        "examples/digits-parity:1", "digits/digits_cnn", DIGITS_SHA256, DIGITS_FILE.stat().st_size)
    expected = zoo.describe("digits_cnn")["weights"][0]
    assert published.from_weights == expected["name"] == "DigitsCNN_Weights.SKLEARN_DIGITS_V1"
    assert published.categories == expected["meta"]["categories"] == [str(d) for d in range(10)]
    assert published.preprocessing == expected["transforms"]
    assert published.metrics == {"sklearn-digits-heldout:acc@1": 99.111}
    assert open_store(Settings.from_environ()).read(DIGITS_SHA256) == DIGITS_FILE.read_bytes()

    model = zoo.get_model("digits_cnn", weights="examples/digits-parity")
    assert torch.equal(_outputs(model), _by_hand(DIGITS_FILE, 10))
    assert torch.equal(_outputs(zoo.get_model("digits_cnn", weights="examples/digits-parity:1")),
                       _outputs(model))
    assert resolve_published("examples/digits-parity") == published
    assert [p["spec"] for p in zoo.describe("digits_cnn")["published"]] == ["examples/digits-parity:1"]
    assert list_published() == [published]
    # A new head on top of published weights, as with any pretrained weights.
    built = zoo.build_model("digits_cnn", weights="examples/digits-parity", num_classes=4)
    assert built.model.classifier.out_features == 4
    assert set(built.report.mismatched) == {"classifier.weight", "classifier.bias"}


def test_categories_give_the_head_and_the_file_is_loaded_verified(catalog: str, three_class_file: Path) -> None:
    published = publish_weights("digits_cnn", three_class_file, name="acme/abc", categories=["a", "b", "c"])
    assert published.categories == ["a", "b", "c"] and published.preprocessing is None
    model = zoo.get_model("digits_cnn", weights="acme/abc")
    assert model.classifier.out_features == 3
    assert torch.equal(_outputs(model), _by_hand(three_class_file, 3))
    # A blob changed in the store is refused before anything is loaded.
    damage_blob(open_store(Settings.from_environ()), published.sha256)
    with pytest.raises(HashMismatchError, match="the store is damaged"):
        zoo.get_model("digits_cnn", weights="acme/abc")


def test_a_file_that_does_not_fit_is_refused_with_the_load_report(catalog: str, three_class_file: Path,
                                                                   tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"does not fit digits_cnn with its own head: tensors 2 of another shape "
                                         r"\(classifier.weight \[3, 64\] vs model \[10, 64\]"):
        publish_weights("digits_cnn", three_class_file, name="acme/abc")
    with pytest.raises(UsageError, match="a head of 2 categories"):
        publish_weights("digits_cnn", three_class_file, name="acme/abc", categories=["a", "b"])
    state = torch.load(DIGITS_FILE, weights_only=True)
    del state["features.0.weight"]
    state["extra.weight"] = torch.zeros(1)
    partial = tmp_path / "partial.pt"
    torch.save(state, partial)
    with pytest.raises(UsageError, match=r"1 missing \(features.0.weight\); 1 unexpected \(extra.weight\)"):
        publish_weights("digits_cnn", partial, name="acme/abc")
    code = tmp_path / "code.pt"
    torch.save({"x": CodeOnLoad(tmp_path / "ran")}, code)
    noise = tmp_path / "noise.pt"
    noise.write_bytes(os.urandom(1000))
    for bad in (code, noise):
        with pytest.raises(WeightsError, match="cannot be loaded as tensors only"):
            publish_weights("digits_cnn", bad, name="acme/abc")
    assert not (tmp_path / "ran").exists()
    with pytest.raises(UsageError, match="cannot read"):
        publish_weights("digits_cnn", tmp_path / "missing.pt", name="acme/abc")
    assert _published_rows(catalog) == 0 and _stored() == []


@pytest.mark.parametrize("name", ["acme", "acme/../x", "acme/x/y", "Acme/x", "acme/x.y", "/x", "acme/",
                                  "acme/x:2", "acme/x@prod", "-a/x", "a/" + "x" * 101, "", None])
def test_bad_names_are_refused_in_one_line(catalog: str, name: object) -> None:
    with pytest.raises(UsageError, match="is not NAMESPACE/NAME") as caught:
        publish_weights("digits_cnn", DIGITS_FILE, name=name)
    assert "\n" not in str(caught.value)


BAD_ARGUMENTS = [
    ({"metrics": {"acc@1": 90}}, "DATASET:METRIC"),
    ({"metrics": {"d:acc": float("nan")}}, "finite number"),
    ({"metrics": {"d:acc": True}}, "finite number"),
    ({"categories": "abc"}, "a list of names"),
    ({"categories": []}, "1 to 100000"),
    ({"categories": ["a", "a", "b"]}, "given twice"),
    ({"categories": ["a", ""]}, "not a name"),
    ({"from_weights": "digits_cnn.NOPE"}, "unknown weights"),
    ({"from_weights": "acme/nothing"}, "unknown weights"),
    ({"preprocessing": {"kind": "classification", "mean": [0.5]}}, "mean and std come together"),
]


def test_bad_arguments_store_nothing(catalog: str, tmp_path: Path) -> None:
    """Each bad argument is refused in one line, and none leaves a row or a file (one catalog for all cases)."""
    for kwargs, message in BAD_ARGUMENTS:
        with pytest.raises((UsageError, UnknownWeightsError), match=message) as caught:
            publish_weights("digits_cnn", DIGITS_FILE, name="acme/x", **kwargs)
        assert "\n" not in str(caught.value), kwargs
        assert _published_rows(catalog) == 0 and _stored() == [], kwargs


def test_versions_and_aliases(catalog: str, three_class_file: Path) -> None:
    first = publish_weights("digits_cnn", DIGITS_FILE, name="acme/digits")
    second = publish_weights("digits_cnn", three_class_file, name="acme/digits", categories=["x", "y", "z"],
                             from_weights="acme/digits:1")
    assert (first.version, second.version) == (1, 2)
    assert second.from_weights == "acme/digits:1"
    assert resolve_published("acme/digits").version == 2
    assert resolve_published("acme/digits:1").sha256 == DIGITS_SHA256
    assert set_alias("acme/digits", "production", 1).aliases == ("production",)
    assert resolve_published("acme/digits@production").version == 1
    assert zoo.get_model("digits_cnn", weights="acme/digits@production").classifier.out_features == 10
    set_alias("acme/digits", "production", 2)  # aliases move
    assert resolve_published("acme/digits@production").version == 2
    assert [(p.version, p.aliases) for p in list_published("acme/digits")] == [(1, ()), (2, ("production",))]
    with pytest.raises(UnknownWeightsError, match="acme/digits:3"):
        resolve_published("acme/digits:3")
    with pytest.raises(UnknownWeightsError, match="did you mean: acme/digits"):
        resolve_published("acme/digit")
    with pytest.raises(UnknownNameError, match="unknown alias 'acme/digits@staging'; did you mean: acme/digits@prod"):
        resolve_published("acme/digits@staging")
    with pytest.raises(UnknownWeightsError, match="acme/digits:9"):
        set_alias("acme/digits", "production", 9)
    for bad in ("Prod", "a b", "../x"):
        with pytest.raises(UsageError, match="alias"):
            set_alias("acme/digits", bad, 1)
    with pytest.raises(UsageError, match="versions start at 1"):
        resolve_published("acme/digits:0")


#: Slow round trips whose backend does not change what they test run on one backend in CI
#: (PostgreSQL for the race, SQLite for the CLI) and on both with ``ZOO_FULL_SWEEP=1``.
_BOTH = os.environ.get(FULL_SWEEP_ENV) == "1"


@pytest.mark.parametrize("catalog_url", ["sqlite", "postgresql"] if _BOTH else ["postgresql"], indirect=True)
def test_concurrent_publishers_get_versions_one_to_eight(catalog: str) -> None:
    start = threading.Barrier(8)
    versions: list[int] = []
    errors: list[BaseException] = []

    def publish() -> None:
        try:
            start.wait()
            versions.append(publish_weights("digits_cnn", DIGITS_FILE, name="acme/race").version)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=publish) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(versions) == list(range(1, 9))
    assert [p.version for p in list_published("acme/race")] == list(range(1, 9))


#: One version added by a process of its own (the catalog from $ZOO_REGISTRY_URL); prints its number.
_ADD_VERSION = ("from zoo.catalog.engine import open_engine; from zoo.catalog.published import Spec, add_version; "
                "print(add_version(open_engine(), Spec('acme', 'procs'), model='digits/digits_cnn', "
                f"sha256='{DIGITS_SHA256}', size=1, metrics={{}}).version)")


def test_concurrent_processes_get_versions_one_to_eight(catalog: str) -> None:
    ensure_current()  # the catalog made and migrated before the processes start
    children = [subprocess.Popen([sys.executable, "-c", _ADD_VERSION], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True) for _ in range(8)]
    outputs = [child.communicate(timeout=300) for child in children]
    assert [child.returncode for child in children] == [0] * 8, [err for _, err in outputs]
    assert sorted(int(out) for out, _ in outputs) == list(range(1, 9))


def test_syncs_and_prunes_keep_published_rows(catalog: str, monkeypatch) -> None:
    published = publish_weights("digits_cnn", DIGITS_FILE, name="acme/kept")
    set_alias("acme/kept", "production", 1)
    zoo.sync(catalog, force=True)
    monkeypatch.setenv("ZOO_LOAD_PLUGINS", "")  # no plugins here: a pruning sync removes the digits plugin
    report = zoo.sync(catalog, force=True, prune=True)
    assert report.pruned == ("digits",)
    assert list_published() == [replace(published, aliases=("production",))]


def test_get_model_builds_a_torchvision_head_from_published_categories(catalog: str, use_catalog,
                                                                      tmp_path: Path) -> None:
    use_catalog(catalog, "digits,torchvision")
    torch.manual_seed(0)
    tuned = zoo.get_model("resnet18", num_classes=3)
    path = tmp_path / "defects.safetensors"
    from safetensors.torch import save_file

    save_file(tuned.state_dict(), path)
    publish_weights("resnet18", path, name="acme/defects", categories=["ok", "scratch", "dent"],
                    from_weights="ResNet18_Weights.DEFAULT")
    model = zoo.get_model("resnet18", weights="acme/defects").eval()
    assert model.fc.out_features == 3
    x = torch.linspace(0, 1, 3 * 64 * 64).reshape(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), tuned.eval()(x))
    assert resolve_published("acme/defects").preprocessing == zoo.describe("resnet18")["weights"][0]["transforms"]
    with pytest.raises(UsageError, match="are for torchvision/resnet18, not digits_cnn"):
        zoo.get_model("digits_cnn", weights="acme/defects")
    with pytest.raises(UsageError, match=r"does not fit resnet18 with a head of 1000 categories"):
        publish_weights("resnet18", path, name="acme/defects", from_weights="ResNet18_Weights.DEFAULT")


# -- publishing exports ---------------------------------------------------------------


def test_publish_export_records_a_verified_export(catalog: str, tmp_path: Path) -> None:
    result = zoo.export_onnx("digits_cnn", tmp_path / "digits.onnx", weights="DEFAULT")
    published = publish_export(result.path)
    assert (published.sha256, published.model, published.weights) == (
        result.sha256, "digits/digits_cnn", "DigitsCNN_Weights.SKLEARN_DIGITS_V1")
    assert (published.metadata["verification"]
            and open_store(Settings.from_environ()).read(result.sha256) == result.path.read_bytes())
    assert publish_export(result.path) == published  # published once
    assert find_export("digits_cnn", "DigitsCNN_Weights.SKLEARN_DIGITS_V1") == published
    assert find_export("digits/digits_cnn", "DigitsCNN_Weights.SKLEARN_DIGITS_V1") == published
    assert find_export("digits_cnn", None) is None
    # zoo exports lists the exports made here and the published ones
    assert [e["sha256"] for e in json.loads(run_zoo("exports", "--published", "--json").stdout)] == [result.sha256]
    listed = run_zoo("exports").stdout
    assert listed.count(str(result.path.resolve())) == 1 and "published (zoo publish export):" in listed
    assert listed.split("published (zoo publish export):")[1].count(result.sha256[:16]) == 1

    proto = onnx.load(str(result.path))
    for prop in proto.metadata_props:
        if prop.key == "zoo.verification":
            prop.value = prop.value.replace("true", "false")
    failed = tmp_path / "failed.onnx"
    onnx.save(proto, str(failed))
    with pytest.raises(UsageError, match="verification against PyTorch did not pass"):
        publish_export(failed)
    del proto.metadata_props[:]
    onnx.save(proto, str(failed))
    with pytest.raises(UsageError, match="lacks the zoo metadata model, weights, verification"):
        publish_export(failed)
    with pytest.raises(UsageError, match="no ONNX file"):
        publish_export(tmp_path / "missing.onnx")
    with open_engine(catalog).connect() as conn:
        assert conn.scalar(select(func.count()).select_from(tables.published_exports)) == 1


def test_an_export_of_published_weights_is_found_by_their_alias(catalog: str, three_class_file: Path,
                                                                  tmp_path: Path) -> None:
    publish_weights("digits_cnn", three_class_file, name="acme/abc", categories=["a", "b", "c"],
                    preprocessing=zoo.describe("digits_cnn")["weights"][0]["transforms"])
    set_alias("acme/abc", "production", 1)
    result = zoo.export_onnx("digits_cnn", tmp_path / "abc.onnx", weights="acme/abc@production")
    meta = zoo.read_metadata(result.path)
    assert (result.weights, meta["weights"], meta["categories"]) == ("acme/abc:1", "acme/abc:1", ["a", "b", "c"])
    assert meta["preprocessing"]["channel_order"] == "L"
    published = publish_export(result.path)
    assert find_export("digits_cnn", "acme/abc@production") == published == find_export("digits_cnn", "acme/abc:1")
    assert find_export("digits_cnn", "DigitsCNN_Weights.SKLEARN_DIGITS_V1") is None
    from zoo.runtime import Predictor

    predictor = Predictor.from_registry("digits_cnn", "acme/abc@production")  # the local artifact store's copy
    assert predictor.path.read_bytes() == result.path.read_bytes() and predictor.categories == ["a", "b", "c"]
    with pytest.raises(UsageError, match="no export of digits_cnn with weights DigitsCNN_Weights.DEFAULT"):
        Predictor.from_registry("digits_cnn", "DigitsCNN_Weights.DEFAULT")


# -- the command line -----------------------------------------------------------------


@pytest.mark.parametrize("catalog_url", ["sqlite", "postgresql"] if _BOTH else ["sqlite"], indirect=True)
def test_cli_publishes_lists_and_aliases(catalog: str, three_class_file: Path, tmp_path: Path) -> None:
    categories = tmp_path / "categories.txt"
    categories.write_text("a\nb\n\nc\n")
    done = run_zoo("publish", "weights", "digits_cnn", str(three_class_file), "--name", "acme/abc",
                   "--categories", str(categories), "--metric", "val:acc@1=97.5", "--description", "three", "--json")
    record = json.loads(done.stdout)
    assert (record["spec"], record["categories"], record["metrics"]) == ("acme/abc:1", ["a", "b", "c"],
                                                                         {"val:acc@1": 97.5})
    run_zoo("publish", "weights", "digits_cnn", str(three_class_file), "--name", "acme/abc", "--categories", "x,y,z")
    assert run_zoo("alias", "acme/abc", "production", "1").stdout.strip() == "acme/abc@production -> acme/abc:1"
    listed = run_zoo("published").stdout
    assert "acme/abc" in listed and "production" in listed and "val:acc@1=97.5" in listed
    assert [r["version"] for r in json.loads(run_zoo("published", "acme/abc", "--json").stdout)] == [1, 2]
    for args in (["publish", "weights", "digits_cnn", str(three_class_file), "--name", "acme/../abc",
                  "--categories", "a,b,c"],
                 ["publish", "weights", "digits_cnn", str(three_class_file), "--name", "acme/abc"],
                 ["publish", "weights", "digits_cnn", str(DIGITS_FILE), "--name", "acme/abc", "--metric", "acc=1"],
                 ["alias", "acme/abc", "production", "7"],
                 ["published", "acme/x/y"]):
        failed = run_zoo(*args, check=False)
        assert failed.returncode == 1 and failed.stdout == ""
        assert failed.stderr.startswith("zoo: error: ") and failed.stderr.count("\n") == 1, failed.stderr
    assert _published_rows(catalog) == 2

"""``zoo gc`` (zoo.gc): the blobs no catalog row references and unfinished uploads leave the artifact store once
they are older than the grace period; referenced and young ones stay.

Both stores (`artifacts`: a folder, and a prefix of the session's SeaweedFS server) with a SQLite catalog,
one case on PostgreSQL. The referenced blob is the digits model's shipped weights, published. An S3
object's time cannot be set back, so what is old there is what ``--grace 0`` calls old; the folder's
files are dated back with `os.utime` where young and old files must meet in one run.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import torch

import zoo
from conftest import ROOT, run_zoo
from zoo.cli import main
from zoo.context import current
from zoo.errors import ArtifactError
from zoo.gc import DEFAULT_GRACE, collect, parse_duration
from zoo.outputs import content_path
from zoo.publish import publish_weights
from zoo.settings import Settings
from zoo.store import ArtifactStore, DirectoryStore, open_store

DIGITS_FILE = ROOT / "plugins" / "zoo-digits" / "zoo_digits" / "digits_cnn-fb1204b6.pth"
DIGITS_SHA256 = "fb1204b6c80a07da996f8b9bdf1e0cce39fd3398cc7234244c41568a9b2cee59"
TWO_DAYS_AGO = time.time() - 2 * 86400


@pytest.fixture(scope="module")
def synced(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite catalog file synced with the digits plugin once for the module, for tests to copy."""
    path = tmp_path_factory.mktemp("catalog") / "registry.db"
    run_zoo("sync", env={"ZOO_REGISTRY_URL": f"sqlite:///{path}", "ZOO_LOAD_PLUGINS": "digits"})
    return path


def _catalog(synced: Path, folder: Path, use_catalog) -> str:
    """A copy of the synced catalog in `folder`, nothing published in it, used by zoo for this test; its URL."""
    copy = folder / "registry.db"
    shutil.copyfile(synced, copy)
    return use_catalog(f"sqlite:///{copy}", "digits")


@pytest.fixture
def registry(synced: Path, use_catalog, artifacts: str, tmp_path: Path, isolated_cache: Path,
             monkeypatch) -> ArtifactStore:
    """A SQLite catalog of the digits plugin with `artifacts` as its store, the digits weights published as
    acme/gc; the store."""
    monkeypatch.setenv("ZOO_ARTIFACTS", artifacts)
    _catalog(synced, tmp_path, use_catalog)
    assert publish_weights("digits_cnn", DIGITS_FILE, name="acme/gc").sha256 == DIGITS_SHA256
    return open_store(Settings.from_environ())


def _put(store: ArtifactStore, data: bytes) -> str:
    sha256 = hashlib.sha256(data).hexdigest()
    store.put_stream([data], sha256=sha256, max_bytes=len(data))
    return sha256


def _gc(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``zoo gc ARGS`` run by the command line's `main` here: its exit code, stdout and stderr."""
    capsys.readouterr()
    try:
        status = main(["gc", *args])
    except SystemExit as exc:  # argparse's usage errors
        status = exc.code
    out, err = capsys.readouterr()
    return status, out, err


def _report(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    status, out, err = _gc(capsys, *args, "--json")
    assert status == 0, err
    return json.loads(out)


def _start_leftover(store: ArtifactStore, artifacts: str) -> None:
    """An unfinished upload, just begun: a multipart upload of the object store, a temporary file of the folder's."""
    if artifacts.startswith("s3://"):  # to a blob's key, as a killed S3Store upload leaves it
        import boto3

        where, sha256 = urlsplit(artifacts), hashlib.sha256(b"a whole upload").hexdigest()
        key = f"{where.path.strip('/')}/sha256/{sha256[:2]}/{sha256}"
        client = boto3.client("s3")  # the AWS variables `artifacts` set
        upload = client.create_multipart_upload(Bucket=where.netloc, Key=key)
        client.upload_part(Bucket=where.netloc, Key=key, PartNumber=1, UploadId=upload["UploadId"],
                           Body=b"half an upload")
    else:
        (Path(artifacts) / "tmp" / ".0123abcd.part").write_bytes(b"half an upload")


def test_gc_removes_unreferenced_blobs_and_leftovers_once_past_the_grace_period(
        registry: ArtifactStore, artifacts: str, capsys: pytest.CaptureFixture[str]) -> None:
    data = b"stored by a publish that failed"
    orphan = _put(registry, data)
    _start_leftover(registry, artifacts)
    [leftover] = registry.leftovers()

    kept = _report(capsys)  # the default grace period: everything here is young
    assert kept["grace_seconds"] == DEFAULT_GRACE == 86400
    assert (kept["removed"], kept["leftovers"], kept["files_freed"]) == ([], [], 0)
    assert (kept["kept_referenced"], kept["kept_young"]) == (1, {"blobs": 1, "leftovers": 1})

    status, out, _ = _gc(capsys, "--grace", "0", "--dry-run")
    assert status == 0
    assert out.splitlines() == [
        f"would remove blob {orphan} ({len(data)} bytes)",
        f"would remove leftover {leftover.name} ({leftover.size} bytes)",
        f"would free 2 files, {(len(data) + leftover.size) / 2**20:.1f} MiB",
    ]
    assert {a.sha256 for a in registry} == {DIGITS_SHA256, orphan} and list(registry.leftovers()) == [leftover]

    removed = _report(capsys, "--grace", "0")
    assert [(a["sha256"], a["size"]) for a in removed["removed"]] == [(orphan, len(data))]
    assert [left["name"] for left in removed["leftovers"]] == [leftover.name]
    assert (removed["files_freed"], removed["bytes_freed"]) == (2, len(data) + leftover.size)
    assert removed["kept_referenced"] == 1
    assert [a.sha256 for a in registry] == [DIGITS_SHA256] and list(registry.leftovers()) == []
    assert not registry.exists(orphan) and registry.read(DIGITS_SHA256) == DIGITS_FILE.read_bytes()

    model = zoo.get_model("digits_cnn", weights="acme/gc")  # the published weights still load
    assert torch.equal(model.state_dict()["classifier.weight"],
                       torch.load(DIGITS_FILE, weights_only=True)["classifier.weight"])
    status, out, _ = _gc(capsys, "--grace", "0")
    assert (status, out) == (0, "freed 0 files, 0.0 MiB\n")


def test_gc_keeps_what_is_younger_than_the_grace_period(
        postgresql_url: str, use_catalog, tmp_path: Path, monkeypatch, capsys: pytest.CaptureFixture[str]) -> None:
    """On PostgreSQL, in a folder: old and young files meet in one run; links are never followed."""
    root = tmp_path / "artifacts"
    monkeypatch.setenv("ZOO_ARTIFACTS", str(root))
    use_catalog(postgresql_url, "digits")
    publish_weights("digits_cnn", DIGITS_FILE, name="acme/gc")
    store = DirectoryStore(root)
    old, young = _put(store, b"old and unreferenced"), _put(store, b"young and unreferenced")
    os.utime(content_path(root, old), (TWO_DAYS_AGO, TWO_DAYS_AGO))
    os.utime(content_path(root, DIGITS_SHA256), (TWO_DAYS_AGO, TWO_DAYS_AGO))  # old, but referenced
    stale, writing = root / "tmp" / ".stale123.part", root / "tmp" / ".writing.part"
    stale.write_bytes(b"left by a killed writer")
    writing.write_bytes(b"being written")
    os.utime(stale, (TWO_DAYS_AGO, TWO_DAYS_AGO))
    upload = root / "uploads" / "tmpkilled"  # a service killed while it received an upload
    upload.mkdir(parents=True)
    (upload / "upload").write_bytes(b"an upload")
    for path in (upload / "upload", upload):
        os.utime(path, (TWO_DAYS_AGO, TWO_DAYS_AGO))
    outside = tmp_path / "outside.part"
    outside.write_bytes(b"not the store's")
    os.utime(outside, (TWO_DAYS_AGO, TWO_DAYS_AGO))
    (root / "tmp" / ".link.part").symlink_to(outside)

    status, out, _ = _gc(capsys, "--dry-run")
    assert status == 0 and out.splitlines() == [
        f"would remove blob {old} (20 bytes)",
        "would remove leftover tmp/.stale123.part (23 bytes)",
        "would remove leftover uploads/tmpkilled (9 bytes)",
        "would free 3 files, 0.0 MiB; kept 2 unreferenced younger than 1d",
    ]
    assert store.exists(old) and stale.exists() and upload.exists()

    status, out, _ = _gc(capsys)
    assert status == 0 and out.splitlines()[-1] == "freed 3 files, 0.0 MiB; kept 2 unreferenced younger than 1d"
    assert {a.sha256 for a in store} == {DIGITS_SHA256, young}
    assert not stale.exists() and not upload.exists() and writing.exists()
    assert outside.read_bytes() == b"not the store's" and (root / "tmp" / ".link.part").is_symlink()
    assert [left.name for left in store.leftovers()] == ["tmp/.writing.part"]
    assert zoo.get_model("digits_cnn", weights="acme/gc") is not None


class _Meanwhile:
    """The catalog, and what other processes do to the store while `collect` reads it (after the listing)."""

    def __init__(self, store: ArtifactStore, vanishing: str) -> None:
        self.catalog, self.store, self.vanishing = current().catalog, store, vanishing
        self.stored: str | None = None

    def referenced_blobs(self) -> set[str]:
        self.store.delete(self.vanishing)  # another zoo gc got there first
        self.stored = _put(self.store, b"a publish in flight")  # stored, its row still to be written
        return self.catalog.referenced_blobs()


def test_gc_lists_the_store_before_it_reads_the_catalog(registry: ArtifactStore) -> None:
    vanishing = _put(registry, b"removed by another gc")
    orphan = _put(registry, b"an orphan")
    meanwhile = _Meanwhile(registry, vanishing)
    report = collect(meanwhile, registry, grace=0, dry_run=False)  # type: ignore[arg-type] # the catalog, wrapped
    assert [a.sha256 for a in report.removed] == [orphan]  # the vanished blob is not an error, nor counted
    assert {a.sha256 for a in registry} == {DIGITS_SHA256, meanwhile.stored}


@pytest.mark.parametrize("artifacts", ["directory"], indirect=True)
def test_gc_refuses_a_catalog_that_may_not_be_the_stores(
        registry: ArtifactStore, synced: Path, use_catalog, tmp_path: Path, monkeypatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    other = DirectoryStore(tmp_path / "another-store")  # the catalog's published weights are not in it
    orphan = _put(other, b"someone else's")
    monkeypatch.setenv("ZOO_ARTIFACTS", str(other.root))
    status, out, err = _gc(capsys, "--grace", "0")
    assert (status, out) == (1, "") and len(err.splitlines()) == 1
    assert f"references a file the artifact store {other.root} lacks (SHA-256 {DIGITS_SHA256})" in err
    assert "check ZOO_REGISTRY_URL and ZOO_ARTIFACTS" in err

    (tmp_path / "empty").mkdir()
    _catalog(synced, tmp_path / "empty", use_catalog)  # a catalog with nothing published
    with pytest.raises(ArtifactError, match=rf"the catalog references no file, and the artifact store {other.root} "
                                            r"holds 1: zoo gc removes nothing"):
        collect(current().catalog, other, grace=0, dry_run=True)
    assert other.exists(orphan)


@pytest.mark.parametrize("text", ["soon", "-1h", "1w", "", "h", "1e3", "2 days", "9" * 101])
def test_gc_grace_is_a_duration(text: str, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = _gc(capsys, f"--grace={text}")
    assert (status, out) == (2, "")
    assert err.splitlines()[-1].startswith("zoo gc: error: argument --grace: ")
    assert err.splitlines()[-1].endswith("is not a duration; use e.g. 24h, 30m, 7d, 90s or 0")


def test_durations() -> None:
    assert [parse_duration(t) for t in ("24h", "30m", "7d", "90s", "90", "0", "1.5h", " 2h ")] == [
        86400, 1800, 7 * 86400, 90, 90, 0, 5400, 7200]


def test_gc_through_a_registry_service_is_refused(tmp_path: Path) -> None:
    done = run_zoo("gc", "--dry-run", check=False, cwd=tmp_path,
                   env={"ZOO_REGISTRY_URL": "http://127.0.0.1:9", "XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert done.returncode == 1 and done.stdout == "" and len(done.stderr.splitlines()) == 1
    assert done.stderr.startswith("zoo: error: ZOO_REGISTRY_URL names a registry service, and zoo gc runs where "
                                  "the catalog database and the artifact store are")

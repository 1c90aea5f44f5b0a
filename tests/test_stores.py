"""The `ArtifactStore` contract, held by both stores: a folder (`DirectoryStore`) and an object store
(`zoo.s3store.S3Store` on the session's SeaweedFS server, a fresh prefix per test); then what only the
object store does: multipart uploads, presigned URLs, incomplete uploads, and its one-line errors for a
bad URL, a store that is down, refused credentials and a missing bucket."""

from __future__ import annotations

import hashlib
import io
import os
import socket
import sys
import time
import tracemalloc
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from zoo.errors import (
    ArtifactTooLargeError,
    HashMismatchError,
    StoreUnavailableError,
    UnknownArtifactError,
    UsageError,
)
from zoo.s3store import S3Store
from zoo.settings import Settings
from zoo.store import ArtifactStore, DirectoryStore, Leftover, open_store
from zoo.testing import ObjectStore

MiB = 1 << 20
#: S3's smallest part (but for the last): the multipart tests use it so that 12 MiB make three parts.
SMALL_PART = 5 * MiB


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def chunked(data: bytes, size: int = MiB) -> Iterator[bytes]:
    return (data[i:i + size] for i in range(0, len(data), size))


def one_line(exc: pytest.ExceptionInfo[BaseException]) -> str:
    message = str(exc.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def store_at(location: str, **env: str) -> ArtifactStore:
    """The store ``ZOO_ARTIFACTS=location`` opens, with this process's environment and `env`."""
    return open_store(Settings.from_environ({**os.environ, "ZOO_ARTIFACTS": location, **env}))


@pytest.fixture
def store(artifacts: str, tmp_path: Path) -> ArtifactStore:
    return store_at(artifacts, XDG_CACHE_HOME=str(tmp_path / "cache"))


@pytest.fixture
def s3(s3_artifacts: str, tmp_path: Path) -> S3Store:
    found = store_at(s3_artifacts, XDG_CACHE_HOME=str(tmp_path / "cache"))
    assert isinstance(found, S3Store)
    return found


@pytest.fixture
def small_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(S3Store, "part_size", SMALL_PART)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- the contract, for both stores ------------------------------------------------------------------------


def test_round_trip(store: ArtifactStore, tmp_path: Path) -> None:
    streamed, filed = os.urandom(300_000), os.urandom(200_000)
    source = tmp_path / "file.bin"
    source.write_bytes(filed)
    before = time.time()

    assert store.put_stream(chunked(streamed, 70_000), sha256=sha(streamed), max_bytes=len(streamed)).size == 300_000
    stored = store.put_file(source)  # hashed by the store
    assert (stored.sha256, stored.size) == (sha(filed), 200_000)
    assert store.put_file(source, sha256=sha(filed)).sha256 == sha(filed)

    for data in (streamed, filed):
        assert store.exists(sha(data)) and store.stat(sha(data)) == len(data)
        assert store.read(sha(data)) == data
    with store.open(sha(streamed)) as f:  # as the service's proxy reads a range: seek, then read on
        assert f.seekable()
        f.seek(123_456)
        assert f.read(65_536) == streamed[123_456:188_992]
        assert f.read(65_536) == streamed[188_992:254_528]
        f.seek(-10, io.SEEK_END)
        assert f.read() == streamed[-10:] and f.read(5) == b""
        f.seek(5)
        assert f.read(3) == streamed[5:8] and f.tell() == 8

    listed = sorted(store, key=lambda a: a.size)
    assert [(a.sha256, a.size) for a in listed] == [(sha(filed), 200_000), (sha(streamed), 300_000)]
    # dated by the store's clock (an object store's is seconds): around now, whatever the machine
    assert all(abs(a.modified - before) < 3600 for a in listed)

    assert store.delete(sha(streamed)) is True and store.delete(sha(streamed)) is False
    assert not store.exists(sha(streamed)) and store.stat(sha(streamed)) is None
    with pytest.raises(UnknownArtifactError, match=sha(streamed)):
        store.read(sha(streamed))
    with pytest.raises(UnknownArtifactError, match=sha(streamed)):
        store.open(sha(streamed))
    assert [a.sha256 for a in store] == [sha(filed)]


def test_an_empty_file_is_a_blob_too(store: ArtifactStore) -> None:
    assert store.put_stream([], sha256=sha(b""), max_bytes=0).size == 0
    assert store.stat(sha(b"")) == 0 and store.read(sha(b"")) == b""
    with store.open(sha(b"")) as f:
        assert f.read() == b"" and f.seek(10) == 10 and f.read(5) == b""


def test_refused_bytes_leave_nothing(store: ArtifactStore) -> None:
    data = os.urandom(100_000)
    with pytest.raises(HashMismatchError, match=f"has SHA-256 {sha(data)}, but {'0' * 64} was declared"):
        store.put_stream(chunked(data, 10_000), sha256="0" * 64, max_bytes=len(data))
    with pytest.raises(ArtifactTooLargeError, match="larger than the limit of 99999 bytes"):
        store.put_stream(chunked(data, 10_000), sha256=sha(data), max_bytes=len(data) - 1)

    def cut() -> Iterator[bytes]:
        yield data[:50_000]
        raise ConnectionResetError("the client went away")

    with pytest.raises(ConnectionResetError):
        store.put_stream(cut(), sha256=sha(data), max_bytes=len(data))
    with pytest.raises(UsageError, match="64 lowercase hex digits"):
        store.put_stream([data], sha256="ABC", max_bytes=len(data))
    assert list(store) == [] and list(store.leftovers()) == []
    assert not store.exists(sha(data))


def test_same_bytes_are_stored_once_and_still_verified(store: ArtifactStore) -> None:
    data = os.urandom(50_000)
    first = store.put_stream([data], sha256=sha(data), max_bytes=len(data))
    again = store.put_stream(chunked(data, 7_000), sha256=sha(data), max_bytes=len(data))
    assert (first.sha256, first.size) == (again.sha256, again.size)
    other = os.urandom(50_000)
    with pytest.raises(HashMismatchError):  # the blob is there: the bytes claiming its hash are checked anyway
        store.put_stream([other], sha256=sha(data), max_bytes=len(other))
    with pytest.raises(ArtifactTooLargeError):
        store.put_stream([data], sha256=sha(data), max_bytes=len(data) - 1)
    assert [(a.sha256, a.size) for a in store] == [(sha(data), len(data))]
    assert store.read(sha(data)) == data


def test_storing_again_dates_a_blob_again(store: ArtifactStore) -> None:
    """`zoo gc` keeps young blobs: one published again must look new, not like an old unreferenced one."""
    data = os.urandom(10_000)
    store.put_stream([data], sha256=sha(data), max_bytes=len(data))
    [first] = list(store)
    deadline = time.monotonic() + 10
    while True:  # an object store dates to the second: store again until the date moves
        store.put_stream([data], sha256=sha(data), max_bytes=len(data))
        [again] = list(store)
        if again.modified > first.modified or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert again.modified > first.modified


def test_scratch_is_a_local_folder(store: ArtifactStore) -> None:
    folder = store.scratch("uploads")
    assert folder.is_dir() and store.scratch("uploads") == folder
    (folder / "part").write_bytes(b"x")
    assert list(store) == []
    for bad in ("", "..", "a/b", "sha256"):
        with pytest.raises(UsageError, match="one plain name"):
            store.scratch(bad)


def test_bad_hashes_are_one_line_errors(store: ArtifactStore) -> None:
    for call in (store.stat, store.exists, store.read, store.open, store.delete):
        with pytest.raises(UsageError, match="64 lowercase hex digits"):
            call("../etc/passwd")
    with pytest.raises(UsageError, match="64 lowercase hex digits"):
        store.url_for("abc", expires_in=60)


# -- URLs -------------------------------------------------------------------------------------------------


def test_a_folder_has_no_url(tmp_path: Path) -> None:
    assert DirectoryStore(tmp_path).url_for("a" * 64, expires_in=60) is None


def test_a_presigned_url_gets_the_blob_and_its_ranges(s3: S3Store) -> None:
    data = os.urandom(100_000)
    s3.put_stream([data], sha256=sha(data), max_bytes=len(data))
    url = s3.url_for(sha(data), expires_in=60)
    with urllib.request.urlopen(url, timeout=30) as answer:
        assert answer.read() == data
    ranged = urllib.request.Request(url, headers={"Range": "bytes=1000-1999"})
    with urllib.request.urlopen(ranged, timeout=30) as answer:
        assert answer.status == 206 and answer.read() == data[1000:2000]
    for bad in (0, -1, 8 * 24 * 3600, 1.5, True):
        with pytest.raises(UsageError, match="expires_in must be a whole number of seconds"):
            s3.url_for(sha(data), expires_in=bad)


# -- multipart uploads ------------------------------------------------------------------------------------


@pytest.mark.usefixtures("small_parts")
def test_a_large_body_is_a_multipart_upload_visible_only_once_verified(s3: S3Store, tmp_path: Path) -> None:
    data = os.urandom(12 * MiB + 12345)  # three parts: 5, 5 and 2 MiB
    seen: list[tuple[bool, int]] = []

    def watched() -> Iterator[bytes]:
        for i, chunk in enumerate(chunked(data)):
            if i == 7:  # a part is on its way: the upload exists, the object does not yet
                seen.append((s3.exists(sha(data)), len(list(s3.leftovers()))))
            yield chunk

    assert s3.put_stream(watched(), sha256=sha(data), max_bytes=len(data)).size == len(data)
    assert seen == [(False, 1)]
    assert s3.read(sha(data)) == data and list(s3.leftovers()) == []
    with s3.open(sha(data)) as f:
        f.seek(SMALL_PART - 10)  # across a part boundary
        assert f.read(20) == data[SMALL_PART - 10:SMALL_PART + 10]

    source = tmp_path / "big.bin"
    source.write_bytes(data[::-1])
    assert s3.put_file(source).sha256 == sha(data[::-1])
    assert s3.read(sha(data[::-1])) == data[::-1]


@pytest.mark.usefixtures("small_parts")
def test_an_upload_holds_a_few_parts_in_memory_whatever_its_size(s3: S3Store) -> None:
    block, count = os.urandom(MiB), 60
    digest = hashlib.sha256()
    for _ in range(count):
        digest.update(block)
    tracemalloc.start()
    try:
        s3.put_stream((block for _ in range(count)), sha256=digest.hexdigest(), max_bytes=count * MiB)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # the parts in flight and the one filling (5 of 5 MiB), not the 60 MiB
    assert peak < (S3Store.parts_in_flight + 2) * SMALL_PART
    assert s3.stat(digest.hexdigest()) == count * MiB


@pytest.mark.usefixtures("small_parts")
def test_a_refused_multipart_upload_leaves_no_object_and_no_upload(s3: S3Store) -> None:
    data = os.urandom(12 * MiB)
    with pytest.raises(HashMismatchError):
        s3.put_stream(chunked(data), sha256=sha(b"other"), max_bytes=len(data))
    with pytest.raises(ArtifactTooLargeError):
        s3.put_stream(chunked(data), sha256=sha(data), max_bytes=11 * MiB)

    def interrupted() -> Iterator[bytes]:
        yield from chunked(data[:7 * MiB])
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        s3.put_stream(interrupted(), sha256=sha(data), max_bytes=len(data))
    assert list(s3) == [] and list(s3.leftovers()) == []
    assert not s3.exists(sha(data)) and not s3.exists(sha(b"other"))


# -- incomplete uploads -----------------------------------------------------------------------------------


def test_leftovers_are_the_incomplete_uploads_of_the_store(s3: S3Store, s3_server: ObjectStore) -> None:
    client = boto3.client("s3", endpoint_url=s3_server.endpoint, aws_access_key_id=s3_server.env["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=s3_server.env["AWS_SECRET_ACCESS_KEY"], region_name="us-east-1")
    key = f"{s3.prefix}/sha256/ab/ab{'0' * 62}"
    started = client.create_multipart_upload(Bucket=s3.bucket, Key=key)["UploadId"]
    client.upload_part(Bucket=s3.bucket, Key=key, UploadId=started, PartNumber=1, Body=b"x" * 1000)
    elsewhere = client.create_multipart_upload(Bucket=s3.bucket, Key=f"{s3.prefix}/notes.txt")["UploadId"]
    try:
        [leftover] = list(s3.leftovers())  # not the upload of a key outside the store's layout
        assert leftover.size == 1000 and abs(leftover.modified - time.time()) < 3600
        assert leftover.name.startswith(key) and started in leftover.name
        assert list(s3) == []
        assert s3.remove_leftover(leftover) is True
        assert list(s3.leftovers()) == [] and s3.remove_leftover(leftover) is False
        with pytest.raises(UsageError, match="not an unfinished upload"):
            s3.remove_leftover(Leftover(f"{s3.prefix}/notes.txt?uploadId={elsewhere}", 0, 0.0))
    finally:
        client.abort_multipart_upload(Bucket=s3.bucket, Key=f"{s3.prefix}/notes.txt", UploadId=elsewhere)


# -- settings and errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize("location", ["s3://", "s3://Upper/x", "s3://ab/x", "s3://b_b/x", "s3://bucket//x",
                                      "s3://bucket/a/../x", "s3://bucket/x?y=1", "s3://bucket/sp ace", "S3://-bad"])
def test_a_bad_s3_url_is_one_usage_error(location: str) -> None:
    with pytest.raises(UsageError) as exc:
        store_at(location)
    assert "ZOO_ARTIFACTS must be s3://BUCKET[/PREFIX]" in one_line(exc)


def test_the_aws_settings_come_from_the_settings_and_stay_out_of_reprs(s3_server: ObjectStore, monkeypatch,
                                                                      tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    settings = Settings.from_environ({**s3_server.env, "ZOO_ARTIFACTS": s3_server.location("custom/map"),
                                      "XDG_CACHE_HOME": str(tmp_path), "NOT_AWS": "x"})
    assert dict(settings.aws) == s3_server.env
    store = open_store(settings)
    data = b"reached with the settings alone"
    assert store.put_stream([data], sha256=sha(data), max_bytes=100).size == len(data)
    assert store.location == s3_server.location("custom/map")
    secret = s3_server.env["AWS_SECRET_ACCESS_KEY"]
    assert secret not in repr(store) and secret not in repr(settings)
    assert s3_server.endpoint in repr(store)
    with pytest.raises(UsageError, match="set together"):
        open_store(Settings.from_environ({"ZOO_ARTIFACTS": "s3://zoo", "AWS_ACCESS_KEY_ID": "only-the-key"}))


def test_without_boto3_the_s3_store_is_one_usage_error(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "boto3", None)  # import boto3 raises ImportError
    with pytest.raises(UsageError) as exc:
        store_at("s3://zoo/x")
    assert one_line(exc) == "ZOO_ARTIFACTS is an s3:// URL but boto3 is not installed: pip install 'zoo-registry[s3]'"


def test_a_store_that_is_down_is_unavailable_at_once(s3_server: ObjectStore) -> None:
    endpoint = f"http://127.0.0.1:{closed_port()}"
    store = store_at(s3_server.location("down"), **{**s3_server.env, "AWS_ENDPOINT_URL": endpoint})
    started = time.monotonic()
    for call in (lambda: store.stat("a" * 64), lambda: list(store),
                 lambda: store.put_stream([b"x"], sha256=sha(b"x"), max_bytes=1)):
        with pytest.raises(StoreUnavailableError) as exc:
            call()
        assert endpoint in one_line(exc) and "cannot be reached" in str(exc.value)
    # a few retries of a refused connection, not botocore's default minutes of them (a generous bound)
    assert time.monotonic() - started < 60


def test_refused_credentials_are_unavailable(s3_server: ObjectStore) -> None:
    store = store_at(s3_server.location("refused"), **{**s3_server.env, "AWS_SECRET_ACCESS_KEY": "wrong"})
    for call in (lambda: store.read("a" * 64), lambda: list(store)):
        with pytest.raises(StoreUnavailableError) as exc:
            call()
        assert "refused the credentials" in one_line(exc) and "AWS_SECRET_ACCESS_KEY" in str(exc.value)


def test_a_missing_bucket_is_a_usage_error(s3_server: ObjectStore) -> None:
    store = store_at("s3://no-such-bucket/x", **s3_server.env)
    # (not a PUT: SeaweedFS, unlike S3, makes the bucket for it)
    for call in (lambda: list(store), lambda: store.read("a" * 64)):
        with pytest.raises(UsageError) as exc:
            call()
        assert one_line(exc).startswith(f"bucket no-such-bucket does not exist at {s3_server.endpoint}; create it")

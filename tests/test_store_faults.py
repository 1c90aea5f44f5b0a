"""An object store that fails: killed during an upload, down for a while, or changed behind the registry's back.

Each case runs against a SeaweedFS server of this module's own (`zoo.testing.object_store`), never the
session's, since these tests kill it (`ObjectStore.kill`: SIGKILL, as a crash) and bring it back
(`ObjectStore.start`: same data, same ports). One SQLite catalog (digits plugin) is served by two
``zoo serve`` processes on that store for the module, one streaming files (``--artifacts proxy``) and
one redirecting to presigned URLs (``--artifacts redirect``); they are not restarted when the store
comes back. Clients run in client mode with weights caches of their own and no AWS credentials.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

import zoo
from tests.conftest import run_zoo
from tests.test_client import client
from tests.test_many_machines import API, DIGITS_WEIGHTS, Machine, sha256, start_together, variant
from tests.test_serve import one_line_error
from zoo.cli import main
from zoo.context import Context, using
from zoo.errors import ERROR_PREFIX, HashMismatchError, StoreUnavailableError, WeightsError
from zoo.s3store import S3Store
from zoo.settings import Settings
from zoo.testing import ObjectStore, object_store, serving

PREFIX = "faults"


@dataclass
class Registry:
    """The module's object store, the catalog's environment, and the two machines serving both."""

    s3: ObjectStore
    env: dict[str, str]
    proxy: Machine
    redirect: Machine

    def store(self) -> S3Store:
        """The artifact store the machines use, seen from this process."""
        return S3Store.from_settings(Settings.from_environ(self.env))

    def key(self, sha: str) -> str:
        return f"{PREFIX}/sha256/{sha[:2]}/{sha}"

    def s3_client(self) -> Any:
        """A boto3 client of the object store of this test's own, to look and tamper behind the registry's back."""
        import boto3

        return boto3.client("s3", endpoint_url=self.s3.endpoint, aws_access_key_id=self.s3.env["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=self.s3.env["AWS_SECRET_ACCESS_KEY"],
                            region_name=self.s3.env["AWS_DEFAULT_REGION"])

    def objects(self) -> list[str]:
        """Every key in the bucket (an incomplete upload is none)."""
        answer = self.s3_client().list_objects_v2(Bucket=self.s3.bucket)
        return [item["Key"] for item in answer.get("Contents", ())]


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    root = tmp_path_factory.mktemp("faults")
    with object_store(root / "s3") as s3, ExitStack() as stack:
        env = {**s3.env, "ZOO_REGISTRY_URL": f"sqlite:///{root / 'registry.db'}", "ZOO_LOAD_PLUGINS": "digits",
               "ZOO_ARTIFACTS": s3.location(PREFIX), "XDG_CACHE_HOME": str(root / "cache"),
               "TORCH_HOME": str(root / "torch")}
        run_zoo("sync", env=env)
        token = Context(Settings.from_environ(env)).catalog.create_token("publisher", ["publish"])
        proxy, redirect = start_together(stack, *(serving("--artifacts", mode, env=env, cwd=root,
                                                          log=root / f"{mode}.log") for mode in ("proxy", "redirect")))
        yield Registry(s3, env, Machine("proxy", proxy, root, token), Machine("redirect", redirect, root, token))


def post(machine: Machine, name: str, body: bytes) -> httpx.Response:
    """Publish `body` as the next version of `name` through `machine` (digits_cnn, the shipped categories)."""
    return httpx.post(f"{machine.url}{API}/published/{name}", content=body, timeout=120,
                      params={"model": "digits_cnn", "from": "DigitsCNN_Weights.DEFAULT"},
                      headers={"Authorization": f"Bearer {machine.token}", "X-Zoo-SHA256": sha256(body)})


def cached_files(cache: Path) -> list[Path]:
    return [p for p in cache.rglob("*") if p.is_file()] if cache.exists() else []


class _SmallParts(S3Store):
    """The store with a part of 1 KiB sent at a time: a file of the digits model is a hundred parts."""

    part_size = 1 << 10
    parts_in_flight = 1


def test_a_store_killed_during_a_multipart_upload_leaves_no_object_and_no_row(
        registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "cut.pth").write_bytes(body := variant(20))
    settings, sha = Settings.from_environ(registry.env), sha256(body)
    watcher, finished = registry.store(), threading.Event()

    def kill_once_a_part_arrived() -> None:  # the signal: an incomplete upload with a part in it
        while not finished.is_set() and not any(left.size for left in watcher.leftovers() if sha in left.name):
            time.sleep(0.005)
        registry.s3.kill()

    killer = threading.Thread(target=kill_once_a_part_arrived)
    killer.start()
    try:
        with using(Context(settings, store=_SmallParts.from_settings(settings))):
            with pytest.raises(StoreUnavailableError) as failed:
                zoo.publish_weights("digits_cnn", tmp_path / "cut.pth", name="acme/cut",
                                    from_weights="DigitsCNN_Weights.DEFAULT")
            assert "\n" not in str(failed.value) and registry.s3.endpoint in str(failed.value)
            assert zoo.list_published("acme/cut") == []
    finally:
        finished.set()
        killer.join()
        registry.s3.start()

    store = registry.store()
    assert not any(sha in key for key in registry.objects()) and not store.exists(sha)
    (leftover,) = (left for left in store.leftovers() if sha in left.name)
    assert leftover.name.startswith(f"{registry.key(sha)}?") and leftover.size > 0
    blobs = set(store)
    for name, value in registry.env.items():
        monkeypatch.setenv(name, value)
    assert main(["gc", "--grace", "0"]) == 0
    assert list(store.leftovers()) == [] and set(store) == blobs  # nothing the catalog names is touched


def test_a_store_that_is_down_is_503_and_answers_again_once_back(registry: Registry, tmp_path: Path) -> None:
    up, later = DIGITS_WEIGHTS.read_bytes(), variant(1)
    published = post(registry.proxy, "acme/up", up)
    assert published.status_code == 201, published.text
    weights = f"{API}/weights/{sha256(up)}"
    (tmp_path / "later.pth").write_bytes(later)
    cli = registry.proxy.client_env(tmp_path / "cli")
    registry.s3.kill()
    try:
        for answer in (httpx.get(registry.proxy.url + weights, timeout=120), post(registry.proxy, "acme/down", later)):
            assert answer.status_code == 503 and registry.s3.endpoint in one_line_error(answer)
        assert httpx.get(f"{registry.proxy.url}{API}/published/acme/down").status_code == 404
        done = client(cli, "-m", "zoo", "publish", "weights", "digits_cnn", str(tmp_path / "later.pth"),
                      "--name", "acme/down", "--from", "DigitsCNN_Weights.DEFAULT", cwd=tmp_path, check=False)
        (said,) = (line for line in done.stderr.splitlines() if line.startswith(ERROR_PREFIX))  # after the progress
        assert done.returncode == 1 and registry.s3.endpoint in said and "Traceback" not in done.stderr, done.stderr
        # The redirecting machine signs no URL of a store it cannot see: one line, and nothing cached.
        fetching = Context(Settings.from_environ({**registry.redirect.client_env(tmp_path / "reader"),
                                                  "ZOO_FETCH_RETRIES": "1"}))
        with using(fetching), pytest.raises(WeightsError) as failed:
            fetching.catalog.published_bytes(zoo.resolve_published("acme/up:1"))
        assert "\n" not in str(failed.value) and "503" in str(failed.value)
        assert registry.s3.endpoint in str(failed.value)  # the service's reason, not only its status
        assert cached_files(tmp_path / "reader") == []
    finally:
        registry.s3.start()
    assert httpx.get(registry.proxy.url + weights, timeout=120).content == up
    assert post(registry.proxy, "acme/down", later).json()["version"] == 1
    with using(fetching):
        assert fetching.catalog.published_bytes(zoo.resolve_published("acme/up:1")).data == up


@pytest.mark.parametrize("mode", ["proxy", "redirect"])
def test_a_blob_changed_behind_the_registrys_back_is_refused_by_its_hash(registry: Registry, mode: str,
                                                                         tmp_path: Path) -> None:
    body = variant({"proxy": 11, "redirect": 12}[mode])  # a file of this case's own
    sha = sha256(body)
    assert post(registry.proxy, f"acme/changed-{mode}", body).status_code == 201
    other = bytearray(body)
    other[len(other) // 2] ^= 0xFF
    registry.s3_client().put_object(Bucket=registry.s3.bucket, Key=registry.key(sha), Body=bytes(other))

    machine: Machine = getattr(registry, mode)
    reading = Context(Settings.from_environ({**machine.client_env(tmp_path / "reader"),
                                             "ZOO_FETCH_RETRIES": "2,0.01"}))
    with using(reading), pytest.raises(WeightsError) as refused:
        reading.catalog.published_bytes(zoo.resolve_published(f"acme/changed-{mode}:1"))
    said = str(refused.value)
    assert "\n" not in said and sha in said and sha256(bytes(other)) in said
    # the object store's bytes are refused by the client; the service refuses its own (a small file it reads whole)
    assert isinstance(refused.value, HashMismatchError) if mode == "redirect" else "the store is damaged" in said
    assert cached_files(tmp_path / "reader") == []

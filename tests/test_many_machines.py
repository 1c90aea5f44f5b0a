"""Two machines, one registry: two ``zoo serve`` processes share one PostgreSQL catalog and one object store.

Each "machine" is a `zoo.testing.serving` process with a working folder, a cache home and a
``TORCH_HOME`` of its own; both point at one PostgreSQL database (synced once, digits plugin)
and one prefix of the session's SeaweedFS server (`s3_server`). Machine A answers file
downloads by streaming them (``--artifacts proxy``), machine B by redirecting to a presigned
URL of the object store (``--artifacts redirect``). A token made once is good on both (it is a
row of the shared catalog). Clients are processes (or, for the race, threads with a
`zoo.context.Context` each) in client mode against one machine, with a weights cache of their
own and no AWS credentials: what one machine publishes the other serves.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import torch

import zoo
from tests.conftest import ROOT, postgresql_database, run_zoo
from tests.test_client import client
from zoo.context import Context, using
from zoo.settings import Settings
from zoo.testing import ObjectStore, Served, serving

DIGITS_WEIGHTS = ROOT / "plugins" / "zoo-digits" / "zoo_digits" / "digits_cnn-fb1204b6.pth"
API = "/api/v1"

#: A client process's prediction: the published weights built through its machine, run on the held-out
#: split of scikit-learn's digits (8x8 images the weights never saw) with the shipped preprocessing.
PREDICT = """
import json, sys, torch, zoo
from zoo_digits.data import load_heldout
from zoo_digits.model import DigitsCNN_Weights
model = zoo.get_model("digits_cnn", weights=sys.argv[1]).eval()
images, labels = load_heldout()
with torch.inference_mode():
    predicted = model(DigitsCNN_Weights.DEFAULT.transforms()(torch.from_numpy(images).unsqueeze(1))).argmax(1)
print(json.dumps({"predicted": predicted.tolist(), "correct": int((predicted == torch.from_numpy(labels)).sum())}))
"""


@dataclass
class Machine:
    """One ``zoo serve`` and its folder; `client_env` is a client process's environment against it."""

    name: str
    served: Served
    folder: Path
    token: str

    @property
    def url(self) -> str:
        return self.served.url

    def client_env(self, cache: Path) -> dict[str, str]:
        """Client mode against this machine, a weights cache at `cache`, no artifact store or AWS credentials."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ZOO_", "AWS_"))}
        return {**env, "ZOO_REGISTRY_URL": self.url, "ZOO_TOKEN": self.token, "TORCH_HOME": str(cache),
                "XDG_CACHE_HOME": str(cache / "xdg")}

    def context(self, cache: Path) -> Context:
        """This process's zoo in client mode against this machine (`client_env`), for one thread."""
        return Context(Settings.from_environ(self.client_env(cache)))


@pytest.fixture(scope="module")
def machines(s3_server: ObjectStore, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Machine, Machine]]:
    """Machine A (``--artifacts proxy``) and machine B (``--artifacts redirect``) on one catalog and one store."""
    root = tmp_path_factory.mktemp("machines")
    with postgresql_database() as url, ExitStack() as stack:
        shared = {**s3_server.env, "ZOO_REGISTRY_URL": url, "ZOO_LOAD_PLUGINS": "digits",
                  "ZOO_ARTIFACTS": s3_server.location(f"machines-{uuid.uuid4().hex[:12]}")}
        run_zoo("sync", env=shared)
        token = Context(Settings.from_environ(shared)).catalog.create_token("publisher", ["publish"])
        folders = {name: root / name for name in ("a", "b")}
        for folder in folders.values():
            folder.mkdir()
        a, b = start_together(stack, *(
            serving("--artifacts", mode, cwd=folder, log=folder / "serve.log",
                    env={**shared, "XDG_CACHE_HOME": str(folder / "cache"), "TORCH_HOME": str(folder / "torch")})
            for mode, folder in zip(("proxy", "redirect"), folders.values())))
        yield Machine("a", a, folders["a"], token), Machine("b", b, folders["b"], token)


def start_together(stack: ExitStack, *servers: AbstractContextManager[Served]) -> list[Served]:
    """Start `servers` (`serving` blocks) at once, each start taking seconds; `stack` stops them."""
    with ThreadPoolExecutor(len(servers)) as pool:
        started = [pool.submit(stack.enter_context, server) for server in servers]
    return [future.result() for future in started]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_published_through_one_machine_predicts_the_same_through_the_other(
        machines: tuple[Machine, Machine], s3_server: ObjectStore, tmp_path: Path) -> None:
    a, b = machines
    on_a, on_b = a.client_env(tmp_path / "client-a"), b.client_env(tmp_path / "client-b")
    published = json.loads(client(on_a, "-m", "zoo", "publish", "weights", "digits_cnn", str(DIGITS_WEIGHTS),
                                  "--name", "acme/digits", "--from", "DigitsCNN_Weights.DEFAULT", "--json",
                                  cwd=tmp_path).stdout)
    assert published["version"] == 1 and published["sha256"] == sha256(DIGITS_WEIGHTS.read_bytes())

    # A streams the file itself; B sends the client to the object store.
    path = f"{API}/weights/{published['sha256']}"
    assert httpx.get(a.url + path).content == DIGITS_WEIGHTS.read_bytes()
    redirected = httpx.get(b.url + path)
    assert redirected.status_code == 307 and redirected.headers["location"].startswith(f"{s3_server.endpoint}/")

    with ThreadPoolExecutor(2) as pool:  # a client of each machine, at once
        a_said, b_said = pool.map(lambda env: json.loads(client(env, "-c", PREDICT, "acme/digits:1",
                                                                cwd=tmp_path).stdout), (on_a, on_b))
    for env in (on_a, on_b):
        cached = Path(env["TORCH_HOME"]) / "hub" / "checkpoints" / "zoo" / "sha256" / published["sha256"]
        assert cached.read_bytes() == DIGITS_WEIGHTS.read_bytes()
    from zoo_digits.data import load_record

    assert a_said == b_said and b_said["correct"] == load_record()["correct"]
    assert not list(a.folder.glob("registry.db*")) and not list(b.folder.glob("registry.db*"))


def variant(index: int) -> bytes:
    """The digits weights with every parameter moved by `index` * 1e-3: a file that fits the model, and differs
    from the other indices' files."""
    state = torch.load(DIGITS_WEIGHTS, map_location="cpu", weights_only=True)
    buffer = io.BytesIO()
    torch.save({k: v + index * 1e-3 if v.is_floating_point() else v for k, v in state.items()}, buffer)
    return buffer.getvalue()


def test_eight_publishers_through_two_machines_get_versions_one_to_eight(machines: tuple[Machine, Machine],
                                                                         tmp_path: Path) -> None:
    a, b = machines
    files = {}
    for index in range(8):
        files[index] = tmp_path / f"variant-{index}.pth"
        files[index].write_bytes(variant(index))
    start = threading.Barrier(8)
    versions: dict[int, tuple[int, str]] = {}
    errors: list[BaseException] = []

    def publish(index: int) -> None:
        machine = (a, b)[index % 2]
        try:
            with using(machine.context(tmp_path / f"publisher-{index}")):
                start.wait()
                record = zoo.publish_weights("digits_cnn", files[index], name="acme/race",
                                             from_weights="DigitsCNN_Weights.DEFAULT")
            versions[index] = record.version, record.sha256
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=publish, args=(index,)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(version for version, _ in versions.values()) == list(range(1, 9))
    assert all(sha == sha256(files[index].read_bytes()) for index, (_, sha) in versions.items())

    # Every version, whichever machine took it, is listed by both and comes through the other one.
    for machine in (a, b):
        with using(machine.context(tmp_path / f"lister-{machine.name}")):
            assert [(p.version, p.sha256) for p in zoo.list_published("acme/race")] == sorted(versions.values())
    for index, (version, sha) in versions.items():
        other = (b, a)[index % 2]
        with using(other.context(tmp_path / f"fetcher-{other.name}")) as context:
            fetched = context.catalog.published_bytes(zoo.resolve_published(f"acme/race:{version}"))
        assert fetched.data == files[index].read_bytes() and fetched.sha256 == sha

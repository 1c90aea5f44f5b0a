"""The weights cache is content-addressed: two URLs never share an entry.

A real HTTP server on 127.0.0.1 serves two different safetensors files, both called
``model.safetensors``, under Hugging Face-style paths; the pip-installed fixture plugin
``zoo-fixture-hub`` points `hub_a` (full SHA-256 declared) and `hub_b` (none declared:
the catalog learns it) at them. Covered through the ``zoo`` command line and
``zoo.get_model``: each model gets its own verified file; offline and mirror work for
both; a file at the old per-name path is adopted only by the URL it verifies for;
torch.hub-style names keep torch.hub's path.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

import zoo
from zoo.fetch import WeightsFile, fetch

from conftest import FIXTURES, WeightsServer, pip_install, run_zoo

pytestmark = pytest.mark.usefixtures("isolated_cache")

REPOS = {"hub_a": "fixture/hub-a", "hub_b": "fixture/hub-b"}
FILE = "resolve/main/model.safetensors"


def tensors(seed: int) -> dict[str, torch.Tensor]:
    """A state dict of the fixture's model (``Sequential(Flatten, Linear(4, 3))``), drawn from `seed`."""
    generator = torch.Generator().manual_seed(seed)
    return {"1.weight": torch.randn(3, 4, generator=generator), "1.bias": torch.randn(3, generator=generator)}


def equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def served(model: str) -> bytes:
    """The safetensors file served for `model`."""
    from safetensors.torch import save

    return save(tensors(list(REPOS).index(model)))


class Hub:
    """The served files of `hub_a` and `hub_b`, and the environment of a catalog with the fixture plugin."""

    def __init__(self, server: WeightsServer, env: dict[str, str]) -> None:
        self.server = server
        self.state = {model: tensors(seed) for seed, model in enumerate(REPOS)}
        self.data = {model: served(model) for model in REPOS}
        self.sha256 = {model: hashlib.sha256(data).hexdigest() for model, data in self.data.items()}
        self.paths = {model: f"{repo}/{FILE}" for model, repo in REPOS.items()}
        for model, path in self.paths.items():
            server.files[path] = self.data[model]
        self.cache = Path(env["TORCH_HOME"]) / "hub" / "checkpoints"
        self.env = env

    def url(self, model: str) -> str:
        return self.server.url(self.paths[model])

    def zoo(self, *args: str, check: bool = True, **env: str) -> subprocess.CompletedProcess:
        return run_zoo(*args, env={**self.env, **env}, check=check)

    def built(self, **env: str) -> dict[str, dict[str, torch.Tensor]]:
        """The state dicts of both models built with their default weights by ``zoo.get_model`` in a fresh process."""
        code = ("import json, sys, zoo; print(json.dumps({name: {k: v.tolist() for k, v in "
                "zoo.get_model(name, weights='DEFAULT').state_dict().items()} for name in sys.argv[1:]}))")
        done = subprocess.run([sys.executable, "-c", code, *REPOS], env={**os.environ, **self.env, **env},
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return {model: {k: torch.tensor(v) for k, v in state.items()} for model, state in json.loads(done.stdout).items()}

    def builds_as_served(self, **env: str) -> None:
        """Each model builds with the weights served for it, and the two differ."""
        built = self.built(**env)
        assert all(equal(built[model], self.state[model]) for model in REPOS)
        assert not equal(built["hub_a"], built["hub_b"])

    def fetched(self, *models: str, **env: str) -> list[Path]:
        """The paths ``zoo weights fetch`` prints for `models`."""
        return [Path(line) for line in self.zoo("weights", "fetch", *models, **env).stdout.split()]


@pytest.fixture(scope="module")
def hub_catalog(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, dict[str, str]]:
    """A port for the tests' servers, and the environment of a catalog synced with the fixture plugin
    installed and pointed at it (one sync per module: a test works on a copy of the catalog)."""
    root = tmp_path_factory.mktemp("hub")
    pip_install(FIXTURES / "zoo-fixture-hub", root / "site")
    probe = WeightsServer()  # a free port, for the catalog's URLs; each test serves on it again
    port = probe.httpd.server_address[1]
    probe.httpd.server_close()
    env = {"PYTHONPATH": str(root / "site"), "ZOO_LOAD_PLUGINS": "hub", "ZOO_FIXTURE_HUB_URL": f"http://127.0.0.1:{port}",
           "ZOO_FIXTURE_HUB_A_SHA256": hashlib.sha256(served("hub_a")).hexdigest(),
           "ZOO_REGISTRY_URL": f"sqlite:///{root / 'registry.db'}"}
    run_zoo("sync", env=env)
    return port, env


@pytest.fixture
def hub(hub_catalog: tuple[int, dict[str, str]], tmp_path: Path) -> Iterator[Hub]:
    port, env = hub_catalog
    catalog = tmp_path / "registry.db"
    shutil.copyfile(env["ZOO_REGISTRY_URL"].removeprefix("sqlite:///"), catalog)
    server = WeightsServer(port)
    server.thread.start()
    yield Hub(server, {**env, "ZOO_REGISTRY_URL": f"sqlite:///{catalog}", "TORCH_HOME": str(tmp_path / "torch")})
    server.stop()


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_two_files_named_model_safetensors_stay_apart(hub: Hub) -> None:
    path_a, path_b = hub.fetched("hub_a", "hub_b")
    assert path_a != path_b and path_a.name.endswith(".safetensors") and path_b.name == "model.safetensors"
    assert sha256_of(path_a) == hub.sha256["hub_a"] and sha256_of(path_b) == hub.sha256["hub_b"]
    assert path_a == hub.cache / "zoo" / "sha256" / f"{hub.sha256['hub_a']}.safetensors"  # declared: by content
    assert path_b.is_relative_to(hub.cache / "zoo" / "url")  # not known yet: by its whole URL
    assert [Path(hub.zoo("weights", "path", m).stdout.strip()) for m in REPOS] == [path_a, path_b]

    hub.builds_as_served()

    verified = json.loads(hub.zoo("weights", "verify", "--json").stdout)
    assert sorted((r["weights"], r["status"], r["sha256"]) for r in verified) == [
        ("HubA_Weights.V1", "ok", hub.sha256["hub_a"]), ("HubB_Weights.V1", "ok", hub.sha256["hub_b"])]
    assert sorted(hub.server.requests) == sorted(hub.paths.values())  # one download each


def test_a_file_whose_hash_is_learned_moves_to_its_content_entry(hub: Hub) -> None:
    (first,) = hub.fetched("hub_b")
    (again,) = hub.fetched("hub_b")  # the catalog learned its hash from the first download
    assert again == hub.cache / "zoo" / "sha256" / f"{hub.sha256['hub_b']}.safetensors"
    assert not first.exists() and sha256_of(again) == hub.sha256["hub_b"]
    assert hub.server.requests == [hub.paths["hub_b"]]  # moved, not downloaded again
    assert Path(hub.zoo("weights", "path", "hub_b").stdout.strip()) == again


def test_offline_works_for_both_after_one_fetch(hub: Hub) -> None:
    hub.fetched("hub_a", "hub_b")
    hub.server.stop()
    offline = hub.fetched("hub_a", "hub_b", ZOO_OFFLINE="1")
    assert [sha256_of(p) for p in offline] == [hub.sha256[m] for m in REPOS]
    assert hub.zoo("weights", "fetch", "--offline", "hub_a", "hub_b").stdout.split() == list(map(str, offline))
    hub.builds_as_served(ZOO_OFFLINE="1")


def test_offline_miss_names_where_it_looked(hub: Hub, tmp_path: Path) -> None:
    hub.server.stop()
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "model.safetensors").write_bytes(hub.data["hub_a"])  # a bare name says nothing of the URL: unused
    done = hub.zoo("weights", "fetch", "--offline", "hub_a", check=False, ZOO_WEIGHTS_MIRROR=str(mirror))
    assert done.returncode == 1 and done.stdout == "" and len(done.stderr.splitlines()) == 1
    message = done.stderr
    assert message.startswith("zoo: error: offline mode: model.safetensors is not in the cache")
    for place in (hub.cache / "zoo" / "sha256" / f"{hub.sha256['hub_a']}.safetensors",
                  hub.cache / "model.safetensors", mirror / "sha256" / f"{hub.sha256['hub_a']}.safetensors",
                  mirror / f"127.0.0.1:{hub.server.httpd.server_address[1]}" / hub.paths["hub_a"]):
        assert str(place) in message
    assert hub.url("hub_a") in message


def test_a_mirror_serves_both_by_hash_or_by_host_and_path(hub: Hub, tmp_path: Path) -> None:
    hub.server.stop()
    mirror = tmp_path / "mirror"
    by_hash = mirror / "sha256" / f"{hub.sha256['hub_a']}.safetensors"
    by_site = mirror / f"127.0.0.1:{hub.server.httpd.server_address[1]}" / hub.paths["hub_b"]  # as wget -x lays it out
    for path, model in ((by_hash, "hub_a"), (by_site, "hub_b")):
        path.parent.mkdir(parents=True)
        path.write_bytes(hub.data[model])
    env = {"ZOO_WEIGHTS_MIRROR": str(mirror), "ZOO_OFFLINE": "1"}
    path_a, path_b = hub.fetched("hub_a", "hub_b", **env)
    assert path_a.is_relative_to(hub.cache) and path_b.is_relative_to(hub.cache)  # copied into the cache
    assert sha256_of(path_a) == hub.sha256["hub_a"] and sha256_of(path_b) == hub.sha256["hub_b"]
    hub.builds_as_served(**env)


def test_a_mirror_copy_that_does_not_verify_is_named_and_not_cached(hub: Hub, tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    wrong = mirror / "sha256" / f"{hub.sha256['hub_a']}.safetensors"
    wrong.parent.mkdir(parents=True)
    wrong.write_bytes(hub.data["hub_b"])
    done = hub.zoo("weights", "fetch", "hub_a", check=False, ZOO_WEIGHTS_MIRROR=str(mirror), ZOO_OFFLINE="1")
    assert done.returncode == 1 and len(done.stderr.splitlines()) == 1
    assert done.stderr.startswith(f"zoo: error: {wrong} gave model.safetensors with SHA-256 {hub.sha256['hub_b']}")
    assert not (hub.cache / "zoo" / "sha256" / wrong.name).exists()


def test_old_layout_file_is_adopted_only_by_the_url_it_verifies_for(hub: Hub) -> None:
    old = hub.cache / "model.safetensors"  # where earlier zoos kept every Hugging Face file
    old.parent.mkdir(parents=True)
    old.write_bytes(hub.data["hub_a"])

    (path_b,) = hub.fetched("hub_b")  # its hash is not known: the old file is not even looked at
    assert sha256_of(path_b) == hub.sha256["hub_b"] and old.exists()
    assert hub.server.requests == [hub.paths["hub_b"]]

    hub.server.stop()
    (path_a,) = hub.fetched("hub_a", ZOO_OFFLINE="1")  # its hash is declared and the old file has it
    assert path_a == hub.cache / "zoo" / "sha256" / f"{hub.sha256['hub_a']}.safetensors"
    assert not old.exists() and sha256_of(path_a) == hub.sha256["hub_a"]
    hub.builds_as_served(ZOO_OFFLINE="1")


def test_old_layout_file_of_another_url_is_never_used(hub: Hub) -> None:
    old = hub.cache / "model.safetensors"
    old.parent.mkdir(parents=True)
    old.write_bytes(hub.data["hub_a"])
    hub.server.stop()
    for model in REPOS:  # hub_a: the file is not its; hub_b: no hash known, so no file at a bare name is
        old.write_bytes(hub.data["hub_b" if model == "hub_a" else "hub_a"])
        done = hub.zoo("weights", "fetch", "--offline", model, check=False)
        assert done.returncode == 1 and "offline mode: model.safetensors is not in the cache" in done.stderr
        assert old.exists()
    assert hub.zoo("weights", "verify", check=False).stdout.strip() == "no weights files are cached"


def test_url_copy_that_no_longer_verifies_is_named(server: WeightsServer, isolated_cache: Path) -> None:
    data = b"weights as first served"
    server.files["org/repo/resolve/main/model.bin"] = data
    url = server.url("org/repo/resolve/main/model.bin")
    first = fetch(WeightsFile(url), progress=False)
    first.path.write_bytes(b"changed on disk")
    with pytest.raises(zoo.HashMismatchError, match=f"weights file {first.path} has SHA-256") as caught:
        fetch(WeightsFile(url, hashlib.sha256(data).hexdigest()), progress=False)
    assert "delete it and fetch it again" in str(caught.value)
    assert list((isolated_cache / "zoo" / "sha256").iterdir()) == []  # nothing unverified under a content key


def test_torch_hub_names_share_torch_hubs_file(server: WeightsServer, isolated_cache: Path) -> None:
    import io

    buffer = io.BytesIO()
    torch.save(tensors(7), buffer)
    data = buffer.getvalue()
    sha = hashlib.sha256(data).hexdigest()
    name = f"net-{sha[:8]}.pth"
    server.files[name] = data
    torch.hub.load_state_dict_from_url(server.url(name), check_hash=True, progress=False)  # torch.hub's own download
    server.stop()
    fetched = fetch(WeightsFile(server.url(name), sha), offline=True)
    assert fetched.path == isolated_cache / name and fetched.sha256 == sha
    assert server.requests == [name]


@pytest.mark.parametrize(("url", "sha256", "message"), [
    ("http://127.0.0.1:9/", None, "does not end in a file name"),
    ("http://127.0.0.1:9/org/repo/%2E%2E", None, "does not end in a file name"),
    ("http://127.0.0.1:9/a/model.safetensors", "../../../x", "not 64 lowercase hex digits"),
])
def test_unusable_names_and_hashes_are_one_line(url: str, sha256: str | None, message: str) -> None:
    with pytest.raises(zoo.UsageError, match=message):
        fetch(WeightsFile(url, sha256), offline=True)


def test_mirror_lookup_never_leaves_the_mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    outside = tmp_path / "outside" / "model.safetensors"
    outside.parent.mkdir()
    outside.write_bytes(b"not in the mirror")
    mirror = tmp_path / "mirror"
    (mirror / "127.0.0.1:9").mkdir(parents=True)
    monkeypatch.setenv("ZOO_WEIGHTS_MIRROR", str(mirror))
    with pytest.raises(zoo.WeightsError, match="offline mode") as caught:
        fetch(WeightsFile("http://127.0.0.1:9/../../outside/model.safetensors"), offline=True)
    assert f"the mirror {mirror} has no place for its URL" in str(caught.value)
    assert outside.read_bytes() == b"not in the mirror"

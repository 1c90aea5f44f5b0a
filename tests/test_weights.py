"""Weights as verified artifacts: a real HTTP server on 127.0.0.1 (conftest's `WeightsServer`) serves files the tests make.

Covers: a good download lands in the cache; corrupted bytes or a dropped connection
leave nothing in the cache; a cached file altered on disk is caught before it is
loaded; offline mode; the mirror directory; eight processes fetching at once; the
catalog learning a full hash; and torchvision-style enums going through the zoo's path.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

import zoo
from zoo.fetch import WeightsFile, cache_dir, fetch, verify
from zoo.modeling.weights import Weights, WeightsEnum, load_state_dict

from conftest import FIXTURES, WeightsServer, code_on_load, pip_install, put_in_mirror, run_zoo

pytestmark = pytest.mark.usefixtures("isolated_cache")


def state_dict_bytes(seed: int = 0) -> bytes:
    torch.manual_seed(seed)
    buffer = io.BytesIO()
    torch.save(nn.Sequential(nn.Flatten(), nn.Linear(4, 3)).state_dict(), buffer)
    return buffer.getvalue()


def publish(server: WeightsServer, stem: str = "net", mode: str = "ok", data: bytes | None = None) -> WeightsFile:
    """Put `data` (default: a real state dict) on the server under a torch.hub-style name; return what to fetch."""
    data = state_dict_bytes() if data is None else data
    sha = hashlib.sha256(data).hexdigest()
    name = f"{stem}-{sha[:10]}.pth"
    server.files[name], server.modes[name] = data, mode
    return WeightsFile(server.url(name), sha)


def leftovers(cache: Path) -> list[str]:
    """Files in the cache other than lock files: what a failed fetch must not leave."""
    return sorted(p.name for p in cache.iterdir() if not p.name.endswith(".lock")) if cache.exists() else []


def test_good_download_lands_in_cache_and_is_reused(server: WeightsServer, isolated_cache: Path) -> None:
    file = publish(server)
    fetched = fetch(file, progress=False)
    assert fetched.path == isolated_cache / file.name == cache_dir() / file.name
    assert hashlib.sha256(fetched.path.read_bytes()).hexdigest() == file.sha256 == fetched.sha256
    assert sorted(p.name for p in isolated_cache.iterdir()) == [file.name]  # no part, stamp or lock file
    again = fetch(file, progress=False)
    assert again == fetched  # re-hashed from the cache, not downloaded again
    assert server.requests == [file.name]


def test_corrupted_download_leaves_nothing(server: WeightsServer, isolated_cache: Path) -> None:
    file = publish(server, mode="corrupt")
    with pytest.raises(zoo.HashMismatchError) as caught:
        fetch(file, progress=False)
    message = str(caught.value)
    assert file.name in message and file.sha256 in message and caught.value.actual in message
    assert "nothing was cached" in message and caught.value.actual != file.sha256
    assert leftovers(isolated_cache) == []


def test_prefix_only_name_is_checked_like_torch_hub(server: WeightsServer, isolated_cache: Path) -> None:
    file = publish(server, mode="corrupt")
    with pytest.raises(zoo.HashMismatchError, match="its file name says it starts with"):
        fetch(WeightsFile(file.url), progress=False)
    assert leftovers(isolated_cache) == []
    server.modes[file.name] = "ok"
    assert fetch(WeightsFile(file.url), progress=False).sha256 == file.sha256


def test_dropped_connection_leaves_nothing(server: WeightsServer, isolated_cache: Path) -> None:
    file = publish(server, mode="drop")
    with pytest.raises(zoo.WeightsError, match="nothing was cached") as caught:
        fetch(file, progress=False)
    assert not isinstance(caught.value, zoo.HashMismatchError)
    assert leftovers(isolated_cache) == []


def test_unreachable_server_is_a_clear_error(isolated_cache: Path) -> None:
    with pytest.raises(zoo.WeightsError, match=r"downloading http://127.0.0.1:9/x-0123456789.pth failed"):
        fetch(WeightsFile("http://127.0.0.1:9/x-0123456789.pth"), progress=False)
    assert leftovers(isolated_cache) == []


def served_enum(file: WeightsFile) -> type[WeightsEnum]:
    """A zoo weights enum whose one member points at `file`."""
    return WeightsEnum("ServedWeights", {"V1": Weights(url=file.url, transforms=None, meta={}, sha256=file.sha256)})


def test_altered_cached_file_is_caught_before_loading(server: WeightsServer, isolated_cache: Path) -> None:
    file = publish(server)
    member = served_enum(file).V1
    expected = load_state_dict(member, progress=False)
    assert set(expected) == {"1.weight", "1.bias"}

    # Altered in place with its size and mtime kept: nothing but the bytes' hash can tell.
    path = isolated_cache / file.name
    before = path.stat()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    with pytest.raises(zoo.HashMismatchError, match="delete it and fetch it again") as caught:
        load_state_dict(member, progress=False)
    assert str(path) in str(caught.value) and file.sha256 in str(caught.value)
    with pytest.raises(zoo.HashMismatchError):
        verify(path, file)
    assert len(server.requests) == 1


def test_offline_mode_uses_the_cache_and_never_the_network(server: WeightsServer, isolated_cache: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    cached, missing = publish(server, "cached"), publish(server, "missing")
    fetch(cached, progress=False)
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    assert fetch(cached).path == isolated_cache / cached.name
    with pytest.raises(zoo.WeightsError, match=rf"offline mode: {missing.name} is not in the cache"):
        fetch(missing)
    with pytest.raises(zoo.WeightsError, match="offline mode"):
        fetch(missing, offline=None)
    assert fetch(missing, offline=False, progress=False).path.is_file()  # the argument wins over the variable
    assert server.requests == [cached.name, missing.name]


def test_mirror_directory_seeds_the_cache(server: WeightsServer, isolated_cache: Path, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    file = publish(server)
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / file.name).write_bytes(server.files[file.name])
    monkeypatch.setenv("ZOO_WEIGHTS_MIRROR", str(mirror))
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    fetched = fetch(file)
    assert fetched.path == isolated_cache / file.name and fetched.sha256 == file.sha256
    assert server.requests == []

    bad = publish(server, "bad")
    (mirror / bad.name).write_bytes(b"not the weights")
    with pytest.raises(zoo.HashMismatchError, match=str(mirror / bad.name)):
        fetch(bad)
    assert bad.name not in leftovers(isolated_cache)


def test_safetensors_files_load_without_pickle(server: WeightsServer, tmp_path: Path) -> None:
    from safetensors.torch import save

    tensors = {"weight": torch.arange(6.0).reshape(2, 3), "bias": torch.ones(2)}
    data = save(tensors)
    name = f"net-{hashlib.sha256(data).hexdigest()[:10]}.safetensors"
    server.files[name] = data
    member = served_enum(WeightsFile(server.url(name), hashlib.sha256(data).hexdigest())).V1
    loaded = load_state_dict(member, progress=False)
    assert loaded.keys() == tensors.keys() and all(torch.equal(loaded[k], tensors[k]) for k in tensors)


def test_eight_processes_fetch_one_file_at_once(server: WeightsServer, isolated_cache: Path) -> None:
    file = publish(server, mode="slow")
    code = ("import sys; from zoo.fetch import WeightsFile, fetch; "
            "print(fetch(WeightsFile(sys.argv[1], sys.argv[2]), progress=False).sha256)")
    procs = [subprocess.Popen([sys.executable, "-c", code, file.url, file.sha256], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(8)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 8, [err for _, err in outputs]
    assert [out.strip() for out, _ in outputs] == [file.sha256] * 8
    assert sorted(p.name for p in isolated_cache.iterdir()) == [file.name]  # no part, stamp or lock file
    assert hashlib.sha256((isolated_cache / file.name).read_bytes()).hexdigest() == file.sha256
    assert server.requests == [file.name]  # one process downloaded; the others found it cached


@pytest.fixture
def remote_catalog(server: WeightsServer, tmp_path: Path, isolated_cache: Path) -> dict[str, str]:
    """A catalog with the fixture plugin whose torchvision-style weights come from the server."""
    site = tmp_path / "site"
    pip_install(FIXTURES / "zoo-fixture-remote", site)
    file = publish(server, "remote_net")
    return {
        "PYTHONPATH": str(site), "ZOO_LOAD_PLUGINS": "fixture-remote", "ZOO_FIXTURE_REMOTE_URL": file.url,
        "ZOO_REGISTRY_URL": f"sqlite:///{tmp_path / 'registry.db'}", "TORCH_HOME": str(tmp_path / "torch"),
        "SHA256": file.sha256, "NAME": file.name,
    }


def test_torchvision_style_weights_go_through_the_zoo(server: WeightsServer, remote_catalog: dict[str, str],
                                                      isolated_cache: Path) -> None:
    env = remote_catalog
    before = json.loads(run_zoo("show", "remote_net", "--json", env=env).stdout)["weights"][0]
    assert before["sha256"] is None  # the plugin declares only the prefix in the file name

    fetched = run_zoo("weights", "fetch", "remote_net", env=env)
    assert fetched.stdout.strip() == str(isolated_cache / env["NAME"])
    after = json.loads(run_zoo("show", "remote_net", "--json", env=env).stdout)["weights"][0]
    assert after["sha256"] == env["SHA256"]  # learned by the first verified download
    assert after["file_size"] == len(server.files[env["NAME"]])
    assert run_zoo("weights", "path", "RemoteNet_Weights.V1", env=env).stdout.strip() == fetched.stdout.strip()

    # The builder is torchvision-style (it calls get_state_dict); the zoo answers with the verified copy.
    code = "import zoo; m = zoo.get_model('remote_net', weights='DEFAULT'); print(float(m[1].weight.sum()))"
    built = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    torch.manual_seed(0)
    assert float(built.stdout) == pytest.approx(nn.Sequential(nn.Flatten(), nn.Linear(4, 3))[1].weight.sum().item())
    assert server.requests == [env["NAME"]]

    verified = json.loads(run_zoo("weights", "verify", "--json", env=env).stdout)
    assert [(r["weights"], r["status"], r["sha256"]) for r in verified] == [("RemoteNet_Weights.V1", "ok", env["SHA256"])]

    # Tampered in the cache: the zoo refuses it before torchvision's loader sees it.
    path = isolated_cache / env["NAME"]
    path.write_bytes(path.read_bytes()[:-1] + b"!")
    built = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True)
    assert built.returncode != 0 and "zoo.errors.HashMismatchError" in built.stderr
    done = run_zoo("weights", "verify", env=env, check=False)
    assert done.returncode == 1 and "mismatch" in done.stdout
    done = run_zoo("weights", "path", "nosuch_model", env=env, check=False)
    assert done.returncode == 1 and done.stderr.startswith("zoo: error: unknown model 'nosuch_model'")




def forge_stamp(path: Path, sha256: str) -> None:
    """The verification stamp zoo wrote beside cached files until now, claiming `sha256` for `path`."""
    st = path.stat()
    stamp = path.with_name(f".{path.name}.zoo-verified")
    stamp.write_text(json.dumps({"sha256": sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns}))


def test_pickle_in_cache_beside_forged_stamp_runs_no_code(synced_catalog: str, isolated_cache: Path,
                                                           tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    marker = tmp_path / "code-ran"
    path = isolated_cache / Path(zoo.get_weight("resnet18.DEFAULT").url).name
    path.parent.mkdir(parents=True)
    path.write_bytes(code_on_load(marker))
    prefix = WeightsFile(path.name).hash_prefix
    forge_stamp(path, prefix + "0" * (64 - len(prefix)))
    with pytest.raises(zoo.HashMismatchError, match=f"weights file {path} has SHA-256") as caught:
        zoo.get_model("resnet18", weights="DEFAULT")
    assert caught.value.actual == hashlib.sha256(path.read_bytes()).hexdigest()
    assert not marker.exists()
    assert sorted(p.name for p in isolated_cache.iterdir()) == [path.name]  # the forged stamp is gone too


def test_torchvision_style_builder_never_unpickles(server: WeightsServer, remote_catalog: dict[str, str],
                                                   tmp_path: Path) -> None:
    """A file whose hash is right (the server's own) but whose pickle runs code is refused, not run."""
    marker = tmp_path / "code-ran"
    data = code_on_load(marker)
    name = f"remote_net-{hashlib.sha256(data).hexdigest()[:10]}.pth"
    server.files[name] = data
    env = {**remote_catalog, "ZOO_FIXTURE_REMOTE_URL": server.url(name)}
    code = "import zoo; zoo.get_model('remote_net', weights='DEFAULT')"
    built = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True)
    assert built.returncode != 0 and not marker.exists(), built.stderr
    assert "zoo.errors.WeightsError: weights file" in built.stderr and name in built.stderr
    assert "cannot be loaded as tensors only (" in built.stderr and "weights_only" not in built.stderr
    assert "GLOBAL posix.mkdir" in built.stderr  # the forbidden global is named


@pytest.fixture
def learned_mirror(synced_catalog: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Offline, a mirror directory; ``put(member, data)`` places a file there whose full hash the catalog knows."""
    from sqlalchemy import delete

    from zoo.catalog.engine import open_engine, write_transaction
    from zoo.catalog.tables import weight_files

    mirror = tmp_path / "mirror"
    mirror.mkdir()
    monkeypatch.setenv("ZOO_WEIGHTS_MIRROR", str(mirror))
    monkeypatch.setenv("ZOO_OFFLINE", "1")

    def put(member, data: bytes) -> Path:
        return put_in_mirror(synced_catalog, mirror, member.url, data)

    yield put
    engine = open_engine(synced_catalog)
    with write_transaction(engine) as conn:
        conn.execute(delete(weight_files))


def test_backbone_weights_are_loaded_by_the_zoo(learned_mirror, isolated_cache: Path, tmp_path: Path) -> None:
    """torchvision's detection builders load ImageNet backbone weights themselves; the zoo answers that call."""
    import torchvision.models as tvm

    name, backbone = "fasterrcnn_mobilenet_v3_large_fpn", tvm.MobileNet_V3_Large_Weights.IMAGENET1K_V1
    marker = tmp_path / "code-ran"
    learned_mirror(backbone, code_on_load(marker))
    with pytest.raises(zoo.WeightsError, match="cannot be loaded as tensors only") as caught:
        zoo.get_model(name, weights=None)
    assert str(isolated_cache / Path(backbone.url).name) in str(caught.value) and not marker.exists()

    (isolated_cache / Path(backbone.url).name).unlink()
    torch.manual_seed(0)
    served = tvm.mobilenet_v3_large().state_dict()
    buffer = io.BytesIO()
    torch.save(served, buffer)
    learned_mirror(backbone, buffer.getvalue())
    body = zoo.get_model(name, weights=None).backbone.body.state_dict()
    loaded = [k for k in body if f"features.{k}" in served]
    assert loaded and all(torch.equal(body[k], served[f"features.{k}"]) for k in loaded if "num_batches" not in k)


def test_killed_download_leaves_nothing_the_next_fetch_keeps(server: WeightsServer, isolated_cache: Path) -> None:
    """A download killed mid-transfer leaves its .part file; the next fetch of the file removes it."""
    file = publish(server, mode="stall", data=os.urandom(3 << 20))  # the first MiB is written, then it stalls
    code = "import sys; from zoo.fetch import WeightsFile, fetch; fetch(WeightsFile(sys.argv[1], sys.argv[2]))"
    child = subprocess.Popen([sys.executable, "-c", code, file.url, file.sha256],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not [p for p in leftovers(isolated_cache) if p.endswith(".part") and (isolated_cache / p).stat().st_size]:
            assert time.monotonic() < deadline and child.poll() is None, "the download never started"
            time.sleep(0.05)
    finally:
        child.kill()
        child.wait()
    parts = [p for p in leftovers(isolated_cache) if p.endswith(".part")]
    assert len(parts) == 1 and parts[0].startswith(f".{file.name}.")

    server.modes[file.name] = "ok"
    fetched = fetch(file, progress=False)
    assert fetched.sha256 == file.sha256
    assert sorted(p.name for p in isolated_cache.iterdir()) == [file.name]  # no part, no lock file


def test_builder_from_the_zoo_loads_through_the_zoo(synced_catalog: str, isolated_cache: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """`zoo.get_model_builder` gives torchvision's builder; called with weights, the zoo still loads them."""
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    marker = tmp_path / "code-ran"
    builder = zoo.get_model_builder("resnet18")
    assert zoo.get_model_weights(builder).__name__ == "ResNet18_Weights"  # still known as the model's builder
    path = isolated_cache / Path(zoo.get_weight("resnet18.DEFAULT").url).name
    path.parent.mkdir(parents=True)
    path.write_bytes(code_on_load(marker))
    with pytest.raises(zoo.HashMismatchError, match=f"weights file {path} has SHA-256"):
        builder(weights="DEFAULT")
    assert not marker.exists()

"""Hostile and broken weights files: none runs code, each is one line naming the file.

Two ways a file reaches a model. Cache cases put a file under a torchvision name in
the workspace's cache (``torch/hub/checkpoints/``, the harness sets ``TORCH_HOME``
and ``ZOO_OFFLINE=1``); where the file must pass the hash check to reach the loader,
the catalog is told its full hash, as a first verified download of a bad source
would have taught it. Format cases ship the file with a plugin (the fixture
``zoo-fixture-remote`` with a ``file://`` URL and no hash: the loader alone stands
between the file and the model). A payload that runs code creates ``code-ran`` in
the workspace, which the harness reports as a file destroyed.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sqlite3
import struct
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path

from conftest import code_on_load
from hostile.harness import Case, fixture_site

RESNET18 = "resnet18-f37072fd.pth"  # torchvision's file name, as `zoo show resnet18 --json` gives its URL
RESNET18_URL = f"https://download.pytorch.org/models/{RESNET18}"
SUMMARY = ("summary", "resnet18", "--weights", "DEFAULT", "--input", "1,3,224,224")
Setup = Callable[[Path], Mapping[str, str | None] | None]


def code_on_load_in(ws: Path) -> bytes:
    """A pickle that would create ``code-ran`` in the workspace if anything loaded it whole."""
    return code_on_load(ws / "code-ran")


def saved(value: object) -> bytes:
    import torch

    buffer = io.BytesIO()
    torch.save(value, buffer)
    return buffer.getvalue()


def tensors() -> bytes:
    import torch

    return saved({"fc.weight": torch.ones(2, 2), "fc.bias": torch.zeros(2)})


def cache(ws: Path) -> Path:
    """The workspace's weights cache, made if missing."""
    folder = ws / "torch" / "hub" / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def cached(ws: Path, data: bytes) -> Path:
    """`data` in the workspace's cache under resnet18's file name."""
    path = cache(ws) / RESNET18
    path.write_bytes(data)
    return path


def stamp(path: Path, sha256: str) -> None:
    """The size-and-mtime stamp zoo wrote beside cached files until now, claiming `sha256`."""
    st = path.stat()
    path.with_name(f".{path.name}.zoo-verified").write_text(
        json.dumps({"sha256": sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns}))


def learn(ws: Path, data: bytes) -> None:
    """Record `data`'s full hash for resnet18's URL in the workspace catalog, as a verified download does."""
    with sqlite3.connect(ws / "registry.db") as db:
        db.execute("DELETE FROM weight_files WHERE url = ?", (RESNET18_URL,))
        db.execute("INSERT INTO weight_files (url, sha256, file_size) VALUES (?, ?, ?)",
                   (RESNET18_URL, hashlib.sha256(data).hexdigest(), len(data)))


def forged_stamp(ws: Path) -> None:
    path = cached(ws, code_on_load_in(ws))
    stamp(path, "f37072fd" + "0" * 56)  # the hash the file name promises


def replaced_after_stamp(ws: Path) -> None:
    """A good file, learned and stamped; then changed in place with its size and mtime put back."""
    original = tensors()
    path = cached(ws, original)
    learn(ws, original)
    stamp(path, hashlib.sha256(original).hexdigest())
    before = path.stat()
    path.write_bytes(original[:-30] + b"#" * 30)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


def truncated_learned(ws: Path) -> None:
    original = tensors()
    learn(ws, original)
    cached(ws, original[: len(original) // 2])


def global_learned(ws: Path) -> None:
    data = code_on_load_in(ws)
    learn(ws, data)
    cached(ws, data)


def stale_part_then_mirror(ws: Path) -> dict[str, str]:
    """A dead download's part file in the cache; the mirror holds the file, whose hash the catalog knows."""
    data = tensors()
    learn(ws, data)
    (cache(ws) / f".{RESNET18}.k2j4h5g6.part").write_bytes(data[:100])
    (ws / "mirror").mkdir()
    (ws / "mirror" / RESNET18).write_bytes(data)
    return {"ZOO_WEIGHTS_MIRROR": str(ws / "mirror")}


def only_the_fetched_file(ws: Path, done: subprocess.CompletedProcess) -> None:
    """The fetch printed the cached file's path, and left no part or lock file beside it."""
    assert done.stdout.strip() == str(cache(ws) / RESNET18), done.stdout
    assert sorted(p.name for p in cache(ws).iterdir()) == [RESNET18], sorted(p.name for p in cache(ws).iterdir())


def garbage_cached(ws: Path) -> None:
    cached(ws, os.urandom(4096))


def fifo_cached(ws: Path) -> None:
    os.mkfifo(cache(ws) / RESNET18)


def device_link_cached(ws: Path) -> None:
    (cache(ws) / RESNET18).symlink_to("/dev/zero")


def shipped(name: str, make: Callable[[Path], bytes]) -> Setup:
    """A setup: the fixture plugin ships the file `name` (made by `make`) by a ``file://`` URL and no hash."""

    def setup(ws: Path) -> dict[str, str]:
        (ws / name).write_bytes(make(ws))
        return {"PYTHONPATH": str(fixture_site("zoo-fixture-remote")), "ZOO_LOAD_PLUGINS": "fixture-remote",
                "ZOO_FIXTURE_REMOTE_URL": (ws / name).as_uri()}

    return setup


def safetensors_header(size: int) -> bytes:
    """A safetensors file that declares a JSON header of `size` bytes, followed by a tiny one."""
    return struct.pack("<Q", size) + b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}' + b"\0" * 4


REMOTE = ("summary", "remote_net", "--weights", "DEFAULT", "--input", "1,4")


def not_tensors(name: str, reason: str = ".+") -> str:
    """The error for file `name` that a weights-only load refused, for a `reason` (a pattern)."""
    return rf"weights file \S+/{name} cannot be loaded as tensors only \({reason}\); nothing was loaded from it"


FORBIDDEN = r".*GLOBAL posix\.mkdir.*"

CASES = [
    Case("weights-pickle-forged-stamp", SUMMARY, rf"weights file \S+/{RESNET18} has SHA-256 [0-9a-f]{{64}}, "
         r"but its file name says it starts with f37072fd", setup=forged_stamp),
    Case("weights-garbage-cached", SUMMARY, rf"weights file \S+/{RESNET18} has SHA-256 .* delete it and fetch it again",
         setup=garbage_cached),
    Case("weights-replaced-after-stamp", SUMMARY, rf"weights file \S+/{RESNET18} has SHA-256 [0-9a-f]{{64}}, "
         r"but it must be [0-9a-f]{64}", setup=replaced_after_stamp),
    Case("weights-truncated-cached", SUMMARY, rf"weights file \S+/{RESNET18} has SHA-256 [0-9a-f]{{64}}, "
         r"but it must be", setup=truncated_learned),
    Case("weights-global-right-hash", SUMMARY, not_tensors(RESNET18, FORBIDDEN),
         setup=global_learned),
    Case("weights-cache-fifo", SUMMARY, rf"weights cache entry \S+/{RESNET18} is not a regular file", setup=fifo_cached,
         timeout=60),
    Case("weights-cache-link-to-device", SUMMARY, rf"weights cache entry \S+/{RESNET18} is not a regular file",
         setup=device_link_cached, timeout=60),
    Case("weights-stale-part-removed", ("weights", "fetch", "resnet18"), None, setup=stale_part_then_mirror,
         check=only_the_fetched_file),
    Case("weights-shipped-global", REMOTE, not_tensors("evil.pth", FORBIDDEN),
         setup=shipped("evil.pth", code_on_load_in), catalog=False),
    Case("weights-shipped-garbage", REMOTE, not_tensors("garbage.pth"),
         setup=shipped("garbage.pth", lambda ws: os.urandom(4096)), catalog=False),
    Case("weights-shipped-truncated-zip", REMOTE, not_tensors("cut.pth"),
         setup=shipped("cut.pth", lambda ws: tensors()[:700]), catalog=False),
    Case("weights-shipped-not-a-dict", REMOTE, r"weights file \S+/list\.pth holds a list, not a state dict",
         setup=shipped("list.pth", lambda ws: saved([1, 2, 3])), catalog=False),
    Case("weights-safetensors-huge-header", REMOTE, not_tensors("huge.safetensors"),
         setup=shipped("huge.safetensors", lambda ws: safetensors_header(2**63)), catalog=False),
    Case("weights-safetensors-header-past-end", REMOTE, not_tensors("short.safetensors"),
         setup=shipped("short.safetensors", lambda ws: safetensors_header(1 << 20)), catalog=False),
]

"""Publishing a large weights file at bounded memory (issue 23), in a folder and in the object store.

The file is a real model's state dict (vit_b_16, random weights: 346 MB), published in a
process of its own and through a served registry; each time the process that checks and
stores it must grow by well under its size, where reading it whole grew by twice its size
(the bytes and the tensors loaded from them, beside the model built for them: 664 MiB).

The bound, half the file, leaves a wide margin on both sides. The fit check reads the
file's header (or maps it without touching its pages) and builds the model on the meta
device (no parameters); hashing and storing go in chunks of 1 MiB, and a warm-up (a
publish that does not fit: the same imports, build and upload) comes before the baseline.
What is left is the store's own buffers, the same for any size: about 1 MiB for a
folder; for the object store, the parts of a multipart upload in flight and botocore's
copies of them (`zoo.s3store.S3Store`: 4 + 1 parts of 8 MiB), measured at 44 to 58 MiB.
The file is as large as it is so that this constant stays far below half of it.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision

from zoo.errors import UsageError
from zoo.fetch import sha256_of
from zoo.settings import Settings
from zoo.store import open_store
from zoo.testing import serving
from conftest import ALL_PLUGINS, ROOT, run_zoo

MODEL = "vit_b_16"
#: The tensors of the file that do not fit a head of three categories.
HEAD_WEIGHT, HEAD_BIAS = "heads.head.weight [1000, 768] vs model [3, 768]", "heads.head.bias [1000] vs model [3]"

#: Run in a child: a publish that does not fit (the warm-up), then the peak RSS, the publish, the peak RSS again.
_PUBLISH_IN_CHILD = """
import json, sys
from zoo.errors import UsageError
from zoo.publish import publish_weights

def peak():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))

try:
    publish_weights(sys.argv[1], sys.argv[2], name="acme/warm-up", categories=["a", "b", "c"])
    refusal = None
except UsageError as exc:
    refusal = str(exc)
before = peak()
published = publish_weights(sys.argv[1], sys.argv[2], name="acme/large")
print(json.dumps({"refusal": refusal, "before": before, "after": peak(), "published": published.to_json()}))
"""


@pytest.fixture(scope="module")
def weights_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """`MODEL`'s random weights as a ``torch.save`` file and as safetensors (346 MB each), and its head alone."""
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("large")
    torch.manual_seed(0)
    state = getattr(torchvision.models, MODEL)().state_dict()
    torch.save(state, folder / f"{MODEL}.pt")
    save_file(state, folder / f"{MODEL}.safetensors")
    save_file({key: state[key] for key in ("heads.head.weight", "heads.head.bias")}, folder / "head.safetensors")
    return {"torch": folder / f"{MODEL}.pt", "safetensors": folder / f"{MODEL}.safetensors",
            "head": folder / "head.safetensors"}


@pytest.fixture
def env(synced_catalog: str, artifacts: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A copy of the session's synced catalog and a fresh artifact store (`artifacts`: a folder, the object store),
    set for this test; the variables a ``zoo`` process needs for them."""
    copy = tmp_path / "registry.db"
    with sqlite3.connect(synced_catalog.removeprefix("sqlite:///")) as source, sqlite3.connect(copy) as target:
        source.backup(target)
    values = {"ZOO_REGISTRY_URL": f"sqlite:///{copy}", "ZOO_LOAD_PLUGINS": ALL_PLUGINS, "ZOO_ARTIFACTS": artifacts}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


def _does_not_fit(file: str, problems: str) -> str:
    """The one-line refusal of `file` published for `MODEL` with a head of three categories, for `problems`."""
    return f"{file} does not fit {MODEL} with a head of 3 categories: tensors {problems}; nothing was published"


def _stored_size(sha256: str) -> int | None:
    return open_store(Settings.from_environ()).stat(sha256)


def _peak_rss(pid: int) -> int:
    """The peak resident set of process `pid` so far (VmHWM), in bytes."""
    status = Path(f"/proc/{pid}/status").read_text(encoding="utf-8")
    return next(int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmHWM:"))


def test_publishing_a_large_file_here_reads_its_header_not_its_tensors(env: dict[str, str],
                                                                     weights_files: dict[str, Path]) -> None:
    file = weights_files["torch"]
    done = subprocess.run([sys.executable, "-c", _PUBLISH_IN_CHILD, MODEL, str(file)], env={**os.environ, **env},
                          capture_output=True, text=True, check=True)
    result = json.loads(done.stdout)
    assert result["refusal"] == _does_not_fit(str(file), f"2 of another shape ({HEAD_WEIGHT}, {HEAD_BIAS})")
    size, sha256 = file.stat().st_size, sha256_of(file)
    assert (result["published"]["sha256"], result["published"]["size"]) == (sha256, size)
    assert _stored_size(sha256) == size
    grown = result["after"] - result["before"]
    assert grown < size / 2, f"publishing a {size} B file grew the process by {grown} B"


def test_publishing_a_large_file_through_the_service_keeps_its_memory_bounded(
        env: dict[str, str], weights_files: dict[str, Path], tmp_path: Path) -> None:
    file = weights_files["safetensors"]
    token = run_zoo("token", "create", "publisher", env=env).stdout.strip()
    with serving(env=env) as served:
        client = {"ZOO_REGISTRY_URL": served.url, "ZOO_TOKEN": token}
        refused = run_zoo("publish", "weights", MODEL, str(weights_files["head"]), "--name", "acme/warm-up",
                          "--categories", "a,b,c", env=client, cwd=tmp_path, check=False)
        # one line after the upload's progress bar; a safetensors header lists its tensors by name, and the
        # service calls its copy "the uploaded file"
        assert refused.returncode != 0 and refused.stderr.count("zoo: error: ") == 1, refused.stderr
        missing = "150 missing (class_token, conv_proj.weight, conv_proj.bias, ...)"
        refusal = _does_not_fit("the uploaded file", f"2 of another shape ({HEAD_BIAS}, {HEAD_WEIGHT}); {missing}")
        assert refused.stderr.splitlines()[-1] == f"zoo: error: {refusal}"
        before = _peak_rss(served.pid)
        published = json.loads(run_zoo("publish", "weights", MODEL, str(file), "--name", "acme/large", "--json",
                                       env=client, cwd=tmp_path).stdout)
        after = _peak_rss(served.pid)
    size = file.stat().st_size
    assert (published["sha256"], published["size"]) == (sha256_of(file), size)
    assert _stored_size(published["sha256"]) == size
    assert after - before < size / 2, f"publishing a {size} B file grew the service by {after - before} B"


def test_a_file_that_changes_while_it_is_published_is_refused(env: dict[str, str], tmp_path: Path) -> None:
    from zoo.context import current
    from zoo.publish import _check_fit

    file = tmp_path / "digits.pt"
    shutil.copyfile(ROOT / "plugins" / "zoo-digits" / "zoo_digits" / "digits_cnn-fb1204b6.pth", file)

    def check_then_change(*args: object) -> None:
        _check_fit(*args)  # it fits; then the file grows before it is hashed
        with file.open("ab") as f:
            f.write(b"more")

    with pytest.raises(UsageError, match=r"digits.pt changed while it was being published; nothing was published"):
        current().catalog.publish_weights("digits_cnn", file, name="acme/moving", metrics={}, categories=None,
                                          from_weights=None, description=None, preprocessing=None,
                                          check=check_then_change)
    assert not list(open_store(Settings.from_environ()))


def test_a_model_that_cannot_be_built_on_the_meta_device_is_measured_on_the_cpu(synced_catalog: str) -> None:
    import zoo
    from zoo.modeling.surgery import model_shapes

    with pytest.raises(NotImplementedError), torch.device("meta"):  # regnet reads its widths from a tensor
        zoo.build_model("regnet_x_400mf")
    built = zoo.build_model("regnet_x_400mf", num_classes=3).model
    expected = {key: tuple(tensor.shape) for key, tensor in built.state_dict().items()}
    assert model_shapes(lambda: zoo.build_model("regnet_x_400mf", num_classes=3).model) == expected
    assert model_shapes(lambda: zoo.build_model("resnet18", num_classes=3).model)["fc.weight"] == (3, 512)

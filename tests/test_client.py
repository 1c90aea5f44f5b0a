"""Client mode (``ZOO_REGISTRY_URL=http://...``): other processes use a real `zoo serve` as their catalog.

The service runs on SQLite and on PostgreSQL (`tests.test_serve.service`); what does not depend on
the backend (the round trip, a missing plugin, commands that need a database) runs on PostgreSQL
in CI and on both with ``ZOO_FULL_SWEEP=1``. Client
processes start in an empty folder with no catalog of their own and a weights cache
of their own; what they read is compared with the in-process Python API on the
service's catalog. The deployment process cannot import torch or SQLAlchemy.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import sys
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import zoo
from tests.conftest import FULL_SWEEP_ENV, NOT_ON_DEPLOYMENT_HOST, ROOT
from tests.test_serve import DIGITS_WEIGHTS, Service, in_process, service, sha256  # noqa: F401 - fixtures
from zoo.errors import ServiceError, UnknownModelError, UnknownWeightsError, UsageError

#: An image to predict on (scikit-learn's digits, drawn in a grid by scripts/readme_pictures.py).
PICTURE = ROOT / "docs" / "pictures" / "digits_grid.png"


@pytest.fixture
def client_env(service: Service, tmp_path: Path) -> dict[str, str]:  # noqa: F811 - the fixture
    """The environment of a client process: the service as its catalog, its own weights cache, no plugin filter."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("ZOO_")}
    return {**env, "ZOO_REGISTRY_URL": service.url, "TORCH_HOME": str(tmp_path / "torch"),
            "ZOO_TOKEN": service.tokens["publisher"]}


def client(env: dict[str, str], *args: str, cwd: Path, check: bool = True,
           blocked: tuple[str, ...] = (), timeout: float | None = None) -> subprocess.CompletedProcess[str]:
    """``python ARGS`` in a client process started in `cwd` with exactly `env`, the `blocked` packages
    unimportable (scripts/without.py); with `check`, it must succeed; past `timeout` seconds, it fails."""
    command = [sys.executable, str(ROOT / "scripts" / "without.py"), ",".join(blocked) or "-", *args]
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert not check or done.returncode == 0, done.stderr
    return done


def zoo_client(env: dict[str, str], *args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    return client(env, "-m", "zoo", *args, cwd=cwd, check=check)


def _json(done: subprocess.CompletedProcess[str]) -> object:
    return json.loads(done.stdout)


def _output(env: dict[str, str], *args: str, cwd: Path, blocked: tuple[str, ...] = ()) -> str:
    return client(env, *args, cwd=cwd, blocked=blocked).stdout.strip()


#: Backend-independent client behaviour runs on PostgreSQL in CI, on both backends with ``ZOO_FULL_SWEEP=1``
#: (the lookups and the service's refusals run on both always).
ONE_BACKEND = pytest.mark.parametrize("service", ["sqlite", "postgresql"] if os.environ.get(FULL_SWEEP_ENV) == "1"
                                      else ["postgresql"], indirect=True)
FILTERS = [{}, {"include": ["resnet*"], "exclude": ["resnet1*"]}, {"task": "detection", "max_params": 40_000_000},
           {"min_metric": {"ImageNet-1K:acc@1": 80.0}}, {"plugin": "digits", "pretrained": True}]


def test_zoo_list_in_client_mode_is_the_services_catalog(in_process: Service, client_env: dict[str, str],  # noqa: F811
                                                         tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    listed = _json(zoo_client(client_env, "list", "--json", "--task", "detection", "--max-params", "40M",
                              cwd=tmp_path))
    assert listed == zoo.summarize_models(task="detection", max_params=40_000_000) and listed
    assert not (tmp_path / "registry.db").exists(), "a client keeps no catalog of its own"
    local = [(zoo.summarize_models(**filters), zoo.list_models(**filters)) for filters in FILTERS]
    monkeypatch.setenv("ZOO_REGISTRY_URL", in_process.url)  # this process, in client mode
    assert [(zoo.summarize_models(**filters), zoo.list_models(**filters)) for filters in FILTERS] == local
    assert all(names for _, names in local), "each filter lists something"


def test_show_plugins_and_published_in_client_mode(in_process: Service, client_env: dict[str, str],  # noqa: F811
                                                   tmp_path: Path) -> None:
    measured = [m.to_json() for m in zoo.list_measurements("resnet18")]  # zoo show adds what was measured
    assert _json(zoo_client(client_env, "show", "resnet18", "--json", cwd=tmp_path)) == {
        **zoo.describe("resnet18"), "measurements": measured}
    plugins = _json(zoo_client(client_env, "plugins", "--json", cwd=tmp_path))
    assert plugins == zoo.list_plugins()
    assert {p["namespace"] for p in plugins} == {"digits", "torchvision"}
    assert _json(zoo_client(client_env, "published", "--json", cwd=tmp_path)) == [
        r.to_json() for r in zoo.list_published()]


@ONE_BACKEND
def test_publish_fetch_build_export_and_predict_without_torch(in_process: Service, client_env: dict[str, str],  # noqa: F811
                                                              tmp_path: Path) -> None:
    name = f"examples/client-{in_process.port}"
    published = _json(zoo_client(client_env, "publish", "weights", "digits_cnn", str(DIGITS_WEIGHTS), "--name", name,
                                 "--from", "DigitsCNN_Weights.DEFAULT", "--metric", "digits:acc@1=99",
                                 "--json", cwd=tmp_path))
    assert published["sha256"] == sha256(DIGITS_WEIGHTS.read_bytes())
    assert zoo.resolve_published(name).to_json() == published  # the service's catalog holds it

    # Build in a client: the file comes from the service into the client's cache, by its hash.
    build = ("import sys, torch, zoo; m = zoo.get_model('digits_cnn', weights=sys.argv[1]).eval(); "
             "torch.manual_seed(0); print(m(torch.rand(2, 1, 8, 8)).argmax(1).tolist())")
    built = _output(client_env, "-c", build, name, cwd=tmp_path)
    cached = Path(client_env["TORCH_HOME"]) / "hub" / "checkpoints" / "zoo" / "sha256" / published["sha256"]
    assert cached.read_bytes() == DIGITS_WEIGHTS.read_bytes()
    expected = zoo.get_model("digits_cnn", weights=name).eval()
    import torch

    torch.manual_seed(0)
    assert built == str(expected(torch.rand(2, 1, 8, 8)).argmax(1).tolist())

    # Offline: the cached copy serves; a fresh cache has nothing, unless the mirror holds the file by its hash.
    assert _output({**client_env, "ZOO_OFFLINE": "1"}, "-c", build, name, cwd=tmp_path) == built
    fresh = {**client_env, "ZOO_OFFLINE": "1", "TORCH_HOME": str(tmp_path / "fresh")}
    refused = zoo_client(fresh, "export", "digits_cnn", "--weights", name, "-o", str(tmp_path / "no.onnx"),
                         cwd=tmp_path, check=False)
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1 and "offline" in refused.stderr
    mirror = tmp_path / "mirror" / "sha256"
    mirror.mkdir(parents=True)
    shutil.copyfile(DIGITS_WEIGHTS, mirror / published["sha256"])
    assert _output({**fresh, "ZOO_WEIGHTS_MIRROR": str(mirror.parent)}, "-c", build, name, cwd=tmp_path) == built

    # Export in the client, publish the export, and run it by name where torch and SQLAlchemy cannot be imported.
    onnx_file = tmp_path / "digits.onnx"
    zoo_client(client_env, "export", "digits_cnn", "--weights", name, "-o", str(onnx_file), cwd=tmp_path)
    record = _json(zoo_client(client_env, "publish", "export", str(onnx_file), "--json", cwd=tmp_path))
    assert record["sha256"] == sha256(onnx_file.read_bytes()) and record["weights"] == f"{name}:1"
    deploy = {**client_env, "TORCH_HOME": str(tmp_path / "deploy")}
    ran = _output(deploy, "-m", "zoo", "predict", "--model", "digits_cnn", "--weights", name, str(PICTURE), "--json",
                  cwd=tmp_path, blocked=NOT_ON_DEPLOYMENT_HOST)
    from zoo.runtime import Predictor

    local = Predictor(onnx_file).predict([PICTURE])[0].to_json()
    assert json.loads(ran)["results"] == [local]
    assert json.loads(ran)["published"] == {"model": "digits_cnn", "weights": name}
    said = _output(deploy, "-m", "zoo", "predict", "--model", "digits_cnn", "--weights", name, str(PICTURE),
                   cwd=tmp_path, blocked=NOT_ON_DEPLOYMENT_HOST)  # named as asked, not by its cache path
    assert said.startswith(f"digits_cnn with {name} (published export {record['sha256'][:16]}): classification")
    code = ("import sys; from zoo.runtime import Predictor; "
            "p = Predictor.from_registry('digits_cnn', sys.argv[1]); print(p.path.name, p.task)")
    ran = _output(deploy, "-c", code, f"{name}:1", cwd=tmp_path, blocked=NOT_ON_DEPLOYMENT_HOST)
    assert ran.split() == [record["sha256"], "classification"]


@ONE_BACKEND
def test_a_missing_plugin_is_one_line_naming_what_to_install(in_process: Service,  # noqa: F811
                                                             client_env: dict[str, str], tmp_path: Path) -> None:
    done = client(client_env, "-m", "zoo", "export", "digits_cnn", "-o", str(tmp_path / "x.onnx"),
                  cwd=tmp_path, check=False, blocked=("zoo_digits",))
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
    version = next(p["version"] for p in zoo.list_plugins() if p["namespace"] == "digits")
    assert f"pip install 'zoo-digits=={version}'" in done.stderr
    assert not (tmp_path / "x.onnx").exists()


def test_the_services_refusals_are_the_zoo_errors_they_name(in_process: Service,  # noqa: F811
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZOO_REGISTRY_URL", in_process.url)
    monkeypatch.delenv("ZOO_TOKEN", raising=False)
    with pytest.raises(UnknownModelError, match="unknown model 'resnet19'; did you mean: resnet18"):
        zoo.describe("resnet19")
    with pytest.raises(UnknownWeightsError):
        zoo.get_weight("ResNet18_Weights.NOPE")
    with pytest.raises(UnknownWeightsError):
        zoo.get_model("resnet18", weights="acme/never-published")
    with pytest.raises(UsageError, match="unknown task"):
        zoo.list_models(task="no-such-task")
    with pytest.raises(ServiceError, match="needs a token") as refused:
        zoo.publish_weights("digits_cnn", DIGITS_WEIGHTS, name="acme/no-token")
    assert refused.value.status == 401
    assert zoo.get_weight("resnet18.DEFAULT") is zoo.get_model_weights("resnet18").DEFAULT
    from zoo_digits.model import digits_cnn

    assert zoo.get_model_weights(digits_cnn).__name__ == "DigitsCNN_Weights"


@ONE_BACKEND
def test_commands_that_need_a_catalog_database_say_so_in_one_line(client_env: dict[str, str], tmp_path: Path) -> None:
    for args in (("sync",), ("token", "list")):
        done = zoo_client(client_env, *args, cwd=tmp_path, check=False)
        assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
        assert "names a registry service" in done.stderr
    done = zoo_client({**client_env, "ZOO_REGISTRY_URL": "http://127.0.0.1:1"}, "list", cwd=tmp_path, check=False)
    assert done.returncode == 1 and done.stderr.count("\n") == 1 and "did not answer" in done.stderr


@ONE_BACKEND
def test_names_and_files_are_checked_before_any_request(client_env: dict[str, str], tmp_path: Path) -> None:
    """A name's parts cannot address another route of the service, and a publish input that is not a regular
    file is refused before a byte of it is read (a FIFO would never end): one line each, in bounded time."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    cases = {("alias", "sec/client", "../../../other/w/aliases/x", "1"): "alias '../../../other/w/aliases/x' must be",
             ("show", "../health"): "is not a name",
             ("publish", "weights", "digits_cnn", str(fifo), "--name", "sec/fifo"): "is not a regular file"}
    for args, said in cases.items():
        done = client(client_env, "-m", "zoo", *args, cwd=tmp_path, check=False, timeout=300)
        assert done.returncode == 1 and done.stderr.count("\n") == 1 and said in done.stderr, (args, done.stderr)


class FakeService:
    """A peer posing as a registry service: an HTTP server on 127.0.0.1 (``url``) for the block, which answers
    every request (any method) with `respond(handler)` and records each one's method, path and Authorization
    header in `requests`. Leaving the block sets `released` (a `respond` that stalls waits on it)."""

    def __init__(self, respond: Callable[[BaseHTTPRequestHandler], None]) -> None:
        self.requests: list[tuple[str, str, str | None]] = []
        self.released = threading.Event()
        recorded = self.requests

        class Handler(BaseHTTPRequestHandler):
            def answer(self) -> None:
                recorded.append((self.command, self.path, self.headers.get("Authorization")))
                respond(self)

            do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = answer  # noqa: N815 (http.server's names)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakeService:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()


def send(handler: BaseHTTPRequestHandler, status: int, body: bytes, *, headers: dict[str, str] | None = None) -> None:
    """Answer `status` with `body` (its length declared unless `headers` declare one) and `headers`."""
    handler.send_response(status)
    headers = {"Content-Type": "application/json", "Content-Length": str(len(body)), **(headers or {})}
    for name, value in headers.items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(body)


def test_answers_of_another_shape_are_one_line(tmp_path: Path) -> None:
    """A peer that answers every request with JSON of the wrong shape: each command ends in one line.
    (tests/test_client_hostile.py has every other kind of hostile answer.)"""

    def wrong_shapes(handler: BaseHTTPRequestHandler) -> None:
        send(handler, 200, b'{"models": [{"name": 1}], "total": 1, "versions": 3}' if "models" in handler.path
             else b'[1, 2]')

    env = {key: value for key, value in os.environ.items() if not key.startswith("ZOO_")}
    with FakeService(wrong_shapes) as peer:
        env["ZOO_REGISTRY_URL"] = peer.url
        for args in (("list",), ("show", "resnet18"), ("published",), ("plugins",)):
            done = client(env, "-m", "zoo", *args, cwd=tmp_path, check=False, timeout=300)
            assert done.returncode == 1 and done.stderr.count("\n") == 1, (args, done.stderr)
            assert "data of another shape" in done.stderr, (args, done.stderr)

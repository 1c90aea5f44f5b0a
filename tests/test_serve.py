"""``zoo serve``: a real uvicorn server process on 127.0.0.1 (a free port), on SQLite and PostgreSQL.

Each catalog gets one server for the module (``--max-upload 1M``); what it answers is
compared with the in-process Python API on the same catalog and artifact store. The
SQLite catalog keeps its files in a folder, the PostgreSQL one in the session's
object store (SeaweedFS, as a team's registry would): every store and every catalog
once, without running the module four times.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

import zoo
from zoo.errors import ZooError
from zoo.settings import Settings
from zoo.store import ArtifactStore, open_store
from zoo.testing import ObjectStore, ServeFailed, Served, serving
from tests.conftest import ALL_PLUGINS, ROOT, postgresql_database, python_without, run_zoo
from tests.test_publish import three_class_file  # noqa: F401 - a fixture: the digits weights with a 3-class head

DIGITS_WEIGHTS = ROOT / "plugins" / "zoo-digits" / "zoo_digits" / "digits_cnn-fb1204b6.pth"
MAX_UPLOAD = 1 << 20
API = "/api/v1"
@dataclass
class Service:
    """A `zoo serve` process (`zoo.testing.Served`), the environment (catalog, plugins, store) it runs in, and
    its tokens."""

    served: Served
    env: dict[str, str]
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.served.url

    @property
    def port(self) -> int:
        return self.served.port

    @property
    def store(self) -> ArtifactStore:
        """The artifact store the service uses, opened here."""
        return open_store(Settings.from_environ({**os.environ, **self.env}))

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.tokens[token]}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=120)


@contextmanager
def running_service(env: dict[str, str], *args: str, log: Path | None = None) -> Iterator[Service]:
    """``zoo serve ARGS`` in `env` (`zoo.testing.serving`: once it is ready) for the block, its output in `log`."""
    with serving(*args, env=env, log=log) as served:
        yield Service(served, env)


@contextmanager
def digits_publishing_site(folder: Path, plugins: str = "digits") -> Iterator[tuple[Service, str]]:
    """`zoo serve` on a catalog of `plugins` (default the digits one) in `folder` (SQLite, a folder store) for the
    block, and a publisher's token."""
    env = {"ZOO_REGISTRY_URL": f"sqlite:///{folder / 'registry.db'}", "ZOO_LOAD_PLUGINS": plugins,
           "ZOO_ARTIFACTS": str(folder / "artifacts")}
    run_zoo("sync", env=env)
    token = run_zoo("token", "create", "publisher", env=env).stdout.strip()
    with running_service(env, log=folder / "serve.log") as served:
        yield served, token


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def service(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """A synced catalog with tokens, served by `zoo serve --max-upload 1M` for the module: SQLite with a folder
    store, PostgreSQL with an object store."""
    folder = tmp_path_factory.mktemp(f"serve-{request.param}")
    if request.param == "postgresql":
        s3: ObjectStore = request.getfixturevalue("s3_server")
        store = {**s3.env, "ZOO_ARTIFACTS": s3.location(f"serve-{uuid.uuid4().hex[:12]}")}
    else:
        store = {"ZOO_ARTIFACTS": str(folder / "artifacts")}
    with (postgresql_database() if request.param == "postgresql"
          else nullcontext(f"sqlite:///{folder / 'registry.db'}")) as url:
        env = {"ZOO_REGISTRY_URL": url, "ZOO_LOAD_PLUGINS": ALL_PLUGINS, **store}
        run_zoo("sync", env=env)
        tokens = {name: run_zoo("token", "create", name, *scopes, env=env).stdout.strip()
                  for name, scopes in (("publisher", ()), ("reader", ("--scope", "read")))}
        try:
            with running_service(env, "--max-upload", str(MAX_UPLOAD), log=folder / "serve.log") as served:
                served.tokens = tokens
                yield served
        finally:
            from zoo.catalog.engine import open_engine

            open_engine(url).dispose()


@pytest.fixture
def in_process(service: Service, monkeypatch: pytest.MonkeyPatch) -> Service:
    """This process's zoo pointed at the service's catalog and store."""
    for key, value in service.env.items():
        monkeypatch.setenv(key, value)
    return service


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def one_line_error(response: httpx.Response) -> str:
    """The response's error, checked to be one line of JSON ``{"error": ..., ["kind": ZooError subclass]}``."""
    body = response.json()
    assert set(body) <= {"error", "kind"} and "\n" not in body["error"] and "Traceback" not in body["error"], body
    assert body.get("kind", "ZooError") in {cls.__name__ for cls in _zoo_errors(ZooError)}, body
    return body["error"]


def _zoo_errors(cls: type) -> list[type]:
    return [cls, *(sub for direct in cls.__subclasses__() for sub in _zoo_errors(direct))]


def raw_request(port: int, head: str, body: bytes = b"", *, close_after: bool = False) -> tuple[int, bytes]:
    """Send `head` (request line and headers, without the blank line) and `body` over a plain socket,
    exactly as written (no client normalises the path); the status and body of the answer, or
    (0, b"") after `close_after` (hang up once the body is sent, without reading)."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(head.encode("latin-1").replace(b"\n", b"\r\n") + b"\r\n\r\n" + body)
        if close_after:
            return 0, b""
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


def stored_blobs(service: Service) -> set[str]:
    """The SHA-256 names of the blobs in the service's store (publishing's temporary files excluded)."""
    return {artifact.sha256 for artifact in service.store}


def leftover_uploads(service: Service) -> list[Path]:
    """What the service's upload bodies left in its scratch folder, and the store's unfinished uploads."""
    return [*service.store.scratch("uploads").rglob("*"), *(Path(left.name) for left in service.store.leftovers())]


def publish(service: Service, name: str, body: bytes, *, token: str | None = "publisher",
            declared: str | None = None, **params: object) -> httpx.Response:
    with service.client(token) as client:
        return client.post(f"{API}/published/{name}", params={"model": "digits_cnn", **params}, content=body,
                           headers={"X-Zoo-SHA256": declared or sha256(body)})


# -- reads ---------------------------------------------------------------------------


@pytest.mark.parametrize(("query", "filters"), [
    ({}, {}),
    ({"task": "classification"}, {"task": "classification"}),
    ({"plugin": "digits"}, {"plugin": "digits"}),
    ({"pretrained": "true"}, {"pretrained": True}),
    ({"max_params": 5_000_000}, {"max_params": 5_000_000}),
    ({"min_metric": "ImageNet-1K:acc@1=80"}, {"min_metric": {"ImageNet-1K:acc@1": 80.0}}),
    ({"pattern": ["resnet*", "vgg1?"], "exclude": "resnet1*"}, {"include": ["resnet*", "vgg1?"], "exclude": "resnet1*"}),
])
def test_models_are_list_models(in_process: Service, query: dict, filters: dict) -> None:
    with in_process.client() as client:
        page = client.get(f"{API}/models", params={**query, "limit": 1000}).json()
    expected = zoo.list_models(**filters)
    assert [m["name"] for m in page["models"]] == expected and page["total"] == len(expected) > 0


def test_models_come_in_pages_and_records_are_describe(in_process: Service) -> None:
    everything = zoo.list_models()
    with in_process.client() as client:
        page = client.get(f"{API}/models", params={"limit": 7, "offset": 5}).json()
        assert [m["name"] for m in page["models"]] == everything[5:12]
        assert page["total"] == len(everything)
        assert page["models"][0] == json.loads(json.dumps(zoo.summarize_models(everything[5])[0]))
        for name in ("resnet18", "torchvision/resnet18", "digits_cnn"):
            assert client.get(f"{API}/models/{name}").json() == json.loads(json.dumps(zoo.describe(name)))
        missing = client.get(f"{API}/models/resnet_nope")
    assert missing.status_code == 404 and one_line_error(missing).startswith("unknown model 'resnet_nope'")


@pytest.mark.parametrize(("path", "params", "status", "says"), [
    ("/models", {"task": "juggling"}, 400, "unknown task 'juggling'"),
    ("/models", {"min_metric": "acc@1"}, 400, "is not NAME=VALUE"),
    ("/models", {"min_metric": "ImageNet-1K:acc@1=nan"}, 400, "must be a finite number"),
    ("/models", {"limit": 0}, 400, "query parameter 'limit'"),
    ("/models", {"max_params": "lots"}, 400, "query parameter 'max_params'"),
    ("/models", {"pattern": "a\x00b"}, 400, "NUL"),
    ("/weights/ABC", {}, 400, "path parameter 'sha256'"),
    ("/weights/" + "0" * 64, {}, 404, "no published weights file has SHA-256"),
    ("/exports/" + "0" * 64, {}, 404, "no published export has SHA-256"),
    ("/published/acme/never", {}, 404, "nothing is published as acme/never"),
    ("/nowhere", {}, 404, "no such path"),
])
def test_bad_requests_are_one_line_of_json(service: Service, path: str, params: dict, status: int, says: str) -> None:
    with service.client() as client:
        response = client.get(API + path, params=params)
    assert response.status_code == status and says in one_line_error(response)


def test_health(service: Service) -> None:
    with service.client() as client:
        assert client.get(f"{API}/health").json() == {"status": "ok"}


def test_requests_not_addressed_to_this_server_are_refused(service: Service) -> None:
    """DNS rebinding: a page of another site reaches 127.0.0.1 with its own Host header."""
    for host in ("evil.example:%d", "evil.example", "localhost:1", "127.0.0.2:%d"):
        status, body = raw_request(service.port, f"GET {API}/health HTTP/1.1\nHost: {host.replace('%d', str(service.port))}\n"
                                                 "Connection: close")
        assert status == 400 and "this server answers requests addressed to" in json.loads(body)["error"]
    for host in ("localhost", "127.0.0.1", "[::1]"):
        status, _ = raw_request(service.port, f"GET {API}/health HTTP/1.1\nHost: {host}:{service.port}\nConnection: close")
        assert status == 200


# -- publishing and fetching -----------------------------------------------------------


def test_publish_then_fetch_the_file(in_process: Service) -> None:
    body = DIGITS_WEIGHTS.read_bytes()
    digest = sha256(body)
    first = publish(in_process, "acme/digits", body, metric="sklearn-digits:acc@1=97.5", description="parity")
    assert first.status_code == 201, first.text
    assert first.json()["version"] == 1 and first.json()["sha256"] == digest
    again = publish(in_process, "acme/digits", body, **{"from": "acme/digits:1"})
    assert again.status_code == 201 and again.json()["version"] == 2

    published = zoo.resolve_published("acme/digits")  # the Python API sees what the service published
    assert (published.version, published.sha256, published.size) == (2, digest, len(body))
    assert zoo.resolve_published("acme/digits:1").metrics == {"sklearn-digits:acc@1": 97.5}
    assert digest in stored_blobs(in_process) and not leftover_uploads(in_process)

    url = f"{API}/weights/{digest}"
    with in_process.client() as client:
        versions = client.get(f"{API}/published/acme/digits").json()["versions"]
        assert [v["version"] for v in versions] == [1, 2] and versions[0]["description"] == "parity"
        assert {"acme/digits:1", "acme/digits:2"} <= {p["spec"] for p in client.get(f"{API}/published").json()}
        got = client.get(url)
        assert got.content == body and got.headers["content-length"] == str(len(body))
        assert got.headers["etag"] == f'"{digest}"' and got.headers["accept-ranges"] == "bytes"
        head = client.head(url)
        assert head.status_code == 200 and head.content == b"" and head.headers["content-length"] == str(len(body))
        part = client.get(url, headers={"Range": "bytes=100-199"})
        assert part.status_code == 206 and part.content == body[100:200]
        assert part.headers["content-range"] == f"bytes 100-199/{len(body)}"
        tail = client.get(url, headers={"Range": "bytes=-10"})
        assert tail.status_code == 206 and tail.content == body[-10:]
        past = client.get(url, headers={"Range": f"bytes={len(body)}-"})
        assert past.status_code == 416 and "past the end of the file" in one_line_error(past)
        assert past.headers["content-range"] == f"bytes */{len(body)}"
        assert client.get(url, headers={"Range": "lines=1-2"}).status_code == 400
        assert client.get(url, headers={"If-None-Match": f'"{digest}"'}).status_code == 304


def test_publish_with_categories_and_aliases(in_process: Service, three_class_file: Path) -> None:  # noqa: F811
    body = three_class_file.read_bytes()
    unfit = publish(in_process, "acme/abc", body)
    assert unfit.status_code == 400 and "does not fit digits_cnn with its own head" in one_line_error(unfit)
    assert "/uploads/" not in one_line_error(unfit) and "the uploaded file" in one_line_error(unfit)
    made = publish(in_process, "acme/abc", body, categories="a, b,c", description="three digits")
    assert made.status_code == 201 and made.json()["categories"] == ["a", "b", "c"]
    zoo.set_alias("acme/abc", "production", 1)
    with in_process.client() as client:
        versions = client.get(f"{API}/published/acme/abc").json()["versions"]
    assert [(v["version"], v["aliases"]) for v in versions] == [(1, ["production"])]
    assert versions[0] == zoo.resolve_published("acme/abc@production").to_json()


def test_publishing_needs_a_live_token_with_the_publish_scope(in_process: Service) -> None:
    body = DIGITS_WEIGHTS.read_bytes()
    missing = publish(in_process, "acme/tokens", body, token=None)
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert "needs a token" in one_line_error(missing)
    in_process.tokens["forged"] = "zoo_" + "x" * 43
    assert publish(in_process, "acme/tokens", body, token="forged").status_code == 401
    reader = publish(in_process, "acme/tokens", body, token="reader")
    assert reader.status_code == 403 and "scope publish" in one_line_error(reader)
    in_process.tokens["short-lived"] = run_zoo("token", "create", "short-lived", env=in_process.env).stdout.strip()
    assert publish(in_process, "acme/tokens", body, token="short-lived").status_code == 201
    run_zoo("token", "revoke", "short-lived", env=in_process.env)
    revoked = publish(in_process, "acme/tokens", body, token="short-lived")
    assert revoked.status_code == 401 and one_line_error(revoked) == "the token is unknown or revoked"
    assert [p.version for p in zoo.list_published("acme/tokens")] == [1]


def test_refused_uploads_leave_nothing(in_process: Service) -> None:
    """A wrong declared hash, a file that does not fit the model, an unknown model, an oversize or cut
    upload, a name with `..` or `/` tricks: each refused, and nothing published or stored."""
    body = DIGITS_WEIGHTS.read_bytes()
    blobs = stored_blobs(in_process)
    other = os.urandom(len(body))

    wrong_hash = publish(in_process, "acme/refused", other, declared=sha256(body))
    assert wrong_hash.status_code == 400 and "but " + sha256(body) + " was declared" in one_line_error(wrong_hash)
    not_weights = publish(in_process, "acme/refused", other)
    assert not_weights.status_code == 400 and "/uploads/" not in one_line_error(not_weights)
    unknown_model = publish(in_process, "acme/refused", body, model="resnet_nope")
    assert unknown_model.status_code == 404 and "unknown model" in one_line_error(unknown_model)
    bad_metric = publish(in_process, "acme/refused", body, metric="acc@1=97")
    assert bad_metric.status_code == 400 and "DATASET:METRIC" in one_line_error(bad_metric)
    auth = f"Authorization: Bearer {in_process.tokens['publisher']}\nHost: 127.0.0.1:{in_process.port}"

    # Refused from its headers: the 2 MB body is never sent, so the answer comes before it.
    status, answer = raw_request(in_process.port, f"POST {API}/published/acme/refused?model=digits_cnn HTTP/1.1\n"
                                 f"{auth}\nX-Zoo-SHA256: {sha256(body)}\nContent-Length: {2 * MAX_UPLOAD}\n"
                                 "Connection: close")
    assert status == 413 and "accepts at most 1048576" in json.loads(answer)["error"]

    for path in ("acme/..", "acme%2F..%2F..", "../acme/x", "acme/x/../../../weights", "ac..me/x", "ACME/x",
                 "acme/x:2", "acme/x@prod", "acme/.hidden"):
        try:
            status, _ = raw_request(in_process.port, f"POST {API}/published/{path}?model=digits_cnn HTTP/1.1\n{auth}\n"
                                    f"X-Zoo-SHA256: {sha256(body)}\nContent-Length: {len(body)}\nConnection: close", body)
        except ConnectionResetError:
            # refused from its path before the body was read: the server's close of a socket with unread bytes
            # sends a reset, which can overtake its answer (seen under load); nothing was stored either way (below)
            continue
        assert status in (400, 404, 405), path

    # Cut midway: half of the declared bytes, then the client hangs up.
    raw_request(in_process.port, f"POST {API}/published/acme/refused?model=digits_cnn HTTP/1.1\n{auth}\n"
                f"X-Zoo-SHA256: {sha256(body)}\nContent-Length: {len(body)}", body[: len(body) // 2], close_after=True)
    deadline = time.monotonic() + 30
    while leftover_uploads(in_process) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not leftover_uploads(in_process)
    assert zoo.list_published("acme/refused") == [] and not any("acme/x" in p.spec for p in zoo.list_published())
    assert stored_blobs(in_process) <= blobs | {sha256(body)} and sha256(other) not in stored_blobs(in_process)
    with in_process.client() as client:  # still serving
        assert client.get(f"{API}/health").status_code == 200


def test_an_upload_removes_what_a_killed_server_left_a_day_ago(in_process: Service) -> None:
    """Upload folders of a server killed mid-upload: a day-old one goes with the next upload, a recent one
    (an upload in progress elsewhere) stays."""
    uploads = in_process.store.scratch("uploads")
    stale, recent = uploads / "tmp-killed", uploads / "tmp-in-progress"
    for folder in (stale, recent):
        (folder / "sha256").mkdir(parents=True)
        (folder / "sha256" / "part").write_bytes(b"x" * 100)
    os.utime(stale, (time.time() - 25 * 3600,) * 2)
    refused = publish(in_process, "acme/sweep", os.urandom(64))  # any upload: this one is refused
    assert refused.status_code == 400
    assert not stale.exists() and (recent / "sha256" / "part").read_bytes() == b"x" * 100
    shutil.rmtree(recent)


def test_eight_clients_publishing_one_name_get_versions_one_to_eight(in_process: Service, tmp_path: Path) -> None:
    """Two servers (the second with two worker processes) on one catalog and store; eight clients at once."""
    with running_service(in_process.env, "--workers", "2", log=tmp_path / "second.log") as second:
        body = DIGITS_WEIGHTS.read_bytes()
        answers: list[httpx.Response] = []

        def client(i: int) -> None:
            with httpx.Client(base_url=(in_process, second)[i % 2].url, timeout=300) as c:
                answers.append(c.post(f"{API}/published/acme/race", params={"model": "digits_cnn"}, content=body,
                                      headers={"X-Zoo-SHA256": sha256(body),
                                               "Authorization": f"Bearer {in_process.tokens['publisher']}"}))

        threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert [a.status_code for a in answers] == [201] * 8, [a.text for a in answers]
        assert sorted(a.json()["version"] for a in answers) == list(range(1, 9))
        with httpx.Client(base_url=second.url) as c:
            assert [v["version"] for v in c.get(f"{API}/published/acme/race").json()["versions"]] == list(range(1, 9))


@pytest.fixture(scope="module")
def digits_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A verified export of digits_cnn with its weights, by `zoo export` on a catalog of its own."""
    folder = tmp_path_factory.mktemp("export")
    path = folder / "digits.onnx"
    run_zoo("export", "digits_cnn", "--weights", "DEFAULT", "-o", str(path),
            env={"ZOO_REGISTRY_URL": f"sqlite:///{folder / 'registry.db'}", "ZOO_LOAD_PLUGINS": "digits"})
    return path


def test_publish_and_fetch_an_export(in_process: Service, digits_export: Path) -> None:
    data = digits_export.read_bytes()
    digest = sha256(data)
    with in_process.client("publisher") as client:
        posted = client.post(f"{API}/exports", content=data, headers={"X-Zoo-SHA256": digest})
        assert posted.status_code == 201, posted.text
        not_onnx = DIGITS_WEIGHTS.read_bytes()
        refused = client.post(f"{API}/exports", content=not_onnx, headers={"X-Zoo-SHA256": sha256(not_onnx)})
        assert refused.status_code == 400 and one_line_error(refused).startswith("the uploaded file is not an ONNX")
        record = client.get(f"{API}/exports/{digest}").json()
        assert record["model"] == "digits/digits_cnn" and record["size"] == len(data)
        assert record == zoo.find_export("digits_cnn", record["weights"]).to_json()
        assert [e["sha256"] for e in client.get(f"{API}/exports", params={"model": "digits_cnn"}).json()] == [digest]
        assert client.get(f"{API}/exports/{digest}/file").content == data
    assert not leftover_uploads(in_process)


# -- reads with a token, the token commands ---------------------------------------------


def test_reads_can_require_a_token_and_other_host_names_be_allowed(sqlite_url: str, tmp_path: Path) -> None:
    env = {"ZOO_REGISTRY_URL": sqlite_url, "ZOO_LOAD_PLUGINS": "digits", "ZOO_ARTIFACTS": str(tmp_path / "store")}
    with running_service(env, "--require-read-token", "--allow-host", "Registry.Example.com",
                         log=tmp_path / "serve.log") as served:
        served.tokens = {name: run_zoo("token", "create", name, "--scope", scope, env=env).stdout.strip()
                         for name, scope in (("reader", "read"), ("publisher", "publish"))}
        with served.client() as client:
            refused = client.get(f"{API}/models")
            assert refused.status_code == 401 and "reading needs a token" in one_line_error(refused)
            assert client.get(f"{API}/health").status_code == 200  # for load balancers
        for token in ("reader", "publisher"):
            with served.client(token) as client:
                assert client.get(f"{API}/models").json()["total"] == 1
        for host, status in (("registry.example.com", 200), ("REGISTRY.example.com:443", 200), ("example.com", 400)):
            answer, _ = raw_request(served.port, f"GET {API}/health HTTP/1.1\nHost: {host}\nConnection: close")
            assert answer == status, host
        # a client with a read token also downloads files (the token goes with file requests too)
        client = {"ZOO_REGISTRY_URL": served.url, "TORCH_HOME": str(tmp_path / "client-torch")}
        run_zoo("publish", "weights", "digits_cnn", str(DIGITS_WEIGHTS), "--name", "sec/readable",
                env={**client, "ZOO_TOKEN": served.tokens["publisher"]})
        built = run_zoo_python("import zoo; print(type(zoo.get_model('digits_cnn', weights='sec/readable')).__name__)",
                               env={**client, "ZOO_TOKEN": served.tokens["reader"]})
        assert built.stdout.strip() == "DigitsCNN"


def run_zoo_python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``python -c CODE`` in a child process with `env` on top of this one's (not started in the checkout)."""
    done = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True,
                          cwd=tempfile.gettempdir(), timeout=600)
    assert done.returncode == 0, done.stderr
    return done


def test_token_commands(sqlite_url: str) -> None:
    env = {"ZOO_REGISTRY_URL": sqlite_url, "ZOO_LOAD_PLUGINS": ""}
    made = run_zoo("token", "create", "ci", "--scope", "publish", "--scope", "read", env=env)
    secret = made.stdout.strip()
    assert secret.startswith("zoo_") and "only time" in made.stderr
    listed = json.loads(run_zoo("token", "list", "--json", env=env).stdout)
    assert listed == [{"name": "ci", "scopes": ["publish", "read"], "created_at": listed[0]["created_at"],
                       "revoked_at": None}]
    from sqlalchemy import create_engine, text

    engine = create_engine(sqlite_url)
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT hash FROM tokens")).scalars().all()
    engine.dispose()
    assert stored == [hashlib.sha256(secret.encode()).hexdigest()]  # the secret itself is nowhere

    for args, says in ((("create", "ci"), "a token named 'ci' exists already"),
                       (("create", "Bad Name"), "a token name is 1 to 100 lowercase letters"),
                       (("revoke", "nobody"), "no token named 'nobody'")):
        done = run_zoo("token", *args, env=env, check=False)
        assert done.returncode == 1 and done.stderr.count("\n") == 1 and says in done.stderr
    run_zoo("token", "revoke", "ci", env=env)
    again = run_zoo("token", "revoke", "ci", env=env, check=False)
    assert again.returncode == 1 and "revoked already" in again.stderr
    assert json.loads(run_zoo("token", "list", "--json", env=env).stdout)[0]["revoked_at"] is not None
    assert run_zoo("token", "create", "x", "--scope", "admin", env=env, check=False).returncode == 2


# -- generated requests ----------------------------------------------------------------


def test_no_server_error_for_generated_requests(service: Service) -> None:
    """schemathesis against the OpenAPI schema: a handful of generated requests per operation (uploads with
    a publish token), none answered 5xx."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings

    schema = schemathesis.openapi.from_url(f"{service.url}{API}/openapi.json")
    operations = [op.ok() for op in schema.get_all_operations()]
    assert {op.method.upper() for op in operations} == {"GET", "HEAD", "POST", "PUT"} and len(operations) >= 20
    token = {"Authorization": f"Bearer {service.tokens['publisher']}"}

    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=6, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def check(case) -> None:  # noqa: ANN001 - a schemathesis Case
            response = case.call(headers=token if case.method.upper() in {"POST", "PUT"} else None, timeout=120)
            assert response.status_code < 500, (case.method, case.formatted_path, case.query, response.text)

        check()


# -- the database goes away and comes back ------------------------------------------------


class PostgresServer:
    """A PostgreSQL server of the test's own (initdb, pg_ctl) on a free port of 127.0.0.1, to stop and start.

    PostgreSQL refuses to run as root, so as root it runs as the user ``postgres``.
    """

    def __init__(self) -> None:
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
        assert found, "PostgreSQL's server programs (/usr/lib/postgresql/*/bin) are needed"
        self.bin = found[-1].parent
        self.folder = Path(tempfile.mkdtemp(prefix="zoo-pg-"))
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_user:
            shutil.chown(self.folder, "postgres", "postgres")
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self._run("initdb", "-D", str(self.folder / "data"), "-U", "postgres", "--auth=trust", "--no-sync")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, program: str, *args: str) -> None:
        subprocess.run([*self.as_user, str(self.bin / program), *args], check=True, capture_output=True, cwd="/")

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.folder / "data"), "-l", str(self.folder / "log"), "-w", "start", "-o",
                  f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.folder / "data"), "-m", "fast", "-w", "stop")

    def remove(self) -> None:
        subprocess.run([*self.as_user, str(self.bin / "pg_ctl"), "-D", str(self.folder / "data"), "-m",
                        "immediate", "stop"], capture_output=True, cwd="/")
        shutil.rmtree(self.folder, ignore_errors=True)


def test_a_stopped_database_is_503_until_it_is_back(tmp_path: Path) -> None:
    database = PostgresServer()
    try:
        database.start()
        env = {"ZOO_REGISTRY_URL": database.url, "ZOO_LOAD_PLUGINS": "digits", "ZOO_ARTIFACTS": str(tmp_path / "a"),
               "ZOO_CATALOG_CHECK_INTERVAL": "0"}  # the catalog's state read at every request: no answer kept longer
        run_zoo("sync", env=env)
        with running_service(env, log=tmp_path / "serve.log") as served, served.client() as client:
            assert client.get(f"{API}/models").json()["total"] == 1
            database.stop()
            for path in ("/models", "/models/digits_cnn", "/health", "/published"):
                down = client.get(API + path)
                assert down.status_code == 503, (path, down.text)
                assert "cannot use the catalog at postgresql+psycopg://postgres@127.0.0.1" in one_line_error(down)
            database.start()
            deadline = time.monotonic() + 60
            while (back := client.get(f"{API}/models")).status_code != 200 and time.monotonic() < deadline:
                time.sleep(0.5)
            assert back.json()["total"] == 1 and client.get(f"{API}/health").status_code == 200
    finally:
        database.remove()


# -- starting and stopping ----------------------------------------------------------------


def ready_lines(log: Path) -> list[dict]:
    """The ready lines (JSON) `zoo serve` printed to `log`."""
    return [json.loads(line) for line in log.read_text().splitlines() if line.startswith('{"zoo_serve"')]


def children(pid: int) -> set[int]:
    """The ids of the child processes of `pid` (/proc)."""
    return {int(c) for task in Path(f"/proc/{pid}/task").iterdir() for c in (task / "children").read_text().split()}


def test_serve_says_it_is_ready_in_one_json_line_and_in_the_ready_file(sqlite_url: str, tmp_path: Path) -> None:
    env = {"ZOO_REGISTRY_URL": sqlite_url, "ZOO_LOAD_PLUGINS": "digits", "ZOO_ARTIFACTS": str(tmp_path / "store")}
    with serving(env=env, log=tmp_path / "serve.log") as served:
        ready_file = Path(served.process.args[served.process.args.index("--ready-file") + 1])
        ready = json.loads(ready_file.read_text())
        assert ready == served.ready == {"zoo_serve": "ready", "url": served.url, "pid": served.pid, "workers": 1}
        assert served.url.startswith("http://127.0.0.1:") and served.port > 0
        assert httpx.get(f"{served.url}{API}/health", timeout=60).json() == {"status": "ok"}
        assert ready_lines(served.log) == [ready]  # stdout: the same JSON, once
        assert served.stop() == -signal.SIGTERM  # as uvicorn: the signal's own effect after a graceful stop
        assert not ready_file.exists()  # removed: a stopped server does not look ready


def test_the_access_log_has_a_line_per_request_unless_turned_off(sqlite_url: str, tmp_path: Path) -> None:
    env = {"ZOO_REGISTRY_URL": sqlite_url, "ZOO_LOAD_PLUGINS": "digits", "ZOO_ARTIFACTS": str(tmp_path / "store")}
    for args, logged in (((), True), (("--no-access-log",), False)):
        log = tmp_path / f"serve-{logged}.log"
        with serving(*args, env=env, log=log) as served:
            assert httpx.get(f"{served.url}{API}/models/digits_cnn?probe", timeout=60).status_code == 200
            served.stop()  # the log complete
        assert ('- "GET /api/v1/models/digits_cnn?probe HTTP/1.1" 200 OK\n' in log.read_text()) is logged, log.read_text()


def test_with_two_workers_both_start_before_the_ready_line_and_die_with_the_server(sqlite_url: str,
                                                                                  tmp_path: Path) -> None:
    env = {"ZOO_REGISTRY_URL": sqlite_url, "ZOO_LOAD_PLUGINS": "digits", "ZOO_ARTIFACTS": str(tmp_path / "store")}
    with serving("--workers", "2", env=env) as served:
        assert ready_lines(served.log) == [served.ready] and served.ready["workers"] == 2
        assert served.log.read_text().count("Application startup complete.") == 2  # both, before the line
        for _ in range(4):
            assert httpx.get(f"{served.url}{API}/health", timeout=60).json() == {"status": "ok"}
        workers = {pid for pid in children(served.pid)
                   if "spawn_main" in Path(f"/proc/{pid}/cmdline").read_text(errors="replace")}
        assert len(workers) == 2
        os.kill(served.pid, signal.SIGKILL)  # no clean-up by the parent: the workers notice it is gone
        served.process.wait()
        deadline = time.monotonic() + 60
        while (alive := {pid for pid in workers if Path(f"/proc/{pid}").exists()}) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{served.url}{API}/health", timeout=10)


def test_a_server_that_exits_before_it_is_ready_is_an_error_with_its_log(sqlite_url: str, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        with pytest.raises(ServeFailed, match=f"(?s)exited 1 before it was ready.*cannot serve on "
                                                          f"127.0.0.1:{port}"):
            with serving("--port", port, env={"ZOO_REGISTRY_URL": sqlite_url, "ZOO_LOAD_PLUGINS": ""}):
                pass


def test_serve_refuses_bad_settings_in_one_line(sqlite_url: str, tmp_path: Path) -> None:
    env = {"ZOO_REGISTRY_URL": sqlite_url, "ZOO_LOAD_PLUGINS": ""}
    for args, says in ((("--workers", "0"), "workers must be a whole number, 1 or more"),
                       (("--port", "70000"), "port must be a whole number from 0 to 65535"),
                       (("--presign-expiry", "0"), "--presign-expiry is 0; give a whole number of seconds from 1")):
        done = run_zoo("serve", *args, env=env, check=False)
        assert done.returncode == 1 and done.stderr.count("\n") == 1 and says in done.stderr
    unreachable = run_zoo("serve", env={**env, "ZOO_REGISTRY_URL": f"sqlite:///{tmp_path}/none/registry.db"},
                          check=False)
    assert unreachable.returncode == 1 and "the folder" in unreachable.stderr and "does not exist" in unreachable.stderr
    assert run_zoo("serve", "--max-upload", "lots", env=env, check=False).returncode == 2


def test_serve_without_its_extra_is_one_line(sqlite_url: str) -> None:
    code = f"import os, sys\nos.environ['ZOO_REGISTRY_URL'] = {sqlite_url!r}\nfrom zoo.cli import main\nsys.exit(main(['serve']))\n"
    done = python_without(("fastapi", "uvicorn"), "-c", code)
    assert done.returncode == 1 and len(done.stderr.splitlines()) == 1, done.stderr
    assert done.stderr.startswith("zoo: error: zoo serve needs the serve extra (pip install 'zoo-registry[serve]')")

"""``zoo serve`` under hostile load: a real server process on 127.0.0.1 (a free port) and a SQLite catalog
in a temporary folder, attacked by raw sockets and httpx clients of this process.

One server for the module, with short body limits so that nothing waits for the defaults
(``--max-bodies 8 --body-timeout 2``: a body must keep coming, and after 2 s at 64 KiB/s):
slow uploads that hold a token, large "try it" bodies without one, and clients that leave
midway. Reads must keep answering meanwhile, within `READ_BOUND` seconds each; the server's
memory must not grow with the bodies (`RSS_CEILING`). A full disk is a real one: the
artifact store on a 1 MiB tmpfs, mounted in a mount namespace of its own (``unshare``).
"""

from __future__ import annotations

import io
import json
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.conftest import run_zoo
from tests.test_serve import API, Service, leftover_uploads, one_line_error, raw_request, sha256
from zoo.testing import serving

MAX_BODIES = 8
BODY_TIMEOUT = 2  # seconds: the server's --body-timeout
READ_BOUND = 5.0  # seconds any read may take during an attack (they take milliseconds unloaded)
TRY_BODY = 60 << 20  # bytes of one "try it" body: under the 64 MiB image limit
RSS_CEILING = 300 << 20  # bytes the server may grow by while ten such bodies come in at once
SAMPLE = Path(__file__).resolve().parents[1] / "zoo" / "service" / "web" / "static" / "samples" / "chelsea.jpg"


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """`zoo serve --max-bodies 8 --body-timeout 2` (`serving_an_export`)."""
    with serving_an_export(tmp_path_factory.mktemp("limits"), "--max-bodies", str(MAX_BODIES),
                           "--body-timeout", str(BODY_TIMEOUT)) as service:
        yield service


@contextmanager
def serving_an_export(folder: Path, *args: str) -> Iterator[Service]:
    """`zoo serve ARGS` on a digits catalog in `folder` where the digits export (TorchScript's, the quicker to
    make) is published; its publisher's token and the export's SHA-256 in `Service.tokens`."""
    env = {"ZOO_REGISTRY_URL": f"sqlite:///{folder / 'registry.db'}", "ZOO_LOAD_PLUGINS": "digits",
           "ZOO_ARTIFACTS": str(folder / "artifacts")}
    export = folder / "digits.onnx"
    run_zoo("export", "digits_cnn", "--weights", "DEFAULT", "--opset", "17", "--static", "-o", str(export), env=env)
    tokens = {"publisher": run_zoo("token", "create", "publisher", env=env).stdout.strip(),
              "export": sha256(export.read_bytes())}
    with serving(*args, env=env, log=folder / "serve.log") as served:
        service = Service(served, env, tokens)
        with service.client("publisher") as client:
            published = client.post(f"{API}/exports", content=export.read_bytes(),
                                    headers={"X-Zoo-SHA256": tokens["export"]})
            assert published.status_code == 201, published.text
        yield service


# -- attackers and observers -------------------------------------------------------------


@dataclass
class Answer:
    """An HTTP answer read off a raw socket: status, headers (lowercase names) and body."""

    status: int
    headers: dict[str, str]
    body: bytes

    def error(self) -> str:
        """The one-line JSON error of the answer."""
        return one_line_error(httpx.Response(self.status, content=self.body))


def _parse(raw: bytes) -> Answer | None:
    """The answer in `raw`, or None until all of it (its Content-Length) has come."""
    head, blank, body = raw.partition(b"\r\n\r\n")
    if not blank:
        return None
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    return Answer(int(status_line.split()[1]), headers, body) if len(body) >= int(headers["content-length"]) else None


def trickle(port: int, head: str, *, step: int = 256, every: float = 0.25, deadline: float = 120.0) -> Answer:
    """Send `head` (request line and headers) and then the body `step` bytes every `every` seconds, until the
    server answers; the answer. `step` 0 sends nothing after the head. Fails past `deadline` seconds (a
    server that never cuts the body)."""
    ends = time.monotonic() + deadline
    with socket.create_connection(("127.0.0.1", port), timeout=deadline) as sock:
        sock.sendall(head.encode("latin-1").replace(b"\n", b"\r\n") + b"\r\n\r\n")
        answer = b""
        while time.monotonic() < ends:
            if select.select([sock], [], [], every)[0]:  # the answer: read whole (the connection may then reset)
                chunk = sock.recv(65536)
                assert chunk, f"the connection closed after {answer!r}"
                answer += chunk
                if (parsed := _parse(answer)) is not None:
                    return parsed
            elif not answer and step:
                sock.sendall(b"x" * step)
    raise AssertionError(f"no answer to {head.splitlines()[0]} within {deadline} s")


def upload_head(service: Service, name: str, length: int) -> str:
    """The head of a publication of `length` bytes under `name` with the publisher's token."""
    return (f"POST {API}/published/{name}?model=digits_cnn HTTP/1.1\nHost: 127.0.0.1:{service.port}\n"
            f"Authorization: Bearer {service.tokens['publisher']}\nX-Zoo-SHA256: {'0' * 64}\n"
            f"Content-Length: {length}")


def try_it(url: str, sha256: str, body: bytes) -> httpx.Response:
    """The answer to a "try it" of the export `sha256` with `body`, without a token."""
    with httpx.Client(base_url=url, timeout=120) as client:
        return client.post(f"/try/{sha256}", content=body)


@dataclass
class Reads:
    """A client reading ``/api/v1/health`` and a page of ``/api/v1/models`` in turn, while a block runs
    (`during`), each request bounded by `READ_BOUND` seconds: how many answered, their latencies and when
    the first answer came (`time.monotonic`)."""

    url: str
    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    first_answer: float | None = None
    stop: threading.Event = field(default_factory=threading.Event)

    @contextmanager
    def during(self) -> Iterator[Reads]:
        """Read in a thread until the block ends."""
        reader = threading.Thread(target=self.run)
        reader.start()
        try:
            yield self
        finally:
            self.stop.set()
            reader.join()

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=READ_BOUND) as client:
            while not self.stop.is_set():
                for path in (f"{API}/health", f"{API}/models?limit=10"):
                    started = time.monotonic()
                    try:
                        answer = client.get(path)
                    except httpx.HTTPError as exc:
                        self.failures.append(f"{path}: {type(exc).__name__}")
                        continue
                    if answer.status_code != 200:
                        self.failures.append(f"{path}: {answer.status_code}")
                    self.latencies.append(time.monotonic() - started)
                    self.first_answer = self.first_answer or time.monotonic()


def run_all(*jobs: tuple[object, ...]) -> list[object]:
    """Call each `(function, *args)` in a thread of its own, all at once; their results in order."""
    results: list[object] = [None] * len(jobs)

    def call(i: int) -> None:
        function, *args = jobs[i]
        results[i] = function(*args)  # type: ignore[operator]

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def memory(pid: int) -> dict[str, int]:
    """The resident memory of process `pid` in bytes: now (VmRSS) and its peak (VmHWM)."""
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    fields = dict(line.split(":", 1) for line in lines if line.startswith(("VmRSS", "VmHWM")))
    return {name: int(value.split()[0]) << 10 for name, value in fields.items()}


# -- the attacks ----------------------------------------------------------------------------


def test_bodies_beyond_the_gate_are_refused_at_once_and_slow_ones_cut_while_reads_answer(limited: Service) -> None:
    """Ten uploads holding a token trickle 1 KB/s at a gate of eight: two are refused at once (503, Retry-After)
    while the eight trickle on, and those eight are cut (408) by the rate floor; reads answer meanwhile."""
    with Reads(limited.url).during() as reads:
        answers = run_all(*[(trickle, limited.port, upload_head(limited, "acme/slow", 1 << 20))
                            for _ in range(MAX_BODIES + 2)])
    assert sorted(a.status for a in answers) == [408] * MAX_BODIES + [503] * 2  # type: ignore[attr-defined]
    for answer in answers:
        assert isinstance(answer, Answer) and answer.headers.get("connection") == "close"
        if answer.status == 503:
            assert int(answer.headers["retry-after"]) > 0 and "--max-bodies" in answer.error()
        else:
            assert "slower than this server's 64 KiB/s (zoo serve --min-body-rate)" in answer.error()
    assert reads.failures == [] and len(reads.latencies) >= 2 and max(reads.latencies) < READ_BOUND
    assert not leftover_uploads(limited)
    with httpx.Client(base_url=limited.url) as client:
        assert client.get(f"{API}/published/acme/slow").status_code == 404


def test_a_body_that_stops_is_cut_and_the_gate_is_free_again(limited: Service) -> None:
    silent = trickle(limited.port, upload_head(limited, "acme/silent", 1000), step=0)
    assert silent.status == 408 and silent.error() == (f"the upload sent nothing for {BODY_TIMEOUT} s "
                                                       "(zoo serve --body-timeout); nothing was stored")
    body = b"not the declared bytes"
    with httpx.Client(base_url=limited.url, timeout=120) as client:  # read whole, then refused for its hash
        refused = client.post(f"{API}/published/acme/after", params={"model": "digits_cnn"}, content=body,
                              headers={"X-Zoo-SHA256": "0" * 64,
                                       "Authorization": f"Bearer {limited.tokens['publisher']}"})
    assert refused.status_code == 400 and one_line_error(refused).endswith(f"but {'0' * 64} was declared; "
                                                                           "nothing was stored")
    assert not leftover_uploads(limited)


def test_large_try_bodies_stream_to_disk_while_reads_answer(limited: Service) -> None:
    """Ten 60 MB "try it" bodies without a token at once: each one is read to a file (the server's memory stays
    within `RSS_CEILING` of where it was) and refused as no image, or refused at the gate; reads answer."""
    sha = limited.tokens["export"]
    with httpx.Client(base_url=limited.url, timeout=120) as client:  # the runtime loaded before memory is measured
        tried = client.post(f"/try/{sha}", content=SAMPLE.read_bytes())
        assert tried.status_code == 200 and tried.json()["task"] == "classification"
    before = memory(limited.served.pid)["VmRSS"]
    with Reads(limited.url).during() as reads:
        answers = run_all(*[(try_it, limited.url, sha, bytes(TRY_BODY))] * 10)
    grown = memory(limited.served.pid)["VmHWM"] - before
    statuses = [a.status_code for a in answers]  # type: ignore[attr-defined]
    assert set(statuses) <= {400, 503} and 400 in statuses, statuses
    for answer in answers:
        assert isinstance(answer, httpx.Response)
        error = one_line_error(answer)
        assert ("the uploaded file" in error) if answer.status_code == 400 else ("Retry-After" in answer.headers)
    assert grown < RSS_CEILING, f"the server grew by {grown >> 20} MiB"
    assert reads.failures == [] and len(reads.latencies) >= 2 and max(reads.latencies) < READ_BOUND
    assert not leftover_uploads(limited)


def test_an_image_too_large_to_draw_is_refused_before_it_is_run(limited: Service) -> None:
    """A photograph scaled past what "try it" draws: one line naming its size, no prediction made."""
    big = io.BytesIO()
    Image.open(SAMPLE).resize((5000, 4000)).save(big, format="JPEG")
    answer = try_it(limited.url, limited.tokens["export"], big.getvalue())
    assert answer.status_code == 400, answer.text
    assert "is a 5000 x 4000 image; try it runs on images of at most" in one_line_error(answer)


def test_an_unknown_export_is_refused_before_its_body(limited: Service) -> None:
    status, answer = raw_request(limited.port, f"POST /try/{'0' * 64} HTTP/1.1\nHost: 127.0.0.1:{limited.port}\n"
                                 f"Content-Length: {TRY_BODY}\nConnection: close")  # the body is never sent
    assert status == 404 and "no published export" in json.loads(answer)["error"]


def test_a_client_that_leaves_midway_is_one_log_line_at_most(limited: Service) -> None:
    """A "try it" body and an upload, each cut midway by its client: nothing stored, no traceback, at most one
    line in the server's log for each."""
    log = limited.served.log
    logged = len(log.read_text().splitlines())
    heads = (f"POST /try/{limited.tokens['export']} HTTP/1.1\nHost: 127.0.0.1:{limited.port}\nContent-Length: 100000",
             upload_head(limited, "acme/gone", 100000))
    for head in heads:
        raw_request(limited.port, head, b"x" * 50000, close_after=True)
    deadline = time.monotonic() + 60  # the server notices: its upload folders go
    while leftover_uploads(limited) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not leftover_uploads(limited)
    with httpx.Client(base_url=limited.url) as client:  # its answer's line comes after those of the two above
        assert client.get(f"{API}/health").status_code == 200
    deadline = time.monotonic() + 60
    while not any("/health" in line for line in log.read_text().splitlines()[logged:]) and time.monotonic() < deadline:
        time.sleep(0.1)
    new = log.read_text().splitlines()[logged:]
    assert any("/health" in line for line in new)
    assert len([line for line in new if "/health" not in line]) <= len(heads), new
    assert not any("Traceback" in line for line in new), new


def test_if_none_match_star_is_304_for_a_published_file(limited: Service) -> None:
    sha = limited.tokens["export"]
    with httpx.Client(base_url=limited.url) as client:
        for method in ("GET", "HEAD"):
            answer = client.request(method, f"{API}/exports/{sha}/file", headers={"If-None-Match": "*"})
            assert answer.status_code == 304 and answer.content == b"" and answer.headers["etag"] == f'"{sha}"'
        assert client.get(f"{API}/exports/{'0' * 64}/file", headers={"If-None-Match": "*"}).status_code == 404
        assert client.get(f"{API}/exports/{sha}/file", headers={"If-None-Match": '"other"'}).status_code == 200


def test_a_long_url_gets_an_answer_not_a_reset(limited: Service) -> None:
    status, answer = raw_request(limited.port, f"GET {API}/health?pad={'x' * 20_000} HTTP/1.1\n"
                                 f"Host: 127.0.0.1:{limited.port}\nConnection: close")
    assert status == 414 and "\n" not in json.loads(answer)["error"]


def test_bad_body_limits_are_one_line(sqlite_url: str) -> None:
    env = {"ZOO_REGISTRY_URL": sqlite_url, "ZOO_LOAD_PLUGINS": ""}
    for option, value, says in (("--max-bodies", "0", "--max-bodies"), ("--body-timeout", "nan", "--body-timeout")):
        refused = run_zoo("serve", "--port", "0", option, value, env=env, check=False)
        assert refused.returncode == 1 and refused.stdout == "", (option, value, refused.stderr)
        assert refused.stderr.startswith("zoo: error: ") and says in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr


# -- a full disk ------------------------------------------------------------------------------

#: Run in a user and mount namespace of its own: mounts a 1 MiB tmpfs at the store, serves (`zoo.testing.serving`)
#: until its standard input closes, then prints what the store holds, as JSON.
_FULL_DISK_SERVER = """
import json, os, subprocess, sys
from zoo.testing import serving
env = json.loads(sys.argv[1])
store = env["ZOO_ARTIFACTS"]
os.makedirs(store, exist_ok=True)
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "zoo-full-disk", store], check=True)
with serving(env=env, log=sys.argv[2]) as served:
    print(json.dumps({"url": served.url}), flush=True)
    sys.stdin.read()
print(json.dumps(sorted(str(p.relative_to(store)) for p in __import__("pathlib").Path(store).rglob("*")
                        if p.is_file())), flush=True)
"""


def test_a_full_disk_is_507_in_one_line_and_stores_nothing(limited: Service, tmp_path: Path) -> None:
    """A second server on the same catalog, its store on a 1 MiB disk: a 2 MiB upload fills it."""
    env = {**limited.env, "ZOO_ARTIFACTS": str(tmp_path / "store")}
    token = limited.tokens["publisher"]
    log = tmp_path / "serve.log"
    server = subprocess.Popen(["unshare", "--user", "--map-root-user", "--mount", sys.executable, "-c",
                               _FULL_DISK_SERVER, json.dumps(env), str(log)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None and server.stdin is not None
    try:
        url = json.loads(server.stdout.readline())["url"]
        body = b"\x01" * (2 << 20)  # twice the disk
        with httpx.Client(base_url=url, timeout=120, headers={"Authorization": f"Bearer {token}"}) as client:
            full = client.post(f"{API}/published/acme/full", params={"model": "digits_cnn"}, content=body,
                               headers={"X-Zoo-SHA256": sha256(body)})
            assert full.status_code == 507 and one_line_error(full).startswith("the server's disk is full")
            assert client.get(f"{API}/published/acme/full").status_code == 404
            assert client.get(f"{API}/health").status_code == 200
        server.stdin.close()  # the server stops
        assert json.loads(server.stdout.readline()) == []  # what the store holds: nothing
    finally:
        if not server.stdin.closed:
            server.stdin.close()
        try:
            server.wait(60)
        finally:
            server.kill()
    lines = log.read_text().splitlines()
    assert not any("Traceback" in line for line in lines)
    assert len([line for line in lines if "disk is full" in line]) == 1, lines

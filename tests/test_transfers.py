"""Big transfers: downloads that resume after a cut, redirects to an object store, progress bars.

Downloads run against real HTTP servers on 127.0.0.1 (`RangeServer`, below) that answer each
request as a test plans it: cut the body short, ignore ``Range``, answer a range that starts
elsewhere, refuse (403 as an expired presigned URL), redirect to another server. Redirect mode
runs end to end: ``zoo serve --artifacts redirect`` on a SQLite catalog with its artifact store in
the session's SeaweedFS (`zoo.testing.object_store`), published to and fetched from by client
processes, which show their progress bars on stderr.
"""

from __future__ import annotations

import calendar
import hashlib
import http.client
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from tqdm import tqdm

import zoo
from conftest import ROOT, on_a_terminal, progress_on_a_terminal, run_zoo
from zoo.fetch import WeightsCache, WeightsFile, fetch
from zoo.testing import ObjectStore, ServeFailed, Served, serving

SIZE = 300_000
CUT = 100_000
DIGITS_WEIGHTS = ROOT / "plugins" / "zoo-digits" / "zoo_digits" / "digits_cnn-fb1204b6.pth"
TOKEN = "the-service-token"


class RangeServer:
    """A real HTTP server on 127.0.0.1 that serves `files` by path, with a strong ETag, honouring
    ``Range: bytes=N-`` (and ``If-Range``) with 206; `plans` lists, per path, what the next requests
    get instead, one each: ``"cut"`` (the answer it would give, cut after `CUT` bytes of the file),
    ``"whole"`` (200 whatever the Range), ``"elsewhere"`` (206 from 1000 bytes before the range asked
    for), an HTTP status, or ``("redirect", URL)`` (307). Without `etags` it sends no ETag. It records
    each request's path and headers, and counts the body bytes it sent."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.etags = True
        self.plans: dict[str, list[str | int | tuple[str, str]]] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.sent = 0
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                path = self.path.lstrip("/")
                with server.lock:
                    server.requests.append((path, {k.lower(): v for k, v in self.headers.items()}))
                    queued = server.plans.get(path.partition("?")[0])
                    plan = queued.pop(0) if queued else "ok"
                if isinstance(plan, tuple):
                    self.answer(307, {"Location": plan[1]})
                elif isinstance(plan, int):
                    self.answer(plan)
                else:
                    self.serve(server.files[path.partition("?")[0]], plan)

            def answer(self, status: int, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for name, value in {**(headers or {}), "Content-Length": "0"}.items():
                    self.send_header(name, value)
                self.end_headers()

            def serve(self, data: bytes, plan: str) -> None:
                etag = f'"{hashlib.sha256(data).hexdigest()[:16]}"'
                asked = self.headers.get("Range", "")
                start = int(asked.removeprefix("bytes=").rstrip("-")) if asked.startswith("bytes=") else 0
                if self.headers.get("If-Range") not in (None, etag) or plan == "whole":
                    start = 0
                first = max(0, start - 1000) if plan == "elsewhere" else start
                body = data[first:]
                self.send_response(206 if first or start else 200)
                if first or start:
                    self.send_header("Content-Range", f"bytes {first}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Length", str(len(body)))
                if server.etags:
                    self.send_header("ETag", etag)
                self.end_headers()
                if plan == "cut":
                    body = body[:CUT]
                    self.close_connection = True
                self.wfile.write(body)
                with server.lock:
                    server.sent += len(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{path}"

    def put(self, path: str, *plan: str | int | tuple[str, str], data: bytes | None = None) -> WeightsFile:
        """Random bytes (or `data`) at `path`, the next requests answered as `plan` says; what to fetch."""
        self.files[path] = data if data is not None else os.urandom(SIZE)
        self.plans[path] = list(plan)
        return WeightsFile(self.url(path), hashlib.sha256(self.files[path]).hexdigest(), size=len(self.files[path]))

    def asked(self, path: str) -> list[dict[str, str]]:
        """The headers of each request for `path` (with any query), in order."""
        return [headers for asked, headers in self.requests if asked.partition("?")[0] == path]

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def ranges() -> Iterator[RangeServer]:
    server = RangeServer()
    yield server
    server.stop()


@pytest.fixture
def elsewhere() -> Iterator[RangeServer]:
    """A second server: another origin, as an object store's presigned URLs are."""
    server = RangeServer()
    yield server
    server.stop()


def cached(cache: Path) -> list[Path]:
    """Every file in the cache but lock files: a failed download leaves none, a good one its entry only."""
    return [p for p in cache.rglob("*") if p.is_file() and not p.name.endswith(".lock")] if cache.exists() else []


# -- resuming ----------------------------------------------------------------------------


def test_a_cut_download_resumes_where_it_stopped(ranges: RangeServer, isolated_cache: Path) -> None:
    file = ranges.put("w.bin", "cut")
    with progress_on_a_terminal() as terminal:  # progress bars show on a terminal only
        fetched = fetch(file, progress=True)
    assert fetched.sha256 == file.sha256 and fetched.path.read_bytes() == ranges.files["w.bin"]
    first, second = ranges.asked("w.bin")
    assert "range" not in first and second["range"] == f"bytes={CUT}-"
    assert second["if-range"].startswith('"')  # the ETag the first answer gave
    assert ranges.sent == SIZE < 2 * SIZE  # each byte sent once
    assert cached(isolated_cache) == [fetched.path]
    total = tqdm.format_sizeof(SIZE, divisor=1024)
    bars = [line for line in terminal.decode().split("\r\n") if f"/{total} " in line]  # one line a bar
    assert len(bars) == 2, bars
    first_shown = [shown for shown in bars[1].split("\r") if shown][0]
    assert f" {tqdm.format_sizeof(CUT, divisor=1024)}/{total} " in first_shown, bars  # the second from the cut


def test_a_server_that_ignores_range_gives_the_whole_file_again(ranges: RangeServer, isolated_cache: Path) -> None:
    file = ranges.put("w.bin", "cut", "whole")
    fetched = fetch(file, progress=False)
    assert fetched.sha256 == file.sha256
    assert [h.get("range") for h in ranges.asked("w.bin")] == [None, f"bytes={CUT}-"]
    assert ranges.sent == CUT + SIZE
    assert cached(isolated_cache) == [fetched.path]


def test_a_range_that_starts_elsewhere_is_not_appended(ranges: RangeServer, isolated_cache: Path) -> None:
    """Bytes 99000- answered to a request for 100000-: appended, they would make a wrong file (a final
    hash mismatch); the next attempt starts over instead."""
    file = ranges.put("w.bin", "cut", "elsewhere")
    fetched = fetch(file, progress=False)
    assert fetched.sha256 == file.sha256
    assert [h.get("range") for h in ranges.asked("w.bin")] == [None, f"bytes={CUT}-", None]
    assert cached(isolated_cache) == [fetched.path]


def test_the_size_bound_holds_across_the_pieces(ranges: RangeServer, isolated_cache: Path) -> None:
    """The file's known size bounds the whole file, the bytes kept included: a rest that would pass it is cut
    off as it arrives, and that is final."""
    file = ranges.put("w.bin", "cut", data=os.urandom(SIZE + 1000))
    with pytest.raises(zoo.errors.ArtifactTooLargeError, match=f"larger than the limit of {SIZE} bytes"):
        fetch(WeightsFile(file.url, file.sha256, size=SIZE), progress=False)
    assert [h.get("range") for h in ranges.asked("w.bin")] == [None, f"bytes={CUT}-"]
    assert cached(isolated_cache) == []


def test_bytes_of_a_file_nothing_identifies_are_not_kept(ranges: RangeServer, isolated_cache: Path) -> None:
    """Without a full hash or an ETag, nothing could tell that the rest belongs to the bytes kept."""
    file = ranges.put("w.bin", "cut")
    ranges.etags = False
    fetched = fetch(WeightsFile(file.url), progress=False)
    assert fetched.sha256 == file.sha256
    assert [h.get("range") for h in ranges.asked("w.bin")] == [None, None]


def test_a_download_that_fails_for_good_leaves_no_part(ranges: RangeServer, isolated_cache: Path) -> None:
    file = ranges.put("w.bin", *["cut"] * 4, data=os.urandom(10 * CUT))  # 4 attempts ($ZOO_FETCH_RETRIES)
    with pytest.raises(zoo.WeightsError, match=r"after 4 attempts; nothing was cached") as caught:
        fetch(file, progress=False)
    assert "\n" not in str(caught.value)
    assert [h.get("range") for h in ranges.asked("w.bin")] == [None, *(f"bytes={n * CUT}-" for n in (1, 2, 3))]
    assert cached(isolated_cache) == []


# -- redirects to another origin -----------------------------------------------------------


def test_a_cut_after_a_redirect_resumes_through_the_files_url(ranges: RangeServer, elsewhere: RangeServer,
                                                              isolated_cache: Path) -> None:
    """The resumed attempt asks the file's URL again (a fresh presigned URL), with Range, which goes along to
    the place it redirects to; the token goes to the file's origin only."""
    elsewhere.put("blob", "cut")
    file = ranges.put("w.bin", ("redirect", elsewhere.url("blob?signature=1")),
                      ("redirect", elsewhere.url("blob?signature=2")), data=elsewhere.files["blob"])
    fetched = fetch(WeightsFile(file.url, file.sha256, token=TOKEN, size=SIZE), progress=False)
    assert fetched.sha256 == file.sha256
    assert [h.get("range") for h in ranges.asked("w.bin")] == [None, f"bytes={CUT}-"]
    assert [h.get("range") for h in elsewhere.asked("blob")] == [None, f"bytes={CUT}-"]
    assert [path for path, _ in elsewhere.requests] == ["blob?signature=1", "blob?signature=2"]
    assert all(h["authorization"] == f"Bearer {TOKEN}" for h in ranges.asked("w.bin"))
    assert not any("authorization" in h for h in elsewhere.asked("blob"))
    assert elsewhere.sent == SIZE


def test_an_expired_redirect_is_asked_for_again_once(ranges: RangeServer, elsewhere: RangeServer,
                                                     isolated_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZOO_FETCH_RETRIES", "1")  # not another attempt: a fresh URL at once
    elsewhere.put("blob", 403)
    file = ranges.put("w.bin", *[("redirect", elsewhere.url(f"blob?signature={n}")) for n in (1, 2)],
                      data=elsewhere.files["blob"])
    fetched = fetch(WeightsFile(file.url, file.sha256, token=TOKEN), progress=False)
    assert fetched.sha256 == file.sha256
    assert len(ranges.asked("w.bin")) == 2
    assert [path for path, _ in elsewhere.requests] == ["blob?signature=1", "blob?signature=2"]
    assert not any("authorization" in h for h in elsewhere.asked("blob"))


def test_a_redirect_refused_twice_is_one_line(ranges: RangeServer, elsewhere: RangeServer,
                                              isolated_cache: Path) -> None:
    elsewhere.put("blob", 403, 403)
    file = ranges.put("w.bin", *[("redirect", elsewhere.url(f"blob?signature={n}")) for n in (1, 2)],
                      data=elsewhere.files["blob"])
    with pytest.raises(zoo.WeightsError) as caught:
        fetch(file, progress=False)
    message = str(caught.value)
    origin = elsewhere.url("").rstrip("/")
    assert (f"failed (HTTP Error 403: Forbidden from {origin}, where it redirected, also when asked again) "
            f"after 1 attempt; nothing was cached") in message, message
    assert "\n" not in message and "signature" not in message
    assert len(ranges.asked("w.bin")) == 2 and len(elsewhere.requests) == 2
    assert cached(isolated_cache) == []


def test_a_refusal_by_the_files_own_url_is_not_asked_again(ranges: RangeServer, isolated_cache: Path) -> None:
    file = ranges.put("w.bin", 403)
    with pytest.raises(zoo.WeightsError, match=r"\(HTTP Error 403: Forbidden\) after 1 attempt;"):
        fetch(file, progress=False)
    assert len(ranges.asked("w.bin")) == 1


# -- zoo serve --artifacts redirect, with the object store ---------------------------------


class ObjectStoreDoor:
    """A real HTTP server on 127.0.0.1 that passes every request on to the object store at `endpoint` as it came
    (its Host header too, which presigned URLs are signed for) and its answer back, recording each request's
    method, path and headers: the object store's origin as the service and its clients reach it."""

    def __init__(self, endpoint: str) -> None:
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.presigned_statuses: list[int] = []  # the object store's answer to each presigned GET
        self.hold = threading.Event()  # set: the next presigned GET is held until its URL expired
        target = urlsplit(endpoint)
        door = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def relay(self) -> None:
                headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
                door.requests.append((self.command, self.path, {k.lower(): v for k, v in headers.items()}))
                assert "chunked" not in self.headers.get("Transfer-Encoding", ""), "not relayed here"
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                presigned = self.command == "GET" and "X-Amz-Signature=" in self.path
                if presigned and door.hold.is_set():
                    door.hold.clear()
                    wait_until_expired(self.path)
                store = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
                try:
                    store.request(self.command, self.path, body=body, headers=headers)
                    answer = store.getresponse()
                    data = answer.read()
                    if presigned:
                        door.presigned_statuses.append(answer.status)
                finally:
                    store.close()
                self.send_response(answer.status)
                for name, value in answer.getheaders():
                    if name.lower() not in {"connection", "transfer-encoding", "content-length", "keep-alive"}:
                        self.send_header(name, value)
                length = answer.getheader("Content-Length") if self.command == "HEAD" else None
                self.send_header("Content-Length", length or str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = relay  # noqa: N815 (http.server's names)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def presigned_gets(self) -> list[dict[str, str]]:
        """The headers of each GET of a presigned URL (a client's, not the service's own signed requests)."""
        return [headers for method, path, headers in self.requests if method == "GET" and "X-Amz-Signature=" in path]

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def wait_until_expired(path: str) -> None:
    """Return once the presigned URL `path` is past its expiry (its own ``X-Amz-Date`` plus ``X-Amz-Expires``)."""
    query = parse_qs(urlsplit(path).query)
    signed = calendar.timegm(time.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ"))
    expires = signed + int(query["X-Amz-Expires"][0]) + 1
    while time.time() <= expires:
        time.sleep(0.1)


@dataclass
class Redirecting:
    """``zoo serve --artifacts redirect`` on a catalog with its store in the object store (through `door`), and
    what was published to it by a client (``zoo publish weights``, whose stderr is kept)."""

    served: Served
    env: dict[str, str]
    door: ObjectStoreDoor
    token: str
    published: dict[str, object]
    publish_stderr: str

    def client_env(self, folder: Path) -> dict[str, str]:
        """A client process's environment: the service as its catalog, a weights cache of its own, no AWS
        variables (the presigned URLs carry what the object store needs)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ZOO_", "AWS_"))}
        return {**env, "ZOO_REGISTRY_URL": self.served.url, "TORCH_HOME": str(folder / "torch"),
                "ZOO_TOKEN": self.token}


@pytest.fixture(scope="module")
def redirecting(s3_server: ObjectStore, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Redirecting]:
    folder = tmp_path_factory.mktemp("redirecting")
    door = ObjectStoreDoor(s3_server.endpoint)
    env = {"ZOO_REGISTRY_URL": f"sqlite:///{folder / 'registry.db'}", "ZOO_LOAD_PLUGINS": "digits",
           "ZOO_ARTIFACTS": s3_server.location(f"t-{uuid.uuid4().hex[:12]}"),
           **s3_server.env, "AWS_ENDPOINT_URL": door.origin}
    token = run_zoo("token", "create", "publisher", env=env).stdout.strip()
    try:
        with serving("--artifacts", "redirect", env=env) as served:
            state = Redirecting(served, env, door, token, {}, "")
            stdout, state.publish_stderr = on_a_terminal(state.client_env(folder), "publish", "weights", "digits_cnn",
                                                         str(DIGITS_WEIGHTS), "--name", "acme/digits", "--json",
                                                         cwd=folder)
            state.published = json.loads(stdout)
            yield state
    finally:
        door.stop()


def zoo_client(env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "zoo", *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    return done


def test_publishing_to_a_service_shows_an_upload_bar_on_a_terminal(redirecting: Redirecting) -> None:
    size = DIGITS_WEIGHTS.stat().st_size
    assert redirecting.published["sha256"] == hashlib.sha256(DIGITS_WEIGHTS.read_bytes()).hexdigest()
    assert redirecting.published["size"] == size
    bar = redirecting.publish_stderr.replace("\r", "\n").splitlines()
    assert any(line.startswith(f"{DIGITS_WEIGHTS.name} (upload): 100%") for line in bar), bar


def test_a_weights_get_is_redirected_to_the_object_store(redirecting: Redirecting) -> None:
    sha256, size = str(redirecting.published["sha256"]), int(str(redirecting.published["size"]))
    url = f"{redirecting.served.url}/api/v1/weights/{sha256}"
    with httpx.Client(timeout=60, headers={"Authorization": f"Bearer {redirecting.token}"}) as http:
        answer = http.get(url)
        assert answer.status_code == 307 and answer.headers["cache-control"] == "no-store"
        location = urlsplit(answer.headers["location"])
        assert f"{location.scheme}://{location.netloc}" == redirecting.door.origin
        gets = len(redirecting.door.presigned_gets())
        head = http.head(url)  # answered by the service itself
        assert (head.status_code, head.headers["content-length"], head.headers["etag"]) == (200, str(size),
                                                                                              f'"{sha256}"')
        assert http.get(url, headers={"If-None-Match": f'"{sha256}"'}).status_code == 304
        assert len(redirecting.door.presigned_gets()) == gets  # neither went to the object store
    with httpx.Client(timeout=60, follow_redirects=True) as http:
        ranged = http.get(url, headers={"Range": "bytes=10-"})  # the Range goes along to the object store
        assert ranged.status_code == 206 and ranged.content == DIGITS_WEIGHTS.read_bytes()[10:]
    assert redirecting.door.presigned_gets()[-1]["range"] == "bytes=10-"


def test_a_redirected_download_verifies_without_sending_the_token_there(redirecting: Redirecting,
                                                                         tmp_path: Path) -> None:
    sha256, size = str(redirecting.published["sha256"]), int(str(redirecting.published["size"]))
    file = WeightsFile(f"{redirecting.served.url}/api/v1/weights/{sha256}", sha256, token=redirecting.token,
                       size=size)
    gets = len(redirecting.door.presigned_gets())
    fetched = fetch(file, progress=False, cache=WeightsCache(tmp_path / "cache", retries="1"))
    assert fetched.path.read_bytes() == DIGITS_WEIGHTS.read_bytes()
    assert len(redirecting.door.presigned_gets()) == gets + 1
    assert not [h for _, _, h in redirecting.door.requests if redirecting.token in h.get("authorization", "")]


def test_zoo_weights_fetch_downloads_published_weights_with_a_bar(redirecting: Redirecting, tmp_path: Path) -> None:
    gets = len(redirecting.door.presigned_gets())
    # the bar shows on a terminal only (zoo.progress): stderr is a pseudo-terminal here
    stdout, shown = on_a_terminal(redirecting.client_env(tmp_path), "weights", "fetch", "acme/digits:1", cwd=tmp_path)
    path = Path(stdout.strip())
    assert path.is_relative_to(tmp_path / "torch")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == redirecting.published["sha256"]
    assert len(redirecting.door.presigned_gets()) == gets + 1  # from the object store, not through the service
    bar = shown.replace("\r", "\n").splitlines()
    assert any(line.startswith(f"{redirecting.published['sha256']}: 100%") for line in bar), bar


def test_a_presigned_url_that_expired_is_asked_for_again(redirecting: Redirecting, tmp_path: Path) -> None:
    """The object store refuses a URL past its ``--presign-expiry`` (403): the client asks the service once more
    and downloads with the fresh URL."""
    with serving("--artifacts", "redirect", "--presign-expiry", "1", env=redirecting.env) as short:
        answered = len(redirecting.door.presigned_statuses)
        redirecting.door.hold.set()
        env = {**redirecting.client_env(tmp_path), "ZOO_REGISTRY_URL": short.url}
        done = zoo_client(env, "weights", "fetch", "acme/digits:1", cwd=tmp_path)
    assert hashlib.sha256(Path(done.stdout.strip()).read_bytes()).hexdigest() == redirecting.published["sha256"]
    assert redirecting.door.presigned_statuses[answered:] == [403, 200]


def test_redirect_mode_needs_a_store_that_presigns(tmp_path: Path) -> None:
    env = {"ZOO_REGISTRY_URL": f"sqlite:///{tmp_path / 'registry.db'}", "ZOO_LOAD_PLUGINS": "",
           "ZOO_ARTIFACTS": str(tmp_path / "store")}
    with pytest.raises(ServeFailed) as caught:
        with serving("--artifacts", "redirect", env=env, timeout=120):
            pass
    log = str(caught.value).splitlines()
    errors = [line for line in log if line.startswith("zoo: error:")]
    assert errors == [f"zoo: error: --artifacts redirect needs an artifact store that can presign URLs "
                      f"(ZOO_ARTIFACTS=s3://BUCKET/PREFIX); the artifact store {tmp_path / 'store'} is a folder; "
                      f"serve its files with --artifacts proxy"], log
    assert not any("Traceback" in line for line in log)


def test_zoo_weights_fetch_copies_published_weights_from_the_store(redirecting: Redirecting, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the catalog is (no service): the stored file copied into the weights cache under its hash, as an
    export is."""
    for name, value in {**redirecting.env, "TORCH_HOME": str(tmp_path / "torch")}.items():
        monkeypatch.setenv(name, value)
    path = zoo.fetch_weights("acme/digits:1", progress=False)
    assert path == tmp_path / "torch" / "hub" / "checkpoints" / "zoo" / "sha256" / str(redirecting.published["sha256"])
    assert path.read_bytes() == DIGITS_WEIGHTS.read_bytes()

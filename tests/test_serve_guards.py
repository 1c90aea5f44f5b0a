"""Request-shape guards of ``zoo serve`` (zoo.service.guards), HEAD wherever GET, and a Content-Security-Policy
on every HTML page: against a real server on 127.0.0.1 (a SQLite catalog with digits_cnn's export
published), over plain sockets where a client would normalise what is sent.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.browser import chromium, offline_page
from tests.conftest import run_zoo
from zoo.service.app import MAX_REQUEST_HEAD
from zoo.service.guards import MAX_PARAMETERS, MAX_REPEATS, MAX_TARGET
from zoo.service.protocol import MAX_HEADER_LINES
from zoo.testing import serving

if TYPE_CHECKING:
    from playwright.sync_api import Browser

API = "/api/v1"


@dataclass
class Site:
    """The running server's address and the SHA-256 of its published export."""

    url: str
    port: int
    export: str


@dataclass
class Answer:
    """An HTTP answer read off a socket until the server closed it."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes
    rest: bytes  # whatever came after the first answer (a second answer, if the connection was reused)

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k == name.lower()), None)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    folder = tmp_path_factory.mktemp("guards")
    env = {"ZOO_REGISTRY_URL": f"sqlite:///{folder / 'registry.db'}", "ZOO_LOAD_PLUGINS": "digits",
           "ZOO_ARTIFACTS": str(folder / "artifacts")}
    run_zoo("sync", env=env)
    run_zoo("export", "digits_cnn", "--weights", "DEFAULT", "-o", str(folder / "digits.onnx"), env=env)
    run_zoo("publish", "export", str(folder / "digits.onnx"), env=env)
    with serving(env=env) as served:
        yield Site(served.url, served.port, hashlib.sha256((folder / "digits.onnx").read_bytes()).hexdigest())


def exchange(site: Site, data: bytes) -> Answer:
    """Send `data` as it is (``HOST`` replaced by the server's address) and read until the server closes (or
    resets: a server that refuses a request closes with the rest of it unread)."""
    with socket.create_connection(("127.0.0.1", site.port), timeout=60) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(data.replace(b"HOST", f"127.0.0.1:{site.port}".encode()))
        received = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                received += chunk
    head, _, after = received.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = [(k.strip().lower(), v.strip()) for k, _, v in (line.partition(":") for line in lines)]
    length = int(dict(headers).get("content-length", len(after)))
    return Answer(int(status_line.split()[1]), headers, after[:length], after[length:])


def ask(site: Site, method: str, target: str) -> Answer:
    """One request with no body, on a connection the server closes after answering."""
    return exchange(site, f"{method} {target} HTTP/1.1\r\nHost: HOST\r\nConnection: close\r\n\r\n".encode())


def one_line_error(answer: Answer) -> str:
    """The message of a one-line JSON error answer."""
    assert answer.header("content-type") == "application/json"
    assert answer.body.count(b"\n") == 0
    return json.loads(answer.body)["error"]


# -- URL length and query parameters ---------------------------------------------------------------


def test_a_url_longer_than_the_limit_is_414_in_one_line(site: Site) -> None:
    short, long = (f"{API}/models?pattern=" + "a" * (length - len(f"{API}/models?pattern=")) for length in
                   (MAX_TARGET, MAX_TARGET + 1))
    assert ask(site, "GET", short).status == 200
    refused = ask(site, "GET", long)
    assert refused.status == 414
    assert f"at most {MAX_TARGET}" in one_line_error(refused)
    long_path = ask(site, "GET", "/models/" + "x" * MAX_TARGET)
    assert long_path.status == 414


@pytest.mark.parametrize("path, name", [(f"{API}/models", "pattern"), (f"{API}/models", "exclude"),
                                        (f"{API}/models", "min_metric"), ("/", "task")])
def test_one_parameter_repeated_past_the_limit_is_400_naming_it(site: Site, path: str, name: str) -> None:
    value = {"min_metric": "sklearn-digits-heldout:acc@1=1", "task": "classification"}.get(name, "digits")
    allowed = "&".join([f"{name}={value}"] * MAX_REPEATS)
    assert ask(site, "GET", f"{path}?{allowed}").status == 200
    refused = ask(site, "GET", f"{path}?{allowed}&{name}={value}")
    assert refused.status == 400
    message = one_line_error(refused)
    assert repr(name) in message and f"at most {MAX_REPEATS}" in message


def test_too_many_query_parameters_are_400(site: Site) -> None:
    query = "&".join(f"p{i}=1" for i in range(MAX_PARAMETERS))
    assert ask(site, "GET", f"{API}/models?{query}").status == 200
    refused = ask(site, "GET", f"{API}/models?{query}&one=more")
    assert refused.status == 400
    assert f"at most {MAX_PARAMETERS}" in one_line_error(refused)


# -- request smuggling shapes ----------------------------------------------------------------------

SMUGGLED = b"GET /api/v1/health HTTP/1.1\r\nHost: HOST\r\n\r\n"


@pytest.mark.parametrize("framing, version", [
    (b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", b"1.1"),
    (b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", b"1.1"),
    (b"Transfer-Encoding: chunked\r\n", b"1.0"),
    (b"Transfer-Encoding: gzip, chunked\r\n", b"1.1"),
])
def test_a_body_that_could_be_framed_two_ways_is_400_and_the_connection_closes(
        site: Site, framing: bytes, version: bytes) -> None:
    answer = exchange(site, b"POST /api/v1/exports HTTP/" + version + b"\r\nHost: HOST\r\n" + framing
                      + b"\r\n0\r\n\r\n" + SMUGGLED)
    assert answer.status == 400
    assert answer.header("connection") == "close"
    assert "Transfer-Encoding" in one_line_error(answer)
    assert answer.rest == b""  # the request hidden in the body was not answered


@pytest.mark.parametrize("framing", [
    b"Content-Length: 5\r\nContent-Length: 6\r\n",
    b"Content-Length: 5, 6\r\n",
    b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
])
def test_the_parser_refuses_the_other_shapes_itself(site: Site, framing: bytes) -> None:
    """What uvicorn's parser (llhttp, through `zoo.service.protocol`) refuses before the app sees it, in the API's
    JSON: the guards rely on it."""
    answer = exchange(site, b"POST /api/v1/exports HTTP/1.1\r\nHost: HOST\r\n" + framing + b"\r\nhello!" + SMUGGLED)
    assert answer.status == 400
    assert answer.header("connection") == "close"
    assert "not valid HTTP/1.1" in one_line_error(answer)
    assert answer.rest == b""


# -- the request head: bytes and lines --------------------------------------------------------------


def request_head(site: Site, size: int, lines: int = 1, connection: str = "close") -> bytes:
    """A GET of the health route whose head (request line and headers) is `size` bytes, `lines` of its headers
    padding (besides Host and Connection)."""
    start = f"GET {API}/health HTTP/1.1\r\nHost: 127.0.0.1:{site.port}\r\nConnection: {connection}\r\n".encode()
    names = [b"X-Pad-%d: " % i for i in range(lines)]
    padding = size - len(start) - sum(len(name) + 2 for name in names) - 2
    assert padding >= lines
    return start + b"".join(name + b"p" * (padding // lines + (i < padding % lines)) + b"\r\n"
                            for i, name in enumerate(names)) + b"\r\n"


@pytest.mark.parametrize("lines", [1, MAX_HEADER_LINES - 2])
def test_a_request_head_up_to_the_limit_is_answered_and_a_longer_one_is_431_in_one_line(site: Site,
                                                                                         lines: int) -> None:
    for size in (MAX_REQUEST_HEAD, 100 << 10, MAX_REQUEST_HEAD + 1):
        assert len(request_head(site, size, lines)) == size
    twice = exchange(site, request_head(site, MAX_REQUEST_HEAD, lines, "keep-alive")
                     + request_head(site, MAX_REQUEST_HEAD, lines))  # pipelined: both sent at once
    assert (twice.status, twice.rest.count(b"HTTP/1.1 200 OK")) == (200, 1)
    for size in (MAX_REQUEST_HEAD + 1, 100 << 10):
        refused = exchange(site, request_head(site, size, lines))
        assert (refused.status, refused.header("connection"), refused.rest) == (431, "close", b"")
        message = one_line_error(refused)
        assert f"over {MAX_REQUEST_HEAD} bytes; this server accepts at most {MAX_REQUEST_HEAD}" in message


def test_a_request_of_more_header_lines_than_the_limit_is_431_in_one_line(site: Site) -> None:
    padding = MAX_HEADER_LINES - 2  # besides Host and Connection
    assert exchange(site, request_head(site, 4096, padding)).status == 200
    for lines in (padding + 1, 2000):
        refused = exchange(site, request_head(site, 50 * lines, lines))
        assert (refused.status, refused.header("connection"), refused.rest) == (431, "close", b"")
        assert f"at most {MAX_HEADER_LINES}" in one_line_error(refused)


# -- HEAD wherever GET -----------------------------------------------------------------------------


def operations(site: Site) -> list[tuple[str, str]]:
    """The (method, path) of every operation in the API's OpenAPI schema."""
    schema = httpx.get(f"{site.url}{API}/openapi.json").json()
    return [(method, path) for path, methods in schema["paths"].items() for method in methods]


def get_paths(site: Site) -> list[str]:
    """Every GET route of the API (from its OpenAPI schema, path parameters filled in) and the pages."""
    values = {"sha256": site.export, "name": "digits_cnn", "namespace": "team", "version": "1", "alias": "prod"}
    api = [re.sub(r"\{(\w+)(:path)?\}", lambda m: values[m[1]], path) for method, path in operations(site)
           if method == "get"]
    return [*api, f"{API}/docs", f"{API}/docs/swagger-ui.css", f"{API}/openapi.json", "/", "/compare",
            "/models/digits_cnn", "/models/no_such_model", "/try", f"/graph/{site.export}", f"/graph/{site.export}/",
            f"/graph/{site.export}/index.js", "/static/style.css", "/no/such/page"]


def test_head_answers_as_get_does_without_a_body(site: Site) -> None:
    paths = get_paths(site)
    assert f"{API}/health" in paths and f"{API}/exports/{site.export}/file" in paths
    answered = set()
    for path in paths:
        got, head = ask(site, "GET", path), ask(site, "HEAD", path)
        varying = {"date", "set-cookie"}
        assert (head.status, [h for h in head.headers if h[0] not in varying]) == (
            got.status, [h for h in got.headers if h[0] not in varying]), path
        assert head.body == head.rest == b"", path
        answered |= {path} if head.status == 200 else set()
    assert answered >= {f"{API}/health", f"{API}/models", f"{API}/models/digits_cnn", f"{API}/docs",
                        f"{API}/docs/swagger-ui.css", f"{API}/exports/{site.export}/file", "/", "/compare",
                        "/models/digits_cnn", "/try", f"/graph/{site.export}/", f"/graph/{site.export}/index.js",
                        "/static/style.css"}


def test_head_of_a_published_file_says_its_size(site: Site) -> None:
    head = ask(site, "HEAD", f"{API}/exports/{site.export}/file")
    size = len(ask(site, "GET", f"{API}/exports/{site.export}/file").body)
    assert (head.status, head.header("content-length"), head.body) == (200, str(size), b"")


def test_head_is_405_where_get_is(site: Site) -> None:
    for method in ("GET", "HEAD"):
        answer = ask(site, method, f"/try/{site.export}")  # a POST route only
        assert (answer.status, answer.header("allow")) == (405, "POST"), method


# -- Content-Security-Policy on every HTML page ----------------------------------------------------


def html_paths(site: Site) -> list[str]:
    return ["/", "/compare", "/models/digits_cnn", "/models/no_such_model", "/try", f"/graph/{site.export}/",
            f"{API}/docs"]


def test_every_html_page_has_a_csp_of_this_server_only(site: Site) -> None:
    for path in html_paths(site):
        answer = ask(site, "GET", path)
        assert (answer.header("content-type") or "").startswith("text/html"), path
        policy = answer.header("content-security-policy")
        assert policy is not None, path
        directives = dict(d.strip().partition(" ")[::2] for d in policy.split(";"))
        assert directives["default-src"] == "'self'", path
        assert "'unsafe-inline'" not in policy and "'unsafe-eval'" not in policy and "http" not in policy, path
        assert directives["object-src"] == "'none'" and directives["frame-ancestors"] == "'none'", path
        assert answer.header("x-content-type-options") == "nosniff", path


def test_the_docs_page_loads_swagger_ui_from_this_server_and_allows_its_script_by_hash(site: Site) -> None:
    answer = ask(site, "GET", f"{API}/docs")
    page = answer.body.decode()
    assert "https://" not in page and "http://" not in page
    inline = re.findall(r"<script>(.*?)</script>", page, re.DOTALL)
    assert len(inline) == 1
    digest = base64.b64encode(hashlib.sha256(inline[0].encode()).digest()).decode()
    assert f"'sha256-{digest}'" in (answer.header("content-security-policy") or "")
    for src in re.findall(r'(?:src|href)="([^"]+)"', page):
        assert ask(site, "GET", src).status == 200, src
    assert ask(site, "GET", f"{API}/docs/index.html").status == 404


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as running:
        yield running


@pytest.mark.parametrize("page, drawn", [("graph", "#canvas .node"), ("docs", ".opblock")])
def test_netron_and_swagger_ui_work_under_their_policy(browser: Browser, site: Site, page: str, drawn: str) -> None:
    tab, elsewhere = offline_page(browser, site.url)
    complaints: list[str] = []
    tab.on("console", lambda message: complaints.append(message.text) if message.type == "error" else None)
    try:
        tab.goto(site.url + {"graph": f"/graph/{site.export}/", "docs": f"{API}/docs"}[page])
        tab.wait_for_selector(drawn, timeout=30_000)
        if page == "docs":
            assert tab.locator(".opblock").count() == len(operations(site))
    finally:
        tab.context.close()
    assert complaints == [] and elsewhere == []


"""`zoo view`: netron serves an exported model on loopback, and a real Chromium renders its graph.

Chromium (Debian's ``chromium`` package) is driven by Playwright (tests/browser.py), with every
request to another server aborted: netron's page waits behind a cookie notice when it cannot reach
the internet, so the test sets netron's ``consent`` cookie first, as a user's click on "Accept" would.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.browser import chromium, chromium_path, offline_page
from zoo.errors import UsageError


def _render(url: str, wait_for: str, timeout: float = 30) -> tuple[bytes, str, int]:
    """Open `url` in headless Chromium, offline but for `url`'s server; once the graph is drawn return
    (PNG screenshot, DOM, node count)."""
    with chromium() as browser:
        page, _ = offline_page(browser, url, consent_for=url)
        page.goto(url)
        page.wait_for_selector(wait_for, timeout=timeout * 1000)
        page.wait_for_timeout(500)  # let the layout settle before the screenshot
        return page.screenshot(), page.content(), page.locator(wait_for).count()


# -- the server

@pytest.fixture(scope="module")
def digits_onnx(synced_catalog: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    import zoo

    path = tmp_path_factory.mktemp("view") / "digits.onnx"
    zoo.export_onnx("digits_cnn", path, weights="DEFAULT")
    return path


def _start_view(path: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    # SIGINT back to Python's default handler: a test run started in the background (CI, `&`) may
    # have inherited SIGINT as ignored, and then Ctrl-C would never reach the server.
    code = ("import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
            "from zoo.tools.view import view; "
            "view(sys.argv[1], port=int(sys.argv[2]), browse=False" + "".join(extra) + ")")
    proc = subprocess.Popen([sys.executable, "-c", code, str(path), "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    line = proc.stdout.readline()
    match = re.fullmatch(r"netron: serving (.+) at (http://127\.0\.0\.1:(\d+)) \(Ctrl-C to stop\)\n", line)
    if not match:
        proc.kill()
        raise AssertionError(f"unexpected first line {line!r}; stderr: {proc.communicate()[1]}")
    assert match[1] == str(path)
    return proc, match[2]


def _listening_addresses(port: int) -> list[str]:
    """Local addresses with a TCP socket listening on `port` (from /proc/net/tcp and tcp6)."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        for row in Path(table).read_text().splitlines()[1:]:
            local, state = row.split()[1], row.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                raw = bytes.fromhex(address)
                if len(raw) == 4:
                    found.append(socket.inet_ntop(socket.AF_INET, raw[::-1]))
                else:
                    words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
                    found.append(socket.inet_ntop(socket.AF_INET6, words))
    return found


def _outside_address() -> str | None:
    """An IPv4 address of this machine that is not loopback, if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: nothing is sent; this only picks a route
            address = s.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") or address == "0.0.0.0" else address


def test_view_serves_on_loopback_and_chromium_renders_the_graph(digits_onnx: Path, tmp_path: Path) -> None:
    import onnx

    assert chromium_path()  # fail early, with the install hint, before starting anything
    node_names = [n.name for n in onnx.load(str(digits_onnx)).graph.node]
    proc, url = _start_view(digits_onnx)
    try:
        port = int(url.rsplit(":", 1)[1])
        assert _listening_addresses(port) == ["127.0.0.1"], "netron must listen on loopback only"
        outside = _outside_address()
        if outside:
            with pytest.raises(OSError):  # refused: nothing listens on the machine's other address
                socket.create_connection((outside, port), timeout=2).close()

        png, dom, nodes = _render(url, "#canvas .node")
        (tmp_path / "shot.png").write_bytes(png)
        assert nodes >= len(node_names), f"netron drew {nodes} graph nodes; the DOM starts {dom[:500]!r}"
        for op in ("Conv", "Relu", "MaxPool", "Gemm"):
            assert f">{op}<" in dom, f"operator {op} is not in the rendered graph"
        missing = [name for name in node_names if f'id="node-name-{name}"' not in dom]
        assert not missing, f"nodes of the model not drawn by netron: {missing}"

        from PIL import Image

        image = Image.open(io.BytesIO(png)).convert("RGB")
        assert image.size == (1280, 800)
        colours = image.getcolors(maxcolors=1 << 20)
        assert colours is not None and len(colours) > 8, "the screenshot is (nearly) one colour"
        background = max(colours)[1]
        differ = sum(count for count, colour in colours if colour != background) / (image.width * image.height)
        assert differ > 0.01, f"only {differ:.2%} of the screenshot differs from the background"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            raise AssertionError(f"zoo view did not stop within 10 s of Ctrl-C; stderr: {err}") from None
    assert proc.returncode == 0, f"exit {proc.returncode}; stderr: {err}"
    assert "Traceback" not in err, err
    assert _listening_addresses(port) == []


def test_serve_returns_an_address_and_stop_frees_it(digits_onnx: Path) -> None:
    import urllib.request

    from zoo.tools.view import serve, stop, url

    address = serve(digits_onnx, browse=False)
    try:
        assert address[0] == "127.0.0.1" and address[1] > 0
        with urllib.request.urlopen(url(address), timeout=5) as response:
            assert response.status == 200 and b"netron" in response.read().lower()
        assert _listening_addresses(address[1]) == ["127.0.0.1"]
    finally:
        stop(address)
    assert _listening_addresses(address[1]) == []


def test_port_in_use_is_a_usage_error(digits_onnx: Path) -> None:
    from zoo.tools.view import serve

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(UsageError, match=f"cannot serve on 127.0.0.1:{port}"):
            serve(digits_onnx, port=port, browse=False)


@pytest.mark.parametrize("make", ["missing", "directory", "text", "empty"])
def test_not_an_onnx_file_is_a_one_line_usage_error(tmp_path: Path, make: str) -> None:
    from zoo.tools.view import serve

    path = tmp_path / "model.onnx"
    if make == "directory":
        path.mkdir()
    elif make == "text":
        path.write_text("this is not a model\n" * 10)
    elif make == "empty":
        path.write_bytes(b"")
    with pytest.raises(UsageError) as info:
        serve(path, browse=False)
    message = str(info.value)
    assert "\n" not in message and str(path) in message and "ONNX model file" in message


def test_bad_port_is_a_usage_error(digits_onnx: Path) -> None:
    from zoo.tools.view import serve

    with pytest.raises(UsageError, match="port must be"):
        serve(digits_onnx, port=70000, browse=False)


# -- what the server answers: only the model, only to loopback names

def _get(address: tuple[str, int], path: str, host: str | None = None) -> tuple[int, bytes]:
    """GET `path` over real HTTP on `address`, with the Host header `host` (default: http.client's)."""
    import http.client

    connection = http.client.HTTPConnection(*address, timeout=10)
    try:
        connection.putrequest("GET", path, skip_host=host is not None)
        if host is not None:
            connection.putheader("Host", host)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@pytest.fixture()
def model_folder(digits_onnx: Path, tmp_path: Path) -> Path:
    """The digits export in a folder with a dotfile, a sibling file and a subfolder's file."""
    shutil.copyfile(digits_onnx, tmp_path / "digits.onnx")
    (tmp_path / ".env").write_text("SECRET=1\n")
    (tmp_path / "notes.txt").write_text("private notes\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "other.onnx").write_bytes(digits_onnx.read_bytes())
    return tmp_path


def test_view_serves_the_model_and_nothing_else_from_its_folder(model_folder: Path) -> None:
    from zoo.tools.view import serve, stop

    address = serve(model_folder / "digits.onnx", browse=False)
    try:
        status, body = _get(address, "/")
        assert status == 200 and b"netron" in body.lower()
        assert _get(address, "/data/digits.onnx") == (200, (model_folder / "digits.onnx").read_bytes())
        for path in ("/data/.env", "/data/notes.txt", "/data/sub/other.onnx", "/data/./.env",
                     "/data/%2Eenv", "/data/sub/../notes.txt", "/data/" + str(model_folder / ".env")):
            status, body = _get(address, path)
            assert status == 404 and b"SECRET" not in body and b"private" not in body, path
    finally:
        stop(address)


@pytest.mark.parametrize("location", ["big.onnx.data", "weights/big.onnx.data"])
def test_view_serves_the_models_external_data_file(digits_onnx: Path, tmp_path: Path, location: str) -> None:
    import onnx

    model = onnx.load(str(digits_onnx))
    (tmp_path / "weights").mkdir()
    onnx.save_model(model, str(tmp_path / "big.onnx"), save_as_external_data=True,
                    all_tensors_to_one_file=True, location=location, size_threshold=0)
    (tmp_path / "unrelated.data").write_bytes(b"not the model's")
    from zoo.tools.view import serve, stop

    address = serve(tmp_path / "big.onnx", browse=False)
    try:
        assert _get(address, f"/data/{location}") == (200, (tmp_path / location).read_bytes())
        assert _get(address, "/data/unrelated.data")[0] == 404
    finally:
        stop(address)


@pytest.mark.parametrize("host, allowed", [
    ("127.0.0.1:{port}", True), ("localhost:{port}", True), ("LOCALHOST:{port}", True), ("[::1]:{port}", True),
    ("evil.example", False), ("evil.example:{port}", False), ("localhost.evil.example:{port}", False),
    ("127.0.0.1.nip.io:{port}", False), ("localhost:{other}", False), ("localhost", False), ("", False),
    ("localhost:{port}@evil.example", False), ("10.0.0.1:{port}", False),
])
def test_view_answers_only_requests_addressed_to_loopback(digits_onnx: Path, host: str, allowed: bool) -> None:
    """DNS rebinding: a page of evil.example whose name now points at 127.0.0.1 sends Host: evil.example."""
    from zoo.tools.view import serve, stop

    address = serve(digits_onnx, browse=False)
    try:
        header = host.format(port=address[1], other=address[1] + 1)
        for path in ("/", "/data/digits.onnx"):
            status, body = _get(address, path, host=header)
            if allowed:
                assert status == 200, (header, path)
            else:
                assert status == 403 and b"netron" not in body.lower() and b"onnx" not in body, (header, path)
    finally:
        stop(address)


def test_two_servers_in_one_process_serve_their_own_models(model_folder: Path, digits_onnx: Path) -> None:
    from zoo.tools.view import serve, stop

    first = serve(digits_onnx, browse=False)
    second = serve(model_folder / "sub" / "other.onnx", browse=False)
    try:
        assert _get(first, "/data/digits.onnx")[0] == 200
        assert _get(first, "/data/other.onnx")[0] == 404
        assert _get(second, "/data/other.onnx")[0] == 200
        assert _get(second, "/data/digits.onnx")[0] == 404
    finally:
        stop(first)
        stop(second)


@pytest.mark.parametrize("header, served, allowed", [
    ("192.168.1.5:8080", "0.0.0.0", True), ("[fe80::1]:8080", "::", True), ("evil.example:8080", "0.0.0.0", False),
    ("myhost:8080", "myhost", True), ("MYHOST:8080", "myhost", True), ("otherhost:8080", "myhost", False),
    ("192.168.1.5:8080", "127.0.0.1", False), ("localhost:8080", "0.0.0.0", True), ("localhost:80", "0.0.0.0", False),
    ("localhost:notaport", "127.0.0.1", False), (None, "127.0.0.1", False),
])
def test_which_host_names_a_server_answers(header: str | None, served: str, allowed: bool) -> None:
    """Loopback names, the name served on, and on a wildcard address IP literals (no DNS involved)."""
    from zoo.tools.view import host_allowed

    assert host_allowed(header, served, 8080) is allowed

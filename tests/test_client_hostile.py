"""A hostile registry service: every client command ends in one line, in bounded time, leaving nothing behind.

A fake service (`tests.test_client.FakeService` on 127.0.0.1) answers each route a client uses the way the
first part of the path says (``ZOO_REGISTRY_URL=http://127.0.0.1:PORT/BEHAVIOUR``, `BEHAVIOURS`): not JSON,
JSON of the wrong types or with a field missing, bodies too large (declared or not), a stall, a trickle,
redirects (in a loop, to another origin), a refusal a hundred thousand lines long; or right answers and a
hostile file download (bytes of another hash, more bytes than the record says, a stall halfway, redirects).
Each command runs in a child process (``python -m zoo``; `Predictor.from_registry` through ``python -c``)
with ``ZOO_SERVICE_TIMEOUT`` of a few seconds, a token, and a weights cache, working folder and ``TMPDIR`` of
its own. It must exit 1 with exactly one line on stderr and no traceback, within `BOUND_S`, with nothing
outside the cache and nothing in the cache under a hash its bytes do not have. The runs go a few at a time
(each mostly waits on its own start-up), started by the first test that needs one.

The other faults of the command line that must be one line (or quiet) are at the end: a read-only weights
cache, a plugin builder that raises inside ``zoo summary``, closed and broken standard output; and the read
token on a real ``zoo serve --require-read-token``, sent on a redirect to the same origin.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import pip_install, run_zoo
from tests.test_client import PICTURE, FakeService, send
from tests.test_serve import DIGITS_WEIGHTS
from zoo.service.client import MAX_ANSWER
from zoo.testing import serving

TIMEOUT_S = 2  # ZOO_SERVICE_TIMEOUT of every run
#: What a run may take: a stall ends after TIMEOUT_S (a stalled download, after each of its 2 attempts), so a
#: few seconds with start-up; a client that waited for each answer as long as it took took minutes.
BOUND_S = 60.0
TOKEN = "hostile-test-token"
FILE = b"the export's bytes"  # the file the export record names, by its hash and size
WRONG = b"x" * len(FILE)
FILE_SHA = hashlib.sha256(FILE).hexdigest()
FILE_ROUTE = f"/api/v1/exports/{FILE_SHA}/file"
MOVED_ROUTE = "/moved/file"  # where file-redirect-here sends the download: the same origin
ONNXRUNTIME_SESSION = ".ses"  # what importing onnxruntime writes in TMPDIR: not the zoo's

WEIGHTS = {"name": "DigitsCNN_Weights.SKLEARN_DIGITS_V1", "enum": "DigitsCNN_Weights", "member": "SKLEARN_DIGITS_V1",
           "is_default": True, "task": "classification", "url": "https://example.invalid/digits_cnn-fb1204b6.pth",
           "sha256": None, "file_size": 103655, "transforms": None, "builder_args": {},
           "meta": {"_metrics": {"digits": {"acc@1": 99.0}}}}
PUBLISHED = {"name": "acme/digits", "version": 1, "spec": "acme/digits:1", "model": "digits/digits_cnn",
             "sha256": hashlib.sha256(DIGITS_WEIGHTS.read_bytes()).hexdigest(), "size": DIGITS_WEIGHTS.stat().st_size,
             "categories": None, "metrics": {"digits:acc@1": 99.0}, "preprocessing": None, "description": None,
             "from_weights": None, "aliases": [], "created_at": "2025-01-01T00:00:00+00:00"}
SUMMARY = {"name": "digits_cnn", "qualified_name": "digits/digits_cnn", "task": "classification", "plugin": "digits",
           "builder": "zoo_digits.model:digits_cnn", "num_params": 24058, "weights": [WEIGHTS["name"]],
           "default_weights": WEIGHTS["name"]}
MODEL = {"name": "digits_cnn", "qualified_name": "digits/digits_cnn", "task": "classification",
         "plugin": {"name": "digits", "namespace": "digits", "distribution": "zoo-digits", "version": "0.1.0"},
         "providers": ["digits/digits_cnn"], "builder": "zoo_digits.model:digits_cnn", "builder_args": {},
         "weights_enum": "zoo_digits.model:DigitsCNN_Weights", "num_params": 24058, "tags": ["cnn"], "metadata": {},
         "classifier": ["classifier"], "first_conv": "features.0", "input_size": None,
         "default_weights": WEIGHTS["name"], "weights": [WEIGHTS], "published": [PUBLISHED]}
PLUGIN = {"name": "digits", "namespace": "digits", "distribution": "zoo-digits", "version": "0.1.0",
          "status": "loaded", "error": None, "models": 1, "failures": [], "installed_here": True, "shared": []}
EXPORT = {"sha256": FILE_SHA, "size": len(FILE), "model": "digits/digits_cnn", "weights": "acme/digits:1",
          "metadata": {}, "verified_by": "claimed", "created_at": "2025-01-01T00:00:00+00:00"}
#: The right answer of each route a client uses (by path, query left out).
ANSWERS = {"/api/v1/models": {"models": [SUMMARY], "total": 1}, "/api/v1/models/digits_cnn": MODEL,
           "/api/v1/plugins": [PLUGIN], "/api/v1/published": [PUBLISHED], "/api/v1/exports/latest": EXPORT,
           "/api/v1/published/acme/digits": PUBLISHED}

#: The command each case runs, as arguments of ``python``.
COMMANDS = {
    "list": ("-m", "zoo", "list"),
    "show": ("-m", "zoo", "show", "digits_cnn"),
    "plugins": ("-m", "zoo", "plugins"),
    "published": ("-m", "zoo", "published"),
    "predict": ("-m", "zoo", "predict", "--model", "digits_cnn", "--weights", "acme/digits", str(PICTURE)),
    "publish": ("-m", "zoo", "publish", "weights", "digits_cnn", str(DIGITS_WEIGHTS), "--name", "acme/digits"),
    # the Python API: a zoo error is its one line; anything else would be a traceback
    "from_registry": ("-c", "import sys\nfrom zoo.errors import ZooError\nfrom zoo.runtime import Predictor\n"
                            "try:\n    Predictor.from_registry('digits_cnn', 'acme/digits')\n"
                            "except ZooError as exc:\n    sys.exit(f'error: {exc}')"),
}
CLI = ("list", "show", "plugins", "published", "predict", "publish")

#: What each behaviour makes the one error line say.
BEHAVIOURS = {
    "not-json": r"answered \w+ with data of another shape \(JSONDecodeError: ",
    "wrong-types": r"with data of another shape \(TypeError: .* is 'many', not int",
    "missing-fields": r"with data of another shape \((KeyError|TypeError): .*(total|published|shared|created_at)",
    "huge-declared": rf"answered 1000000000000 bytes; at most {MAX_ANSWER} are read",
    "huge-undeclared": rf"answered more than {MAX_ANSWER} bytes",
    "stall": r"did not answer (GET|POST) /\S+ within 2 s, the time a command waits for its answers "
             r"\(\$ZOO_SERVICE_TIMEOUT",
    "trickle": r"did not answer (GET|POST) /\S+ within 2 s",
    "redirect-loop": r"with a redirect \(302 to '/redirect-loop/api/v1/",
    "redirect-away": r"with a redirect \(302 to 'http://127\.0\.0\.1:\d+/api/v1/",
    "error-flood": r"the registry service at \S+: a fault a fault .*\.\.\. \(\d+ characters\)$",
    "file-mismatch": rf"gave file with SHA-256 {hashlib.sha256(WRONG).hexdigest()}, but it must be {FILE_SHA}",
    "file-too-long": rf"is larger than the limit of {len(FILE)} bytes; nothing was stored",
    "file-stall": r"failed \(.*timed out\) after 2 attempts",
    "file-redirect-loop": r"failed \(HTTP Error 302: .*infinite loop.*\) after 1 attempt",
    "file-redirect-away": r"gave \S+ with SHA-256 \S+, but it must be",
    "file-redirect-here": r"onnxruntime cannot load .*" + FILE_SHA,  # fetched and verified; it is no ONNX model
}
CASES = [*((b, c) for b in BEHAVIOURS if not b.startswith("file-") for c in CLI),
         *((b, c) for b in BEHAVIOURS if b.startswith("file-") for c in ("predict", "from_registry")),
         ("not-json", "from_registry"), ("stall", "from_registry")]
#: Right answers everywhere: what each command (but those that need a real export file) prints with them.
VALID = {"list": "digits_cnn", "show": "digits_cnn", "plugins": "zoo-digits", "published": "acme/digits",
         "publish": "published acme/digits:1"}


class Hostile:
    """The fake service's answers: to ``/BEHAVIOUR/ROUTE`` as BEHAVIOUR says, ``file-`` ones for the file alone."""

    def __init__(self, elsewhere: str) -> None:
        self.elsewhere = elsewhere  # another origin's URL
        self.service: FakeService | None = None

    def __call__(self, handler: BaseHTTPRequestHandler) -> None:
        _, behaviour, route = handler.path.split("/", 2)
        route = "/" + route
        if behaviour != "stall" and handler.command in {"POST", "PUT"}:
            handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        path = route.partition("?")[0]
        if path in (FILE_ROUTE, MOVED_ROUTE) or not behaviour.startswith("file-") and behaviour != "valid":
            getattr(self, behaviour.replace("-", "_"))(handler, route)
        elif path in ANSWERS:
            send(handler, 201 if handler.command == "POST" else 200, json.dumps(ANSWERS[path]).encode())
        else:
            send(handler, 404, json.dumps({"error": f"no route {path}"}).encode())

    def valid(self, handler: BaseHTTPRequestHandler, route: str) -> None:
        send(handler, 200, FILE, headers={"Content-Type": "application/octet-stream"})

    def slow(self, handler: BaseHTTPRequestHandler, route: str) -> None:
        """Right answers, each after most of the budget; the models in pages of one, two in all."""
        self.service.released.wait(TIMEOUT_S * 0.6)
        answer = {"models": [SUMMARY], "total": 2} if route.startswith("/api/v1/models?") else self._right(route)
        send(handler, 200, json.dumps(answer).encode())

    def not_json(self, handler: BaseHTTPRequestHandler, route: str) -> None:
        send(handler, 200, b'{"models": [{"name": "digits_cnn", ')

    def wrong_types(self, handler: BaseHTTPRequestHandler, route: str) -> None:
        send(handler, 200, json.dumps(_first_count_as_text(self._right(route))).encode())

    def missing_fields(self, handler: BaseHTTPRequestHandler, route: str) -> None:
        send(handler, 200, json.dumps(_last_key_dropped(self._right(route))).encode())

    def huge_declared(self, handler: BaseHTTPRequestHandler, route: str) -> None:
        send(handler, 200, b"[", headers={"Content-Length": str(10**12)})

    def huge_undeclared(self, handler: BaseHTTPRequestHandler, route: str) -> None:
        handler.send_response(200)
        handler.end_headers()
        chunk = b" " * (1 << 20)
        try:
            for _ in range((MAX_ANSWER >> 20) + 2):
                handler.wfile.write(chunk)
        except ConnectionError:  # the client stopped reading, as it should
            pass

    def stall(self, handler: BaseHTTPRequestHandler, route: str) -> None:
        self._released()

    def trickle(self, handler: BaseHTTPRequestHandler, route: str) -> None:
        handler.send_response(200)
        handler.end_headers()
        try:
            while not self.service.released.wait(0.5):
                handler.wfile.write(b" ")
        except ConnectionError:
            pass

    def redirect_loop(self, handler: BaseHTTPRequestHandler, route: str) -> None:
        send(handler, 302, b"", headers={"Location": handler.path})

    def redirect_away(self, handler: BaseHTTPRequestHandler, route: str) -> None:
        send(handler, 302, b"", headers={"Location": self.elsewhere + route})

    def error_flood(self, handler: BaseHTTPRequestHandler, route: str) -> None:
        send(handler, 500, json.dumps({"error": "a fault\n" * 100_000, "kind": ["not", "a", "name"]}).encode())

    def file_mismatch(self, handler: BaseHTTPRequestHandler, route: str) -> None:
        send(handler, 200, WRONG, headers={"Content-Type": "application/octet-stream"})

    def file_too_long(self, handler: BaseHTTPRequestHandler, route: str) -> None:
        handler.send_response(200)
        handler.end_headers()
        try:
            handler.wfile.write(FILE * 100_000)
        except ConnectionError:
            pass

    def file_stall(self, handler: BaseHTTPRequestHandler, route: str) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(FILE)))
        handler.end_headers()
        handler.wfile.write(FILE[:5])
        self._released()

    def file_redirect_loop(self, handler: BaseHTTPRequestHandler, route: str) -> None:
        self.redirect_loop(handler, route)

    def file_redirect_away(self, handler: BaseHTTPRequestHandler, route: str) -> None:
        self.redirect_away(handler, route)

    def file_redirect_here(self, handler: BaseHTTPRequestHandler, route: str) -> None:
        if route == MOVED_ROUTE:
            self.valid(handler, route)
        else:
            send(handler, 307, b"", headers={"Location": f"/file-redirect-here{MOVED_ROUTE}"})

    def _right(self, route: str) -> Any:
        return ANSWERS[route.partition("?")[0]]

    def _released(self) -> None:
        """Wait without answering until the fake service closes (longer than any run may take)."""
        self.service.released.wait(BOUND_S * 4)


def _first_count_as_text(answer: Any) -> Any:
    """`answer` with its first whole number (depth first) made the string ``"many"``."""
    changed = copy.deepcopy(answer)
    _count_as_text(changed)
    return changed


def _count_as_text(value: dict | list) -> bool:
    """Make the first whole number in `value` (depth first) ``"many"``; whether there was one."""
    for key, item in list(value.items() if isinstance(value, dict) else enumerate(value)):
        if isinstance(item, int) and not isinstance(item, bool):
            value[key] = "many"
            return True
        if isinstance(item, (dict, list)) and _count_as_text(item):
            return True
    return False


def _last_key_dropped(answer: Any) -> Any:
    """`answer` without its last key (each item's, for a list)."""
    items = copy.deepcopy(answer if isinstance(answer, list) else [answer])
    for item in items:
        item.pop(list(item)[-1])
    return items if isinstance(answer, list) else items[0]


@dataclass
class Run:
    """One command's run: how it ended, how long it took, the names of the files in its weights cache, and
    what it left where it must not."""

    returncode: int
    stdout: str
    stderr: str
    seconds: float
    cached: list[str]
    misplaced: list[str]


@pytest.fixture(scope="module")
def fake() -> Iterator[tuple[FakeService, FakeService]]:
    """The hostile service and the other origin it redirects to (which answers with bytes of another hash)."""
    with FakeService(lambda handler: send(handler, 200, WRONG)) as elsewhere:
        hostile = Hostile(elsewhere.url)
        with FakeService(hostile) as service:
            hostile.service = service
            yield service, elsewhere


@pytest.fixture(scope="module")
def runs(fake: tuple[FakeService, FakeService],
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[tuple[str, str], Future[Run]]]:
    """Every case's run, the right answers' (("valid", command)) and slow ones' (("slow", "list")), 4 at a time."""
    service, _ = fake
    root = tmp_path_factory.mktemp("hostile-client")
    cases = [*CASES, *(("valid", command) for command in VALID), ("slow", "list")]
    with ThreadPoolExecutor(4) as pool:
        futures = {case: pool.submit(run_case, service.url, *case, root / f"{case[0]}-{case[1]}") for case in cases}
        yield futures
        for future in futures.values():
            future.cancel()


def run_case(url: str, behaviour: str, command: str, folder: Path) -> Run:
    """Run `command` against the fake service's `behaviour`, in `folder`; judge what it left."""
    work, tmp, torch_home = folder / "work", folder / "tmp", folder / "torch"
    for made in (work, tmp, torch_home):
        made.mkdir(parents=True)
    env = {key: value for key, value in os.environ.items() if not key.startswith("ZOO_")}
    env.update({"ZOO_REGISTRY_URL": f"{url}/{behaviour}", "ZOO_TOKEN": TOKEN, "ZOO_SERVICE_TIMEOUT": str(TIMEOUT_S),
                "ZOO_FETCH_RETRIES": "2,0", "TORCH_HOME": str(torch_home), "TMPDIR": str(tmp),
                "PYTHONDONTWRITEBYTECODE": "1"})
    start = time.monotonic()
    done = subprocess.run([sys.executable, *COMMANDS[command]], cwd=work, env=env, capture_output=True, text=True,
                          timeout=BOUND_S * 4)
    seconds = time.monotonic() - start
    cached = sorted(p.name for p in torch_home.rglob("*") if not p.is_dir())
    left = [*work.iterdir(), *(p for p in tmp.iterdir() if p.name != ONNXRUNTIME_SESSION)]
    misplaced = [str(p) for p in left] + _wrong_in_cache(torch_home)
    return Run(done.returncode, done.stdout, done.stderr, seconds, cached, misplaced)


def _wrong_in_cache(torch_home: Path) -> list[str]:
    """The files in the weights cache that are not a whole file kept under its own SHA-256."""
    wrong = []
    for path in torch_home.rglob("*"):
        if path.is_dir():
            continue
        sha256 = path.name.partition(".")[0]
        if path.parent.name != "sha256" or hashlib.sha256(path.read_bytes()).hexdigest() != sha256:
            wrong.append(str(path))
    return wrong


@pytest.mark.parametrize(("behaviour", "command"), CASES, ids=[f"{b}-{c}" for b, c in CASES])
def test_a_hostile_service_is_one_line(behaviour: str, command: str,
                                       runs: dict[tuple[str, str], Future[Run]]) -> None:
    run = runs[behaviour, command].result()
    lines = run.stderr.splitlines()
    assert run.returncode == 1 and len(lines) == 1 and "Traceback" not in run.stderr, run.stderr[-3000:]
    assert lines[0].startswith("error: " if command == "from_registry" else "zoo: error: "), lines
    assert re.search(BEHAVIOURS[behaviour], lines[0]), lines[0]
    assert len(lines[0]) < 2000, len(lines[0])
    assert run.seconds < BOUND_S, run.seconds
    assert not run.misplaced


@pytest.mark.parametrize("command", VALID)
def test_the_fake_service_is_right_when_it_answers_right(command: str,
                                                         runs: dict[tuple[str, str], Future[Run]]) -> None:
    """The same commands succeed on the right answers: what fails above is each behaviour, not the fake."""
    run = runs["valid", command].result()
    assert run.returncode == 0 and not run.stderr and not run.misplaced, run.stderr
    assert VALID[command] in run.stdout, run.stdout


def test_the_requests_of_a_command_share_its_time(runs: dict[tuple[str, str], Future[Run]]) -> None:
    """Two pages, each answered after 0.6 of ZOO_SERVICE_TIMEOUT: each alone would be in time, both are not."""
    run = runs["slow", "list"].result()
    assert run.returncode == 1 and re.fullmatch(r"zoo: error: .* did not answer GET /models within 2 s, .*\n",
                                                 run.stderr), run.stderr


def test_a_bad_service_timeout_is_one_line(tmp_path: Path) -> None:
    done = run_zoo("list", env={"ZOO_REGISTRY_URL": "http://127.0.0.1:9", "ZOO_SERVICE_TIMEOUT": "soon"},
                   cwd=tmp_path, check=False)
    assert done.returncode == 1 and done.stderr == ("zoo: error: ZOO_SERVICE_TIMEOUT must be a positive number of "
                                                    "seconds, e.g. 60; got 'soon'\n")


def test_the_token_goes_to_the_services_origin_only(fake: tuple[FakeService, FakeService],
                                                    runs: dict[tuple[str, str], Future[Run]]) -> None:
    """A download that is redirected to the service's own origin takes the token along (and the verified file
    lands in the cache, by its hash); one redirected to another origin does not."""
    service, elsewhere = fake
    for case, run in runs.items():
        if "redirect-" in case[0]:
            assert not run.result().misplaced
    assert runs["file-redirect-here", "predict"].result().cached == [FILE_SHA]
    files = {f"/file-redirect-here{FILE_ROUTE}", f"/file-redirect-here{MOVED_ROUTE}",
             f"/file-redirect-away{FILE_ROUTE}"}
    assert files <= {path for _, path, _ in service.requests}
    assert all(auth == f"Bearer {TOKEN}" for _, _, auth in service.requests), "the token goes with every request"
    assert elsewhere.requests and all(auth is None for _, _, auth in elsewhere.requests), elsewhere.requests
    assert all(path == FILE_ROUTE for _, path, _ in elsewhere.requests), "JSON redirects are not followed"


# -- the read token on a real service --------------------------------------------------


def test_the_read_token_goes_with_a_redirect_to_the_same_origin(sqlite_url: str, tmp_path: Path) -> None:
    """``zoo serve --require-read-token``: ``/graph/SHA`` redirects (308) to ``/graph/SHA/``; a download of it
    with the read token gets as far as the page (404: no such export), without it not past the first (401)."""
    from zoo.errors import WeightsError
    from zoo.fetch import WeightsCache, WeightsFile, fetch

    env = {"ZOO_REGISTRY_URL": sqlite_url, "ZOO_LOAD_PLUGINS": "", "ZOO_ARTIFACTS": str(tmp_path / "store")}
    token = run_zoo("token", "create", "reader", "--scope", "read", env=env).stdout.strip()
    cache = WeightsCache(tmp_path / "cache", retries="1")
    with serving("--require-read-token", env=env) as served:
        page = f"{served.url}/graph/{'0' * 64}"
        for given, status in ((token, 404), (None, 401)):
            with pytest.raises(WeightsError, match=rf"HTTP Error {status}"):
                fetch(WeightsFile(page, token=given), progress=False, cache=cache)
    assert not [p for p in (tmp_path / "cache").rglob("*") if not p.is_dir()]


# -- other faults of the command line ----------------------------------------------------


def _obeying_permissions() -> list[str]:
    """A command prefix under which file permissions hold: root's override of them dropped (setpriv)."""
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search"] if os.geteuid() == 0 else []


def test_a_read_only_weights_cache_is_one_line(synced_catalog: str, tmp_path: Path) -> None:
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "resnet18-f37072fd.pth").write_bytes(b"not read: the cache cannot take it")
    cache.chmod(0o555)
    env = {**os.environ, "TORCH_HOME": str(tmp_path / "torch"), "ZOO_WEIGHTS_MIRROR": str(mirror)}
    try:
        done = subprocess.run([*_obeying_permissions(), sys.executable, "-m", "zoo", "weights", "fetch", "resnet18"],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    finally:
        cache.chmod(0o755)
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith(f"zoo: error: cannot write the weights cache {cache} (Permission denied); "
                                  "make it writable, or set TORCH_HOME"), done.stderr
    assert not any(cache.iterdir())


def test_a_builder_that_raises_in_zoo_summary_is_one_line(tmp_path: Path) -> None:
    source = tmp_path / "zoo-fixture-raising"
    (source / "zoo_fixture_raising").mkdir(parents=True)
    (source / "pyproject.toml").write_text(textwrap.dedent("""\
        [build-system]
        requires = ["setuptools>=68"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "zoo-fixture-raising"
        version = "1.0.0"
        dependencies = ["zoo"]

        [project.entry-points.zoo]
        fixture-raising = "zoo_fixture_raising"

        [tool.setuptools]
        packages = ["zoo_fixture_raising"]
        """))
    (source / "zoo_fixture_raising" / "__init__.py").write_text(textwrap.dedent('''\
        """A model whose builder raises, as a broken plugin's does."""

        import zoo


        def raising_net(*, weights=None, **kwargs):
            raise RuntimeError("the fixture's builder is broken\\nsecond line of its message")


        @zoo.hookimpl
        def zoo_register_models():
            return [zoo.ModelSpec(name="raising_net", builder="zoo_fixture_raising:raising_net",
                                  task="classification")]
        '''))
    pip_install(source, tmp_path / "site")
    env = {"PYTHONPATH": str(tmp_path / "site"), "ZOO_LOAD_PLUGINS": "fixture-raising",
           "ZOO_REGISTRY_URL": f"sqlite:///{tmp_path / 'registry.db'}"}
    done = run_zoo("summary", "raising_net", "--input", "1,4", env=env, cwd=tmp_path, check=False)
    assert done.returncode == 1 and done.stderr.splitlines() == [
        "zoo: error: building raising_net failed: its builder raised RuntimeError: the fixture's builder is broken"]


@pytest.mark.parametrize("shell", ["zoo list >&-", "zoo list | head -1", "zoo list | true"])
def test_closed_or_broken_standard_output_is_quiet(shell: str, synced_catalog: str, tmp_path: Path) -> None:
    """Standard output closed (it is then the null device), or a pipe whose reader leaves after a line or
    before any (``true`` reads nothing): exit 0, nothing on stderr."""
    command = shell.replace("zoo", f"{sys.executable} -m zoo", 1)
    done = subprocess.run(["bash", "-c", f"set -o pipefail; {command}"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0 and done.stderr == "", done.stderr

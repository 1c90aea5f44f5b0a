"""Run one hostile or faulty input on the real ``zoo`` command line and judge the outcome.

A case runs the installed ``zoo`` console script (never ``python -m``, which would put
the working directory on ``sys.path``) in a workspace of its own: a copy of a synced
catalog (``registry.db``), a weights cache (``torch/``) and whatever the case's
`setup` made. Every file in the workspace (and every extra path the case watches) is
snapshotted before and after: type, mode and content (a link's target, a device's
number). The outcome is one of

- ``clean``: the command did what the case expects: it succeeded (and `check`
  passed), or it failed with exactly one line ``zoo: error: ...`` matching `error`
  (argparse's usage line may come first, with exit code 2);
- ``traceback``: a Python traceback reached the user;
- ``hang``: it ran past the case's timeout (and was killed, with its children);
- ``destroyed``: a file outside the case's declared outputs changed or vanished;
- ``wrong``: anything else (wrong exit code, a second line, a message that does
  not say what the case expects, a failed `check`).
"""

from __future__ import annotations

import contextlib
import fnmatch
import functools
import hashlib
import importlib
import os
import pkgutil
import re
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from conftest import FIXTURES, pip_install

ZOO = Path(sys.executable).with_name("zoo")
PLUGINS = "digits,torchvision"
ERROR_LINE = re.compile(r"^zoo(?: [\w-]+)*: error: ")
MAX_ERROR_CHARS = 500
#: The zoo's own state, which any command may update: the catalog and the weights cache.
STATE = ("registry.db", "registry.db-*", "torch/*")


@dataclass(frozen=True)
class Case:
    """One hostile or faulty input and what the zoo must do with it.

    `args` is the command line after ``zoo``; ``{ws}`` in an argument is replaced by
    the workspace's path. `error` is a regular expression the one error line must
    match (searched), or None when the command must succeed. `setup(ws)` makes the
    case's files and may return extra environment variables (a value None removes a
    variable). `outputs` are glob patterns (relative to the workspace) of files the
    command may create or change, on top of the zoo's own `STATE`; `keep` are paths
    that must not change even so (a damaged catalog, say). `watch` are absolute paths
    outside the workspace that must not change. `check(ws, done)` makes further
    assertions on a run that ended as expected (it succeeded, or failed with the one
    line). `catalog=False` starts without a synced catalog.
    """

    id: str
    args: tuple[str, ...]
    error: str | None
    setup: Callable[[Path], Mapping[str, str | None] | None] | None = None
    outputs: tuple[str, ...] = ()
    keep: tuple[str, ...] = ()
    watch: tuple[str, ...] = ()
    check: Callable[[Path, subprocess.CompletedProcess], None] | None = None
    catalog: bool = True
    timeout: float = 300.0
    stdout: str | None = None  # a file the child's stdout goes to (e.g. /dev/full), instead of a pipe
    user: int | None = None  # run the zoo as this user id (via setpriv when we are root), for permission cases


@dataclass
class Outcome:
    case: Case
    status: str  # clean, traceback, hang, destroyed, wrong
    detail: str
    returncode: int | None
    stdout: str
    stderr: str
    seconds: float
    changed: list[str] = field(default_factory=list)

    def explain(self) -> str:
        return (f"{self.case.id}: {self.status}: {self.detail}\n"
                f"$ zoo {' '.join(self.case.args)}\nexit {self.returncode}\n"
                f"--- stdout\n{self.stdout[-3000:]}\n--- stderr\n{self.stderr[-3000:]}")


def all_cases() -> list[Case]:
    """Every case of every ``cases_*`` module in this package, in module order."""
    package = Path(__file__).parent
    cases: list[Case] = []
    for module in sorted(m.name for m in pkgutil.iter_modules([str(package)]) if m.name.startswith("cases_")):
        cases.extend(importlib.import_module(f"{__package__}.{module}").CASES)
    ids = [c.id for c in cases]
    duplicates = {i for i in ids if ids.count(i) > 1}
    assert not duplicates, f"duplicate case ids: {sorted(duplicates)}"
    return cases


def _once(make: Callable[..., Path]) -> Callable[..., Path]:
    """`make` cached per arguments, and run by one thread at a time (cases may run in threads)."""
    cached = lru_cache(maxsize=None)(make)

    @functools.wraps(make)
    def call(*args: str) -> Path:
        with _MAKING:
            return cached(*args)

    return call


_MAKING = threading.RLock()


@_once
def synced_catalog() -> Path:
    """A catalog synced with the bundled plugins, made once per process; cases get copies."""
    where = Path(tempfile.mkdtemp(prefix="zoo-hostile-catalog-")) / "registry.db"
    env = {**base_env(where.parent), "ZOO_STRICT_PLUGINS": "1"}
    subprocess.run([str(ZOO), "sync"], env=env, cwd=where.parent, check=True, capture_output=True, text=True)
    with contextlib.closing(sqlite3.connect(where)) as db:  # cases copy registry.db alone: no -wal file left
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return where


def base_env(ws: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZOO_")}
    env.update({"ZOO_REGISTRY_URL": f"sqlite:///{ws / 'registry.db'}", "ZOO_LOAD_PLUGINS": PLUGINS,
                "TORCH_HOME": str(ws / "torch"), "ZOO_OFFLINE": "1", "PYTHONDONTWRITEBYTECODE": "1"})
    env.pop("PYTHONPATH", None)
    return env


@contextlib.contextmanager
def running(cases: list[Case], root: Path, at_once: int = 3) -> Iterator[dict[str, Future[Outcome]]]:
    """Start `cases` `at_once` at a time, each in a workspace under `root`; their future outcomes by id.

    Each case is a child process that mostly waits on its own start-up, so a few at a
    time finish sooner than one by one, even on two cores. Leaving the block cancels
    the cases not yet started.
    """
    synced_catalog()  # made once, before the cases copy it
    with ThreadPoolExecutor(at_once) as pool:
        futures = {case.id: pool.submit(run_case, case, root / str(index) / "ws") for index, case in enumerate(cases)}
        try:
            yield futures
        finally:
            for future in futures.values():
                future.cancel()


def run_case(case: Case, ws: Path) -> Outcome:
    """Run `case` in the (empty) workspace `ws` and judge it."""
    ws.mkdir(parents=True, exist_ok=True)
    (ws / "torch").mkdir(exist_ok=True)
    if case.catalog:
        shutil.copyfile(synced_catalog(), ws / "registry.db")
    env = base_env(ws)
    for key, value in ((case.setup(ws) if case.setup else None) or {}).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    before = snapshot(ws, case.watch)
    args = [a.replace("{ws}", str(ws)) for a in case.args]
    start = time.monotonic()
    out = open(case.stdout, "w") if case.stdout else subprocess.PIPE  # noqa: SIM115
    child = subprocess.Popen([*_as_user(case.user), str(ZOO), *args], cwd=ws, env=env, stdout=out,
                             stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        stdout, stderr = child.communicate(timeout=case.timeout)
        hung = False
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        stdout, stderr = child.communicate()
        hung = True
    finally:
        if case.stdout:
            out.close()
    seconds = time.monotonic() - start
    stdout = stdout or ""
    changed = _changes(before, snapshot(ws, case.watch), case)

    def outcome(status: str, detail: str) -> Outcome:
        return Outcome(case, status, detail, child.returncode, stdout, stderr, seconds, changed)

    if hung:
        return outcome("hang", f"still running after {case.timeout:g} s")
    if "Traceback (most recent call last)" in stderr + stdout:
        return outcome("traceback", "a traceback reached the user")
    if changed:
        return outcome("destroyed", f"changed outside the declared outputs: {', '.join(changed)}")
    lines = [line for line in stderr.splitlines() if line.strip() and not line.startswith("zoo: warning: ")]
    if case.error is None:
        if child.returncode != 0:
            return outcome("wrong", f"expected success, got exit {child.returncode}")
        judged = outcome("clean", "succeeded")
    else:
        judged = _judge_error(outcome, child.returncode, lines, case.error)
    if judged.status == "clean" and case.check is not None:
        try:
            case.check(ws, subprocess.CompletedProcess(args, child.returncode, stdout, stderr))
        except AssertionError as exc:
            return outcome("wrong", f"check failed: {exc}")
    return judged


def _as_user(user: int | None) -> list[str]:
    """The command prefix that runs a program as `user` (none when we already are not root)."""
    if user is None or os.geteuid() != 0:
        return []
    return ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups"]


def _judge_error(outcome: Callable[[str, str], Outcome], code: int, lines: list[str], pattern: str) -> Outcome:
    if code == 0:
        return outcome("wrong", "expected an error, got exit 0")
    errors = [line for line in lines if ERROR_LINE.match(line)]
    usage = code == 2 and lines and lines[0].startswith("usage: ")
    others = [line for line in lines if not ERROR_LINE.match(line)
              and not (usage and not line.startswith("zoo"))]
    if len(errors) != 1 or (others and not usage):
        return outcome("wrong", f"expected one error line, got {len(lines)} line(s)")
    if not usage and code != 1:
        return outcome("wrong", f"a zoo error exits 1, not {code}")
    if len(errors[0]) > MAX_ERROR_CHARS:
        return outcome("wrong", f"the error line has {len(errors[0])} characters (at most {MAX_ERROR_CHARS})")
    if not re.search(pattern, errors[0]):
        return outcome("wrong", f"the error line does not match {pattern!r}")
    return outcome("clean", "one-line error")


def snapshot(ws: Path, watch: tuple[str, ...] = ()) -> dict[str, tuple]:
    """Type, mode and content of every entry under `ws` and of every watched path."""
    found: dict[str, tuple] = {}
    for root, dirs, files in os.walk(ws):
        for name in dirs + files:
            full = Path(root, name)
            found[str(full.relative_to(ws))] = _state(full)
    for path in watch:
        found[path] = _state(Path(path))
    return found


def _state(path: Path) -> tuple:
    try:
        st = path.lstat()
    except FileNotFoundError:
        return ("missing",)
    mode = stat.S_IMODE(st.st_mode)
    if stat.S_ISLNK(st.st_mode):
        return ("link", os.readlink(path))
    if stat.S_ISDIR(st.st_mode):
        return ("dir", mode)
    if stat.S_ISREG(st.st_mode):
        return ("file", mode, _sha256(path))
    return ("special", stat.S_IFMT(st.st_mode), mode, st.st_rdev)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _changes(before: dict[str, tuple], after: dict[str, tuple], case: Case) -> list[str]:
    allowed = (*STATE, *case.outputs)
    changed = []
    for path in sorted(set(before) | set(after)):
        if before.get(path, ("missing",)) == after.get(path, ("missing",)):
            continue
        declared = any(fnmatch.fnmatchcase(path, pattern) for pattern in allowed)
        if path in case.keep or path in case.watch or not declared:
            changed.append(path)
    return changed


@_once
def digits_export() -> Path:
    """A verified ONNX export of the shipped digits model, made once per process; cases copy it."""
    where = Path(tempfile.mkdtemp(prefix="zoo-hostile-export-"))
    shutil.copyfile(synced_catalog(), where / "registry.db")
    subprocess.run([str(ZOO), "export", "digits_cnn", "--weights", "DEFAULT", "-o", str(where / "digits.onnx")],
                   env=base_env(where), cwd=where, check=True, capture_output=True, text=True)
    return where / "digits.onnx"


@_once
def fixture_site(distribution: str) -> Path:
    """The fixture plugin ``tests/plugins/<distribution>`` pip-installed into a folder of its own, once per process.

    A case puts the folder on ``PYTHONPATH``: the plugin is then found by its entry point
    as an installed third-party plugin is.
    """
    site = Path(tempfile.mkdtemp(prefix=f"zoo-hostile-{distribution}-"))
    pip_install(FIXTURES / distribution, site)
    return site

"""A lean client: client mode (``ZOO_REGISTRY_URL=http://...``) imports only what the command at hand uses, and
asks the service over one connection for the whole process.

Each check runs in a fresh client process (`sys.executable`, started in an empty folder) against a real
`zoo serve` on a synced SQLite catalog (`tests.test_serve.service`; the backend does not matter to the client),
and compares what it read with the in-process Python API on the service's catalog.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

import zoo
from tests.test_client import client_env  # noqa: F401 - the fixture
from tests.test_serve import Service, in_process, service  # noqa: F401 - fixtures

pytestmark = pytest.mark.parametrize("service", ["sqlite"], indirect=True)

#: What a cold ``zoo list`` in client mode must not import: the catalog's SQL, the service, httpx's command line
#: (rich, click, pygments), torch and numpy, the artifact store and the file fetcher.
NOT_FOR_LISTING = ("sqlalchemy", "rich", "click", "pygments", "fastapi", "starlette", "pydantic", "uvicorn", "torch",
                   "torchvision", "numpy", "zoo.catalog.sql", "zoo.store", "zoo.fetch", "filelock")


def run_python(env: dict[str, str], code: str, cwd: Path) -> str:
    """The standard output of ``python -c CODE`` run in `cwd` with exactly `env`; it must succeed."""
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_zoo_list_in_client_mode_imports_only_what_it_uses(
        in_process: Service, client_env: dict[str, str], tmp_path: Path) -> None:  # noqa: F811 - fixtures
    code = ("import contextlib, io, json, sys\n"
            "from zoo.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()) as listing:\n"
            "    status = main(['list', '--json'])\n"
            f"imported = sorted(m for m in sys.modules if m.startswith({tuple(n + '.' for n in NOT_FOR_LISTING)!r})\n"
            f"                  or m in {NOT_FOR_LISTING!r})\n"
            "import httpx._main  # deferred only: httpx's command line still imports\n"
            "print(json.dumps({'status': status, 'listing': json.loads(listing.getvalue()), 'imported': imported}))\n")
    ran = json.loads(run_python(client_env, code, tmp_path))
    assert ran["imported"] == [] and ran["status"] == 0, ran["imported"]
    assert ran["listing"] == zoo.summarize_models() and len(ran["listing"]) > 100
    assert list(tmp_path.iterdir()) == [], "a client keeps no catalog, store or cache folder of its own for a listing"


def test_a_client_process_asks_over_one_connection(
        in_process: Service, client_env: dict[str, str], tmp_path: Path) -> None:  # noqa: F811 - fixtures
    """Every lookup of a process goes over the one keep-alive connection of its catalog's HTTP client: the
    process connects to the service once (counted by Python's ``socket.connect`` audit event)."""
    code = ("import json, sys, zoo\n"
            "connects = []\n"
            "sys.addaudithook(lambda event, args: event == 'socket.connect' and connects.append(list(args[1])))\n"
            "found = [zoo.summarize_models(), zoo.list_models('resnet*'), zoo.describe('resnet18'),\n"
            "         zoo.list_plugins(), zoo.describe('digits_cnn'), zoo.list_models(task='detection')]\n"
            "print(json.dumps({'connects': connects, 'found': found}))\n")
    ran = json.loads(run_python(client_env, code, tmp_path))
    address = urlsplit(in_process.url)
    assert ran["connects"] == [[address.hostname, address.port]]
    assert ran["found"] == [zoo.summarize_models(), zoo.list_models("resnet*"), zoo.describe("resnet18"),
                            zoo.list_plugins(), zoo.describe("digits_cnn"), zoo.list_models(task="detection")]

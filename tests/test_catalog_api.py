"""One `Catalog` interface, two implementations: the SQL catalog and a registry service's client agree
record for record, and one process serves two catalogs (two apps, two stores), each answering its own.

The services are real uvicorn servers on 127.0.0.1, in threads of this process (that is the point of
the second test); they are waited for by uvicorn's own ``started`` flag, not a fixed time.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
import uvicorn

import zoo
from zoo.catalog.sql import SqlCatalog
from zoo.context import Context, open_catalog, using
from zoo.service.app import create_app
from zoo.service.client import HttpCatalog
from zoo.settings import Settings, environment_with


@contextmanager
def served(app) -> Iterator[str]:
    """`app` on a free loopback port, in a thread; its URL once uvicorn says it has started."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 300  # a guard against a hang only: the wait ends when the server has started
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise AssertionError("the in-process server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(60)


def test_open_catalog_picks_the_implementation_from_the_url(tmp_path: Path) -> None:
    settings = Settings(registry_url=f"sqlite:///{tmp_path / 'registry.db'}")
    assert isinstance(Context(settings).catalog, SqlCatalog)
    remote = Context(replace(settings, registry_url="http://127.0.0.1:9/"))
    assert isinstance(remote.catalog, HttpCatalog) and remote.catalog.url == "http://127.0.0.1:9"
    with pytest.raises(Exception, match="not a service address"):
        open_catalog(replace(settings, registry_url="http://"), remote.store, remote.cache)


def test_the_client_and_the_sql_catalog_give_equal_records_for_every_model(synced_catalog: str) -> None:
    local = Context(Settings.from_environ()).catalog
    assert isinstance(local, SqlCatalog)
    with served(create_app(synced_catalog)) as url:
        remote = Context(replace(Settings.from_environ(), registry_url=url)).catalog
        assert isinstance(remote, HttpCatalog)
        summaries = local.models()
        assert remote.models() == summaries and len(summaries) > 100
        assert remote.plugins() == local.plugins()
        for summary in summaries:  # every model of the bundled plugins: one type, one JSON form
            record = local.describe(summary.name)
            assert remote.describe(summary.name) == record
            assert record.name == summary.name and record.qualified_name == summary.qualified_name
        assert remote.weights_owner("resnet18.DEFAULT", None) == local.weights_owner("resnet18.DEFAULT", None)


def test_one_process_serves_two_catalogs_each_answering_its_own(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Each app's catalog is synced (in a child process) with its own plugin selection, not the environment's."""
    base = Settings.from_environ()
    digits = replace(base, registry_url=f"sqlite:///{tmp_path / 'a' / 'registry.db'}", load_plugins="digits",
                     artifacts=str(tmp_path / "a-store"))
    vision = replace(base, registry_url=f"sqlite:///{tmp_path / 'b' / 'registry.db'}", load_plugins="torchvision",
                     artifacts=str(tmp_path / "b-store"))
    monkeypatch.setenv("ZOO_LOAD_PLUGINS", "")  # the environment's selection: none
    apps = [create_app(settings=s) for s in (digits, vision)]
    for settings, app in zip((digits, vision), apps):
        Path(settings.registry_url.removeprefix("sqlite:///")).parent.mkdir()
        app.state.context.catalog.plugins()  # synced now, by the app's own settings
    with served(apps[0]) as a, served(apps[1]) as b:
        assert httpx.get(f"{a}/api/v1/models/digits_cnn").json()["qualified_name"] == "digits/digits_cnn"
        assert httpx.get(f"{b}/api/v1/models/digits_cnn").status_code == 404
        assert httpx.get(f"{b}/api/v1/models/resnet18").json()["qualified_name"] == "torchvision/resnet18"
        assert httpx.get(f"{a}/api/v1/models/resnet18").status_code == 404
        assert [p["name"] for p in httpx.get(f"{a}/api/v1/plugins").json()] == ["digits"]
        assert [p["name"] for p in httpx.get(f"{b}/api/v1/plugins").json()] == ["torchvision"]
        for app_url in (a, b):
            assert httpx.get(f"{app_url}/api/v1/health").json() == {"status": "ok"}
    assert [app.state.settings.store.location for app in apps] == [str(tmp_path / "a-store"),
                                                                    str(tmp_path / "b-store")]


def test_a_kept_record_follows_changes_made_by_other_processes(sqlite_url: str, use_catalog) -> None:
    """Records are kept per catalog state: a hash learned in another process is in the next describe here."""
    use_catalog(sqlite_url, "digits")
    catalog = Context(Settings.from_environ()).catalog
    before = catalog.describe("digits_cnn")
    assert catalog.describe("digits_cnn") is before  # kept: the catalog has not changed
    url = "https://example.org/zoo-test/learned.pth"
    code = ("from zoo.context import current\n"
            f"current().catalog.learn_sha256({url!r}, {'ab' * 32!r}, 123)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environment_with({}))
    assert done.returncode == 0, done.stderr
    after = catalog.describe("digits_cnn")
    assert after is not before and after == before  # read again; this model's own files did not change
    assert catalog.known_sha256(url) == "ab" * 32


def test_using_makes_a_context_current_as_the_readme_shows(tmp_path: Path, use_catalog) -> None:
    """The README's example: a second catalog made current with `using`, the default one untouched."""
    use_catalog(f"sqlite:///{tmp_path / 'registry.db'}", "digits")
    staging = Context(replace(Settings.from_environ(), registry_url=f"sqlite:///{tmp_path / 'staging.db'}",
                              load_plugins="torchvision"))
    with using(staging):
        assert "resnet50" in zoo.list_models("resnet*")  # asks the staging catalog (made and synced on first use)
    assert zoo.list_models("resnet*") == []  # the default context's catalog: digits only
    assert [w.name for w in staging.catalog.describe("resnet50").weights][0].startswith("ResNet50_Weights.")

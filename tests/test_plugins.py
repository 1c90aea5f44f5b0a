"""Plugin loading with real plugin distributions, pip-installed into a directory of their own.

Each test puts that directory on PYTHONPATH for a child ``zoo`` process, so the
plugins are discovered through their entry points exactly as a user's would be.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from conftest import FIXTURES, pip_install, run_zoo

ZOO = Path(sys.executable).with_name("zoo")  # the console script: `python -m zoo` would import from the cwd itself


@pytest.fixture(scope="session")
def plugin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """All fixture plugin distributions, installed into one directory."""
    target = tmp_path_factory.mktemp("site")
    for source in sorted(FIXTURES.iterdir()):
        pip_install(source, target)
    return target


def env_for(plugin_dir: Path, tmp_path: Path, plugins: str) -> dict[str, str]:
    """Environment of a child process that sees the fixture plugins and a catalog in `tmp_path`."""
    return {"PYTHONPATH": str(plugin_dir), "ZOO_LOAD_PLUGINS": plugins,
            "ZOO_REGISTRY_URL": f"sqlite:///{tmp_path / 'registry.db'}", "ZOO_STRICT_PLUGINS": ""}


def zoo_with(plugin_dir: Path, tmp_path: Path, plugins: str, *args: str, check: bool = False):
    return run_zoo(*args, env=env_for(plugin_dir, tmp_path, plugins), check=check)


def plugins_json(plugin_dir: Path, tmp_path: Path, plugins: str) -> dict[str, dict]:
    """``zoo plugins --json``, by namespace."""
    done = zoo_with(plugin_dir, tmp_path, plugins, "plugins", "--json", check=True)
    return {p["namespace"]: p for p in json.loads(done.stdout)}


def models_json(plugin_dir: Path, tmp_path: Path, plugins: str) -> list[str]:
    done = zoo_with(plugin_dir, tmp_path, plugins, "list", "--json", check=True)
    return [m["name"] for m in json.loads(done.stdout)]


def test_third_party_plugin_is_discovered_and_builds(plugin_dir: Path, tmp_path: Path) -> None:
    assert models_json(plugin_dir, tmp_path, "digits,fixture-good") == ["digits_cnn", "tiny_mlp"]
    info = plugins_json(plugin_dir, tmp_path, "digits,fixture-good")["fixture-good"]
    assert info == {"name": "fixture-good", "namespace": "fixture-good", "distribution": "zoo-fixture-good",
                    "version": "1.0.0", "status": "loaded", "models": 1, "error": None, "failures": [],
                    "installed_here": True, "shared": []}
    code = "import zoo; m = zoo.get_model('TINY_MLP', num_classes=5); print(type(m).__name__, m[1].out_features)"
    env = {**os.environ, **env_for(plugin_dir, tmp_path, "digits,fixture-good")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert done.stdout.split() == ["Sequential", "5"]


@pytest.mark.parametrize(
    ("plugin", "error"),
    [
        ("fixture-import-error", "RuntimeError: fixture plugin broken on import"),
        ("fixture-hook-error", "ValueError: fixture plugin broken in its hook"),
    ],
)
def test_failing_plugin_is_recorded_and_others_load(plugin_dir: Path, tmp_path: Path, plugin: str, error: str) -> None:
    selection = f"digits,fixture-good,{plugin}"
    plugins = plugins_json(plugin_dir, tmp_path, selection)
    assert plugins[plugin]["status"] == "failed"
    assert plugins[plugin]["error"] == error
    assert plugins[plugin]["models"] == 0
    assert plugins["digits"]["status"] == plugins["fixture-good"]["status"] == "loaded"
    assert models_json(plugin_dir, tmp_path, selection) == ["digits_cnn", "tiny_mlp"]

    shown = zoo_with(plugin_dir, tmp_path, selection, "plugins", check=True).stdout
    assert plugin in shown and error in shown


@pytest.mark.parametrize("plugin", ["fixture-import-error", "fixture-hook-error", "fixture-badmodel"])
def test_strict_mode_fails_and_leaves_catalog_unchanged(plugin_dir: Path, tmp_path: Path, plugin: str) -> None:
    before = models_json(plugin_dir, tmp_path, "digits,fixture-good")
    done = zoo_with(plugin_dir, tmp_path, f"digits,fixture-good,{plugin}", "sync", "--strict")
    assert done.returncode == 1
    assert done.stderr.startswith("zoo: error: 1 plugin(s) failed to load (strict mode)")
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    # The catalog still answers for the old selection without re-syncing.
    assert models_json(plugin_dir, tmp_path, "digits,fixture-good") == before


def test_a_name_two_plugins_register_keeps_its_first_meaning(plugin_dir: Path, tmp_path: Path) -> None:
    # zoo-fixture-duplicate also registers digits_cnn: both plugins load, the name stays zoo-digits'
    selection = "digits,fixture-duplicate"
    plugins = plugins_json(plugin_dir, tmp_path, selection)
    assert [(p["status"], p["models"], p["error"]) for p in plugins.values()] == [("loaded", 1, None),
                                                                                 ("loaded", 2, None)]
    assert models_json(plugin_dir, tmp_path, selection) == [
        "digits_cnn", "fixture-duplicate/digits_cnn", "other_net"]
    for name, distribution in (("digits_cnn", "zoo-digits"), ("digits/digits_cnn", "zoo-digits"),
                               ("fixture-duplicate/digits_cnn", "zoo-fixture-duplicate")):
        shown = json.loads(zoo_with(plugin_dir, tmp_path, selection, "show", name, "--json", check=True).stdout)
        assert shown["plugin"]["distribution"] == distribution, name


def test_a_bad_model_fails_alone_with_its_name_error_and_traceback(plugin_dir: Path, tmp_path: Path) -> None:
    selection = "fixture-good,fixture-badmodel"
    assert models_json(plugin_dir, tmp_path, selection) == ["good_one", "good_two", "tiny_mlp"]
    record = plugins_json(plugin_dir, tmp_path, selection)["fixture-badmodel"]
    assert (record["status"], record["error"], record["models"]) == ("loaded", None, 2)
    failures = {f["name"]: f for f in record["failures"]}
    assert [f["name"] for f in record["failures"]] == ["bad_task", "bad_deferred", "good_one"]
    assert failures["bad_task"]["error"] == "task 'Not A Task' is not a lower_snake_case word"
    assert failures["bad_deferred"]["error"] == "IndexError: list index out of range"
    assert failures["good_one"]["error"] == "model name 'good_one' is registered twice by this plugin"
    for failure in failures.values():
        assert failure["traceback"].startswith("Traceback (most recent call last):")
    # the traceback reaches into the plugin's own code, where the error was raised
    assert 'first_conv_of' in failures["bad_deferred"]["traceback"]
    assert failures["bad_deferred"]["traceback"].rstrip().endswith("IndexError: list index out of range")
    # the good one of the two `good_one`s is the first: a classifier, not the detector registered second
    shown = json.loads(zoo_with(plugin_dir, tmp_path, selection, "show", "good_one", "--json", check=True).stdout)
    assert shown["task"] == "classification"

    table = zoo_with(plugin_dir, tmp_path, selection, "plugins", check=True).stdout
    assert "3 model(s) failed (--verbose)" in table and "Traceback" not in table
    verbose = zoo_with(plugin_dir, tmp_path, selection, "plugins", "--verbose", check=True).stdout
    for name, failure in failures.items():
        assert f"plugin fixture-badmodel, model {name}: {failure['error']}" in verbose
    assert verbose.count("Traceback (most recent call last):") == 3
    assert "IndexError: list index out of range" in verbose.split("model bad_deferred:")[1]
    # a sync says so, and strict mode refuses it, naming each model
    synced = zoo_with(plugin_dir, tmp_path, selection, "sync", check=True)
    assert "3 model(s) failed: bad_task, bad_deferred, good_one (see zoo plugins --verbose)" in synced.stderr
    line = one_error_line(zoo_with(plugin_dir, tmp_path, selection, "sync", "--strict"))
    assert "fixture-badmodel: model bad_deferred: IndexError: list index out of range" in line


def installed_fixture_names() -> list[str]:
    """The entry-point names of the fixture distributions, read from their pyproject.toml files."""
    names = []
    for source in FIXTURES.iterdir():
        project = tomllib.loads((source / "pyproject.toml").read_text())["project"]
        names.extend(project.get("entry-points", {}).get("zoo", {}))
    return names


def test_load_plugins_selection(plugin_dir: Path, tmp_path: Path) -> None:
    assert models_json(plugin_dir, tmp_path, "zoo-fixture-good") == ["tiny_mlp"]  # distribution names work too
    assert models_json(plugin_dir, tmp_path, "") == []
    done = zoo_with(plugin_dir, tmp_path, "digits,nosuchplugin", "list")
    assert done.returncode == 1
    # the bundled plugins installed beside zoo, and the fixtures; torchvision once, though two use it
    installed = sorted({*(ep.name for ep in entry_points(group="zoo")), *installed_fixture_names()})
    assert done.stderr.strip().splitlines() == [
        "zoo: error: ZOO_LOAD_PLUGINS names plugins that are not installed: nosuchplugin; installed plugins: "
        + ", ".join(installed)
    ]


def test_catalog_resyncs_when_a_plugin_version_changes(plugin_dir: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    shutil.copytree(plugin_dir, site)
    db = tmp_path / "db"
    db.mkdir()
    assert models_json(site, db, "digits,fixture-good") == ["digits_cnn", "tiny_mlp"]

    # Release 2.0.0 of the plugin renames its model; installing it must show in the next lookup.
    install_good_v2(site, tmp_path)
    assert models_json(site, db, "digits,fixture-good") == ["digits_cnn", "tiny_mlp_v2"]
    assert plugins_json(site, db, "digits,fixture-good")["fixture-good"]["version"] == "2.0.0"


def install_good_v2(site: Path, tmp_path: Path) -> None:
    """Replace zoo-fixture-good 1.0.0 in `site` by a release 2.0.0 whose model is tiny_mlp_v2."""
    source = tmp_path / "zoo-fixture-good"
    shutil.copytree(FIXTURES / "zoo-fixture-good", source)
    pyproject = source / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('version = "1.0.0"', 'version = "2.0.0"'))
    module = source / "zoo_fixture_good" / "__init__.py"
    module.write_text(module.read_text().replace('name="tiny_mlp"', 'name="tiny_mlp_v2"'))
    for old in site.glob("zoo_fixture_good*"):
        shutil.rmtree(old)
    pip_install(source, site)


def zoo_script(plugin_dir: Path, tmp_path: Path, plugins: str, *args: str, cwd: Path | None = None,
               **env: str) -> subprocess.CompletedProcess:
    """Run the installed ``zoo`` script, as a user does, with extra environment variables."""
    return subprocess.run([str(ZOO), *args], cwd=cwd or tmp_path, capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env_for(plugin_dir, tmp_path, plugins), **env})


def one_error_line(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("zoo: error: "), done.stderr
    return lines[0]


def alive(pid: int) -> bool:
    """Whether process `pid` still runs (a zombie, killed but not yet reaped, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in {"Z", "X"}


@pytest.mark.parametrize("module", ["pluggy", "zoo", "sqlalchemy"])
def test_sync_child_does_not_import_from_the_working_directory(plugin_dir: Path, tmp_path: Path, module: str) -> None:
    cwd = tmp_path / "work"
    cwd.mkdir()
    marker = tmp_path / "ran"
    (cwd / f"{module}.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    done = zoo_script(plugin_dir, tmp_path, "fixture-good", "list", "--json", cwd=cwd)  # a new catalog: a sync
    assert done.returncode == 0, done.stderr
    assert [m["name"] for m in json.loads(done.stdout)] == ["tiny_mlp"]
    assert not marker.exists()


def test_hook_calling_sys_exit_is_recorded_and_others_load(plugin_dir: Path, tmp_path: Path) -> None:
    assert models_json(plugin_dir, tmp_path, "fixture-good,fixture-exit") == ["tiny_mlp"]
    record = plugins_json(plugin_dir, tmp_path, "fixture-good,fixture-exit")["fixture-exit"]
    assert (record["status"], record["error"]) == ("failed", "called sys.exit(3)")


@pytest.mark.parametrize(
    ("plugin", "error"),
    [
        ("fixture-misspelled", "implements unknown hook zoo_register_model; known hooks: zoo_register_models, zoo_register_tasks"),
        ("fixture-no-hook", "implements no hook (mark functions with @zoo.hookimpl); known hooks: zoo_register_models, zoo_register_tasks"),
    ],
)
def test_plugin_breaking_the_contract_fails_with_the_reason(plugin_dir: Path, tmp_path: Path, plugin: str,
                                                            error: str) -> None:
    selection = f"fixture-good,{plugin}"
    assert models_json(plugin_dir, tmp_path, selection) == ["tiny_mlp"]
    record = plugins_json(plugin_dir, tmp_path, selection)[plugin]
    assert (record["status"], record["error"]) == ("failed", error)
    line = one_error_line(zoo_with(plugin_dir, tmp_path, selection, "sync", "--strict"))
    assert line.endswith(f"(strict mode): {plugin}: {error}")


def test_two_entry_points_with_one_name_both_load(plugin_dir: Path, tmp_path: Path) -> None:
    # zoo-fixture-clash also names its entry point "torchvision": both load, the bundled one keeps the namespace
    models = models_json(plugin_dir, tmp_path, "digits,torchvision")
    assert {"resnet50", "digits_cnn", "clash_mlp"} <= set(models)
    plugins = plugins_json(plugin_dir, tmp_path, "digits,torchvision")
    assert sorted(plugins) == ["digits", "torchvision", "zoo-fixture-clash"]
    bundled, clash = plugins["torchvision"], plugins["zoo-fixture-clash"]
    assert (bundled["name"], bundled["distribution"], bundled["status"]) == ("torchvision", "zoo-torchvision", "loaded")
    assert (clash["name"], clash["distribution"], clash["status"], clash["models"]) == (
        "torchvision", "zoo-fixture-clash", "loaded", 1)
    shown = json.loads(zoo_with(plugin_dir, tmp_path, "digits,torchvision", "show", "zoo-fixture-clash/clash_mlp",
                                "--json", check=True).stdout)
    assert shown["plugin"]["distribution"] == "zoo-fixture-clash"
    table = zoo_with(plugin_dir, tmp_path, "digits,torchvision", "plugins", check=True).stdout
    assert [line.split()[:2] for line in table.splitlines()[1:]] == [
        ["digits", "digits"], ["torchvision", "torchvision"], ["zoo-fixture-clash", "torchvision"]]


def test_hanging_plugin_is_stopped_named_and_recorded(plugin_dir: Path, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    selection = "fixture-good,fixture-sleep"
    env = {"ZOO_SYNC_TIMEOUT": "10", "ZOO_FIXTURE_PID_FILE": str(pid_file)}
    line = one_error_line(zoo_script(plugin_dir, tmp_path, selection, "list", **env))
    assert "zoo-fixture-sleep 1.0.0 (plugin 'fixture-sleep') did not finish loading within 10 s (ZOO_SYNC_TIMEOUT)" in line
    assert "recorded as failed" in line
    assert not alive(int(pid_file.read_text()))
    # Recorded as failed: the next command neither waits nor fails, and `zoo plugins` says why.
    done = zoo_script(plugin_dir, tmp_path, selection, "list", "--json", **env)
    assert done.returncode == 0, done.stderr
    assert [m["name"] for m in json.loads(done.stdout)] == ["tiny_mlp"]
    record = plugins_json(plugin_dir, tmp_path, selection)["fixture-sleep"]
    assert record["status"] == "failed" and "did not finish loading" in record["error"]


def test_hanging_plugin_in_strict_sync_leaves_the_catalog(plugin_dir: Path, tmp_path: Path) -> None:
    before = models_json(plugin_dir, tmp_path, "fixture-good")
    pid_file = tmp_path / "pid"
    done = zoo_script(plugin_dir, tmp_path, "fixture-good,fixture-sleep", "sync", "--strict",
                      ZOO_SYNC_TIMEOUT="10", ZOO_FIXTURE_PID_FILE=str(pid_file))
    line = one_error_line(done)
    assert "(plugin 'fixture-sleep') did not finish loading within 10 s" in line and "recorded" not in line
    assert not alive(int(pid_file.read_text()))
    assert models_json(plugin_dir, tmp_path, "fixture-good") == before


def test_plugin_ending_the_sync_process_is_named_and_recorded(plugin_dir: Path, tmp_path: Path) -> None:
    selection = "fixture-good,fixture-crash"
    line = one_error_line(zoo_script(plugin_dir, tmp_path, selection, "list"))
    assert "zoo-fixture-crash 1.0.0 (plugin 'fixture-crash') ended the sync process (exit code 7)" in line
    assert models_json(plugin_dir, tmp_path, selection) == ["tiny_mlp"]
    assert plugins_json(plugin_dir, tmp_path, selection)["fixture-crash"]["status"] == "failed"


def test_sync_child_dies_with_its_parent(plugin_dir: Path, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    env = {**os.environ, **env_for(plugin_dir, tmp_path, "fixture-sleep"), "ZOO_FIXTURE_PID_FILE": str(pid_file)}
    parent = subprocess.Popen([str(ZOO), "list"], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
            time.sleep(0.1)
        child = int(pid_file.read_text())
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    deadline = time.monotonic() + 10
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(child)

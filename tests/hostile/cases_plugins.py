"""Plugins that misbehave, and files in the working directory that pose as modules.

A case's setup points ``PYTHONPATH`` at fixture plugin distributions (``tests/plugins``)
pip-installed once per process, and picks plugins with ``ZOO_LOAD_PLUGINS``; a
selection other than the synced catalog's makes the command re-sync in its child.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path

from hostile.harness import Case, fixture_site

Setup = Callable[[Path], Mapping[str, str | None]]
Check = Callable[[Path, subprocess.CompletedProcess], None]
BUNDLED_MODELS = 122  # digits_cnn and torchvision's 121
TIMEOUT = "10"  # ZOO_SYNC_TIMEOUT of the hanging cases: ample for a sync without torch (1-2 s), even on a busy machine


def plugin(distribution: str, selection: str | None, **env: str) -> Setup:
    """A setup: the fixture `distribution` installed, `selection` loaded (None: every plugin)."""

    def setup(ws: Path) -> dict[str, str | None]:
        extra = {key: value.replace("{ws}", str(ws)) for key, value in env.items()}
        return {"PYTHONPATH": str(fixture_site(distribution)), "ZOO_LOAD_PLUGINS": selection, **extra}

    return setup


def modules_in_cwd(ws: Path) -> dict[str, str]:
    """Files in the working directory named like the modules a sync imports; each would leave a marker."""
    for module in ("pluggy", "zoo", "sqlalchemy", "alembic", "sitecustomize"):
        (ws / f"{module}.py").write_text(f"open({str(ws / ('ran-' + module))!r}, 'w').write('ran')\n")
    return {"ZOO_LOAD_PLUGINS": "digits"}  # not the synced catalog's selection: the catalog re-syncs


def pid_gone(ws: Path, done: subprocess.CompletedProcess) -> None:
    """The hanging plugin's process (its pid in ``ws/pid``) does not outlive the command."""
    pid = int((ws / "pid").read_text())
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return
    assert state in {"Z", "X"}, f"the sync child {pid} is still running (state {state})"


def plugin_record(name: str, status: str, error: str | None) -> Check:
    """A check of ``zoo plugins --json``: the plugin of namespace `name` has `status` and an error containing `error`."""

    def check(ws: Path, done: subprocess.CompletedProcess) -> None:
        records = {p["namespace"]: p for p in json.loads(done.stdout)}
        assert records[name]["status"] == status, records[name]
        assert (error is None) == (records[name]["error"] is None), records[name]
        assert error is None or error in records[name]["error"], records[name]

    return check


def bundled_and_clash_models(ws: Path, done: subprocess.CompletedProcess) -> None:
    """Both plugins of the entry-point name torchvision load; the bundled one keeps its models' names."""
    records = {m["name"]: m for m in json.loads(done.stdout)}
    assert len(records) == BUNDLED_MODELS + 1, len(records)
    assert records["resnet50"]["plugin"] == "torchvision", records["resnet50"]
    assert records["clash_mlp"]["plugin"] == "zoo-fixture-clash", records["clash_mlp"]


def listed(*names: str) -> Check:
    def check(ws: Path, done: subprocess.CompletedProcess) -> None:
        assert [m["name"] for m in json.loads(done.stdout)] == list(names), done.stdout

    return check


HANG = {"ZOO_SYNC_TIMEOUT": TIMEOUT, "ZOO_FIXTURE_PID_FILE": "{ws}/pid"}
HUNG = rf"zoo-fixture-sleep 1\.0\.0 \(plugin 'fixture-sleep'\) did not finish loading within {TIMEOUT} s \(ZOO_SYNC_TIMEOUT\)"

CASES = [
    Case("plugins-modules-in-cwd", ("list", "--json"), None, setup=modules_in_cwd, check=listed("digits_cnn")),
    Case("plugins-hook-sys-exit", ("plugins", "--json"), None,
         setup=plugin("zoo-fixture-exit", "digits,fixture-exit"),
         check=plugin_record("fixture-exit", "failed", "called sys.exit(3)")),
    Case("plugins-hook-sys-exit-strict", ("sync", "--strict"), r"strict mode\): fixture-exit: called sys\.exit\(3\)$",
         setup=plugin("zoo-fixture-exit", "digits,fixture-exit")),
    Case("plugins-hook-sleeps", ("list",), HUNG + r"; recorded as failed", outputs=("pid",),
         setup=plugin("zoo-fixture-sleep", "fixture-sleep", **HANG), check=pid_gone),
    Case("plugins-hook-sleeps-strict", ("sync", "--strict"), HUNG + "$", outputs=("pid",),
         setup=plugin("zoo-fixture-sleep", "fixture-sleep", **HANG), check=pid_gone),
    Case("plugins-hook-ends-process", ("list",), r"zoo-fixture-crash 1\.0\.0 \(plugin 'fixture-crash'\) ended the "
         r"sync process \(exit code 7\)", setup=plugin("zoo-fixture-crash", "fixture-crash")),
    Case("plugins-misspelled-hook-strict", ("sync", "--strict"),
         r"fixture-misspelled: implements unknown hook zoo_register_model; known hooks: zoo_register_models, zoo_register_tasks$",
         setup=plugin("zoo-fixture-misspelled", "digits,fixture-misspelled")),
    Case("plugins-misspelled-hook", ("plugins", "--json"), None,
         setup=plugin("zoo-fixture-misspelled", "digits,fixture-misspelled"),
         check=plugin_record("fixture-misspelled", "failed", "implements unknown hook zoo_register_model")),
    Case("plugins-no-hook-strict", ("sync", "--strict"), r"fixture-no-hook: implements no hook",
         setup=plugin("zoo-fixture-no-hook", "digits,fixture-no-hook")),
    Case("plugins-entry-point-clash-list", ("list", "--json"), None,
         setup=plugin("zoo-fixture-clash", "digits,torchvision"), check=bundled_and_clash_models),
    Case("plugins-entry-point-clash-shown", ("plugins", "--json"), None,
         setup=plugin("zoo-fixture-clash", "digits,torchvision"),
         check=plugin_record("zoo-fixture-clash", "loaded", None)),
    Case("plugins-sync-timeout-not-a-number", ("sync",), r"ZOO_SYNC_TIMEOUT must be a positive number of seconds",
         setup=lambda ws: {"ZOO_SYNC_TIMEOUT": "soon"}),
    Case("plugins-sync-timeout-negative", ("sync",), r"ZOO_SYNC_TIMEOUT must be a positive number.*'-5'",
         setup=lambda ws: {"ZOO_SYNC_TIMEOUT": "-5"}),
    Case("plugins-sync-timeout-huge", ("sync",), r"ZOO_SYNC_TIMEOUT must be a positive number",
         setup=lambda ws: {"ZOO_SYNC_TIMEOUT": "9" * 100_000}),
]

"""Progress on long work (`zoo.progress`), seen as a user sees it: commands run with stderr on a
pseudo-terminal say what they are doing (the first sync, the stages of an export); with stderr not a
terminal, or with ``--quiet``, they print nothing more than they always did."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import on_a_terminal, run_zoo


def catalog_env(folder: Path) -> dict[str, str]:
    """A new catalog in `folder`, with the digits plugin alone (a small sync)."""
    return {"ZOO_REGISTRY_URL": f"sqlite:///{folder / 'registry.db'}", "ZOO_LOAD_PLUGINS": "digits"}


def terminal_lines(env: dict[str, str], *args: str, cwd: Path) -> tuple[str, list[str]]:
    """``zoo ARGS`` run with stderr on a terminal: its stdout, and the terminal's lines (each redraw of a bar
    a line of its own)."""
    stdout, shown = on_a_terminal({**os.environ, **env}, *args, cwd=cwd)
    lines = shown.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return stdout, [line.strip() for line in lines if line.strip()]


def test_a_first_list_says_it_syncs_and_counts_the_plugins(tmp_path: Path) -> None:
    (tmp_path / "terminal").mkdir()
    stdout, shown = terminal_lines(catalog_env(tmp_path / "terminal"), "list", cwd=tmp_path / "terminal")
    assert shown[0] == "syncing the catalog..."
    assert any(line.startswith("loading plugins:") and "digits" in line for line in shown)  # the sync child's bar
    assert "writing 1 model(s) into the catalog..." in shown
    plain = run_zoo("list", env=catalog_env(tmp_path), cwd=tmp_path)  # stderr a pipe: a new catalog, as today
    assert (plain.stdout, plain.stderr) == (stdout, "")


@pytest.mark.parametrize("args", [("-q", "list"), ("list", "--quiet")], ids=["before", "after"])
def test_quiet_shows_nothing_on_a_terminal(tmp_path: Path, args: tuple[str, ...]) -> None:
    stdout, shown = terminal_lines(catalog_env(tmp_path), *args, cwd=tmp_path)
    assert shown == []
    assert stdout.splitlines()[-1] == "1 model(s)"


def test_an_export_names_its_stages(tmp_path: Path) -> None:
    env = catalog_env(tmp_path)
    run_zoo("sync", env=env, cwd=tmp_path)
    stdout, shown = terminal_lines(env, "export", "digits_cnn", "-o", "digits.onnx", cwd=tmp_path)
    assert shown == ["building digits_cnn...", "exporting digits_cnn to ONNX...",
                     "inferring shapes and checking the ONNX graph...",
                     "verifying digits.onnx in ONNX Runtime against digits_cnn in PyTorch..."]
    assert stdout.startswith("wrote digits.onnx (")
    plain = run_zoo("export", "digits_cnn", "-o", "again.onnx", env=env, cwd=tmp_path)  # stderr a pipe
    assert plain.stderr == ""
    assert plain.stdout.startswith("wrote again.onnx (")

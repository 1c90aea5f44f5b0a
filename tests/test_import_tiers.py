"""The import tiers of `.importlinter`: the contracts hold, can break, and ignore only lazy imports.

import-linter ignores an edge whole, so each edge under ``ignore_imports`` is checked
here to be imported only inside functions (or under ``TYPE_CHECKING``): torch is
imported only when a model is built.
"""

from __future__ import annotations

import ast
import configparser
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

CONFIG = ROOT / ".importlinter"
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(config: Path) -> subprocess.CompletedProcess[str]:
    """Run ``lint-imports`` on `config` from the repository root, without a cache."""
    command = [str(LINT_IMPORTS), "--config", str(config), "--no-cache", "--no-logo"]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)


def ignored_edges(config: Path) -> set[tuple[str, str]]:
    """Every ``importer -> imported`` edge under some contract's ``ignore_imports``."""
    parser = configparser.ConfigParser()
    parser.read(config)
    lines = (line for section in parser.sections() for line in parser[section].get("ignore_imports", "").splitlines())
    return {tuple(part.strip() for part in line.split("->")) for line in lines if "->" in line}


def _names(node: ast.Import | ast.ImportFrom) -> list[str]:
    """The modules an import statement may import (``from a import b`` may import ``a.b``)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level or node.module is None:
        return []
    return [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]


def _lazy(ancestors: list[ast.AST]) -> bool:
    """Whether a statement under `ancestors` runs only when called or only for type checkers."""
    return any(
        isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        or (isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING")
        for node in ancestors
    )


def imports_of(source: str, module: str) -> list[tuple[int, bool]]:
    """(line, lazy) of each statement in `source` importing `module` or a submodule of it."""
    found: list[tuple[int, bool]] = []

    def visit(node: ast.AST, ancestors: list[ast.AST]) -> None:
        if isinstance(node, (ast.Import, ast.ImportFrom)) and any(
            name == module or name.startswith(module + ".") for name in _names(node)
        ):
            found.append((node.lineno, _lazy(ancestors)))
        for child in ast.iter_child_nodes(node):
            visit(child, [*ancestors, node])

    visit(ast.parse(source), [])
    return found


def test_contracts_are_kept() -> None:
    result = lint_imports(CONFIG)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_a_broken_contract_fails(tmp_path: Path) -> None:
    config = tmp_path / "broken.ini"
    config.write_text(
        "[importlinter]\nroot_package = zoo\ninclude_external_packages = True\n\n"
        "[importlinter:contract:numpy]\nname = runtime without numpy\ntype = forbidden\n"
        "source_modules =\n    zoo.runtime\nforbidden_modules =\n    numpy\n"
    )
    result = lint_imports(config)
    assert result.returncode != 0
    assert "runtime without numpy BROKEN" in result.stdout
    assert "zoo.runtime is not allowed to import numpy" in result.stdout


def test_ignored_edges_are_lazy_imports() -> None:
    edges = ignored_edges(CONFIG)
    assert ("zoo.preprocessing", "torch") in edges
    for importer, imported in edges:
        path = ROOT / (importer.replace(".", "/") + ".py")
        found = imports_of(path.read_text(), imported)
        assert found, f"{importer} no longer imports {imported}: drop the ignored edge"
        eager = [line for line, lazy in found if not lazy]
        assert not eager, f"{importer} imports {imported} at module level (lines {eager})"


def test_module_level_import_is_not_lazy() -> None:
    source = (
        "from typing import TYPE_CHECKING\nimport torch.nn\nif TYPE_CHECKING:\n    import torch\n"
        "def build():\n    from torch import nn\n    from zoo import surgery\n"
    )
    assert imports_of(source, "torch") == [(2, False), (4, True), (6, True)]
    assert imports_of(source, "zoo.surgery") == [(7, True)]

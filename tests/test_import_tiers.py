"""The import tiers of `.importlinter`: the contracts hold, can break, and ignore only lazy imports.

import-linter ignores an edge whole, so each real edge that a line under
``ignore_imports`` matches (a ``*`` in a line matches one module name) is
checked here to be imported only inside functions (or under ``TYPE_CHECKING``): torch
is imported only when a model is built. And ``import zoo.runtime.predictor`` is timed by Python
itself to show that neither torch nor SQLAlchemy is loaded.
"""

from __future__ import annotations

import ast
import configparser
import importlib.util
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

from conftest import NOT_ON_DEPLOYMENT_HOST, ROOT, python_without

CONFIG = ROOT / ".importlinter"
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(config: Path) -> subprocess.CompletedProcess[str]:
    """Run ``lint-imports`` on `config` from the repository root, without a cache."""
    command = [str(LINT_IMPORTS), "--config", str(config), "--no-cache", "--no-logo"]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)


def ignore_lines(config: Path) -> set[str]:
    """Every ``importer -> imported`` line under some contract's ``ignore_imports`` (wildcards as written)."""
    parser = configparser.ConfigParser()
    parser.read(config)
    lines = (line for section in parser.sections() for line in parser[section].get("ignore_imports", "").splitlines())
    return {" -> ".join(part.strip() for part in line.split("->")) for line in lines if "->" in line}


def eager_ignored_imports(config: Path) -> list[str]:
    """What is wrong with `config`'s ignored edges: a line that matches no import, or a real edge it
    matches that is imported at module level. The graph is built as lint-imports builds it."""
    settings = configparser.ConfigParser()
    settings.read(config)
    main = settings["importlinter"]
    graph = grimp.build_graph(main["root_package"], cache_dir=None,
                              include_external_packages=main.getboolean("include_external_packages", False),
                              exclude_type_checking_imports=main.getboolean("exclude_type_checking_imports", False))
    problems = []
    for line in sorted(ignore_lines(config)):
        edges = graph.find_matching_direct_imports(line)
        if not edges:
            problems.append(f"{line} matches no import: drop the ignored edge")
        for edge in edges:
            source = Path(importlib.util.find_spec(edge["importer"]).origin).read_text()
            eager = [number for number, lazy in imports_of(source, edge["imported"]) if not lazy]
            if eager:
                problems.append(f"{edge['importer']} imports {edge['imported']} at module level (lines {eager})")
    return problems


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
    lines = ignore_lines(CONFIG)
    assert {"zoo.registry -> zoo.modeling.surgery", "zoo.publish -> zoo.modeling.weights"} <= lines
    assert eager_ignored_imports(CONFIG) == []


def test_the_runtime_contract_has_no_exemption() -> None:
    parser = configparser.ConfigParser()
    parser.read(CONFIG)
    runtime = parser["importlinter:contract:runtime"]
    assert "zoo.runtime" in runtime["source_modules"].split() and "torch" in runtime["forbidden_modules"].split()
    assert "ignore_imports" not in runtime


def test_a_wildcard_edge_is_checked_for_each_module_it_matches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tasks = tmp_path / "tierpkg" / "tasks"
    tasks.mkdir(parents=True)
    for init in (tasks.parent / "__init__.py", tasks / "__init__.py"):
        init.write_text("")
    (tasks / "lazy.py").write_text("def load():\n    import json\n")
    (tasks / "eager.py").write_text("import os\nimport json.decoder\n")
    config = tmp_path / "tiers.ini"
    config.write_text("[importlinter]\nroot_package = tierpkg\ninclude_external_packages = True\n\n"
                      "[importlinter:contract:c]\nname = c\ntype = forbidden\nsource_modules =\n    tierpkg\n"
                      "forbidden_modules =\n    json\nignore_imports =\n    tierpkg.tasks.* -> json\n"
                      "    tierpkg.tasks.* -> csv\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert eager_ignored_imports(config) == [
        "tierpkg.tasks.* -> csv matches no import: drop the ignored edge",
        "tierpkg.tasks.eager imports json at module level (lines [2])",
    ]


def test_importing_the_runtime_loads_neither_torch_nor_sqlalchemy() -> None:
    # Python's own account of every module the import loads: "import time: self | cumulative | name".
    command = [sys.executable, "-X", "importtime", "-c", "import zoo.runtime.predictor"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    loaded = {line.rpartition("|")[2].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert {"zoo.runtime.predictor", "zoo.runtime.tasks", "onnxruntime", "numpy", "PIL"} <= loaded
    heavy = sorted(name for name in loaded if name.partition(".")[0] in ("torch", "torchvision", "sqlalchemy"))
    assert heavy == []


def test_the_blocker_finds_the_named_packages_missing() -> None:
    done = python_without(NOT_ON_DEPLOYMENT_HOST, "-c", "import sys, zoo.runtime; print(sys.argv[1:]); import torch.nn",
                          "an", "argument")
    assert done.stdout.splitlines() == ["['an', 'argument']"]
    assert done.returncode == 1 and "ModuleNotFoundError: No module named 'torch'" in done.stderr


def test_module_level_import_is_not_lazy() -> None:
    source = (
        "from typing import TYPE_CHECKING\nimport torch.nn\nif TYPE_CHECKING:\n    import torch\n"
        "def build():\n    from torch import nn\n    from zoo.modeling import surgery\n"
    )
    assert imports_of(source, "torch") == [(2, False), (4, True), (6, True)]
    assert imports_of(source, "zoo.modeling.surgery") == [(7, True)]


def test_a_postgresql_catalog_without_its_extra_is_one_line() -> None:
    code = ("import os, sys\nos.environ['ZOO_REGISTRY_URL'] = 'postgresql://postgres@127.0.0.1:5432/zoo'\n"
            "from zoo.cli import main\nsys.exit(main(['list']))\n")
    done = python_without(("psycopg",), "-c", code)
    assert done.returncode == 1 and len(done.stderr.splitlines()) == 1, done.stderr
    assert done.stderr.startswith("zoo: error: catalog URL 'postgresql+psycopg://postgres@127.0.0.1:5432/zoo' needs")
    assert done.stderr.rstrip().endswith("install zoo's postgres extra (pip install 'zoo-registry[postgres]')")

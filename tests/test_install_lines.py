"""Every ``pip install`` line of the docs installs from a clone.

Each command in a code block or an inline code span of README.md (and of any Markdown file under docs/) is
run as ``pip install --dry-run --no-index`` from the repository root, in the test environment: a package that
does not exist, an extra the project does not declare or a plugin folder that is not there fails it. The
published names are read as the clone's folders: ``zoo-registry[EXTRAS]`` is ``-e .[EXTRAS]`` and a bundled
plugin (``zoo-timm``, ``zoo-digits==0.1.0``) its folder under plugins/, at the version it declares.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from conftest import code_blocks

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
PLUGINS = {tomllib.loads(p.read_text())["project"]["name"]: p.parent
           for p in sorted((ROOT / "plugins").glob("*/pyproject.toml"))}
#: Paths the docs give as placeholders for the reader's own: such a line is an example, not installable here.
PLACEHOLDERS = ("path/to/",)
#: A token of a pip install line: an option, a local path, or a requirement (name, extras, version).
_REQUIREMENT = re.compile(r"(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(?:\[(?P<extras>[^\]]*)\])?(?:==(?P<version>\S+))?")


def _commands() -> list[tuple[str, str]]:
    """(where, arguments) of every ``pip install`` in the docs: in code blocks and inline code spans."""
    found = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        spans = [code for _, code in code_blocks(text)] + re.findall(r"`([^`\n]+)`", text)
        for span in spans:
            for match in re.finditer(r"pip install ([^\n]*)", span):
                found.append((f"{doc.relative_to(ROOT)}: pip install {match[1]}", match[1]))
    return list(dict.fromkeys(found))  # each line once


def _arguments(line: str) -> list[str] | None:
    """The clone's form of `line`'s arguments; None for a placeholder line. Text after the packages (a
    message's ``(...)``, a shell comment) ends them."""
    clone: list[str] = []
    for token in shlex.split(line, comments=True):
        if any(token.startswith(p) for p in PLACEHOLDERS):
            return None
        if token.startswith("-") or token.startswith(".") or token.startswith("plugins/"):
            clone.append(token)
            continue
        requirement = _REQUIREMENT.fullmatch(token)
        if requirement is None:
            break  # the end of the command: prose follows
        name, extras, version = requirement["name"], requirement["extras"], requirement["version"]
        if name == PROJECT["name"]:
            assert version in (None, PROJECT["version"]), f"{line}: {name} is at {PROJECT['version']}"
            clone += ["-e", f".[{extras}]" if extras else "."]
        elif name in PLUGINS:
            declared = tomllib.loads((PLUGINS[name] / "pyproject.toml").read_text())["project"]["version"]
            assert version in (None, declared), f"{line}: {name} is at {declared}"
            clone += ["-e", str(PLUGINS[name].relative_to(ROOT))]
        else:
            clone.append(token)
    return clone


def _extras(arguments: list[str]) -> set[str]:
    """The extras of the project that `arguments` ask for."""
    asked = set()
    for token in arguments:
        match = re.fullmatch(r"\.\[([^\]]*)\]", token)
        if match:
            asked |= {extra.strip() for extra in match[1].split(",")}
    return asked


COMMANDS = _commands()


def test_the_docs_install_the_project_by_its_own_name() -> None:
    assert PROJECT["name"] == "zoo-registry"
    assert len(COMMANDS) >= 8  # the install section's lines at least
    named = [line for line, _ in COMMANDS if re.search(r"pip install '?zoo(\[|\s|'|$)", line)]
    assert not named, f"these name the PyPI package 'zoo', someone else's: {named}"


@pytest.mark.parametrize("line,arguments", COMMANDS, ids=[line for line, _ in COMMANDS])
def test_every_pip_install_line_installs_from_a_clone(line: str, arguments: str) -> None:
    clone = _arguments(arguments)
    if clone is None:
        assert any(p in arguments for p in PLACEHOLDERS)  # a placeholder: the reader's own plugin
        return
    assert clone, f"{line}: no packages"
    unknown = _extras(clone) - set(PROJECT["optional-dependencies"])
    assert not unknown, f"{line}: the project declares no extra {sorted(unknown)}"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--no-index", "--no-build-isolation",
                           "--quiet", "--disable-pip-version-check", *clone],
                          cwd=ROOT, capture_output=True, text=True)
    errors = [row for row in done.stderr.splitlines() if not row.startswith("WARNING: Location")]
    assert done.returncode == 0, f"{line} -> pip install {' '.join(clone)}:\n" + "\n".join(errors)

"""The README's five-minute tour, run as a newcomer runs it, from a fresh clone.

1. A fresh copy of the clone (its tracked files, and untracked ones git does not ignore) and a new virtual
   environment, where the README's own install line runs (``pip install --no-index --no-build-isolation``:
   nothing is downloaded). The new environment sees exactly the distributions that line asks for, through a
   folder of links to the test environment's: the dependency closure of the clone's pyproject files with the
   extras the line names, with pip and the build backend. A dependency the line forgets fails the tour.
2. Every block of the README's tour, in order, in an empty folder that holds only ``photos/`` (two classes of
   scikit-image photographs): Python blocks by the new environment's python, shell blocks line by line by
   bash with its ``bin`` first on ``PATH``, the shown ``$ zoo ...`` output compared with what the command
   prints, and ``zoo serve`` started (on a free port: ``--port 0 --ready-file``) and its catalog page fetched.

Offline: the two pretrained files the tour downloads (resnet50's and resnet18's ImageNet weights) are random
tensors in a weights mirror, whose full SHA-256 the catalog has learned as a verified first download records
it (`conftest.put_in_mirror`), after a ``zoo sync``.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import httpx
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from conftest import code_blocks, photos, put_in_mirror, random_weights, reader_shell, run_in

from zoo.settings import environment_with
from zoo.testing import serving

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def section(title: str) -> str:
    """The README's text under ``## title``, up to the next ``## `` heading."""
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start:end if end != -1 else None]


INSTALL = [code for language, block in code_blocks(section("Installing")) if language == "bash"
           for code in block.splitlines() if code.startswith("pip install ")]
TOUR = code_blocks(section("A five-minute tour"))


def local_projects(arguments: list[str], clone: Path) -> dict[str, tuple[Path, set[str]]]:
    """The clone's projects a pip command line installs: name -> (folder, extras)."""
    projects = {}
    for token in arguments:
        match = re.fullmatch(r"(\.|plugins/[\w.-]+)(?:\[([^\]]*)\])?", token)
        if match:
            folder = clone / match[1]
            name = tomllib.loads((folder / "pyproject.toml").read_text())["project"]["name"]
            projects[canonicalize_name(name)] = (folder, {e.strip() for e in (match[2] or "").split(",") if e.strip()})
    return projects


def dependency_closure(projects: dict[str, tuple[Path, set[str]]]) -> list[importlib.metadata.Distribution]:
    """The installed distributions the `projects` need with their extras, transitively, with pip and the
    projects' build backends; an installed distribution is this test environment's."""
    pending: list[tuple[str, set[str]]] = [("pip", set())]
    for folder, extras in projects.values():
        config = tomllib.loads((folder / "pyproject.toml").read_text())
        pending += [(Requirement(r).name, set()) for r in config["build-system"]["requires"]]
        optional = config["project"].get("optional-dependencies", {})
        for text in config["project"].get("dependencies", []) + [r for e in extras for r in optional[e]]:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                pending.append((requirement.name, set(requirement.extras)))
    seen: dict[str, set[str]] = {}
    found: dict[str, importlib.metadata.Distribution] = {}
    while pending:
        name, extras = pending.pop()
        key = canonicalize_name(name)
        if key in projects or (key in seen and extras <= seen[key]):
            continue  # the clone's own, or done
        seen[key] = seen.get(key, set()) | extras
        found[key] = dist = importlib.metadata.distribution(name)
        for text in dist.requires or []:
            requirement = Requirement(text)
            wanted = requirement.marker is None or any(requirement.marker.evaluate({"extra": e})
                                                       for e in seen[key] | {""})
            if wanted:
                pending.append((requirement.name, set(requirement.extras)))
    return list(found.values())


def link_folder(distributions: list[importlib.metadata.Distribution], folder: Path) -> None:
    """`folder` with a link to each top-level file or folder of the `distributions` (their metadata included)."""
    folder.mkdir()
    for dist in distributions:
        site = Path(dist.locate_file(""))
        for top in {file.parts[0] for file in dist.files or [] if file.parts[0] not in ("..", "__pycache__")}:
            if (site / top).exists() and not (folder / top).exists():
                (folder / top).symlink_to(site / top)


def copy_of_the_clone(target: Path) -> Path:
    """The clone's files as a fresh clone has them (and the untracked ones git does not ignore)."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            check=True, capture_output=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        if (ROOT / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, target / name)
    return target


def test_the_tour_blocks_are_what_this_test_runs() -> None:
    assert len(INSTALL) == 1, INSTALL
    languages = [language for language, _ in TOUR]
    assert languages == ["python", "python", "bash", "", "bash"], languages
    assert TOUR[3][1].startswith("$ zoo ") and TOUR[4][1].startswith("zoo serve")


def test_the_readme_installs_from_a_fresh_clone_and_its_tour_runs(tmp_path: Path) -> None:
    clone = copy_of_the_clone(tmp_path / "clone")
    arguments = shlex.split(INSTALL[0], comments=True)[2:]

    # a new virtual environment that sees what the install line asks for, and nothing else
    venv, links = tmp_path / "venv", tmp_path / "links"
    subprocess.run([sys._base_executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    link_folder(dependency_closure(local_projects(arguments, clone)), links)
    site = Path(run_in([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path,
                       dict(os.environ)).strip())
    (site / "test-links.pth").write_text(f"{links}\n")
    changes = reader_shell(tmp_path, venv / "bin")
    shell = environment_with(changes)  # the user's shell: the new environment first, offline, nothing of the tests'
    run_in([str(python), "-m", "pip", "install", "--no-index", "--no-build-isolation", "--disable-pip-version-check",
            "--quiet", *arguments], clone, shell)
    assert shutil.which("zoo", path=shell["PATH"]) == str(venv / "bin" / "zoo")
    imported = run_in([str(python), "-c", "import zoo, zoo_digits, zoo_timm, zoo_torchvision as t; print(t.__file__)"],
                      tmp_path, shell)
    assert imported.startswith(str(clone)), imported  # the clone's code, not the test environment's

    # an empty folder with photos/, and a mirror of the two pretrained files the tour downloads
    tour = tmp_path / "tour"
    photos(tour / "photos")
    run_in(["zoo", "sync"], tour, shell)
    (tmp_path / "mirror").mkdir()
    import torchvision.models as tvm

    for builder, weights in (("resnet50", tvm.ResNet50_Weights.DEFAULT), ("resnet18", tvm.ResNet18_Weights.DEFAULT)):
        put_in_mirror(f"sqlite:///{tour / 'registry.db'}", tmp_path / "mirror", weights.url, random_weights(builder))

    printed = []
    for language, code in TOUR:
        if language == "python":
            printed.append(run_in([str(python), "-c", code], tour, shell))
        elif language == "":
            command, _, shown = code.partition("\n")
            assert run_in(["bash", "-c", command.removeprefix("$ ")], tour, shell) == shown, command
        elif code.startswith("zoo serve"):
            with serving(*shlex.split(code, comments=True)[2:], env=changes, cwd=tour, python=python) as served:
                first, found = (httpx.get(f"{served.url}/{query}", timeout=60) for query in ("", "?q=digits"))
            assert first.status_code == 200 and "<title>Catalog · zoo</title>" in first.text
            assert found.status_code == 200 and "digits_cnn" in found.text and "resnet50" not in found.text
        else:
            printed += [run_in(["bash", "-c", line], tour, shell) for line in code.splitlines() if line.strip()]

    # what the tour made: the fine-tuned weights of both runs, the export, the published version
    assert (tour / "finetune-resnet18" / "best.safetensors").is_file()
    assert (tour / "finetune-digits_cnn" / "best.safetensors").is_file() and (tour / "digits.onnx").is_file()
    assert "acme/digits" in printed[-1]  # zoo show digits_cnn, the tour's last command line

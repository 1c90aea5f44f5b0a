"""The documentation: the README stays short, and the MkDocs site under docs/ builds strictly.

``mkdocs build --strict`` (``strict: true`` and anchor validation in mkdocs.yml) fails on a link to a missing page
or anchor, a cross-reference that does not resolve and a docstring the API reference cannot read, so a broken
page fails the suite rather than the reader.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from markdown.extensions.toc import slugify

import zoo

ROOT = Path(__file__).resolve().parent.parent
README_MAX_LINES = 250


def test_the_readme_is_short() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; the guide belongs in docs/"


def test_the_readme_gives_the_test_command() -> None:
    # CI (.ci/run) runs scripts/test.sh as "the README's test command"
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```bash\n(.*?)```", readme, flags=re.S)
    assert any(re.search(r"^scripts/test\.sh\b", block, flags=re.M) for block in blocks)


def test_the_readme_and_contributing_link_to_what_is_there() -> None:
    # they are outside the site, so the strict build does not check them; GitHub renders their relative links
    for doc in ("README.md", "CONTRIBUTING.md"):
        for target in re.findall(r"\]\(([^)\s]+)\)", _prose(ROOT / doc)):
            if re.match(r"[a-z]+://", target):
                continue
            path, _, anchor = target.partition("#")
            page = ROOT / (path or doc)
            assert page.is_file(), f"{doc} links to {target}: no such file"
            if anchor:
                assert anchor in _anchors(page), f"{doc} links to {target}: no such heading in {path or doc}"


def _anchors(page: Path) -> set[str]:
    """The anchors of a Markdown page's headings, as the site (Python-Markdown's toc) makes them."""
    text = _without_code_blocks(page)
    return {slugify(re.sub(r"[`*]", "", heading), "-") for heading in re.findall(r"^#+ (.+)$", text, flags=re.M)}


def _prose(page: Path) -> str:
    """A Markdown page without its code blocks and code spans."""
    return re.sub(r"`[^`\n]*`", "", _without_code_blocks(page))


def _without_code_blocks(page: Path) -> str:
    return re.sub(r"^```.*?^```", "", page.read_text(encoding="utf-8"), flags=re.S | re.M)


def test_every_top_level_name_is_in_the_reference() -> None:
    listed = set(re.findall(r"\[`zoo\.(\w+)`\]", (ROOT / "docs/reference/index.md").read_text(encoding="utf-8")))
    assert listed == set(zoo.__all__), {"missing": set(zoo.__all__) - listed, "extra": listed - set(zoo.__all__)}


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=ROOT, capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    problems = [row for row in done.stderr.splitlines() if not row.startswith("INFO")]
    assert done.returncode == 0, "mkdocs build --strict failed:\n" + "\n".join(problems)
    site = tmp_path / "site"
    assert (site / "index.html").is_file()
    assert (site / "pictures" / "web_catalog.png").is_file()
    # the API reference is rendered from the docstrings (by static analysis: nothing is imported)
    reference = (site / "reference" / "registry.html").read_text(encoding="utf-8")
    assert 'id="zoo.registry.get_model"' in reference


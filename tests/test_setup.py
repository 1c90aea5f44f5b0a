"""The set-up scripts, where they differ by who runs them."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from conftest import ROOT

NOBODY = 65534


def test_chromium_install_without_root_says_what_to_install_and_goes_on() -> None:
    # a PATH without chromium (and without apt-get), run as an unprivileged user
    with tempfile.TemporaryDirectory() as where:  # pytest's tmp_path is private to root
        os.chmod(where, 0o755)
        (Path(where) / "id").symlink_to(shutil.which("id"))
        done = subprocess.run(
            ["/bin/bash", str(ROOT / "scripts" / "install_chromium.sh")],
            env={"PATH": where}, capture_output=True, text=True, cwd=ROOT,
            user=NOBODY if os.getuid() == 0 else None, group=NOBODY if os.getuid() == 0 else None,
        )
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert "Chromium is missing" in line and "apt-get install chromium" in line

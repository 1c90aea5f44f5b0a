"""``zoo export -o PATH`` over whatever is at PATH: nothing there may be destroyed.

An unrelated file, a write-protected one, a symbolic link, a directory, a device, a
fifo, a missing or unwritable folder are refused in one line and left exactly as they
were (type, mode and content); ``--force`` replaces a regular file only, keeping its
mode; an earlier zoo export is replaced without it. The leftovers of a killed export
are cleaned up by the next export to that path. An opset is what the file holds.
(``quantize_int8`` writes through the same `zoo.outputs.staged_output`; it has no
command of its own.)
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

import onnx

from hostile.harness import Case, digits_export

EXPORT = ("export", "digits_cnn")  # random weights: differs from digits_export(), which has the shipped ones
NOTES = b"my notes: not a model\n"


def _file(name: str, data: bytes = NOTES, mode: int = 0o640) -> Callable[[Path], None]:
    def setup(ws: Path) -> None:
        (ws / name).write_bytes(data)
        (ws / name).chmod(mode)
    return setup


def _earlier_export(name: str, mode: int = 0o644) -> Callable[[Path], None]:
    """Setup: a verified zoo export (with the shipped weights) at `name`."""
    def setup(ws: Path) -> None:
        shutil.copyfile(digits_export(), ws / name)
        (ws / name).chmod(mode)
    return setup


def _link(ws: Path) -> None:
    (ws / "elsewhere").mkdir()
    shutil.copyfile(digits_export(), ws / "elsewhere" / "model.onnx")
    (ws / "link.onnx").symlink_to("elsewhere/model.onnx")


def _fresh_export(name: str, mode: int = 0o644) -> Callable[[Path, subprocess.CompletedProcess], None]:
    """Check: `name` is now a new zoo export (random weights) with `mode`."""
    def check(ws: Path, done: subprocess.CompletedProcess) -> None:
        meta = {p.key: p.value for p in onnx.load(str(ws / name), load_external_data=False).metadata_props}
        assert meta.get("zoo.model") == "digits_cnn" and meta.get("zoo.weights") == "null", meta.get("zoo.weights")
        assert stat.S_IMODE((ws / name).stat().st_mode) == mode, oct((ws / name).stat().st_mode)
        assert not [p for p in os.listdir(ws) if p.startswith(f".{name}.")], os.listdir(ws)
    return check


def _dead_export(ws: Path) -> None:
    """Setup: what an export killed half way leaves: its lock file and private folder."""
    folder = ws / ".model.onnx.k1ll3d00.tmp"
    folder.mkdir()
    (folder / "exported.onnx").write_bytes(b"\0" * 4096)
    (ws / ".model.onnx.lock").write_bytes(b"")


def _lock_link(ws: Path) -> None:
    """Setup: the path's lock file is a symbolic link to a file, which must not be touched."""
    _file("target.txt")(ws)
    (ws / ".model.onnx.lock").symlink_to("target.txt")


def _opset(expected: int) -> Callable[[Path, subprocess.CompletedProcess], None]:
    def check(ws: Path, done: subprocess.CompletedProcess) -> None:
        model = onnx.load(str(ws / "model.onnx"), load_external_data=False)
        written = [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")]
        recorded = json.loads(done.stdout)["opset"]
        assert written == [expected] and recorded == expected, (written, recorded)
    return check


CASES = [
    Case("export-over-unrelated-file", (*EXPORT, "-o", "notes.onnx"), r"'notes.onnx' exists and is not a file zoo "
         r"wrote; pass --force", setup=_file("notes.onnx")),
    Case("export-over-unrelated-file-forced", (*EXPORT, "-o", "notes.onnx", "--force"), None,
         setup=_file("notes.onnx"), outputs=("notes.onnx",), check=_fresh_export("notes.onnx", 0o640)),
    Case("export-over-write-protected-export", (*EXPORT, "-o", "model.onnx"),
         r"'model.onnx' is write-protected \(mode 0444\); pass --force", setup=_earlier_export("model.onnx", 0o444)),
    Case("export-over-write-protected-forced", (*EXPORT, "-o", "model.onnx", "--force"), None,
         setup=_earlier_export("model.onnx", 0o444), outputs=("model.onnx",),
         check=_fresh_export("model.onnx", 0o444)),
    Case("export-over-earlier-export", (*EXPORT, "-o", "model.onnx"), None, setup=_earlier_export("model.onnx"),
         outputs=("model.onnx",), check=_fresh_export("model.onnx")),
    Case("export-through-symlink", (*EXPORT, "-o", "link.onnx"), r"'link.onnx' is a symbolic link", setup=_link),
    Case("export-through-symlink-forced", (*EXPORT, "-o", "link.onnx", "--force"), r"'link.onnx' is a symbolic link",
         setup=_link),
    Case("export-onto-directory", (*EXPORT, "-o", "out.onnx", "--force"), r"'out.onnx' is a directory",
         setup=lambda ws: (ws / "out.onnx").mkdir()),
    Case("export-onto-dev-null", (*EXPORT, "-o", "/dev/null", "--force"),
         r"'/dev/null' is a character device, not a regular file", watch=("/dev/null",)),
    Case("export-onto-fifo", (*EXPORT, "-o", "pipe.onnx", "--force"), r"'pipe.onnx' is a fifo",
         setup=lambda ws: os.mkfifo(ws / "pipe.onnx"), timeout=60),
    Case("export-into-missing-directory", (*EXPORT, "-o", "missing/model.onnx"),
         r"directory 'missing' does not exist"),
    Case("export-under-a-file", (*EXPORT, "-o", "notes.txt/model.onnx"), r"'notes.txt' is not a directory",
         setup=_file("notes.txt")),
    Case("export-into-unwritable-directory", (*EXPORT, "-o", "/sys/model.onnx"),
         r"directory '/sys' is not writable \((Permission denied|Read-only file system)\)"),
    Case("export-huge-path", (*EXPORT, "-o", "x" * 100_000), r"File name too long"),
    Case("export-lock-file-uncreatable", (*EXPORT, "-o", "/proc/x.onnx"),
         r"cannot write '/proc/x\.onnx': No such file or directory", timeout=60),
    Case("export-lock-file-is-a-symlink", (*EXPORT, "-o", "model.onnx"), r"cannot write 'model.onnx': Too many levels",
         setup=_lock_link),
    Case("export-after-a-killed-export", (*EXPORT, "-o", "model.onnx"), None, setup=_dead_export,
         outputs=("model.onnx", ".model.onnx.*"), check=_fresh_export("model.onnx")),
    Case("export-opset-7", (*EXPORT, "-o", "model.onnx", "--opset", "7", "--json"), None,
         outputs=("model.onnx",), check=_opset(7)),
    Case("export-opset-6", (*EXPORT, "-o", "model.onnx", "--opset", "6"), r"opset must be an integer of at least 7"),
    Case("export-opset-huge", (*EXPORT, "-o", "model.onnx", "--opset", "9" * 40), r"opset 9{20}.* is above \d+"),
]

"""Run Python with some top-level packages unimportable, as on a machine where they are not installed.

    python scripts/without.py torch,torchvision,sqlalchemy -m zoo predict model.onnx image.png
    python scripts/without.py torch,torchvision -c "import zoo.runtime; ..." [ARG...]

Importing a named package, or any module inside it, raises ModuleNotFoundError;
everything else imports as usual. The tests and scripts/demo.py run what must work on
a deployment host through it: one blocker for all of them. (Which modules import what
is checked by import-linter's contracts in .importlinter; this runs the code.) Unlike
``python -c``, neither the working directory nor this script's folder is put on sys.path.
"""

from __future__ import annotations

import runpy
import sys
from collections.abc import Sequence
from importlib.abc import MetaPathFinder
from importlib.machinery import ModuleSpec
from types import ModuleType

USAGE = "usage: without.py PACKAGE[,PACKAGE...] (-m MODULE | -c CODE) [ARG...]"


class NotInstalled(MetaPathFinder):
    """A finder, first on ``sys.meta_path``, that finds the named top-level packages missing."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = frozenset(names)

    def find_spec(self, name: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> ModuleSpec | None:
        if name.partition(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {name!r} (not installed here)", name=name)
        return None  # the other finders look as usual


def main(argv: Sequence[str]) -> None:
    if len(argv) < 3 or argv[1] not in ("-m", "-c"):
        sys.exit(USAGE)
    names, mode, target, *args = argv
    sys.path.pop(0)  # this script's folder
    sys.meta_path.insert(0, NotInstalled(names.split(",")))
    if mode == "-m":
        sys.argv = [target, *args]
        runpy.run_module(target, run_name="__main__", alter_sys=True)
    else:
        sys.argv = ["-c", *args]
        exec(compile(target, "<string>", "exec"), {"__name__": "__main__"})  # noqa: S102 - what python -c does


if __name__ == "__main__":
    main(sys.argv[1:])

"""Every code block of the guide that a reader would run is run, so the docs never go stale.

Each ```python and ```bash block of docs/**/*.md runs, page by page and in the page's order, in a folder of its
own prepared as a reader's would be after the README's tour: a catalog synced with the installed plugins
(``registry.db``), ``photos/`` (two classes of scikit-image photographs) and ``cat.jpg``, ``digits/`` (scikit-learn's
digits, `zoo_digits.data.write_image_folder`), ``digit0.png`` and ``digit1.png``, ``digits.onnx`` (the
verified export of digits_cnn), and a reader's own weights files: ``defects.safetensors`` (resnet18 with a
3-class head, random tensors), ``tuned.pt`` (digits_cnn's) with its ``classes.txt``. Offline: the pretrained files of resnet18 and resnet50 are random tensors in a
weights mirror whose full hash the catalog knows (`conftest.put_in_mirror`). A page's Python blocks run in one
interpreter, one after another in one namespace (a later block uses what an earlier one made, as in a REPL); its
shell blocks by bash (``set -e``), with the test environment's ``bin`` first on ``PATH``.

A block that cannot run here says why in a comment on the line above it, ``<!-- not run: REASON -->`` (a GPU,
other machines, a reader's own files or servers, or a synopsis of options): invisible on the page, and the
test below checks that every block is run or says why. README.md's blocks are run elsewhere: its tour and
install line by tests/test_readme_tour.py, its quick start by CI itself.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import photos, put_in_mirror, random_weights, reader_shell, run_in
from zoo.settings import environment_with

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted((ROOT / "docs").rglob("*.md"))
_BLOCK = re.compile(r"(?:^<!-- not run: (?P<why>[^\n]*?) -->\n)?^```(?P<language>python|bash)\n(?P<code>.*?)^```",
                    flags=re.S | re.M)
_DONE = "\0zoo-docs-block-done "  # the driver's line after each block: then "ok" or "failed"
#: Runs the blocks it reads from stdin (one JSON string a line) in one namespace, as a REPL would.
_DRIVER = f"""
import json, sys, traceback
namespace = {{"__name__": "__main__"}}
for line in sys.stdin:
    try:
        exec(compile(json.loads(line), "<docs block>", "exec"), namespace)
        status = "ok"
    except BaseException:
        traceback.print_exc(file=sys.stdout)
        status = "failed"
    print({_DONE!r} + status, flush=True)
"""
TIMEOUT = 1800  # seconds: only against a hung block


def blocks(page: Path) -> list[tuple[str, str, str | None]]:
    """(language, code, why it is not run or None) of each Python and shell block of `page`, in order."""
    text = page.read_text(encoding="utf-8")
    return [(m["language"], m["code"], m["why"]) for m in _BLOCK.finditer(text)]


RUN = [page for page in PAGES if any(why is None for _, _, why in blocks(page))]


def test_every_block_is_run_or_says_why_not() -> None:
    counted = {"run": 0, "not run": 0}
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        fences = len(re.findall(r"^```(?:python|bash)\n", text, flags=re.M))
        assert fences == len(blocks(page)), f"{page}: a block the test cannot read"
        for _, _, why in blocks(page):
            assert why is None or why.strip(), f"{page}: '<!-- not run: -->' without a reason"
            counted["run" if why is None else "not run"] += 1
    assert counted["run"] >= 25, counted  # the guide's examples, not only its illustrations


@pytest.fixture(scope="module")
def reader(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """The folder every page starts from, and the environment its blocks run in."""
    import safetensors.torch
    import torch
    import torchvision.models as tvm
    from PIL import Image
    from skimage import data

    import zoo_digits
    from zoo_digits.data import write_image_folder

    base = tmp_path_factory.mktemp("docs")
    folder, mirror = base / "reader", base / "mirror"
    mirror.mkdir()
    env = environment_with(reader_shell(base, Path(sys.executable).parent))
    photos(folder / "photos")
    Image.fromarray(data.chelsea()).save(folder / "cat.jpg")
    write_image_folder(folder / "digits")
    for digit, index in ((0, 78), (1, 21)):  # the first held-out image of each
        shutil.copy(folder / "digits" / "val" / str(digit) / f"{index}.png", folder / f"digit{digit}.png")
    run_in(["zoo", "export", "digits_cnn", "-o", "digits.onnx", "--weights", "DEFAULT"], folder, env)
    torch.manual_seed(0)
    safetensors.torch.save_file(tvm.resnet18(num_classes=3).state_dict(), folder / "defects.safetensors")
    shutil.copy(next(Path(zoo_digits.__file__).parent.glob("digits_cnn-*.pth")), folder / "tuned.pt")
    (folder / "classes.txt").write_text("".join(f"{digit}\n" for digit in range(10)))
    catalog = f"sqlite:///{folder / 'registry.db'}"
    for builder, weights in (("resnet50", tvm.ResNet50_Weights.IMAGENET1K_V2),
                             ("resnet50", tvm.ResNet50_Weights.IMAGENET1K_V1),
                             ("resnet18", tvm.ResNet18_Weights.IMAGENET1K_V1)):
        put_in_mirror(catalog, mirror, weights.url, random_weights(builder))
    return folder, env


def _finish(driver: subprocess.Popen[str]) -> tuple[str, str]:
    """What the driver printed for one block, and its status."""
    printed = []
    for line in driver.stdout:
        if line.startswith(_DONE):
            return "".join(printed), line[len(_DONE):].strip()
        printed.append(line)
    return "".join(printed), f"the interpreter exited {driver.wait()}"


@pytest.mark.parametrize("page", RUN, ids=[str(page.relative_to(ROOT)) for page in RUN])
def test_the_pages_blocks_run(page: Path, reader: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    template, env = reader
    folder = tmp_path / "reader"
    shutil.copytree(template, folder)
    driver = subprocess.Popen([sys.executable, "-c", _DRIVER], cwd=folder, env=env, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert driver.stdin is not None and driver.stdout is not None
    try:
        for number, (language, code, why) in enumerate(blocks(page), 1):
            if why is not None:
                continue
            if language == "python":
                driver.stdin.write(json.dumps(code) + "\n")
                driver.stdin.flush()
                printed, status = _finish(driver)
                assert status == "ok", f"{page.relative_to(ROOT)}, block {number}:\n{code}\n{printed[-4000:]}"
            else:
                run_in(["bash", "-e", "-o", "pipefail", "-c", code], folder, env)
    finally:
        driver.stdin.close()
        driver.wait(TIMEOUT)

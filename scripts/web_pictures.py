"""Take the web catalog's screenshots (docs/guide/web-catalog.md) into docs/pictures/, at a desktop's width and a phone's.

A throwaway catalog in a temporary folder (SQLite, the digits and torchvision plugins, an
artifacts folder) gets the digits model's ONNX export and its weights (as ``team/digits``)
published, then ``zoo serve`` serves it (`zoo.testing.serving`) and headless Chromium, in
the light colour scheme, takes each page at 1280 x 800 (``web_NAME.png``) and 390 x 844 CSS pixels (``web_NAME_phone.png``):

- ``catalog``: the classification models sorted by best metric;
- ``card``: the model card of resnet50;
- ``compare``: ImageNet-1K acc@1 against parameters, the Pareto front marked;
- ``try``: the digits export's prediction for a held-out scikit-learn digit, uploaded.

Each screenshot is reduced to 256 colours and written atomically. Chromium is Debian's
(/usr/bin/chromium) or the executable ``$ZOO_TEST_CHROMIUM`` names; Playwright never
downloads one. Run from anywhere: ``.venv/bin/python scripts/web_pictures.py [--force]``.
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

from zoo.outputs import write_atomically
from zoo.testing import ChromiumMissing, chromium, chromium_path, serving

if TYPE_CHECKING:
    from playwright.sync_api import Page

OUT = Path(__file__).resolve().parent.parent / "docs" / "pictures"
#: The window of each screen size, in CSS pixels, and the suffix of its files' names.
SCREENS = {"": {"width": 1280, "height": 800}, "_phone": {"width": 390, "height": 844}}
TIMEOUT_MS = 120_000  # for any one wait of a page (a prediction, a page drawn) on a loaded machine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="replace screenshots that exist")
    args = parser.parse_args()
    targets = [OUT / f"web_{name}{suffix}.png" for name in PAGES for suffix in SCREENS]
    existing = [p.name for p in targets if p.exists()]
    if existing and not args.force:
        sys.exit(f"web_pictures: {', '.join(existing)} exist in {OUT}; pass --force to replace them")
    try:
        browser_path = chromium_path()
    except ChromiumMissing as missing:
        sys.exit(f"web_pictures: {missing}")
    with tempfile.TemporaryDirectory(prefix="zoo-web-pictures-") as tmp:
        folder = Path(tmp)
        env = {"ZOO_REGISTRY_URL": f"sqlite:///{folder / 'registry.db'}", "ZOO_ARTIFACTS": str(folder / "artifacts"),
               "ZOO_LOAD_PLUGINS": "digits,torchvision"}
        zoo_command("sync", env=env)
        zoo_command("export", "digits_cnn", "--weights", "DEFAULT", "-o", str(folder / "digits.onnx"), env=env)
        zoo_command("publish", "export", str(folder / "digits.onnx"), env=env)
        zoo_command("publish", "weights", "digits_cnn", str(digits_weights()), "--name", "team/digits", "--from",
                    "DEFAULT", "--metric", "sklearn-digits-heldout:acc@1=99.1", env=env)
        with serving(env=env, log=folder / "serve.log") as served, chromium(browser_path) as browser:
            for suffix, window in SCREENS.items():
                context = browser.new_context(viewport=window, device_scale_factor=1, color_scheme="light")
                context.set_default_timeout(TIMEOUT_MS)
                page = context.new_page()
                for name, show in PAGES.items():
                    show(page, served.url)
                    page.wait_for_load_state("networkidle")
                    keep(page.screenshot(), OUT / f"web_{name}{suffix}.png")
                context.close()


def zoo_command(*args: str, env: dict[str, str]) -> None:
    """Run ``zoo ARGS`` (the command installed beside this interpreter, which imports nothing from the working
    directory) in a child process with `env` on top of this one's; exit with its error if it fails."""
    done = subprocess.run([str(Path(sys.executable).with_name("zoo")), *args], env={**os.environ, **env},
                          capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        sys.exit(f"web_pictures: zoo {' '.join(args[:2])} failed: {last}")


def digits_weights() -> Path:
    """The weights file the digits plugin ships (published again, as a team's fine-tuned version of it)."""
    import zoo_digits

    return next(Path(zoo_digits.__file__).parent.glob("digits_cnn-*.pth"))


def catalog(page: Page, url: str) -> None:
    page.goto(f"{url}/?task=classification&sort=metric&order=desc")
    page.wait_for_selector("#catalog tbody tr")


def card(page: Page, url: str) -> None:
    page.goto(f"{url}/models/resnet50")
    page.wait_for_selector("#model-name")


def compare(page: Page, url: str) -> None:
    page.goto(f"{url}/compare?task=classification")
    page.wait_for_selector("#plot circle.pareto")


def try_it(page: Page, url: str) -> None:
    """The try page after the digits export predicted a held-out digit (shown 16x larger), its data unfolded."""
    from zoo_digits.data import load_heldout

    images, _ = load_heldout()
    digit = io.BytesIO()
    Image.fromarray(images[0]).resize((128, 128), Image.NEAREST).save(digit, format="PNG")
    page.goto(f"{url}/try")
    page.set_input_files("#upload", {"name": "digit.png", "mimeType": "image/png", "buffer": digit.getvalue()})
    page.click("#try button[type=submit]")
    page.wait_for_selector("#try[data-done]")
    page.click(".drawn details summary")


#: Each screenshot's name and how its page is brought to what it shows.
PAGES: dict[str, Callable[[Page, str], None]] = {"catalog": catalog, "card": card, "compare": compare,
                                                 "try": try_it}


def keep(screenshot: bytes, path: Path) -> None:
    """Write `screenshot` to `path` in 256 colours, atomically; say what was written."""
    image = Image.open(io.BytesIO(screenshot)).convert("RGB").quantize(256)
    png = io.BytesIO()
    image.save(png, format="PNG", optimize=True)
    write_atomically(path, [png.getvalue()], mode=0o644)
    print(f"wrote {path.relative_to(OUT.parent.parent)} ({len(png.getvalue()) // 1024} KiB, "
          f"{image.width}x{image.height})")


if __name__ == "__main__":
    main()

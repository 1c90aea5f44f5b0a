"""A real browser for the tests: Playwright driving the Chromium this machine has installed.

Debian's ``chromium`` package (scripts/install_chromium.sh), or the executable ``$ZOO_TEST_CHROMIUM``
names; Playwright never downloads a browser here. Pages open in a context where every request
to another origin than the one under test is aborted (and recorded), so that a page that works in
it works offline, and a test can say that it asked for nothing else.

    with chromium() as browser:
        page, elsewhere = offline_page(browser, "http://127.0.0.1:8765")
        page.goto("http://127.0.0.1:8765/")
        assert elsewhere == []
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest

from zoo import testing

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, Route

WINDOW = {"width": 1280, "height": 800}
TIMEOUT_MS = 20_000  # for any one wait of a page: a slow machine is slow, but not this slow


def chromium_path() -> str:
    """The Chromium executable (`zoo.testing.chromium_path`); the test fails with its install hint if there is none."""
    try:
        return testing.chromium_path()
    except testing.ChromiumMissing as missing:
        pytest.fail(str(missing), pytrace=False)


@contextmanager
def chromium() -> Iterator[Browser]:
    """A headless Chromium (the installed one), closed afterwards."""
    with testing.chromium(chromium_path()) as browser:
        yield browser


def offline_page(browser: Browser, origin: str, *, consent_for: str | None = None, width: int = WINDOW["width"],
                 color_scheme: str = "light") -> tuple[Page, list[str]]:
    """A new page in a context of its own that reaches only `origin` (``http://HOST:PORT``), and the list
    the URLs of every other request it tried are appended to (each aborted).

    `width`: the window's width in CSS pixels (390: a phone's); `color_scheme`: "light" or "dark", what the
    page's ``prefers-color-scheme`` says.

    `consent_for`: a URL whose page is netron's, given netron's ``consent`` cookie first, as a user's
    click on its "Accept" would (netron otherwise waits behind its cookie notice).
    """
    context = browser.new_context(viewport={**WINDOW, "width": width}, device_scale_factor=1,
                                  color_scheme=color_scheme)
    elsewhere: list[str] = []
    served = urlsplit(origin)

    def only_origin(route: Route) -> None:
        url = urlsplit(route.request.url)
        if url.scheme in ("data", "blob") or (url.scheme, url.netloc) == (served.scheme, served.netloc):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort("blockedbyclient")

    context.route("**/*", only_origin)
    if consent_for is not None:
        context.add_cookies([{"name": "consent", "value": str(int(time.time() * 1000)), "url": consent_for}])
    context.set_default_timeout(TIMEOUT_MS)
    return context.new_page(), elsewhere


def evaluated(page: Page, expression: str) -> Any:
    """The value of the JavaScript `expression` on `page` (a promise awaited), as plain data. Over the DevTools
    protocol rather than Playwright's ``evaluate``, which calls ``window.eval``: netron's page replaces that with
    a function that throws."""
    session = page.context.new_cdp_session(page)
    try:
        answer = session.send("Runtime.evaluate", {"expression": expression, "awaitPromise": True,
                                                   "returnByValue": True})
    finally:
        session.detach()
    if "exceptionDetails" in answer:
        raise AssertionError(f"{expression[-80:]!r} failed on {page.url}: {answer['exceptionDetails']}")
    return answer["result"].get("value")


def axe_violations(page: Page) -> list[dict[str, Any]]:
    """What axe-core (the copy axe-playwright-python ships) finds wrong on `page` as it is now: its violations,
    each with its rule's ``id`` and the ``nodes`` that fail it."""
    from axe_playwright_python.sync_playwright import Axe

    return json.loads(evaluated(page, f"{Axe().axe_script};\naxe.run().then(r => JSON.stringify(r.violations))"))

"""What every route of the web catalog shares: the app's settings and the API's rules
(`zoo.service.common`), and the HTML answer with its security headers."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from fastapi.responses import HTMLResponse

from zoo.errors import ZooError
from zoo.service.common import Credentials, Settings, reader, status_of
from zoo.service.web import pages

#: Pages load only this server's files; images may also be data: URLs (the drawn prediction).
_CSP = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self'; object-src 'none'; "
        "base-uri 'none'; frame-ancestors 'none'; form-action 'self'")


def security_headers(csp: str) -> dict[str, str]:
    """The headers of an HTML page whose Content-Security-Policy is `csp`: its types are not to be guessed,
    and links from it do not tell where they came from."""
    return {"Content-Security-Policy": csp, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


HEADERS = security_headers(_CSP)


def csp_hash(inline: str) -> str:
    """The source expression that lets a Content-Security-Policy allow the inline script or style `inline`."""
    return f"'sha256-{base64.b64encode(hashlib.sha256(inline.encode()).digest()).decode()}'"


@dataclass(frozen=True)
class Web:
    """One app's settings: what every route of the pages reads."""

    settings: Settings

    def reader(self) -> Callable[[Credentials], None]:
        """The dependency of every page: the API's rule for reading."""
        return reader(self.settings)

    def html(self, render: Callable[[], str]) -> HTMLResponse:
        """The page `render` makes, or for a zoo error the error page with its status and one line."""
        try:
            return HTMLResponse(render(), headers=HEADERS)
        except ZooError as exc:
            status = status_of(exc)
            return HTMLResponse(pages.error_page(status, (str(exc).strip().splitlines() or ["error"])[0]),
                                status_code=status, headers=HEADERS)

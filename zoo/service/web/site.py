"""What every route of the web catalog shares: the app's settings and the API's rules
(`zoo.service.common`), and the HTML answer with its security headers."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse

from zoo.errors import ZooError
from zoo.service.common import ApiError, Credentials, Settings, reader, status_of
from zoo.service.web import pages

#: Pages load only this server's files; images may also be data: URLs (the drawn prediction).
_CSP = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self'; object-src 'none'; "
        "base-uri 'none'; frame-ancestors 'none'; form-action 'self'")


def security_headers(csp: str) -> dict[str, str]:
    """The headers of an HTML page whose Content-Security-Policy is `csp`: its types are not to be guessed,
    and links from it to other sites do not tell where they came from (its own forms do, by their Origin:
    with no-referrer a browser would send ``Origin: null``, which `zoo.service.web.login` refuses)."""
    return {"Content-Security-Policy": csp, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin"}


HEADERS = security_headers(_CSP)


def csp_hash(inline: str) -> str:
    """The source expression that lets a Content-Security-Policy allow the inline script or style `inline`."""
    return f"'sha256-{base64.b64encode(hashlib.sha256(inline.encode()).digest()).decode()}'"


@dataclass(frozen=True)
class Web:
    """One app's settings: what every route of the pages reads."""

    settings: Settings

    def reader(self) -> Callable[[Request, Credentials], Awaitable[None]]:
        """The dependency of every page: the API's rule for reading (a session cookie counts:
        `zoo.service.sessions`), except that a browser's GET or HEAD (one that accepts text/html) it refuses
        for want of a token is sent to sign in (303 to ``/login?next=`` the page) instead of being answered
        401; other clients (scripts, a page's own fetches) get the API's 401."""
        check = reader(self.settings)

        async def page(request: Request, credentials: Credentials) -> None:
            try:
                await check(request, credentials)
            except ApiError as exc:
                browser = "text/html" in request.headers.get("accept", "")
                if exc.status != 401 or request.method not in ("GET", "HEAD") or not browser:
                    raise
                here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                raise ApiError(303, "this registry is private: sign in at /login",
                               {"Location": f"/login?{urlencode({'next': here})}"}) from None

        return page

    def html(self, render: Callable[[], str]) -> HTMLResponse:
        """The page `render` makes, or for a zoo error the error page with its status and one line."""
        try:
            return HTMLResponse(render(), headers=HEADERS)
        except ZooError as exc:
            status = status_of(exc)
            return HTMLResponse(pages.error_page(status, (str(exc).strip().splitlines() or ["error"])[0]),
                                status_code=status, headers=HEADERS)

"""What every route of the web catalog shares: the app's settings, the parts of the API it reuses
(token rule, error statuses, upload size), the types of its path parameters and the HTML answer
with its security headers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Path, Request
from fastapi.responses import HTMLResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from zoo.errors import ZooError
from zoo.fetch import FULL_HASH
from zoo.server.tokens import READ_SCOPES
from zoo.server.web import pages

if TYPE_CHECKING:
    from zoo.server.app import Settings

Sha256 = Annotated[str, Path(pattern=f"^{FULL_HASH.pattern}$", description="64 lowercase hex digits")]
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(HTTPBearer(auto_error=False))]
#: Pages load only this server's files; images may also be data: URLs (the drawn prediction).
_CSP = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self'; object-src 'none'; "
        "base-uri 'none'; frame-ancestors 'none'; form-action 'self'")
HEADERS = {"Content-Security-Policy": _CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


@dataclass(frozen=True)
class ApiParts:
    """What the pages share with the API app they are part of, handed in by `zoo.server.app.create_app`
    (which imports this package: importing it back would be a cycle)."""

    #: refuse (401, 403) a request whose credentials lack a token with one of the scopes, for the action named
    require: Callable[[HTTPAuthorizationCredentials | None, frozenset[str], str], None]
    #: the HTTP status of a zoo error (400 bad input, 404 unknown, 413 too large, 503 catalog unreachable)
    status_of: Callable[[ZooError], int]
    #: an upload's Content-Length, refused (411, 400, 413) when missing, not a number or over the limit
    declared_length: Callable[[Request, int], int]


@dataclass(frozen=True)
class Web:
    """One app's settings and the API's parts: what every route of the pages reads."""

    settings: Settings
    api: ApiParts

    def reader(self) -> Callable[[Credentials], None]:
        """The dependency of every page: the API's rule for reading (a token only if the server asks for one)."""

        def check(credentials: Credentials) -> None:
            if self.settings.read_token_required:
                self.api.require(credentials, READ_SCOPES, "reading")

        return check

    def html(self, render: Callable[[], str]) -> HTMLResponse:
        """The page `render` makes, or for a zoo error the error page with its status and one line."""
        try:
            return HTMLResponse(render(), headers=HEADERS)
        except ZooError as exc:
            status = self.api.status_of(exc)
            return HTMLResponse(pages.error_page(status, (str(exc).strip().splitlines() or ["error"])[0]),
                                status_code=status, headers=HEADERS)

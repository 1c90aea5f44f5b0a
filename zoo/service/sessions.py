"""Web sessions of a private registry (``zoo serve --require-read-token``): what a browser, which cannot send
a bearer header, presents instead after signing in with a token at ``/login`` (`zoo.service.web.login`).

The session cookie holds no token: it is the token's name and an expiry, signed (HMAC-SHA256) with a key
that `zoo serve` makes at random when it starts and hands to every worker (``--workers N``), so each of
them accepts it. At every request the name is looked up in the catalog again: a revoked token's session
ends at once. The cookie is HttpOnly and SameSite=Strict, Secure when the request came over https (as
uvicorn reads it, from ``X-Forwarded-Proto`` of a proxy on 127.0.0.1), and it authenticates reads only:
GET and HEAD, and a read's POST ("try it") sent from this server's own pages (`cross_origin`); writes
still need the bearer token. A restarted server (or another one on the same
catalog) has another key: its visitors sign in again.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

from zoo.context import current

COOKIE = "zoo_session"
SESSION_SECONDS = 12 * 3600
_DEFAULT_PORTS = {"http": "80", "https": "443"}
#: Whether the request being answered was authenticated by a session cookie (the page header's "Sign out").
signed_in: ContextVar[bool] = ContextVar("zoo_signed_in", default=False)


@dataclass(frozen=True)
class Sessions:
    """One server's session cookies: made and verified with `key` (random unless given)."""

    key: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)

    def cookie(self, name: str, now: float | None = None) -> str:
        """The cookie value of a session of token `name`, valid for `SESSION_SECONDS` from `now`."""
        claim = f"{name}:{int(now if now is not None else time.time()) + SESSION_SECONDS}"
        return f"{claim}:{self._sign(claim)}"

    def token_name(self, value: str) -> str | None:
        """The token name of session cookie `value` if this server signed it and it has not expired; else None."""
        claim, _, signature = value.rpartition(":")
        name, _, expires = claim.partition(":")
        if not (name and expires.isascii() and expires.isdigit()
                and hmac.compare_digest(signature.encode(), self._sign(claim).encode())):
            return None
        return name if int(expires) > time.time() else None

    def scopes(self, cookies: Mapping[str, str]) -> frozenset[str] | None:
        """The scopes of the live token whose session `cookies` carry (a catalog query); None without one, for a
        forged or expired cookie, or a token revoked since."""
        name = self.token_name(cookies.get(COOKIE, ""))
        found = current().catalog.live_token(name=name) if name is not None else None
        return found[1] if found is not None else None

    def _sign(self, claim: str) -> str:
        digest = hmac.new(self.key, claim.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def cross_origin(request: Request) -> bool | None:
    """Whether `request` came from a page of another origin than this server's (its scheme and Host): by its
    Origin header, else its Referer's origin (``Origin: null`` is another's); None when it names neither."""
    said = request.headers.get("origin") or request.headers.get("referer")
    if said is None:
        return None
    theirs = urlsplit(said)
    return _origin(theirs.scheme, theirs.netloc) != _origin(request.url.scheme, request.headers.get("host", ""))


def _origin(scheme: str, host: str) -> str | None:
    """scheme://host[:port] in lowercase, without the scheme's default port; None without a host."""
    if not host:
        return None
    scheme = scheme.lower()
    return f"{scheme}://{host.lower().removesuffix(':' + _DEFAULT_PORTS.get(scheme, ''))}"


def set_cookie(response: Response, request: Request, value: str) -> None:
    """Set the session cookie `value` on `response` (cleared when empty): HttpOnly, SameSite=Strict, Path=/,
    Secure when `request` came over https."""
    response.set_cookie(COOKIE, value, max_age=SESSION_SECONDS if value else 0, path="/", httponly=True,
                        samesite="strict", secure=request.url.scheme == "https")

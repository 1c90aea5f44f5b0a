"""Signing in to a private registry (``zoo serve --require-read-token``) from a browser.

    GET  /login?next=PATH   the page: a token field and a button
    POST /login             token=SECRET&next=PATH (form-encoded): a session cookie and a 303 to PATH
    POST /logout            the cookie cleared, a 303 to /login

The token is checked as the API checks a bearer token (`zoo.catalog.tokens`); a wrong one gets the page
again, 401, with one line that does not say whether such a token exists. The cookie holds no token
(`zoo.service.sessions`). Both posts must come from a page of this server: a request whose Origin (or,
without one, Referer) is another origin is refused, 403. `next` is followed only when it is a path of
this server (one leading ``/``, no scheme, no host); else the catalog. Without ``--require-read-token``
the page says the registry is public.
"""

from __future__ import annotations

from functools import partial
from urllib.parse import parse_qs, urlsplit

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from zoo.catalog.tokens import READ_SCOPES
from zoo.context import current
from zoo.service.common import ApiError, declared_length
from zoo.service.sessions import cross_origin, set_cookie
from zoo.service.web import pages
from zoo.service.web.pages import e
from zoo.service.web.site import HEADERS, Web

#: Bytes of a sign-in form: a token and a page's path, with room to spare.
MAX_FORM_BYTES = 16 << 10
_NO_STORE = {**HEADERS, "Cache-Control": "no-store"}


def router(site: Web) -> APIRouter:
    """``/login`` and ``/logout``."""
    web = APIRouter(include_in_schema=False)
    settings = site.settings

    @web.get("/login", response_class=HTMLResponse)
    def login_page(next: str = "/") -> HTMLResponse:
        return HTMLResponse(_page(settings.read_token_required, local_path(next)), headers=_NO_STORE)

    @web.post("/login", response_class=HTMLResponse)
    async def login(request: Request) -> Response:
        _same_origin(request)
        form = await _form(request, settings.bodies.limits.timeout)
        target = local_path(form.get("next", "/"))
        if not settings.read_token_required:
            return HTMLResponse(_page(False, target), headers=_NO_STORE)
        secret = form.get("token", "").strip()
        found = await settings.answers.run(partial(current().catalog.live_token, secret=secret))
        if found is None or not found[1] & READ_SCOPES:
            return HTMLResponse(_page(True, target, "That token is not accepted: check it, or ask for a new one."),
                                status_code=401, headers=_NO_STORE)
        answer = RedirectResponse(target, status_code=303, headers={"Cache-Control": "no-store"})
        set_cookie(answer, request, settings.sessions.cookie(found[0]))
        return answer

    @web.post("/logout")
    def logout(request: Request) -> Response:
        _same_origin(request)
        answer = RedirectResponse("/login" if settings.read_token_required else "/", status_code=303)
        set_cookie(answer, request, "")
        return answer

    return web


def local_path(value: str) -> str:
    """`value` if it is a path of this server (a single leading "/", no scheme, host or backslash), else "/"."""
    parts = urlsplit(value)
    if (not value.startswith("/") or value.startswith("//") or "\\" in value or parts.scheme or parts.netloc
            or any(ord(c) < 0x20 or c == "\x7f" for c in value)):
        return "/"
    return value


def _same_origin(request: Request) -> None:
    """403 for a post from a page of another origin (`zoo.service.sessions.cross_origin`); one that names no
    origin (not from a browser's page) passes."""
    if cross_origin(request):
        raise ApiError(403, "a sign-in or sign-out must come from this server's own pages")


async def _form(request: Request, timeout: float) -> dict[str, str]:
    """The posted form's fields (the first value of each): at most `MAX_FORM_BYTES` (411, 413), read within
    `timeout` seconds (the service's --body-timeout; 408), form-encoded UTF-8 (400)."""
    declared_length(request, MAX_FORM_BYTES)
    with anyio.move_on_after(timeout):
        body = await request.body()
        try:
            return {name: values[0] for name, values in parse_qs(body.decode(), max_num_fields=8).items()}
        except ValueError:  # not UTF-8, or too many fields
            raise ApiError(400, "the form is not form-encoded UTF-8 (token=...&next=...)") from None
    raise ApiError(408, f"the form did not come within {timeout:g} s (zoo serve --body-timeout)",
                   {"Connection": "close"})


def _page(private: bool, target: str, error: str = "") -> str:
    """The sign-in page (a private registry) or the note that there is nothing to sign in to."""
    if not private:
        return pages.layout("Sign in", '<h1>Sign in</h1><p>This registry is public: reading needs no token.</p>'
                                       f'<p><a href="{e(target)}">Continue</a></p>')
    message = f'<p class="error" id="error" role="alert">{e(error)}</p>' if error else ""
    return pages.layout("Sign in", (
        '<h1>Sign in</h1><p>This registry is private. Sign in with a token (scope read or publish, from '
        '<code>zoo token create NAME --scope read</code>); it is checked and not kept in the browser.</p>'
        f'{message}<form id="login" method="post" action="/login">'
        f'<input type="hidden" name="next" value="{e(target)}">'
        '<label for="token">Token <input type="password" id="token" name="token" autocomplete="current-password" '
        'required size="50"></label><button type="submit">Sign in</button></form>'))


"""What every request to ``zoo serve`` gets before (and besides) its route: refusals of request shapes
no route needs, HEAD wherever GET, and the API's docs page from local files under a Content-Security-Policy.

- a URL (path and query) longer than `MAX_TARGET` bytes: 414;
- more than `MAX_PARAMETERS` query parameters, or one name given more than `MAX_REPEATS` times: 400;
- a request with both Content-Length and Transfer-Encoding, HTTP/1.0 with Transfer-Encoding, or a
  Transfer-Encoding other than chunked alone (request smuggling shapes): 400 and the connection closed.
  uvicorn's parser refuses one of these itself (httptools the first, h11 the last) and the other shapes:
  several Content-Lengths, a list in one, several Transfer-Encodings (with httptools, answered in the
  API's JSON too: `zoo.service.protocol`);
- HEAD on a path only GET routes answer: answered as GET is, with its status and headers and no body
  (`HeadAsGet`); routes that declare HEAD (the blobs, netron's files) answer it themselves;
- ``/api/v1/docs``: Swagger UI from the ``swagger-ui-bundle-v2`` package (its files under
  ``/api/v1/docs/``), nothing from a CDN; its one inline script is allowed by its hash.

Every refusal is the API's one line of JSON, ``{"error": "..."}``.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from urllib.parse import unquote_plus

from fastapi import FastAPI, HTTPException
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from starlette.routing import Match, Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from swagger_ui_bundle import swagger_ui_path

from zoo.errors import excerpt
from zoo.service.web.site import csp_hash, security_headers

__all__ = ["MAX_PARAMETERS", "MAX_REPEATS", "MAX_TARGET", "install", "refusal"]

MAX_TARGET = 8 << 10  # bytes of path and query: far more than any page or API URL needs
MAX_PARAMETERS = 100  # query parameters in all
MAX_REPEATS = 32  # values of one query parameter (pattern, exclude, min_metric, metric...)
#: The Swagger UI files the docs page loads, by the name it loads them under, and their types.
_DOCS_FILES = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css",
               "favicon-32x32.png": "image/png"}
_DOCS_CACHE = "public, max-age=3600"
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def install(app: FastAPI) -> None:
    """Add the request guards, HEAD wherever GET and the docs page to `app` (made with ``docs_url=None``).

    Call it after the app's other middleware: the guards then see each request first.
    """
    _add_docs(app)
    app.add_middleware(HeadAsGet, router=app.router)
    app.add_middleware(RequestShape)


def refusal(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The API's one-line JSON answer for a refused request."""
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class RequestShape:
    """ASGI middleware: refuse (before any route runs) a request whose framing could be read two ways,
    whose URL is too long, or whose query has too many parameters."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            refused = _framing_refusal(scope) or _target_refusal(scope) or _query_refusal(scope)
            if refused is not None:
                await refused(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _framing_refusal(scope: Scope) -> JSONResponse | None:
    """400 (closing the connection: its body cannot be told from the next request) for a request whose
    length a proxy in front may read otherwise than we do: with both Content-Length and Transfer-Encoding,
    an HTTP/1.0 one with Transfer-Encoding (RFC 9112, 6.1: its framing is faulty), or one whose
    Transfer-Encoding is other than chunked alone (llhttp reads ``gzip, chunked`` as chunked)."""
    encodings = [value for name, value in scope["headers"] if name == b"transfer-encoding"]
    if not encodings:
        return None
    if any(name == b"content-length" for name, _ in scope["headers"]):
        problem = "has both Content-Length and Transfer-Encoding; send one of them"
    elif scope["http_version"] == "1.0":
        problem = "is HTTP/1.0 with Transfer-Encoding, which HTTP/1.0 lacks; send Content-Length"
    elif [value.strip().lower() for value in encodings] != [b"chunked"]:
        said = ", ".join(value.decode("latin-1") for value in encodings)
        problem = f"has Transfer-Encoding {excerpt(said)}; this server takes chunked alone"
    else:
        return None
    return refusal(400, f"the request {problem}", {"Connection": "close"})


def _target_refusal(scope: Scope) -> JSONResponse | None:
    """414 for a URL whose path and query are longer than `MAX_TARGET` bytes (as sent, percent-encoded)."""
    path = scope.get("raw_path") or scope["path"].encode()
    length = len(path) + (len(scope["query_string"]) + 1 if scope["query_string"] else 0)
    if length > MAX_TARGET:
        return refusal(414, f"the URL is {length} bytes long; this server accepts at most {MAX_TARGET} "
                            "(path and query)")
    return None


def _query_refusal(scope: Scope) -> JSONResponse | None:
    """400 for a query of more than `MAX_PARAMETERS` parameters, or naming one more than `MAX_REPEATS` times."""
    parts = [part for part in scope["query_string"].split(b"&") if part]
    if len(parts) > MAX_PARAMETERS:
        return refusal(400, f"the query has {len(parts)} parameters; this server accepts at most {MAX_PARAMETERS}")
    names = Counter(unquote_plus(part.partition(b"=")[0].decode("latin-1")) for part in parts)
    name, count = max(names.items(), key=lambda item: item[1], default=("", 0))
    if count > MAX_REPEATS:
        return refusal(400, f"query parameter {excerpt(name)} is given {count} times; this server accepts "
                            f"at most {MAX_REPEATS} values of one parameter")
    return None


class HeadAsGet:
    """ASGI middleware: HEAD on a path that a GET route answers and no route declares HEAD for is answered
    by that GET route, once, with its status and headers (Content-Length too) and the body dropped as it
    is made. Everything else passes through as it is (a route that declares HEAD answers it itself;
    one that answers neither gives its 404 or 405)."""

    def __init__(self, app: ASGIApp, router: Router) -> None:
        self.app, self.router = app, router

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD" or not self._answered_by_get(scope):
            await self.app(scope, receive, send)
            return

        async def headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return
                message = {**message, "body": b""}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, headers_only)

    def _answered_by_get(self, scope: Scope) -> bool:
        """Whether the first route that takes the path of `scope` in full takes it for GET, not for HEAD
        (asked with copies of `scope`: FastAPI's routes note things in the scope they match)."""
        for route in self.router.routes:
            if route.matches({**scope})[0] is Match.FULL:
                return False
            if route.matches({**scope, "method": "GET"})[0] is Match.FULL:
                return True
        return False


def _add_docs(app: FastAPI) -> None:
    """The docs page beside the app's OpenAPI schema (``/api/v1/docs``): Swagger UI on the schema, from the
    package's files (under the page's path), with a CSP that allows this server's files and the page's
    one inline script (by its SHA-256)."""
    assert app.openapi_url is not None
    docs = f"{app.openapi_url.rsplit('/', 1)[0]}/docs"
    folder = Path(str(swagger_ui_path))
    page = get_swagger_ui_html(
        openapi_url=app.openapi_url, title=f"{app.title} API", swagger_js_url=f"{docs}/swagger-ui-bundle.js",
        swagger_css_url=f"{docs}/swagger-ui.css", swagger_favicon_url=f"{docs}/favicon-32x32.png",
        swagger_ui_parameters={"validatorUrl": None})  # no badge from swagger.io's validator
    # the page's language, and Swagger UI's element as its main landmark (what screen readers jump to)
    body = bytes(page.body).replace(b"<html>", b'<html lang="en">', 1)
    body = re.sub(rb'<div id="swagger-ui">\s*</div>', b'<main id="swagger-ui"></main>', body, count=1)
    scripts = " ".join(csp_hash(text) for text in _INLINE_SCRIPT.findall(body.decode()))
    headers = security_headers(f"default-src 'self'; script-src 'self' {scripts}; img-src 'self' data:; "
                               "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")

    @app.get(docs, include_in_schema=False)
    def docs_page() -> HTMLResponse:
        return HTMLResponse(body, headers=headers)

    @app.api_route(f"{docs}/{{name}}", methods=["GET", "HEAD"], include_in_schema=False)
    def docs_file(name: str) -> FileResponse:
        kind = _DOCS_FILES.get(name)
        if kind is None:
            raise HTTPException(404)
        return FileResponse(folder / name, media_type=kind,
                            headers={"Cache-Control": _DOCS_CACHE, "X-Content-Type-Options": "nosniff"})

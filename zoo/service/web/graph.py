"""netron on one published export, under the service's own origin: ``/graph/SHA256/``.

netron's web app (the ``netron`` package's static files) is served from the folder of the page,
as netron's own server does, so that its scripts load each other by relative URL; its index page
gets the meta tags that make it open ``model.onnx`` next to it, which is the export's file from the
artifact store and nothing else. The page says version 0.0.0, which netron reads as "not a
packaged release": no usage reporting and no "please update" notice once the release is old; and
the ``consent`` cookie netron asks about is set with the page, so it never waits behind its notice
(which it shows after trying to reach ipinfo.io, unreachable here by design).
"""

from __future__ import annotations

import re
import time
from html import escape, unescape
from pathlib import Path
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException

from zoo.context import current
from zoo.service.blobs import blob_response
from zoo.service.common import ArtifactServing
from zoo.service.common import Sha256
from zoo.service.web.site import Web, csp_hash, security_headers

_NETRON_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".png": "image/png",
                 ".ico": "image/x-icon", ".json": "application/json", ".svg": "image/svg+xml",
                 ".ttf": "font/ttf", ".woff": "font/woff", ".woff2": "font/woff2"}
_ASSET = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,99}")
_MODEL_FILE = "model.onnx"
_CONSENT_DAYS = 30
_STYLE_BLOCK, _STYLE_ATTRIBUTE = re.compile(r"<style>(.*?)</style>", re.DOTALL), re.compile(r'\sstyle="([^"]*)"')


def netron_folder() -> Path:
    """Where the installed netron package keeps its web app."""
    import netron

    return Path(netron.__file__).resolve().parent


def index_page(sha256: str, model: str) -> str:
    """netron's index page, set to open the export next to it, named after its `model`, with the web catalog's
    bar (``/static/graph.css``) above it: the way back to the model's card and the catalog."""
    page = (netron_folder() / "index.html").read_text(encoding="utf-8")
    meta = "\n".join(f'<meta name="{k}" content="{escape(v)}">' for k, v in (
        ("type", "Python"), ("version", "0.0.0"), ("file", _MODEL_FILE), ("identifier", _MODEL_FILE),
        ("name", f"{model} {sha256[:12]}.onnx")))
    meta += '\n<link rel="stylesheet" href="/static/graph.css">'
    bar = (f'<header class="zoo-bar"><a href="/">zoo</a><a href="/models/{quote(model)}" rel="up">'
           f'\u2190 {escape(model)}</a></header>')
    page = re.sub(r'<meta name="version" content=".*">', lambda _: meta, page, count=1)
    return re.sub(r"<body[^>]*>", lambda found: found[0] + bar, page, count=1)


def policy(page: str) -> str:
    """The Content-Security-Policy of netron's index `page`: this server's files only, and of inline code only
    the page's own styles, by their hashes (its style element, and its style attributes by 'unsafe-hashes')."""
    blocks = {csp_hash(text) for text in _STYLE_BLOCK.findall(page)}
    attributes = {csp_hash(unescape(text)) for text in _STYLE_ATTRIBUTE.findall(page)}
    styles = " ".join(sorted(blocks) + (["'unsafe-hashes'", *sorted(attributes)] if attributes else []))
    return (f"default-src 'self'; script-src 'self'; style-src 'self' {styles}; img-src 'self' data: blob:; "
            "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'")


def router(site: Web) -> APIRouter:
    """``/graph/SHA256/``: netron's page, its static files and the export's file, for published exports only."""
    graph = APIRouter(prefix="/graph/{sha256}", dependencies=[Depends(site.reader())], include_in_schema=False)

    @graph.get("")
    def to_folder(sha256: Sha256) -> RedirectResponse:
        return RedirectResponse(f"/graph/{sha256}/", status_code=308)

    @graph.get("/", response_class=HTMLResponse)
    def page(sha256: Sha256) -> HTMLResponse:
        found = current().catalog.exports(sha256=sha256)
        if not found:
            raise HTTPException(404)
        text = index_page(sha256, found[0].model)
        response = HTMLResponse(text, headers=security_headers(policy(text)))
        response.set_cookie("consent", str(int(time.time() * 1000)), max_age=_CONSENT_DAYS * 86400,
                            path="/graph/", samesite="strict")
        return response

    @graph.api_route(f"/{_MODEL_FILE}", methods=["GET", "HEAD"])
    async def model_file(sha256: Sha256, request: Request) -> Response:
        """The export's file as the API answers it (if it is published), under the name netron opens: sent
        by this server with ``--artifacts redirect`` too, since the page may fetch from its own origin only."""
        return await blob_response(site.settings, request, sha256, "export", "published export",
                                   serving=ArtifactServing())

    @graph.api_route("/{asset}", methods=["GET", "HEAD"])  # HEAD: the file's headers, not read
    def asset(sha256: Sha256, asset: str) -> Response:
        folder = netron_folder()
        path = folder / asset
        kind = _NETRON_TYPES.get(path.suffix)
        if not _ASSET.fullmatch(asset) or kind is None or asset == "index.html" or not path.is_file():
            raise HTTPException(404)
        return FileResponse(path, media_type=kind, headers={"Cache-Control": "public, max-age=3600",
                                                            "X-Content-Type-Options": "nosniff"})

    return graph

"""The web catalog of ``zoo serve``: HTML pages over the same catalog and artifact store as the API.

    /                    the catalog table: filters, sort and page in the URL (bookmarkable)
    /compare             a metric against parameters or GFLOPS, Pareto front marked (inline SVG)
    /models/NAME         a model's card: weights, hashes, metrics, published versions, exports
    /layers/NAME         its per-layer summary (needs torch and the plugin on the server)
    /categories/NAME     the categories of one of its weights (?weights=), loaded into the card when opened
    /graph/SHA256/       netron on one published export (zoo.service.web.graph)
    /try                 run a published export on an image (zoo.service.web.predict)
    /static/...          the pages' own CSS, scripts and sample photographs
    /login, /logout      signing in to a private registry (zoo.service.web.login)

Pages are rendered on the server (`zoo.service.web.pages`) and work without JavaScript
except "try it" and the lazily loaded layer summary; nothing is fetched from elsewhere
(a Content-Security-Policy says so to the browser). Reading follows the API's rule (a token
only with ``--require-read-token``); the pages write nothing.
"""

from __future__ import annotations

import pathlib

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from zoo.service.web import catalog, graph, login, predict
from zoo.service.common import Settings
from zoo.service.web.site import Web

__all__ = ["install"]
STATIC = pathlib.Path(__file__).with_name("static")


def install(app: FastAPI, settings: Settings) -> None:
    """Add the web catalog's pages and its static files to `app`."""
    web = Web(settings)
    app.include_router(login.router(web))
    app.include_router(catalog.router(web))
    app.include_router(graph.router(web))
    app.include_router(predict.router(web))
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

"""The service tier: ``zoo serve``, the registry as an HTTP service (an ASGI app on uvicorn), and its client.

A versioned JSON API under ``/api/v1`` (OpenAPI schema at ``/api/v1/openapi.json``)
over the catalog and the artifact store: models (the filters of `zoo.list_models`),
a model's record, published weights and exports (records and files, with
Content-Length, ETag = SHA-256, HEAD and Range), publishing (streaming uploads,
verified against the declared SHA-256 and a size limit), health.

The service keeps no state of its own: every request reads the catalog and the
store, so several processes (``--workers N``, or servers on other ports and
machines) on one PostgreSQL catalog and one store folder give the same answers.
Writes need a token (`zoo.catalog.tokens`); reads too with ``--require-read-token``.
Only requests addressed to this server by a loopback name (or an ``--allow-host``
name) are answered, so that a web page cannot reach it through DNS rebinding.

`serve` binds the socket itself and gives each worker process its configuration
explicitly (`zoo.service.app.ServeConfig`: the settings and the service's options;
nothing goes through the environment). Once the server answers it prints one JSON
line, ``{"zoo_serve": "ready", "url": ..., "pid": ..., "workers": N}``, and writes it
to the ``ready_file`` (``--ready-file``) if one is given; `zoo.testing.serving` waits
for that in tests.

    app = create_app("sqlite:///registry.db")     # an ASGI app, for any ASGI server
    serve(host="127.0.0.1", port=8765, workers=2)  # what `zoo serve` runs; blocks


The client of such a service, `zoo.service.client.HttpCatalog`, needs neither FastAPI
nor SQLAlchemy: this package's `create_app` and `serve` are imported on first use.
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app", "serve"]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'zoo.service' has no attribute {name!r}")
    from zoo.service import app

    return getattr(app, name)

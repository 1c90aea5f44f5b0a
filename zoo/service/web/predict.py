""""Try it": run a published export on one image with the torch-free runtime and draw the result.

``GET /try`` is the page (`zoo.service.web.pages.try_page`); its script posts the image's bytes to
``POST /try/SHA256`` and shows the answer: the drawing (`zoo.runtime.draw`) as a PNG data URL, the
decoded result in words (as ``zoo predict`` prints it) and as data, and the latency of the prediction
alone. A prediction reads: it needs a token only where reading does. Only published exports run
(verified against PyTorch by the registry when they were published, or marked as only claimed, which
the page says; an unknown one is 404 before the body is read); each export's session is kept for the
next image. The body is bounded by the server's upload limit (``--max-upload``) before it is read,
passes the app's gate for request bodies (`zoo.service.common.Bodies`: a bounded number at once,
each in time) and streams to a file, never into memory; the image is bounded by the runtime's own
pixel limit.
"""

from __future__ import annotations

import base64
import io
import time
from functools import lru_cache, partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from zoo.context import current
from zoo.errors import UnknownArtifactError, UsageError
from zoo.service.web import pages
from zoo.service.common import Sha256, declared_length
from zoo.service.web.site import Web

if TYPE_CHECKING:
    from zoo.catalog.api import Catalog
    from zoo.records import PublishedExport

SAMPLES = Path(__file__).with_name("static") / "samples"
#: The largest image "try it" reads (decoded in memory): far above any photograph, far below --max-upload's default.
MAX_IMAGE_BYTES = 64 << 20
#: The largest image "try it" runs on: its drawing (with a panel beside it) stays within the runtime's pixel limit and
#: a size a browser shows; larger images are refused before they are decoded, not after the prediction.
MAX_TRY_PIXELS = 4096 * 4096
_KEPT_SESSIONS = 4


def router(site: Web) -> APIRouter:
    """The "try it" page and the prediction it posts to."""
    settings = site.settings
    limit = min(settings.max_upload_bytes, MAX_IMAGE_BYTES)
    tried = APIRouter(prefix="/try", dependencies=[Depends(site.reader())], include_in_schema=False)

    @tried.get("", response_class=HTMLResponse)
    def page(request: Request) -> HTMLResponse:
        def render() -> str:
            exports = [x.to_json() for x in current().catalog.exports()]
            samples = sorted(p.name for p in SAMPLES.glob("*.jpg"))
            return pages.try_page(exports, samples, request.query_params.get("export"), limit)

        return site.html(render)

    @tried.post("/{sha256}")
    async def run(sha256: Sha256, request: Request) -> dict[str, Any]:
        length = declared_length(request, limit)
        await anyio.to_thread.run_sync(_published_export, current().catalog, sha256)
        with settings.bodies.accepting(settings.store) as folder:
            image = await settings.bodies.receive(request, folder / "image", length)
            return await settings.bodies.run(partial(prediction, sha256, image))

    return tried


def prediction(sha256: str, image: Path) -> dict[str, Any]:
    """Run the published export `sha256` on the uploaded image file at `image`: drawing, result and latency."""
    from zoo.runtime import draw, open_image

    _check_drawable(image)
    try:
        picture = open_image(image)
    except UsageError as exc:  # it names the temporary path: name the upload instead
        raise UsageError(str(exc).replace(str(image), "the uploaded file")) from None
    predictor = _predictor(current().catalog, sha256)
    started = time.perf_counter()
    result = predictor.predict(picture)[0]
    latency = time.perf_counter() - started
    drawn = io.BytesIO()
    draw(result, picture).save(drawn, format="PNG")
    return {"png": "data:image/png;base64," + base64.b64encode(drawn.getvalue()).decode("ascii"),
            "latency_ms": round(latency * 1000, 2), "task": predictor.task, "providers": predictor.providers,
            "size": list(picture.size), "summary": str(result), "result": result.to_json()}


def _check_drawable(image: Path) -> None:
    """Refuse (one line) an uploaded image larger than `MAX_TRY_PIXELS`, from its header alone; a file that is no
    image is left to the runtime's `open_image`, which says what it accepts."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(image) as header:  # reads the header only
            width, height = header.size
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError, ValueError):
        return
    if width * height > MAX_TRY_PIXELS:
        raise UsageError(f"the uploaded file is a {width} x {height} image; try it runs on images of at most "
                         f"{MAX_TRY_PIXELS:,} pixels (4096 x 4096): scale it down, or run zoo predict on it")


@lru_cache(maxsize=_KEPT_SESSIONS)
def _predictor(catalog: Catalog, sha256: str) -> Any:
    """The runtime's predictor of the published export `sha256` (a blob's content never changes), its session
    made from the catalog's verified local copy (`Catalog.export_file`)."""
    from zoo.runtime import Predictor

    return Predictor(catalog.export_file(_published_export(catalog, sha256)).path)


def _published_export(catalog: Catalog, sha256: str) -> PublishedExport:
    """The record of the published export `sha256` (404 without one)."""
    found = catalog.exports(sha256=sha256)
    if not found:
        raise UnknownArtifactError(f"no published export has SHA-256 {sha256}")
    return found[0]

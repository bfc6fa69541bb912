"""The API documentation: ``/docs`` (Swagger UI) and ``/redoc`` served from local files, so that they work offline,
and the pieces of the OpenAPI schema that describe what the routes really send (the error body, the wav, the zip,
the chunked stream).

The Swagger UI and ReDoc files come from the ``fastapi-offline`` package (MIT; Swagger UI 5 is Apache-2.0, ReDoc MIT),
which ships Swagger UI 5.x: FastAPI writes OpenAPI 3.1, which the Swagger UI 4.15 of the ``swagger-ui-bundle``
package cannot show. Only its static files are used.
"""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

log = logging.getLogger(__name__)

__all__ = ["ERROR_RESPONSES", "ErrorBody", "STATIC_URL", "add_docs", "binary", "docs_assets", "errors"]

STATIC_URL = "/docs-static"
_ASSETS = ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png")
ASSETS_MISSING = ("The API docs need the package fastapi-offline (Swagger UI and ReDoc files for offline use): "
                  "pip install fastapi-offline. The schema itself is at /openapi.json.")


class ErrorBody(BaseModel):
    """Every error of every route: 400, 401, 403, 404, 413, 422, 500, 503; and of the WebSockets (not in this schema),
    there with ``"type": "error"`` and also 408 (nothing received for ``--ws-idle-timeout`` seconds)."""

    status: int = Field(description="the HTTP status code (also the response's status)", examples=[400])
    detail: str = Field(description="what went wrong and what to do, in one line",
                        examples=["sdp_ratio=5 is out of range [0, 1]"])


_ERRORS = {
    400: "a bad parameter (named in detail)",
    401: "missing or wrong API token (the server was started with --token)",
    403: "a path outside the server's folder and model roots",
    404: "no such model, speaker or file",
    413: "the text or the speech is longer than this server's limits",
    422: "a parameter of the wrong type, or a required one missing",
    500: "an internal error (its type is named; the server log has the details)",
    503: "the server is busy (retry later), or a BERT folder the request needs is missing (detail names it and the "
         "download command)",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The error responses of a route for ``responses=`` (each with :class:`ErrorBody`)."""
    return {code: {"model": ErrorBody, "description": _ERRORS[code]} for code in codes}


#: what every HTTP route can answer; routes with parameters add 422 (FastAPI's own 422 schema is replaced: the server
#: sends ErrorBody there too)
ERROR_RESPONSES = errors(401, 500)


def binary(*media_types: str, description: str, headers: dict[str, str] | None = None) -> dict[int | str, Any]:
    """A 200 response of raw bytes in ``media_types`` (and the headers it carries) for ``responses=``."""
    out: dict[str, Any] = {"description": description,
                           "content": {t: {"schema": {"type": "string", "format": "binary"}} for t in media_types}}
    if headers:
        out["headers"] = {k: {"description": v, "schema": {"type": "string"}} for k, v in headers.items()}
    return {200: out}


def docs_assets() -> Path | None:
    """The folder with Swagger UI's and ReDoc's files, or None when ``fastapi-offline`` is not installed."""
    try:
        folder = Path(str(resources.files("fastapi_offline") / "static"))
    except ModuleNotFoundError:
        return None
    return folder if all((folder / name).is_file() for name in _ASSETS) else None


def add_docs(app: FastAPI) -> None:
    """``/docs``, ``/docs/oauth2-redirect`` and ``/redoc`` from local files (``app`` is created with
    ``docs_url=None, redoc_url=None``). Without the files they answer 503 with the install command."""
    folder = docs_assets()
    if folder is None:
        log.warning("%s", ASSETS_MISSING)
    else:
        app.mount(STATIC_URL, StaticFiles(directory=str(folder)), name="docs-static")
    router = APIRouter(include_in_schema=False)
    title = app.title

    def page(html: HTMLResponse) -> HTMLResponse:
        return html if folder is not None else HTMLResponse(f"<p>{ASSETS_MISSING}</p>", status_code=503)

    @router.get("/docs")
    def swagger() -> HTMLResponse:
        return page(get_swagger_ui_html(
            openapi_url="/openapi.json", title=f"{title} - API docs", oauth2_redirect_url="/docs/oauth2-redirect",
            swagger_js_url=f"{STATIC_URL}/swagger-ui-bundle.js", swagger_css_url=f"{STATIC_URL}/swagger-ui.css",
            swagger_favicon_url=f"{STATIC_URL}/favicon.png", swagger_ui_parameters={"validatorUrl": None}))

    @router.get("/docs/oauth2-redirect")
    def oauth2_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @router.get("/redoc")
    def redoc() -> HTMLResponse:
        return page(get_redoc_html(openapi_url="/openapi.json", title=f"{title} - ReDoc",
                                   redoc_js_url=f"{STATIC_URL}/redoc.standalone.js",
                                   redoc_favicon_url=f"{STATIC_URL}/favicon.png", with_google_fonts=False))

    app.include_router(router)

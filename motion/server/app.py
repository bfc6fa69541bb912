"""The FastAPI app: :func:`create_app` builds it from a :class:`ServerConfig` (this module imports FastAPI;
``motion.server`` imports it only when an app is created).

The pieces: :mod:`~motion.server.params` (the synthesis parameters, read once), :mod:`~motion.server.jobs` (admission,
the job pool, cancellation: the one concurrency model), :mod:`~motion.server.routes` (HTTP),
:mod:`~motion.server.ws` (WebSockets), :mod:`~motion.server.encode` (payloads). Errors are JSON
``{"status": <code>, "detail": "<what went wrong and what to do>"}`` with a matching HTTP status.
"""

from __future__ import annotations

import hmac
import logging
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

import uvicorn
from fastapi import FastAPI, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from bert_vits2.checkpoint import CheckpointError
from bert_vits2.threads import run_in_own_thread
from motion.server.config import ServerConfig
from motion.server.docs import add_docs
from motion.server.errors import ApiError, as_api_error, error_body
from motion.server.registry import NotFound, PathRefused
from motion.server.routes import http_router, live_router, rss_mb
from motion.server.state import ServerState
from motion.server.ws import FaceSession, VoiceSession

log = logging.getLogger(__name__)

__all__ = ["ApiError", "ServerState", "create_app", "rss_mb", "serve"]

DESCRIPTION = ("Bert-VITS2 v2.3 speech (upstream-compatible `/voice` and `/models/*`), speech with a face (61 Live Link "
               "curves at 60 fps), streaming over HTTP and WebSocket. Errors are JSON "
               '`{"status": code, "detail": "..."}`. With a token configured every route needs '
               "`Authorization: Bearer <token>`.")


def check_token(config: ServerConfig, headers: Any, query: Any) -> None:
    """401 unless the request carries the configured token (header, bearer, or ``?token=`` for WebSockets)."""
    if not config.token:
        return
    got = headers.get("x-api-token") or query.get("token") or ""
    auth = headers.get("authorization") or ""
    if auth.lower().startswith("bearer "):
        got = auth[7:].strip()
    if not hmac.compare_digest(str(got).encode(), str(config.token).encode()):
        raise ApiError(401, "missing or wrong API token: send 'Authorization: Bearer <token>' (or X-API-Token, or "
                            "?token= for WebSockets)")


def _json_error(err: ApiError) -> JSONResponse:
    return JSONResponse(error_body(err), status_code=err.http_status)


def _add_error_handlers(app: FastAPI) -> None:
    async def api_error(_request: Request, err: Exception) -> JSONResponse:
        return _json_error(as_api_error(err))

    for exc_type in (ApiError, NotFound, PathRefused, ValueError, CheckpointError, Exception):
        app.add_exception_handler(exc_type, api_error)  # Exception: a JSON 500 that names the error, no traceback

    async def http_error(_request: Request, err: StarletteHTTPException) -> JSONResponse:
        return _json_error(ApiError(err.status_code, str(err.detail)))

    async def validation_error(_request: Request, err: RequestValidationError) -> JSONResponse:
        parts = [".".join(str(x) for x in e.get("loc", ()) if x not in ("query", "body")) + f": {e.get('msg')}"
                 for e in err.errors()]
        return _json_error(ApiError(422, "; ".join(parts) or "invalid request"))

    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)


def create_app(config: ServerConfig, *, load: bool = True) -> FastAPI:
    """The FastAPI app for ``config`` (loads the configured voices unless ``load=False``)."""
    config.check()
    state = run_in_own_thread(ServerState, config)  # torch work never in this thread (motion.server.jobs)
    if load:
        run_in_own_thread(state.load_initial)
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        state.pool.shutdown()

    app = FastAPI(title="Bert-VITS2 Face server", version="0.2.0", description=DESCRIPTION, lifespan=lifespan,
                  docs_url=None, redoc_url=None)  # served from local files by add_docs (offline)
    app.state.bv2 = state
    _add_error_handlers(app)
    add_docs(app)

    def authorise(headers: Any, query: Any) -> None:
        check_token(config, headers, query)

    async def auth(request: Request) -> None:
        authorise(request.headers, request.query_params)

    app.include_router(http_router(state, auth))
    app.include_router(live_router())

    @app.websocket("/ws/voice")
    async def ws_voice(ws: WebSocket):
        """See README "Server": one request message, then start / audio (+binary) / face / end messages."""
        await VoiceSession(ws, state).run(authorise)

    @app.websocket("/ws/face")
    async def ws_face(ws: WebSocket):
        """Audio in, face out: a JSON header, binary PCM chunks, ``{"type": "end"}``."""
        await FaceSession(ws, state).run(authorise)

    return app


def serve(config: ServerConfig) -> None:
    """Run the app with uvicorn until interrupted."""
    app = create_app(config)
    log.info("serving on http://%s:%d (docs at /docs)%s", config.host, config.port,
             "; token required" if config.token else "")
    uvicorn.run(app, host=config.host, port=int(config.port), log_level=config.log_level, ws="websockets-sansio")

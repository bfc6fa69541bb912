"""The server's errors: one JSON shape, ``{"status": <HTTP code>, "detail": "<what went wrong and what to do>"}``,
for every route and every WebSocket error message (there with ``"type": "error"``)."""

from __future__ import annotations

import logging

from bert_vits2.checkpoint import CheckpointError
from bert_vits2.request import SynthesisError
from bert_vits2.text.bert import BertModelMissingError
from motion.server.registry import NotFound, PathRefused

log = logging.getLogger(__name__)

__all__ = ["ApiError", "Cancelled", "as_api_error", "error_body"]


class ApiError(Exception):
    """An error for the client: the HTTP status and a one-line detail that says what to do."""

    def __init__(self, http_status: int, detail: str) -> None:
        super().__init__(detail)
        self.http_status, self.detail = int(http_status), detail


class Cancelled(Exception):
    """The client went away (or asked to stop)."""


def as_api_error(err: BaseException) -> ApiError:
    """The client's view of ``err``: library errors map to 4xx with their own message; anything else is a 500 that
    names the error type (the traceback goes to the log, never to the client)."""
    if isinstance(err, ApiError):
        return err
    if isinstance(err, PathRefused):
        return ApiError(403, str(err))
    if isinstance(err, NotFound):
        return ApiError(404, str(err))
    if isinstance(err, ModuleNotFoundError) and "pip install" in str(err):  # an optional package the route needs
        return ApiError(503, str(err))
    if isinstance(err, BertModelMissingError):  # the voice works once the folder is there: not the client's fault
        return ApiError(503, " ".join(str(err).split()))
    if isinstance(err, CheckpointError):
        return ApiError(400, str(err).splitlines()[0] if str(err) else type(err).__name__)
    if isinstance(err, (SynthesisError, ValueError)):
        return ApiError(400, str(err))
    log.error("request failed", exc_info=err)
    return ApiError(500, f"internal error ({type(err).__name__}); the server log has the details")


def error_body(err: ApiError) -> dict[str, object]:
    return {"status": err.http_status, "detail": err.detail}

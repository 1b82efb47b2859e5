"""The API's refusals: one JSON shape, ``{"error": {"code", "message", "details"}}``, for every
error it answers, its own and the framework's (an unknown route, a method not allowed)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway.web.bodylimit import BodyTooLarge

# The codes of the framework's own refusals, by status.
STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
    422: "unprocessable",
    429: "too_many_requests",
    503: "unavailable",
}


class ApiError(Exception):
    """A refusal of the API: its HTTP status, a stable code, a sentence, and details (a list of
    objects, e.g. the errors of an invalid form)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        details: Sequence[Mapping[str, Any]] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = [dict(detail) for detail in details]
        self.headers = dict(headers or {})


def error_body(
    code: str, message: str, details: Sequence[Mapping[str, Any]] = ()
) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": [dict(d) for d in details]}}


def error_response(error: ApiError) -> JSONResponse:
    return JSONResponse(
        error_body(error.code, error.message, error.details),
        status_code=error.status,
        headers=error.headers,
    )


async def api_refusal(request: Request, exc: Exception) -> Response:
    """The exception handler of the API app: its own errors and the framework's, as JSON."""
    if isinstance(exc, ApiError):
        return error_response(exc)
    if isinstance(exc, BodyTooLarge):  # a body without Content-Length, found too long as read
        return error_response(ApiError(413, "body_too_large", "request body too large"))
    if isinstance(exc, HTTPException):
        code = STATUS_CODES.get(exc.status_code, "error")
        return error_response(ApiError(exc.status_code, code, str(exc.detail), headers=exc.headers))
    raise exc

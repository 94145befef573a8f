"""The one place where errors become HTTP responses.

Every error answer has the same JSON body::

    {"error": {"status": 404, "type": "document_not_found",
               "message": "document 'x' is not in the index", "request_id": "..."}}

plus ``"details"`` (a list of field problems) for request validation errors.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from semsearch import errors as domain

logger = logging.getLogger(__name__)


class ApiError(Exception):
    """An error raised by the HTTP layer itself (auth, limits, media types)."""

    status = 400

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.headers = headers


class Unauthorized(ApiError):
    status = 401


class Forbidden(ApiError):
    status = 403


class PayloadTooLarge(ApiError):
    status = 413


class UnsupportedMediaType(ApiError):
    status = 415


class LimitExceeded(ApiError):
    """A request asks for more than a server-side cap allows; the message names the setting."""

    status = 400


class TooManyRequests(ApiError):
    status = 429


class DeadlineExceeded(ApiError):
    """The request did not finish within ``api.request_timeout_s``."""

    status = 503


#: domain error -> HTTP status; the first matching class (most specific first) wins
STATUS: list[tuple[type[BaseException], int]] = [
    (domain.DocumentNotFound, 404),
    (domain.IndexNotFound, 503),
    (domain.IndexIncompatible, 503),
    (domain.MissingExtra, 501),
    (domain.BackendUnavailable, 503),  # includes ChannelFailed
    (domain.BadInput, 400),
    # a backend refused some documents of a write (e.g. a mapping conflict): the message
    # lists each id and reason; the others were written
    (domain.BulkIndexError, 422),
    (domain.SemsearchError, 500),
]


def status_of(exc: BaseException) -> int:
    if isinstance(exc, ApiError):
        return exc.status
    return next((code for cls, code in STATUS if isinstance(exc, cls)), 500)


def _type_name(exc: BaseException) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(exc).__name__).lower()


def error_response(
    request: Request, status: int, type_: str, message: str, *,
    details: list[Any] | None = None, headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"status": status, "type": type_, "message": message,
                            "request_id": getattr(request.state, "request_id", None)}
    if details is not None:
        body["details"] = details
    return JSONResponse({"error": body}, status_code=status, headers=headers)


async def _domain(request: Request, exc: Exception) -> JSONResponse:
    status = status_of(exc)
    if status >= 500:
        logger.warning("request %s failed: %s", getattr(request.state, "request_id", "-"), exc)
    return error_response(request, status, _type_name(exc), str(exc),
                          headers=getattr(exc, "headers", None))


async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
    details = [
        {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
        for e in exc.errors()
    ]
    first = details[0] if details else {"loc": [], "msg": "invalid request"}
    where = ".".join(str(p) for p in first["loc"]) or "request"
    return error_response(request, 422, "validation_error", f"{where}: {first['msg']}", details=details)


async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    return error_response(request, exc.status_code, "http_error", str(exc.detail),
                          headers=getattr(exc, "headers", None))


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unexpected error in request %s", getattr(request.state, "request_id", "-"))
    return error_response(request, 500, "internal_error",
                          "internal server error (see the server log for this request id)")


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http)  # type: ignore[arg-type]
    app.add_exception_handler(ApiError, _domain)
    app.add_exception_handler(domain.SemsearchError, _domain)
    app.add_exception_handler(Exception, _unexpected)

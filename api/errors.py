"""Our domain exceptions and their one mapping to error codes and HTTP statuses.

Routers and dependencies raise these (or let ``ReportParameterError`` / ``EntityNotFound`` from the
warehouse propagate); ``install_exception_handlers`` turns every one of them, FastAPI's request
validation errors and Starlette's 404/405 into the error envelope. Anything else becomes a 500
INTERNAL_ERROR in ``envelope.RequestContextMiddleware`` without leaking its message.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.envelope import error_response
from warehouse.entities import EntityNotFound
from warehouse.reports import ReportParameterError

log = logging.getLogger("coinfrs.api")

VALIDATION_ERROR = "VALIDATION_ERROR"
AUTHENTICATION_ERROR = "AUTHENTICATION_ERROR"
AUTHORIZATION_ERROR = "AUTHORIZATION_ERROR"
NOT_FOUND = "NOT_FOUND"
CONFLICT = "CONFLICT"
RATE_LIMIT_ERROR = "RATE_LIMIT_ERROR"
INTERNAL_ERROR = "INTERNAL_ERROR"

STATUS_CODES: dict[str, int] = {
    VALIDATION_ERROR: 400,
    AUTHENTICATION_ERROR: 401,
    AUTHORIZATION_ERROR: 403,
    NOT_FOUND: 404,
    CONFLICT: 409,
    RATE_LIMIT_ERROR: 429,
    INTERNAL_ERROR: 500,
}


class ApiError(Exception):
    """An error the client is told about: a code, a message, details and optional headers."""

    code = INTERNAL_ERROR
    status_code = 500

    def __init__(self, message: str, details: list[dict[str, Any]] | None = None,
                 headers: dict[str, str] | None = None, status_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []
        self.headers = headers or {}
        if status_code is not None:
            self.status_code = status_code


class ValidationFailed(ApiError):
    code, status_code = VALIDATION_ERROR, 400

    @classmethod
    def for_field(cls, field: str, message: str, location: str = "query") -> "ValidationFailed":
        return cls(message, [{"field": field, "location": location, "message": message}])


class Unprocessable(ValidationFailed):
    """422 VALIDATION_ERROR: every parameter matches its schema, but the request cannot be answered as given (a rule
    across parameters, e.g. ``from`` after ``to`` or a range over the limit; a cursor this API did not issue): the
    rules the OpenAPI schema cannot state, listed in each route's 422 description."""

    status_code = 422


class AuthenticationFailed(ApiError):
    code, status_code = AUTHENTICATION_ERROR, 401

    def __init__(self, message: str = "a valid API key is required in the X-API-Key header") -> None:
        super().__init__(message, headers={"WWW-Authenticate": 'ApiKey header="X-API-Key"'})


class AuthorizationFailed(ApiError):
    code, status_code = AUTHORIZATION_ERROR, 403


class NotFound(ApiError):
    code, status_code = NOT_FOUND, 404


class Conflict(ApiError):
    code, status_code = CONFLICT, 409


class RateLimited(ApiError):
    code, status_code = RATE_LIMIT_ERROR, 429

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many requests for this API key; retry after {retry_after} s",
                         [{"field": None, "location": None, "message": f"retry_after={retry_after}"}],
                         headers={"Retry-After": str(retry_after)})


class ServiceUnavailable(ApiError):
    code, status_code = INTERNAL_ERROR, 503


def _field_from_loc(loc: tuple[Any, ...] | list[Any]) -> tuple[str | None, str | None]:
    parts = list(loc)
    location = str(parts[0]) if parts and parts[0] in ("query", "path", "header", "body", "cookie") else None
    rest = parts[1:] if location else parts
    field = ".".join(str(p) for p in rest) if rest else None
    return field, location


async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
    return error_response(request, exc.status_code, exc.code, exc.message, exc.details, exc.headers)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    details = []
    for err in exc.errors():
        field, location = _field_from_loc(err.get("loc", ()))
        # never echo the input back (it could be anything, including a secret pasted in the wrong place)
        details.append({"field": field, "location": location, "message": err.get("msg", "invalid value"),
                        "type": err.get("type")})
    named = {d["field"]: d["message"] for d in details if d["field"]}
    says = "; ".join(f"{name}: {message}" for name, message in sorted(named.items())) or "request"
    return error_response(request, 400, VALIDATION_ERROR, f"invalid parameter(s): {says}", details)


REPORT_ERROR_STATUS: dict[str, tuple[int, str]] = {
    "invalid": (400, VALIDATION_ERROR),
    "combination": (422, VALIDATION_ERROR),
    "not_found": (404, NOT_FOUND),
    "conflict": (409, CONFLICT),
}
"""``ReportParameterError.reason`` -> the status and code the API answers with."""


async def _report_parameter_error(request: Request, exc: ReportParameterError) -> JSONResponse:
    status, code = REPORT_ERROR_STATUS[getattr(exc, "reason", "invalid")]
    details = [{"field": exc.field, "location": "query", "message": exc.message}]
    return error_response(request, status, code, exc.message, details)


async def _entity_not_found(request: Request, exc: EntityNotFound) -> JSONResponse:
    return error_response(request, 404, NOT_FOUND, "entity not found", [
        {"field": "entity", "location": "query", "message": "no such entity for this API key"}])


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    headers = dict(exc.headers or {})
    if exc.status_code == 404:
        return error_response(request, 404, NOT_FOUND, f"no route {request.url.path}", [], headers)
    if exc.status_code == 405:
        return error_response(request, 405, VALIDATION_ERROR,
                              f"method {request.method} not allowed on {request.url.path}; the API is read-only (GET)",
                              [{"field": None, "location": "method", "message": f"allowed: {headers.get('Allow', 'GET')}"}],
                              headers)
    code = {400: VALIDATION_ERROR, 401: AUTHENTICATION_ERROR, 403: AUTHORIZATION_ERROR, 409: CONFLICT,
            429: RATE_LIMIT_ERROR}.get(exc.status_code, INTERNAL_ERROR if exc.status_code >= 500 else VALIDATION_ERROR)
    message = exc.detail if isinstance(exc.detail, str) else "request failed"
    return error_response(request, exc.status_code, code, message, [], headers)


def _is_timeout(exc: DBAPIError) -> bool:
    return getattr(exc.orig, "sqlstate", None) == "57014"  # query_canceled (statement_timeout)


async def _database_error(request: Request, exc: DBAPIError) -> JSONResponse:
    if _is_timeout(exc):
        log.warning("query timed out: %s %s", request.method, request.url.path)
        return error_response(request, 503, INTERNAL_ERROR, "the query took too long; narrow the date range", [])
    if exc.connection_invalidated or type(exc).__name__ == "OperationalError":
        log.error("database unavailable: %s", type(exc.orig).__name__)
        return error_response(request, 503, INTERNAL_ERROR, "the database is unavailable; retry later", [])
    log.exception("database error on %s %s", request.method, request.url.path)
    return error_response(request, 500, INTERNAL_ERROR, "internal error", [])


def install_exception_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(ReportParameterError, _report_parameter_error)  # type: ignore[arg-type]
    app.add_exception_handler(EntityNotFound, _entity_not_found)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(DBAPIError, _database_error)  # type: ignore[arg-type]

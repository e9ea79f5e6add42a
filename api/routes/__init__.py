"""One router per resource. Routers only read: figures come from ``warehouse.reports``."""

from __future__ import annotations

from typing import Any

from api.schemas import ErrorEnvelope

_ERROR_TEXT = {
    400: "VALIDATION_ERROR: a parameter is unknown to the route, given twice, holds a NUL, or breaks its schema "
         "(format, enum, pattern, range); `error.details[].field` names it",
    401: "AUTHENTICATION_ERROR: missing, malformed, unknown or revoked X-API-Key",
    403: "AUTHORIZATION_ERROR: the key's scope does not allow this route",
    404: "NOT_FOUND: no such resource for this API key (the entity, an id in the path, or the account, asset or "
         "currency a filter names)",
    409: "CONFLICT: the stored data cannot answer this yet (a stale close in the range, a book the journal cannot "
         "explain, no stored book for the day, no FX rate for the reporting currency)",
    414: "VALIDATION_ERROR: the query string is longer than COINFRS_API_MAX_QUERY_BYTES (default 4096)",
    422: "VALIDATION_ERROR: each parameter matches its schema but together they cannot be answered: from after "
         "to, a range longer than COINFRS_API_MAX_RANGE_DAYS, date together with from/to, a cursor this API did not "
         "issue, pool configured with another method, a book listed twice, no entity with a key that sees several, "
         "an XLSX over a sheet's rows",
    429: "RATE_LIMIT_ERROR: too many requests for this key (see Retry-After)",
    500: "INTERNAL_ERROR",
    503: "INTERNAL_ERROR: the database is unavailable or the query took too long",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {s: {"model": ErrorEnvelope, "description": _ERROR_TEXT[s]} for s in statuses}


def openapi_error(status: int) -> dict[str, Any]:
    """The OpenAPI response object of an error ``status``: the JSON envelope, whatever the route's media type."""
    return {"description": _ERROR_TEXT[status],
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorEnvelope"}}}}


COMMON_ERRORS = error_responses(400, 401, 404, 422, 429, 500, 503)
CONFLICT_ERROR = error_responses(409)
"""For the routes that answer 409 (stored data that cannot answer yet)."""
# For a route whose own answer is not JSON (an HTML report): its errors are still the JSON envelope, said explicitly
# (FastAPI would otherwise document them under the route's own media type).
JSON_ERRORS: dict[int | str, dict[str, Any]] = {s: openapi_error(s) for s in (400, 401, 404, 422, 429, 500, 503)}
QUERY_TOO_LONG: dict[int | str, dict[str, Any]] = {414: openapi_error(414)}
"""Every ``/api/v1`` route (the middleware refuses an over-long query string before routing): JSON, whatever the
route's own media type."""

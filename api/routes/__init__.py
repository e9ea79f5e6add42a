"""One router per resource. Routers only read: figures come from ``warehouse.reports``."""

from __future__ import annotations

from typing import Any

from api.schemas import ErrorEnvelope

_ERROR_TEXT = {
    400: "VALIDATION_ERROR: a parameter is invalid; `error.details[].field` names it",
    401: "AUTHENTICATION_ERROR: missing, malformed, unknown or revoked X-API-Key",
    403: "AUTHORIZATION_ERROR: the key's scope does not allow this route",
    404: "NOT_FOUND: no such resource for this API key",
    414: "VALIDATION_ERROR: the query string is longer than COINFRS_API_MAX_QUERY_BYTES (default 4096)",
    429: "RATE_LIMIT_ERROR: too many requests for this key (see Retry-After)",
    500: "INTERNAL_ERROR",
    503: "INTERNAL_ERROR: the database is unavailable or the query took too long",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {s: {"model": ErrorEnvelope, "description": _ERROR_TEXT[s]} for s in statuses}


COMMON_ERRORS = error_responses(400, 401, 404, 429, 500, 503)
# For a route whose own answer is not JSON (an HTML report): its errors are still the JSON envelope, said explicitly
# (FastAPI would otherwise document them under the route's own media type).
JSON_ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"description": _ERROR_TEXT[s],
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorEnvelope"}}}}
    for s in (400, 401, 404, 429, 500, 503)}
QUERY_TOO_LONG: dict[int | str, dict[str, Any]] = {
    414: {"description": _ERROR_TEXT[414],
          "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorEnvelope"}}}}}
"""Every ``/api/v1`` route (the middleware refuses an over-long query string before routing): JSON, whatever the
route's own media type."""

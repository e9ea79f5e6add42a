"""The exact request contract of every route, enforced in one place (an app-wide dependency) and stated in OpenAPI.

``enforce_request_contract`` runs before any other dependency of every route (``create_app`` installs it on the
app, so a router added later gets it without an edit):

- a query parameter the route does not declare is refused: 400 VALIDATION_ERROR naming each unknown name and
  listing the ones the route takes (``positions?date=...`` is not ``as_of``; it is no longer silently ignored);
- a parameter the route takes once, given several times, is refused (400): which one would count is not guessed;
- a NUL character in any query or path value is refused (400 naming the field): PostgreSQL text cannot hold it.

Values are then validated by the route's own parameter types (enums, formats, ranges: 400). What OpenAPI
cannot state — rules across parameters such as ``from`` after ``to`` — answers 422 (``api.errors.Unprocessable``).

``tighten_openapi`` adds to the document what the contract enforces but the parameter types do not say: every
free-text parameter excludes NUL (``pattern``), and every operation documents 400 (the contract applies to all).
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi._compat import field_annotation_is_sequence
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from api.errors import ValidationFailed

NO_NUL_PATTERN = "^[^\\x00]*$"
"""The ``pattern`` of a free-text parameter: anything but NUL."""

_ROUTE_PARAMETERS: dict[int, tuple[frozenset[str], frozenset[str]]] = {}


def _declared(route: APIRoute) -> tuple[frozenset[str], frozenset[str]]:
    """(every query parameter name the route takes, those that take a list), from its dependency tree (its own
    parameters and those of its dependencies, e.g. ``entity``), by their public names (aliases)."""
    found = _ROUTE_PARAMETERS.get(id(route))
    if found is None:
        fields = list(_query_fields(route.dependant))
        names = frozenset(f.alias for f in fields)
        lists = frozenset(f.alias for f in fields if field_annotation_is_sequence(f.field_info.annotation))
        found = _ROUTE_PARAMETERS[id(route)] = (names, lists)
    return found


def _query_fields(dependant: Dependant) -> Any:
    yield from dependant.query_params
    for sub in dependant.dependencies:
        yield from _query_fields(sub)


async def enforce_request_contract(request: Request) -> None:
    """400 VALIDATION_ERROR for an unknown or repeated query parameter, or a NUL in any query or path value."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    declared, lists = _declared(route)
    params = request.query_params
    unknown = sorted({name for name in params.keys() if name not in declared})
    if unknown:
        takes = ", ".join(sorted(declared)) or "no query parameters"
        message = f"unknown query parameter(s): {', '.join(_printable(n) for n in unknown)}; this route takes: {takes}"
        raise ValidationFailed(message, [{"field": _printable(name), "location": "query",
                                          "message": "not a parameter of this route"} for name in unknown])
    repeated = sorted({name for name in params.keys() if name not in lists and len(params.getlist(name)) > 1})
    if repeated:
        raise ValidationFailed(f"query parameter(s) given more than once: {', '.join(repeated)}",
                               [{"field": name, "location": "query", "message": "give it once"} for name in repeated])
    for location, items in (("query", params.multi_items()), ("path", request.path_params.items())):
        for name, value in items:
            if isinstance(value, str) and "\x00" in value:
                raise ValidationFailed.for_field(name, f"{name} contains a NUL character (%00)", location)


def _printable(name: str) -> str:
    """A parameter name as it may be echoed back: control characters escaped, at most 100 characters."""
    text = name.encode("unicode_escape").decode("ascii") if not name.isprintable() else name
    return text if len(text) <= 100 else text[:100] + "..."


def _tighten_schema(schema: dict[str, Any]) -> None:
    for key in ("anyOf", "oneOf", "allOf"):
        for sub in schema.get(key, []):
            _tighten_schema(sub)
    if schema.get("type") == "string" and not any(k in schema for k in ("enum", "const", "pattern", "format")):
        schema["pattern"] = NO_NUL_PATTERN


def tighten_openapi(schema: dict[str, Any], error_response: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with NUL excluded from every free-text query and path parameter and a 400 documented on every
    operation (``error_response`` is its response object)."""
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            if not isinstance(operation, dict):
                continue
            for parameter in operation.get("parameters", []):
                if parameter.get("in") in ("query", "path") and isinstance(parameter.get("schema"), dict):
                    _tighten_schema(parameter["schema"])
            operation.setdefault("responses", {}).setdefault("400", error_response)
    return schema

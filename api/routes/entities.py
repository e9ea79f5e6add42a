"""``GET /api/v1/entities``: the entities this API key may read."""

from __future__ import annotations

from fastapi import APIRouter, Request

from api.deps import ConnDep, CurrentKey
from api.envelope import list_success
from api.exports import EXPORT_RESPONSES, FormatQuery, columns_of, export_response, requested_format
from api.routes import error_responses
from api.schemas import EntityOut, ListEnvelope
from warehouse.entities import find_entity

router = APIRouter(tags=["entities"], responses=error_responses(400, 401, 429, 500, 503))


@router.get("/entities", response_model=ListEnvelope[EntityOut], summary="Entities visible to this API key",
            responses=EXPORT_RESPONSES)
def list_entities(request: Request, key: CurrentKey, conn: ConnDep, fmt: FormatQuery = None):
    """The companies or funds whose books this key may read (one or more)."""
    items = []
    for entity_id in key.entity_ids:
        entity = find_entity(conn, entity_id)
        if entity is not None:
            items.append({"id": entity.id, "name": entity.name, "timezone": entity.timezone,
                          "reporting_currency": entity.reporting_currency, "holding_rule": entity.holding_rule})
    out = requested_format(request, fmt)
    if out != "json":
        return export_response(out, "entities", columns_of(EntityOut), items)
    return list_success(request, items)

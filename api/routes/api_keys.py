"""``GET /api/v1/api-keys`` (admin scope): the API keys bound to the caller's entities, never a secret."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi import APIRouter, Request

from api.deps import AdminKey, ConnDep
from api.envelope import list_success
from api.exports import EXPORT_RESPONSES, FormatQuery, columns_of, export_response, requested_format
from api.routes import error_responses
from api.schemas import ApiKeyOut, ListEnvelope
from api.security import list_api_keys
from warehouse.schema import entities

router = APIRouter(tags=["api-keys"], responses=error_responses(400, 401, 403, 429, 500, 503))


@router.get("/api-keys", response_model=ListEnvelope[ApiKeyOut], summary="API keys of this key's entities (admin)",
            responses=EXPORT_RESPONSES)
def list_keys(request: Request, key: AdminKey, conn: ConnDep, fmt: FormatQuery = None):
    """Every key bound to one of the caller's entities: prefix, scope, label, creation, revocation and the
    entities it reads (only those the caller may see). Needs a key with the `admin` scope (else 403)."""
    visible = set(key.entity_ids)
    names = dict(conn.execute(sa.select(entities.c.id, entities.c.name).where(entities.c.id.in_(visible))).all())
    items = []
    for r in list_api_keys(conn, sorted(visible)):
        ids = [i for i in r.entity_ids if i in visible]
        items.append({"prefix": r.prefix, "scope": r.scope, "label": r.label, "created_at": r.created_at,
                      "revoked_at": r.revoked_at, "entities": [names[i] for i in ids], "entity_ids": ids})
    out = requested_format(request, fmt)
    if out != "json":
        return export_response(out, "api-keys", columns_of(ApiKeyOut), items)
    return list_success(request, items)

"""Resources: the warehouse connection; and which entities a run closes."""

from __future__ import annotations

import dagster as dg
from sqlalchemy.engine import Engine

from warehouse.db import database_url, get_engine, normalize_url
from warehouse.entities import Entity, list_entities, resolve_entity

ENTITIES_TAG = "coinfrs/entities"


class WarehouseResource(dg.ConfigurableResource):
    """The Coinfrs warehouse (PostgreSQL). Empty ``database_url``: DATABASE_URL, else the embedded server."""

    database_url: str | None = None

    def url(self) -> str:
        return normalize_url(self.database_url) if self.database_url else database_url()

    def engine(self) -> Engine:
        return get_engine(self.url())


def entities_in_scope(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> list[Entity]:
    """The entities named by the run's ``coinfrs/entities`` tag, else every entity."""
    tag = (context.run.tags.get(ENTITIES_TAG) or "").strip()
    with warehouse.engine().connect() as conn:
        if not tag:
            return list_entities(conn)
        return [resolve_entity(conn, ref) for ref in tag.split(",") if ref.strip()]

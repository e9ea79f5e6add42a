"""``GET /api/v1/positions``: computed and reported balances at a close date."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from api.deps import ConnDep, CurrentEntity
from api.envelope import list_success
from api.routes import COMMON_ERRORS
from api.schemas import IsoDate, ListEnvelope, PositionOut
from warehouse import reports

router = APIRouter(tags=["positions"], responses=COMMON_ERRORS)


@router.get("/positions", response_model=ListEnvelope[PositionOut], summary="Positions at a close date")
def list_positions(
    request: Request,
    entity: CurrentEntity,
    conn: ConnDep,
    as_of: Annotated[IsoDate | None, Query(description="Close date YYYY-MM-DD. Omitted: the latest date with "
                                                       "positions.")] = None,
) -> dict:
    """Per account and asset: the balance computed from the ledger, the balance the source reported, their
    difference (reported − computed) and the value at the close price. `meta.as_of` is the date served
    (null when the entity has no positions yet)."""
    day = as_of if as_of is not None else reports.latest_position_date(conn, entity.id)
    items = reports.list_positions(conn, entity.id, day) if day is not None else []
    return list_success(request, items, entity=entity.name, as_of=day.isoformat() if day else None)

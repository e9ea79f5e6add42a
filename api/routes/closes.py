"""``GET /api/v1/closes``: daily close records."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from api.deps import ConnDep, CurrentEntity
from api.envelope import list_success
from api.routes import COMMON_ERRORS
from api.schemas import CloseOut, IsoDate, ListEnvelope
from warehouse import reports

router = APIRouter(tags=["closes"], responses=COMMON_ERRORS)


@router.get("/closes", response_model=ListEnvelope[CloseOut], summary="Daily closes")
def list_closes(
    request: Request,
    entity: CurrentEntity,
    conn: ConnDep,
    date_from: Annotated[IsoDate | None, Query(alias="from", description="First close date, inclusive")] = None,
    date_to: Annotated[IsoDate | None, Query(alias="to", description="Last close date, inclusive")] = None,
) -> dict:
    """One record per close date: status (closed | breaks | failed), counts, realized gains and whether the
    period is locked. Without from/to, every close of the entity."""
    return list_success(request, reports.list_closes(conn, entity.id, date_from, date_to), entity=entity.name)

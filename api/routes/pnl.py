"""``GET /api/v1/pnl/realized``: realized PnL over a period for one method and pool."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from api.deps import ConnDep, CurrentEntity
from api.envelope import success
from api.routes import COMMON_ERRORS
from api.schemas import Envelope, IsoDate, RealizedPnlOut
from warehouse import reports

router = APIRouter(prefix="/pnl", tags=["pnl"], responses=COMMON_ERRORS)


@router.get("/realized", response_model=Envelope[RealizedPnlOut], summary="Realized PnL summary")
def realized(
    request: Request,
    entity: CurrentEntity,
    conn: ConnDep,
    date_from: Annotated[IsoDate, Query(alias="from", description="First disposal date, inclusive")],
    date_to: Annotated[IsoDate, Query(alias="to", description="Last disposal date, inclusive")],
    method: Annotated[str, Query(max_length=20, description="Cost-basis method: "
                                 + ", ".join(reports.PNL_METHODS))] = "fifo",
    pool: Annotated[str, Query(max_length=20, description="Lot pool: universal (whole entity) or account "
                                                          "(per wallet/account)")] = "universal",
) -> dict:
    """Proceeds, cost basis and realized gain (short and long term) summed exactly over every disposal in
    the period, sales and fee disposals alike. USD, as exact decimal strings."""
    summary = reports.realized_pnl_summary(conn, entity.id, date_from, date_to, method=method, pool=pool)
    return success(request, summary)

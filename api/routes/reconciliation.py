"""``GET /api/v1/reconciliation/breaks``: completeness breaks for a day or a range."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from api.deps import ConnDep, CurrentEntity
from api.envelope import list_success
from api.errors import ValidationFailed
from api.routes import COMMON_ERRORS
from api.schemas import BreakOut, IsoDate, ListEnvelope
from warehouse import reports

router = APIRouter(prefix="/reconciliation", tags=["reconciliation"], responses=COMMON_ERRORS)


@router.get("/breaks", response_model=ListEnvelope[BreakOut], summary="Reconciliation breaks")
def list_breaks(
    request: Request,
    entity: CurrentEntity,
    conn: ConnDep,
    day: Annotated[IsoDate | None, Query(alias="date", description="One close date (or give from and to)")] = None,
    date_from: Annotated[IsoDate | None, Query(alias="from", description="First close date, inclusive")] = None,
    date_to: Annotated[IsoDate | None, Query(alias="to", description="Last close date, inclusive")] = None,
) -> dict:
    """Where `previous reported + legs of the day ≠ reported` beyond the asset's tolerance, per account,
    account type, sub-account and asset, with the legs of the window. Give `date`, or `from` and `to`."""
    if day is not None:
        if date_from is not None or date_to is not None:
            raise ValidationFailed.for_field("date", "give either date, or from and to, not both")
        date_from = date_to = day
    elif date_from is None or date_to is None:
        missing = "from" if date_from is None else "to"
        raise ValidationFailed.for_field(missing, "give date, or both from and to")
    items = reports.list_breaks(conn, entity.id, date_from, date_to)
    return list_success(request, items, entity=entity.name, **{"from": date_from.isoformat(),
                                                              "to": date_to.isoformat()})

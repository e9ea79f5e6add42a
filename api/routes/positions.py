"""``GET /api/v1/positions``: computed and reported balances at a close date, valued in the reporting currency."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from api.cache import cached_by_snapshot
from api.deps import ConnDep, CurrentEntity
from api.envelope import list_success
from api.exports import EXPORT_RESPONSES, FormatQuery, columns_of, export_response, requested_format
from api.routes import COMMON_ERRORS
from api.params import CURRENCY_CODE_PATTERN
from api.schemas import IsoDate, ListEnvelope, PositionOut
from warehouse import catalog, reports

router = APIRouter(tags=["positions"], responses=COMMON_ERRORS)


@router.get("/positions", response_model=ListEnvelope[PositionOut], summary="Positions at a close date",
            responses=EXPORT_RESPONSES)
@cached_by_snapshot
def list_positions(
    request: Request,
    entity: CurrentEntity,
    conn: ConnDep,
    as_of: Annotated[IsoDate | None, Query(description="Close date YYYY-MM-DD. Omitted: the latest date with "
                                                       "positions.")] = None,
    currency: Annotated[str | None, Query(max_length=12, pattern=CURRENCY_CODE_PATTERN, description=(
        "Reporting currency (default: the entity's, USD unless set), e.g. EUR when EUR has USD prices; a code "
        "that is neither USD, EUR, GBP nor a known asset is a 404"))] = None,
    account: Annotated[str | None, Query(max_length=200, description="Account name or id")] = None,
    asset: Annotated[str | None, Query(max_length=100, description="Asset symbol")] = None,
    fmt: FormatQuery = None,
):
    """Per account, account type, sub-account and asset: the balance computed from the ledger, the balance the
    source reported, their difference (reported − computed), and the value in the reporting currency with the
    price's provenance (USD close price source and resolution, FX rate, its time and source). `meta.as_of`
    is the date served (null when the entity has no positions yet)."""
    day = as_of if as_of is not None else reports.latest_position_date(conn, entity.id)
    items = catalog.list_positions_valued(conn, entity, day, currency=currency, account=account,
                                          asset=asset) if day is not None else []
    out = requested_format(request, fmt)
    if out != "json":
        return export_response(out, f"positions-{entity.name}-{day}", columns_of(PositionOut), items)
    return list_success(request, items, entity=entity.name, as_of=day.isoformat() if day else None)

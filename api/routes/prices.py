"""``/api/v1/prices/...``: what the close could not price. Thin: figures come from ``transforms.pnl_reports``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from api.cache import cached_by_snapshot
from api.deps import ConnDep, CurrentEntity
from api.envelope import list_success
from api.exports import EXPORT_RESPONSES, FormatQuery, columns_of, export_response, requested_format
from api.routes import COMMON_ERRORS
from api.params import StoredMethod, StoredPool
from api.schemas import IsoDate, ListEnvelope
from api.schemas_pnl import MissingPriceOut
from transforms import pnl_reports

router = APIRouter(prefix="/prices", tags=["prices"], responses=COMMON_ERRORS)


@router.get("/missing", response_model=ListEnvelope[MissingPriceOut], summary="Missing prices (unpriced figures)",
            responses=EXPORT_RESPONSES)
@cached_by_snapshot
def missing_prices(
    request: Request,
    entity: CurrentEntity,
    conn: ConnDep,
    date_from: Annotated[IsoDate, Query(alias="from", description="First close day, inclusive")],
    date_to: Annotated[IsoDate, Query(alias="to", description="Last close day, inclusive")],
    method: StoredMethod = "configured",
    pool: StoredPool = "configured",
    fmt: FormatQuery = None,
) -> dict:
    """Every acquisition, disposal, third-asset fee or open position the close needed a fair value for and had none
    (the same items that make a close `unpriced`), with the figure each one leaves out. Import or fetch the prices
    and close the days again to clear them."""
    items = pnl_reports.list_missing_prices(conn, entity.id, date_from, date_to, method, pool)
    out = requested_format(request, fmt)  # type: ignore[arg-type]
    if out != "json":
        return export_response(out, f"missing-prices-{entity.name}-{date_from}-{date_to}", columns_of(MissingPriceOut),
                               items)
    return list_success(request, items, entity=entity.name)

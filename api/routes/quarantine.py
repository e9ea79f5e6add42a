"""``GET /api/v1/quarantine``: staged records a mapper could not read (quarantined, transforms/quarantine.py)."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query, Request

from api.cache import cached_by_snapshot
from api.deps import ConnDep, CurrentEntity, check_date_range
from api.errors import Unprocessable
from api.exports import EXPORT_RESPONSES, FormatQuery, list_or_export
from api.routes import COMMON_ERRORS
from api.schemas import IsoDate, ListEnvelope
from api.schemas_recon import QuarantinedOut
from transforms.quarantine import list_quarantined

router = APIRouter(prefix="/quarantine", tags=["reconciliation"], responses=COMMON_ERRORS)


@router.get("", response_model=ListEnvelope[QuarantinedOut], summary="Quarantined records",
            responses=EXPORT_RESPONSES)
@cached_by_snapshot
def list_quarantine(
    request: Request,
    entity: CurrentEntity,
    conn: ConnDep,
    date_from: Annotated[IsoDate | None, Query(alias="from", description="First close date, inclusive")] = None,
    date_to: Annotated[IsoDate | None, Query(alias="to", description="Last close date, inclusive")] = None,
    source: Annotated[str | None, Query(max_length=200, description="Only this source (binance, evm:1, ...)")] = None,
    fmt: FormatQuery = None,
):
    """Staged records a mapper could not read: each books no leg and makes its day's close `partial`, naming it,
    until a mapper fix or a new version of the record clears it. Per record: the close date it belongs to, source,
    stream, account, the source's record id (`source_raw_id`), the staged version (`raw_record_id`), the field the
    error names (null when none) and the error. Optional `from` and `to` bound the days (both: at most the
    synchronous range limit apart). With `format=csv|xlsx`, the same rows as a file."""
    start: date | None = date_from
    end: date | None = date_to
    if start is not None and end is not None:
        if end < start:
            raise Unprocessable.for_field("to", "to is before from")
        check_date_range(request, start, end)
    items = [q.as_dict() for q in list_quarantined(conn, entity.id, start, end)
             if source is None or q.source == source]
    bounds = {name: day.isoformat() for name, day in (("from", start), ("to", end)) if day is not None}
    return list_or_export(request, fmt, f"quarantine-{entity.name}", QuarantinedOut, items, entity=entity.name, **bounds)

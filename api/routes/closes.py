"""``GET /api/v1/closes``: daily close records; one close with its provenance; its HTML report."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse

from api.cache import cached_by_snapshot
from api.deps import ConnDep, CurrentEntity, check_date_range
from api.envelope import success
from api.errors import NotFound
from api.exports import EXPORT_RESPONSES, FormatQuery, list_or_export
from api.routes import COMMON_ERRORS, JSON_ERRORS
from api.schemas import CloseOut, Envelope, IsoDate, ListEnvelope
from api.schemas_recon import CloseDetailOut
from reconciliation.queries import load_close_detail
from reconciliation.report import close_report_html
from warehouse import reports

router = APIRouter(tags=["closes"], responses=COMMON_ERRORS)
DayPath = Annotated[IsoDate, Path(description="The close date, YYYY-MM-DD")]


@router.get("/closes", response_model=ListEnvelope[CloseOut], summary="Daily closes", responses=EXPORT_RESPONSES)
@cached_by_snapshot
def list_closes(
    request: Request,
    entity: CurrentEntity,
    conn: ConnDep,
    date_from: Annotated[IsoDate | None, Query(alias="from", description="First close date, inclusive")] = None,
    date_to: Annotated[IsoDate | None, Query(alias="to", description="Last close date, inclusive")] = None,
    fmt: FormatQuery = None,
):
    """One record per close date: status (closed | breaks | unpriced | blocked | partial | failed), counts, realized
    gains (FIFO reference books and the entity's configured `book`), shortfalls, missing prices (why a close is
    `unpriced`: /prices/missing lists them), the sources that were down (why a close is `partial`) and whether the
    day is locked. Without from/to, every close of the entity; from..to at most the
    synchronous range limit (default 366 days). With `format=csv|xlsx`, the same closes as a file."""
    check_date_range(request, date_from, date_to)
    return list_or_export(request, fmt, f"closes-{entity.name}", CloseOut,
                          reports.list_closes(conn, entity.id, date_from, date_to), entity=entity.name)


@router.get("/closes/{day}", response_model=Envelope[CloseDetailOut], summary="One close with its provenance")
@cached_by_snapshot
def get_close(request: Request, entity: CurrentEntity, conn: ConnDep, day: DayPath) -> dict:
    """The close of one day, what it was computed from (input counts, code version, source cursors) and the hash
    of its outputs, recomputed now to prove it unchanged."""
    detail = load_close_detail(conn, entity, day)
    if detail is None:
        raise NotFound(f"no close of {entity.name} for {day}")
    detail["report_url"] = (str(request.url_for("get_close_report", day=day.isoformat()))
                            + f"?entity={entity.name}") if detail["provenance"] else None
    return success(request, detail, entity=entity.name)


@router.get("/closes/{day}/report", response_class=HTMLResponse, summary="The close report (HTML)",
            responses={200: {"content": {"text/html": {}}, "description": "the close report"}, **JSON_ERRORS})
def get_close_report(entity: CurrentEntity, conn: ConnDep, day: DayPath) -> HTMLResponse:
    """Positions, breaks with their causes and the PnL summary as closed; for a locked day that received late
    data, separately, what is known now."""
    page = close_report_html(conn, entity, day)
    if page is None:
        raise NotFound(f"no close report of {entity.name} for {day}")
    return HTMLResponse(page, headers={"Content-Disposition": f'inline; filename="close-{entity.name}-{day}.html"'})

"""``GET /api/v1/reconciliation/...``: breaks with their causes, expectation results, localisation."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query, Request

from api.cache import cached_by_snapshot
from api.deps import ConnDep, CurrentEntity, check_date_range
from api.errors import Unprocessable
from api.exports import EXPORT_RESPONSES, FormatQuery, list_or_export
from api.routes import COMMON_ERRORS
from api.schemas import BreakStatus, IsoDate, ListEnvelope
from api.schemas_recon import BreakWithCausesOut, CauseCode, LocalisedBreakOut, ResultOut
from reconciliation.queries import load_results
from reconciliation.workflow import localise_breaks
from warehouse import reports

router = APIRouter(prefix="/reconciliation", tags=["reconciliation"], responses=COMMON_ERRORS)

DayQ = Annotated[IsoDate | None, Query(alias="date", description="One close date (or give from and to)")]
FromQ = Annotated[IsoDate | None, Query(alias="from", description="First close date, inclusive")]
ToQ = Annotated[IsoDate | None, Query(alias="to", description="Last close date, inclusive")]


def _range(request: Request, day: date | None, date_from: date | None, date_to: date | None) -> tuple[date, date]:
    """``date``, or ``from`` and ``to`` (at most the synchronous range limit apart)."""
    if day is not None:
        if date_from is not None or date_to is not None:
            raise Unprocessable.for_field("date", "give either date, or from and to, not both")
        return day, day
    if date_from is None or date_to is None:
        missing = "from" if date_from is None else "to"
        raise Unprocessable.for_field(missing, "give date, or both from and to")
    check_date_range(request, date_from, date_to)
    return date_from, date_to


@router.get("/breaks", response_model=ListEnvelope[BreakWithCausesOut], summary="Reconciliation breaks with causes",
            responses=EXPORT_RESPONSES)
@cached_by_snapshot
def list_breaks(
    request: Request,
    entity: CurrentEntity,
    conn: ConnDep,
    day: DayQ = None,
    date_from: FromQ = None,
    date_to: ToQ = None,
    status: Annotated[BreakStatus | None, Query(description="open | acknowledged | adjusted | resolved "
                                                            "(default: every status)")] = None,
    account: Annotated[str | None, Query(max_length=200, description="Account name")] = None,
    asset: Annotated[str | None, Query(max_length=100, description="Asset symbol")] = None,
    cause: Annotated[CauseCode | None, Query(description="Only breaks with this candidate cause")] = None,
    fmt: FormatQuery = None,
):
    """Where `previous reported + legs of the day ≠ reported` beyond the tolerance, per account, account type,
    sub-account and asset, with the legs of the window and ranked candidate causes (`causes[].code`, `evidence`).
    A break keeps its `id` across re-closes; one a re-close no longer finds stays listed as `resolved`, with
    `resolution` (why) and its `history` (who, what, when, the difference before and after).
    Give `date`, or `from` and `to`. With `format=csv|xlsx`, the same breaks as a file (`leg_ids`, `causes` and
    `history` as JSON text)."""
    start, end = _range(request, day, date_from, date_to)
    items = reports.list_breaks(conn, entity.id, start, end, status=status, include_resolved=True)
    items = [b for b in items
             if (account is None or b["account"] == account)
             and (asset is None or b["asset"] == asset.upper())
             and (cause is None or any(c["code"] == cause for c in b["causes"]))]
    return list_or_export(request, fmt, f"breaks-{entity.name}-{start}-{end}", BreakWithCausesOut, items,
                          entity=entity.name, **{"from": start.isoformat(), "to": end.isoformat()})


@router.get("/results", response_model=ListEnvelope[ResultOut], summary="Expectation results",
            responses=EXPORT_RESPONSES)
@cached_by_snapshot
def list_results(
    request: Request,
    entity: CurrentEntity,
    conn: ConnDep,
    day: DayQ = None,
    date_from: FromQ = None,
    date_to: ToQ = None,
    suite: Annotated[str | None, Query(max_length=200, description="e.g. canonical.completeness")] = None,
    fmt: FormatQuery = None,
):
    """Stored results per day, suite and expectation: success, severity (error blocks PnL and the close; warn
    does not), observed value and failing rows. With `format=csv|xlsx`, the same results as a file
    (`observed_value` and `failing_rows` as JSON text)."""
    start, end = _range(request, day, date_from, date_to)
    return list_or_export(request, fmt, f"results-{entity.name}-{start}-{end}", ResultOut,
                          load_results(conn, entity.id, start, end, suite), entity=entity.name,
                          **{"from": start.isoformat(), "to": end.isoformat()})


@router.get("/localise", response_model=ListEnvelope[LocalisedBreakOut], summary="Where breaks start",
            responses=EXPORT_RESPONSES)
@cached_by_snapshot
def localise(request: Request, entity: CurrentEntity, conn: ConnDep, date_from: FromQ = None, date_to: ToQ = None,
             fmt: FormatQuery = None):
    """Per (account, asset) whose reported and computed balances disagree in the range: the first day, and whether
    it persists to the end of the range. With `format=csv|xlsx`, the same rows as a file."""
    start, end = _range(request, None, date_from, date_to)
    try:
        rows = localise_breaks(conn, entity, start, end)
    except ValueError as exc:
        raise Unprocessable.for_field("to", str(exc)) from None
    return list_or_export(request, fmt, f"localise-{entity.name}-{start}-{end}", LocalisedBreakOut, rows,
                          entity=entity.name)

"""``/api/v1/pnl/...``: realized and unrealized PnL in a reporting currency, what-if comparison of books, open
lots, roll-forward, shortfalls and the assets left out of PnL. Every list is also a CSV or XLSX export with the
same filters (``?format=csv|xlsx`` or the ``Accept`` header)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from api.cache import cached_by_snapshot
from api.deps import ConnDep, CurrentEntity
from api.envelope import list_success, success
from api.errors import ApiError, Conflict
from reconciliation.staleness import describe_stale, stale_days_between
from api.exports import EXPORT_RESPONSES, FormatQuery, columns_of, export_response, requested_format
from api.routes import COMMON_ERRORS, CONFLICT_ERROR
from api.params import (BOOKS_PATTERN, AnyMethod, BreakdownValue, CurrencyQuery, Cursor, PoolValue, StoredMethod,
                        StoredPool, StoredPoolValue)
from api.schemas import Envelope, IsoDate, ListEnvelope
from api.schemas_pnl import (
    CompareOut,
    DisposalOut,
    ExcludedAssetOut,
    OpenLotOut,
    RealizedBreakdownOut,
    RealizedPnlCurrencyOut,
    RollForwardOut,
    ShortfallOut,
    UnrealizedOut,
)
from transforms import pnl_disposals, pnl_reports
from warehouse import reports
from transforms.cost_basis import TieOutError

router = APIRouter(prefix="/pnl", tags=["pnl"], responses=COMMON_ERRORS)

UniversalOrAccount = Annotated[PoolValue, Query(description="Lot pool: universal (whole entity) or account (per "
                                                         "wallet/account); ignored for method configured")]
Books = Annotated[str, Query(max_length=200, pattern=BOOKS_PATTERN,
                             description="Comma-separated books `method:pool` (methods fifo, lifo, hifo, lofo, "
                                         "average; pools universal, account; pool universal when omitted) or "
                                         "`configured`; the first is the base; a book listed twice is a 422",
                             examples=["fifo:universal,hifo:account"])]


def _list(request: Request, fmt: str | None, name: str, model: type[BaseModel], items: list[dict[str, Any]],
          columns: list[str] | None = None, **meta: Any):
    """The list envelope, or the same rows streamed as CSV/XLSX."""
    out = requested_format(request, fmt)  # type: ignore[arg-type]
    if out != "json":
        return export_response(out, name, columns or columns_of(model), items)
    return list_success(request, items, **meta)


@router.get("/realized", response_model=Envelope[RealizedPnlCurrencyOut], summary="Realized PnL summary",
            responses=CONFLICT_ERROR)
@cached_by_snapshot
def realized(
    request: Request,
    entity: CurrentEntity,
    conn: ConnDep,
    date_from: Annotated[IsoDate, Query(alias="from", description="First disposal date, inclusive")],
    date_to: Annotated[IsoDate, Query(alias="to", description="Last disposal date, inclusive")],
    method: AnyMethod = "fifo",
    pool: UniversalOrAccount = "universal",
    currency: CurrencyQuery = None,
) -> dict:
    """Proceeds, cost basis and realized gain (short and long term) summed exactly over every disposal in
    the period, sales and fee disposals alike, as exact decimal strings in the reporting currency. Any
    method and pool: stored USD books are read from the close, anything else is computed on demand by the
    same engine."""
    summary = pnl_reports.realized_summary(conn, entity, date_from, date_to, method=method, pool=pool,
                                           currency=currency)
    return success(request, summary)


@router.get("/disposals", response_model=ListEnvelope[DisposalOut], summary="Disposals with their matched lots",
            responses={**EXPORT_RESPONSES, **CONFLICT_ERROR})
@cached_by_snapshot
def disposals(
    request: Request,
    entity: CurrentEntity,
    conn: ConnDep,
    date_from: Annotated[IsoDate, Query(alias="from", description="First disposal date, inclusive")],
    date_to: Annotated[IsoDate, Query(alias="to", description="Last disposal date, inclusive")],
    method: AnyMethod = "configured",
    pool: UniversalOrAccount = "universal",
    currency: CurrencyQuery = None,
    account: Annotated[str | None, Query(max_length=200, description="Account name or numeric id")] = None,
    asset: Annotated[str | None, Query(max_length=100, description="Asset symbol")] = None,
    cursor: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=reports.MAX_LIMIT, description="Page size (1-1000)")] = reports.DEFAULT_LIMIT,
    fmt: FormatQuery = None,
):
    """Every disposal of the book in the period (sales and fees paid in the asset), in time order, with its
    proceeds, cost basis and realized gain (short and long term) in the reporting currency and the lots it
    consumed. Keyset pagination: pass `meta.next_cursor` back as `cursor`. As CSV/XLSX: every disposal of the
    period (no page), one row per matched lot."""
    out = requested_format(request, fmt)
    if out != "json":
        items, _, _ = pnl_disposals.list_disposals(conn, entity, date_from, date_to, method, pool, currency,
                                                   account=account, asset=asset, limit=None)
        return export_response(out, f"pnl-disposals-{entity.name}-{date_from}-{date_to}",
                               pnl_disposals.EXPORT_COLUMNS, pnl_disposals.export_rows(items))
    items, next_cursor, extra = pnl_disposals.list_disposals(conn, entity, date_from, date_to, method, pool, currency,
                                                             account=account, asset=asset, cursor=cursor, limit=limit)
    return list_success(request, items, next_cursor=next_cursor, limit=limit, entity=entity.name, **extra)


@router.get("/realized/breakdown", response_model=ListEnvelope[RealizedBreakdownOut],
            summary="Realized PnL by asset, account, term or period", responses={**EXPORT_RESPONSES, **CONFLICT_ERROR})
@cached_by_snapshot
def realized_breakdown(
    request: Request,
    entity: CurrentEntity,
    conn: ConnDep,
    date_from: Annotated[IsoDate, Query(alias="from", description="First disposal date, inclusive")],
    date_to: Annotated[IsoDate, Query(alias="to", description="Last disposal date, inclusive")],
    by: Annotated[BreakdownValue, Query(description="asset | account | term | year | quarter | month | day")
                  ] = "asset",
    method: AnyMethod = "configured",
    pool: UniversalOrAccount = "universal",
    currency: CurrencyQuery = None,
    fmt: FormatQuery = None,
) -> dict:
    """Realized gain of one book split by the chosen dimension, in the reporting currency; the rows add up to
    `/pnl/realized`."""
    items, extra = pnl_reports.realized_breakdown(conn, entity, date_from, date_to, by, method, pool, currency)
    columns = [by, "realized_gain", "currency"] if by == "term" else \
        [by, "realized_gain", "proceeds", "cost_basis", "disposals", "currency"]
    return _list(request, fmt, f"pnl-realized-by-{by}-{entity.name}", RealizedBreakdownOut, items, columns,
                 entity=entity.name, by=by, **extra)


@router.get("/unrealized", response_model=ListEnvelope[UnrealizedOut], summary="Unrealized PnL at a close",
            responses={**EXPORT_RESPONSES, **CONFLICT_ERROR})
@cached_by_snapshot
def unrealized(
    request: Request,
    entity: CurrentEntity,
    conn: ConnDep,
    as_of: Annotated[IsoDate, Query(description="Close date YYYY-MM-DD")],
    method: AnyMethod = "configured",
    pool: Annotated[StoredPoolValue, Query(description="configured, universal or account; ignored for method "
                                                       "configured; a computed method with configured is a 422")
                    ] = "configured",
    currency: CurrencyQuery = None,
    fmt: FormatQuery = None,
) -> dict:
    """Per pool and asset at the close of `as_of`: quantity, cost basis, close price, market value and
    unrealized gain, in the reporting currency."""
    items, extra = pnl_reports.unrealized(conn, entity, as_of, method, pool, currency)
    return _list(request, fmt, f"pnl-unrealized-{entity.name}-{as_of}", UnrealizedOut, items, entity=entity.name,
                 **extra)


@router.get("/excluded", response_model=ListEnvelope[ExcludedAssetOut],
            summary="Assets left out of PnL (unverified)", responses=EXPORT_RESPONSES)
@cached_by_snapshot
def excluded(request: Request, entity: CurrentEntity, conn: ConnDep, fmt: FormatQuery = None) -> dict:
    """Unverified assets (tokens not in the registry, possibly spam) the entity holds or moved. Their legs are
    left out of every PnL book until an operator approves the asset (`coinfrs asset approve`); they still
    appear in positions."""
    items = pnl_reports.list_excluded_assets(conn, entity)
    return _list(request, fmt, f"pnl-excluded-assets-{entity.name}", ExcludedAssetOut, items, entity=entity.name)


@router.get("/compare", response_model=Envelope[CompareOut], summary="Compare cost-basis books (what-if)",
            responses={**EXPORT_RESPONSES, **CONFLICT_ERROR})
@cached_by_snapshot
def compare(
    request: Request,
    entity: CurrentEntity,
    conn: ConnDep,
    books: Books,
    date_from: Annotated[IsoDate, Query(alias="from", description="First disposal date, inclusive")],
    date_to: Annotated[IsoDate, Query(alias="to", description="Last disposal date, inclusive")],
    currency: CurrencyQuery = None,
    fmt: FormatQuery = None,
) -> dict:
    """The same legs booked under several methods and pools, computed on demand: realized gain per book and,
    for every disposal, each book's gain and its difference from the base book, in the reporting currency.
    As CSV/XLSX: one row per disposal, a gain column per book and a difference column per other book."""
    report = pnl_reports.compare_books(conn, entity, pnl_reports.parse_books(books), date_from, date_to, currency)
    out = requested_format(request, fmt)
    if out != "json":
        columns, rows = pnl_reports.compare_rows(report)
        return export_response(out, f"pnl-compare-{entity.name}-{date_from}-{date_to}", columns, rows)
    return success(request, report)


@router.get("/lots", response_model=ListEnvelope[OpenLotOut], summary="Open lots at a close",
            responses=EXPORT_RESPONSES)
@cached_by_snapshot
def lots(
    request: Request,
    entity: CurrentEntity,
    conn: ConnDep,
    as_of: Annotated[IsoDate, Query(description="Close date YYYY-MM-DD")],
    method: StoredMethod = "configured",
    pool: StoredPool = "configured",
    fmt: FormatQuery = None,
) -> dict:
    """Every lot open at the close of `as_of` with its USD basis and acquisition time, as the close stored it."""
    items = pnl_reports.list_open_lots(conn, entity.id, as_of, method, pool)
    return _list(request, fmt, f"pnl-lots-{entity.name}-{as_of}", OpenLotOut, items, entity=entity.name,
                 as_of=as_of.isoformat())


@router.get("/rollforward", response_model=ListEnvelope[RollForwardOut], summary="Cost-basis roll-forward",
            responses={**EXPORT_RESPONSES, **CONFLICT_ERROR})
@cached_by_snapshot
def rollforward(
    request: Request,
    entity: CurrentEntity,
    conn: ConnDep,
    date_from: Annotated[IsoDate, Query(alias="from", description="First day, inclusive")],
    date_to: Annotated[IsoDate, Query(alias="to", description="Last day, inclusive")],
    method: StoredMethod = "configured",
    pool: StoredPool = "configured",
    fmt: FormatQuery = None,
) -> dict:
    """Per pool and asset: opening + acquired − disposed + transferred in − transferred out = closing, in
    quantity and USD basis. A range with a stale close (inputs changed since) is a CONFLICT naming the days; a
    pool that does not tie out is an INTERNAL_ERROR, never a silent figure."""
    stale = stale_days_between(conn, entity.id, date_from, date_to)
    if stale:
        raise Conflict(describe_stale(stale), [{"field": "to", "location": "query", "message": f"stale: {d}"}
                                               for d in stale[:31]])
    try:
        items = pnl_reports.rollforward(conn, entity.id, date_from, date_to, method, pool)
    except TieOutError as exc:
        raise ApiError(str(exc)) from None  # INTERNAL_ERROR: a tie-out failure is a bug, not a figure
    return _list(request, fmt, f"pnl-rollforward-{entity.name}-{date_from}-{date_to}", RollForwardOut, items,
                 entity=entity.name)


@router.get("/shortfalls", response_model=ListEnvelope[ShortfallOut], summary="Shortfalls (disposals without lots)",
            responses=EXPORT_RESPONSES)
@cached_by_snapshot
def shortfalls(
    request: Request,
    entity: CurrentEntity,
    conn: ConnDep,
    date_from: Annotated[IsoDate, Query(alias="from", description="First day, inclusive")],
    date_to: Annotated[IsoDate, Query(alias="to", description="Last day, inclusive")],
    method: StoredMethod = "configured",
    pool: StoredPool = "configured",
    fmt: FormatQuery = None,
) -> dict:
    """Disposals that took more than the pool held: the excess has zero basis and is flagged until the
    missing acquisition arrives and the close is rerun."""
    items = pnl_reports.list_shortfalls(conn, entity.id, date_from, date_to, method, pool)
    return _list(request, fmt, f"pnl-shortfalls-{entity.name}-{date_from}-{date_to}", ShortfallOut, items,
                 entity=entity.name)


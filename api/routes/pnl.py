"""``/api/v1/pnl/...``: realized PnL, what-if comparison of books, open lots, roll-forward, shortfalls."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from api.deps import ConnDep, CurrentEntity
from api.envelope import list_success, success
from api.errors import ApiError
from api.routes import COMMON_ERRORS
from api.schemas import Envelope, IsoDate, ListEnvelope, RealizedPnlOut
from api.schemas_pnl import CompareOut, OpenLotOut, RealizedBreakdownOut, RollForwardOut, ShortfallOut
from transforms import pnl_reports
from transforms.cost_basis import TieOutError
from warehouse import reports

router = APIRouter(prefix="/pnl", tags=["pnl"], responses=COMMON_ERRORS)

StoredMethod = Annotated[str, Query(max_length=20, description="A book stored by the close: `configured` (the "
                                                               "entity's book) or `fifo`")]
StoredPool = Annotated[str, Query(max_length=20, description="`configured`, or for fifo: universal | account")]


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


@router.get("/realized/breakdown", response_model=ListEnvelope[RealizedBreakdownOut],
            summary="Realized PnL by asset, account, term, month or day")
def realized_breakdown(
    request: Request,
    entity: CurrentEntity,
    conn: ConnDep,
    date_from: Annotated[IsoDate, Query(alias="from", description="First disposal date, inclusive")],
    date_to: Annotated[IsoDate, Query(alias="to", description="Last disposal date, inclusive")],
    by: Annotated[str, Query(max_length=10, description="asset | account | term | month | day")] = "asset",
    method: Annotated[str, Query(max_length=20, description="fifo, lifo, hifo, lofo, average or configured")] = "configured",
    pool: Annotated[str, Query(max_length=20, description="universal | account")] = "universal",
) -> dict:
    """Realized gain of one book split by the chosen dimension; the rows add up to `/pnl/realized`. Stored books
    (fifo, configured) come from the close; other methods are computed on demand."""
    items = pnl_reports.realized_breakdown(conn, entity, date_from, date_to, by, method, pool)
    return list_success(request, items, entity=entity.name, by=by)


@router.get("/compare", response_model=Envelope[CompareOut], summary="Compare cost-basis books (what-if)")
def compare(
    request: Request,
    entity: CurrentEntity,
    conn: ConnDep,
    books: Annotated[str, Query(max_length=200, description="Comma-separated books `method:pool` (methods fifo, "
                                                            "lifo, hifo, lofo, average; pools universal, account) "
                                                            "or `configured`; the first is the base",
                                examples=["fifo:universal,hifo:account"])],
    date_from: Annotated[IsoDate, Query(alias="from", description="First disposal date, inclusive")],
    date_to: Annotated[IsoDate, Query(alias="to", description="Last disposal date, inclusive")],
) -> dict:
    """The same legs booked under several methods and pools, computed on demand: realized gain per book and,
    for every disposal, each book's gain and its difference from the base book."""
    report = pnl_reports.compare_books(conn, entity, pnl_reports.parse_books(books), date_from, date_to)
    return success(request, report)


@router.get("/lots", response_model=ListEnvelope[OpenLotOut], summary="Open lots at a close")
def lots(
    request: Request,
    entity: CurrentEntity,
    conn: ConnDep,
    as_of: Annotated[IsoDate, Query(description="Close date YYYY-MM-DD")],
    method: StoredMethod = "configured",
    pool: StoredPool = "configured",
) -> dict:
    """Every lot open at the close of `as_of` with its basis and acquisition time, as the close stored it."""
    items = pnl_reports.list_open_lots(conn, entity.id, as_of, method, pool)
    return list_success(request, items, entity=entity.name, as_of=as_of.isoformat())


@router.get("/rollforward", response_model=ListEnvelope[RollForwardOut], summary="Cost-basis roll-forward")
def rollforward(
    request: Request,
    entity: CurrentEntity,
    conn: ConnDep,
    date_from: Annotated[IsoDate, Query(alias="from", description="First day, inclusive")],
    date_to: Annotated[IsoDate, Query(alias="to", description="Last day, inclusive")],
    method: StoredMethod = "configured",
    pool: StoredPool = "configured",
) -> dict:
    """Per pool and asset: opening + acquired − disposed + transferred in − transferred out = closing, in
    quantity and USD basis. A pool that does not tie out is an INTERNAL_ERROR, never a silent figure."""
    try:
        items = pnl_reports.rollforward(conn, entity.id, date_from, date_to, method, pool)
    except TieOutError as exc:
        raise ApiError(str(exc)) from None  # INTERNAL_ERROR: a tie-out failure is a bug, not a figure
    return list_success(request, items, entity=entity.name)


@router.get("/shortfalls", response_model=ListEnvelope[ShortfallOut], summary="Shortfalls (disposals without lots)")
def shortfalls(
    request: Request,
    entity: CurrentEntity,
    conn: ConnDep,
    date_from: Annotated[IsoDate, Query(alias="from", description="First day, inclusive")],
    date_to: Annotated[IsoDate, Query(alias="to", description="Last day, inclusive")],
    method: StoredMethod = "configured",
    pool: StoredPool = "configured",
) -> dict:
    """Disposals that took more than the pool held: the excess has zero basis and is flagged until the
    missing acquisition arrives and the close is rerun."""
    items = pnl_reports.list_shortfalls(conn, entity.id, date_from, date_to, method, pool)
    return list_success(request, items, entity=entity.name)


"""The general ledger over the read API: journal entries, trial balance and tie-out (each also CSV and XLSX)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from api.cache import cached_by_snapshot
from api.deps import ConnDep, CurrentEntity, check_date_range
from api.envelope import list_success
from api.errors import Conflict
from api.exports import EXPORT_RESPONSES, FormatQuery, columns_of, export_response, list_or_export, requested_format
from api.routes import COMMON_ERRORS, CONFLICT_ERROR
from api.params import StoredMethodValue, StoredPoolValue
from api.schemas import (
    AssetRollforwardRowOut,
    IsoDate,
    JournalEntryOut,
    JournalLineRow,
    ListEnvelope,
    TieoutRowOut,
    TrialBalanceRowOut,
)
from transforms.journal_book import JournalError
from warehouse import journal, reports

router = APIRouter(tags=["journal"], responses={**COMMON_ERRORS, **CONFLICT_ERROR})

MethodQuery = Annotated[StoredMethodValue, Query(description="Book: `configured` (the entity's book, default) or "
                                                            "`fifo` (a stored reference book)")]
PoolQuery = Annotated[StoredPoolValue | None, Query(
    description="Pool of the fifo book: universal or account (required with fifo; with configured, omitted or "
                "`configured`: other combinations are a 422)")]


def _book_error(exc: JournalError) -> Conflict:
    return Conflict(f"the stored book cannot be journaled: {exc}")


@router.get("/journal-entries", response_model=ListEnvelope[JournalEntryOut], summary="Journal entries per day and event",
            responses=EXPORT_RESPONSES)
@cached_by_snapshot
def list_journal_entries(
    request: Request,
    entity: CurrentEntity,
    conn: ConnDep,
    date_from: Annotated[IsoDate, Query(alias="from", description="First close day, inclusive")],
    date_to: Annotated[IsoDate, Query(alias="to", description="Last close day, inclusive")],
    method: MethodQuery = "configured",
    pool: PoolQuery = None,
    account: Annotated[str | None, Query(max_length=200, description="Only entries with a line of this ledger "
                                                                     "account (name or id)")] = None,
    fmt: FormatQuery = None,
):
    """Balanced entries per close day and event type, in the entity's reporting currency and in cents, written from
    the cost-basis book (its disposals, acquisitions and transfers at cost): digital assets per asset (and account
    for a per-account book), cash, clearing, realized gain/loss, income by type, fee expense, loans, and one
    rounding line. GL accounts are the entity's mapping (`coinfrs journal set-account`; `meta.accounts`). The
    CSV/XLSX export has one row per line. A range longer than the synchronous limit is a 400 naming it."""
    check_date_range(request, date_from, date_to, required=True)
    account_ids = reports.resolve_account_ids(conn, entity.id, account) if account and account.strip() else None
    try:
        entries = journal.journal_entries(conn, entity, date_from, date_to, method=method, pool=pool,
                                          account_ids=account_ids)
    except JournalError as exc:
        raise _book_error(exc) from None
    out = requested_format(request, fmt)
    if out != "json":
        return export_response(out, f"journal-{entity.name}-{date_from}-{date_to}", columns_of(JournalLineRow),
                               journal.flatten_lines(entries))
    mapping = journal.load_account_map(conn, entity.id)
    return list_success(request, entries, entity=entity.name, **{"from": date_from.isoformat(),
                                                                 "to": date_to.isoformat()},
                        accounts={role: {"code": a.code, "name": a.name} for role, a in mapping.roles().items()})


@router.get("/journal/trial-balance", response_model=ListEnvelope[TrialBalanceRowOut], summary="Trial balance",
            responses=EXPORT_RESPONSES)
@cached_by_snapshot
def get_trial_balance(
    request: Request,
    entity: CurrentEntity,
    conn: ConnDep,
    date_from: Annotated[IsoDate, Query(alias="from", description="First close day of the period")],
    date_to: Annotated[IsoDate, Query(alias="to", description="Last close day of the period")],
    method: MethodQuery = "configured",
    pool: PoolQuery = None,
    fmt: FormatQuery = None,
):
    """Per GL account: the opening balance (every entry before the period), the period's debits and credits and
    the closing balance, debit positive, in cents. The closings sum to zero."""
    check_date_range(request, date_from, date_to, required=True)
    try:
        rows = journal.trial_balance(conn, entity, date_from, date_to, method=method, pool=pool)
    except JournalError as exc:
        raise _book_error(exc) from None
    return list_or_export(request, fmt, f"trial-balance-{entity.name}-{date_from}-{date_to}", TrialBalanceRowOut, rows,
                          entity=entity.name, **{"from": date_from.isoformat(), "to": date_to.isoformat()})


@router.get("/journal/tieout", response_model=ListEnvelope[TieoutRowOut], summary="GL against the subledger at a close",
            responses=EXPORT_RESPONSES)
@cached_by_snapshot
def get_tieout(
    request: Request,
    entity: CurrentEntity,
    conn: ConnDep,
    day: Annotated[IsoDate, Query(alias="date", description="Close day")],
    method: MethodQuery = "configured",
    pool: PoolQuery = None,
    fmt: FormatQuery = None,
):
    """The GL digital-asset balance per asset (and ledger account for a per-account book) against the cost basis of
    the open lots at the close, to the cent. A row that does not tie carries the day's entries that touch it and its
    open lots; the close of such a day is failed."""
    try:
        rows = journal.tieout_rows(conn, entity, day, method=method, pool=pool)
    except JournalError as exc:
        raise _book_error(exc) from None
    return list_or_export(request, fmt, f"tieout-{entity.name}-{day}", TieoutRowOut, rows, entity=entity.name,
                          date=day.isoformat(), ties=all(r["ties"] for r in rows))


@router.get("/journal/asset-rollforward", response_model=ListEnvelope[AssetRollforwardRowOut],
            summary="Asset roll-forward in quantity, cost and fair value", responses=EXPORT_RESPONSES)
@cached_by_snapshot
def get_asset_rollforward(
    request: Request,
    entity: CurrentEntity,
    conn: ConnDep,
    date_from: Annotated[IsoDate, Query(alias="from", description="First close day of the period")],
    date_to: Annotated[IsoDate, Query(alias="to", description="Last close day of the period")],
    method: MethodQuery = "configured",
    pool: PoolQuery = None,
    fmt: FormatQuery = None,
):
    """Per asset (and ledger account for a per-account book): opening + in - out - fees = closing, in quantity and
    cost (exact decimals), and in fair value at the opening and closing close prices, in the reporting currency."""
    check_date_range(request, date_from, date_to, required=True)
    try:
        rows = journal.asset_rollforward_rows(conn, entity, date_from, date_to, method=method, pool=pool)
    except JournalError as exc:
        raise _book_error(exc) from None
    return list_or_export(request, fmt, f"asset-rollforward-{entity.name}-{date_from}-{date_to}",
                          AssetRollforwardRowOut, rows, entity=entity.name,
                          **{"from": date_from.isoformat(), "to": date_to.isoformat()})

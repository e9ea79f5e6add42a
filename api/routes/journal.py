"""``GET /api/v1/journal-entries``: balanced double-entry lines per day and account, for the general ledger."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from api.cache import cached_by_snapshot
from api.deps import ConnDep, CurrentEntity, check_date_range
from api.envelope import list_success
from api.exports import EXPORT_RESPONSES, FormatQuery, columns_of, export_response, requested_format
from api.routes import COMMON_ERRORS
from api.schemas import IsoDate, JournalEntryOut, JournalLineRow, ListEnvelope
from warehouse import journal, reports

router = APIRouter(tags=["journal"], responses=COMMON_ERRORS)


@router.get("/journal-entries", response_model=ListEnvelope[JournalEntryOut], summary="Journal entries per day",
            responses=EXPORT_RESPONSES)
@cached_by_snapshot
def list_journal_entries(
    request: Request,
    entity: CurrentEntity,
    conn: ConnDep,
    date_from: Annotated[IsoDate, Query(alias="from", description="First close day, inclusive")],
    date_to: Annotated[IsoDate, Query(alias="to", description="Last close day, inclusive")],
    method: Annotated[str, Query(max_length=20, description="Cost-basis method: "
                                 + ", ".join(reports.PNL_METHODS))] = "fifo",
    pool: Annotated[str, Query(max_length=20, description="Lot pool: universal or account")] = "universal",
    account: Annotated[str | None, Query(max_length=200, description="Account name or id")] = None,
    fmt: FormatQuery = None,
):
    """One balanced entry per close day and account (USD): digital-asset inventory, realized gain/loss, fee
    expense, income and a clearing account, mapped to the entity's general-ledger accounts
    (`coinfrs journal set-account`; `meta.accounts` shows the mapping). The CSV/XLSX export has one row per
    line. A from..to range longer than the synchronous limit (default 366 days) is a 400 naming the limit."""
    check_date_range(request, date_from, date_to, required=True)
    account_ids = reports.resolve_account_ids(conn, entity.id, account) if account and account.strip() else None
    entries = journal.compute_journal_entries(conn, entity.id, date_from, date_to, method=method, pool=pool,
                                              account_ids=account_ids)
    out = requested_format(request, fmt)
    if out != "json":
        return export_response(out, f"journal-{entity.name}-{date_from}-{date_to}", columns_of(JournalLineRow),
                               journal.flatten_lines(entries))
    mapping = journal.load_account_map(conn, entity.id)
    return list_success(request, entries, entity=entity.name, **{"from": date_from.isoformat(),
                                                                 "to": date_to.isoformat()},
                        accounts={role: {"code": a.code, "name": a.name} for role, a in mapping.items()})

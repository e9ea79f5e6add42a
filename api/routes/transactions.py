"""``GET /api/v1/transactions`` (paginated legs) and ``GET /api/v1/transactions/{id}`` (one leg with its source)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request

from api.cache import cached_by_snapshot
from api.deps import ConnDep, CurrentEntity, check_date_range, open_stream_connection
from api.envelope import list_success, success
from api.errors import NotFound, Unprocessable
from api.exports import EXPORT_RESPONSES, XLSX_MAX_ROWS, FormatQuery, columns_of, export_response, requested_format
from api.routes import COMMON_ERRORS
from api.params import Cursor, KindQuery
from api.schemas import Envelope, IsoDate, LegOut, ListEnvelope, TransactionDetailOut
from warehouse import reports

router = APIRouter(tags=["transactions"], responses=COMMON_ERRORS)


@router.get("/transactions", response_model=ListEnvelope[LegOut], summary="Ledger legs, filtered and paginated",
            responses=EXPORT_RESPONSES)
@cached_by_snapshot
def list_transactions(
    request: Request,
    entity: CurrentEntity,
    conn: ConnDep,
    date_from: Annotated[IsoDate | None, Query(alias="from", description="First close date, inclusive")] = None,
    date_to: Annotated[IsoDate | None, Query(alias="to", description="Last close date, inclusive")] = None,
    account: Annotated[str | None, Query(max_length=200, description="Account name (all its types and "
                                                                     "sub-accounts) or numeric account id")] = None,
    asset: Annotated[str | None, Query(max_length=100, description="Asset symbol, e.g. BTC")] = None,
    kind: KindQuery = None,
    transfer_status: Annotated[Literal["matched", "unmatched_out", "unmatched_in", "none"] | None, Query(
        description="matched | unmatched_out | unmatched_in, or none for legs that are no transfer")] = None,
    cursor: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=reports.MAX_LIMIT, description="Page size (1-1000)")] = reports.DEFAULT_LIMIT,
    fmt: FormatQuery = None,
):
    """One row per movement of one asset in one account, in time order (ts, id), with its group, its transfer
    status and counterpart leg, and the id of its raw source record (`GET /transactions/{id}` shows the record).
    Keyset pagination: pass `meta.next_cursor` back as `cursor` with the same filters until it is null.
    With `format=csv|xlsx`, every leg matching the filters is streamed (no page, `cursor` and `limit` ignored).
    A from..to range longer than the synchronous limit (default 366 days) is a 400 naming the limit."""
    check_date_range(request, date_from, date_to)
    out = requested_format(request, fmt)
    if out != "json":
        query, _ = reports.transactions_query(conn, entity.id, date_from=date_from, date_to=date_to,
                                              account=account, asset=asset, kind=kind,
                                              transfer_status=transfer_status, tz=entity.tz)
        if out == "xlsx":
            count = query.count(conn)
            if count > XLSX_MAX_ROWS:
                raise Unprocessable.for_field("format", f"{count} legs match: more than an XLSX sheet holds "
                                                           f"({XLSX_MAX_ROWS}); narrow the filters or use csv")
        stream = open_stream_connection(request)
        rows = (reports.leg_dict(r) for r in query.rows(stream.execution_options(stream_results=True, yield_per=1000)))
        return export_response(out, f"transactions-{entity.name}", columns_of(LegOut), rows, on_close=stream.close)
    page = reports.list_transactions(conn, entity.id, date_from=date_from, date_to=date_to, account=account,
                                     asset=asset, kind=kind, transfer_status=transfer_status, cursor=cursor,
                                     limit=limit, tz=entity.tz)
    return list_success(request, page.items, next_cursor=page.next_cursor, limit=page.limit, entity=entity.name,
                        filters=page.filters)


@router.get("/transactions/{tx_id}", response_model=Envelope[TransactionDetailOut],
            summary="One leg with its event's other legs and its raw source record")
@cached_by_snapshot
def get_transaction(
    request: Request,
    entity: CurrentEntity,
    conn: ConnDep,
    tx_id: Annotated[int, Path(ge=1, le=2**63 - 1, description="The leg id")],
) -> dict:
    """The leg, `group_legs` (the other legs of the same trade, transfer, ...) and `raw_record`: the staging
    record exactly as the source gave it (source, stream, source id, payload, file and line, ingestion time)."""
    leg = reports.get_transaction(conn, entity.id, tx_id)
    if leg is None:
        raise NotFound("transaction not found", [{"field": "tx_id", "location": "path",
                                                  "message": "no such transaction for this API key"}])
    return success(request, leg, entity=entity.name)

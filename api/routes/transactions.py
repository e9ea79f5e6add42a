"""``GET /api/v1/transactions`` (paginated legs) and ``GET /api/v1/transactions/{id}`` (one leg with its source)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from api.deps import ConnDep, CurrentEntity
from api.envelope import list_success, success
from api.errors import NotFound
from api.routes import COMMON_ERRORS
from api.schemas import Envelope, IsoDate, LegOut, ListEnvelope, TransactionDetailOut
from warehouse import reports

router = APIRouter(tags=["transactions"], responses=COMMON_ERRORS)


@router.get("/transactions", response_model=ListEnvelope[LegOut], summary="Ledger legs, filtered and paginated")
def list_transactions(
    request: Request,
    entity: CurrentEntity,
    conn: ConnDep,
    date_from: Annotated[IsoDate | None, Query(alias="from", description="First close date, inclusive")] = None,
    date_to: Annotated[IsoDate | None, Query(alias="to", description="Last close date, inclusive")] = None,
    account: Annotated[str | None, Query(max_length=200, description="Account name (all its types and "
                                                                     "sub-accounts) or numeric account id")] = None,
    asset: Annotated[str | None, Query(max_length=100, description="Asset symbol, e.g. BTC")] = None,
    kind: Annotated[str | None, Query(max_length=50, description="Leg kind: buy, sell, fee, deposit, withdrawal, "
                                                                 "transfer_in, transfer_out, income, ...")] = None,
    cursor: Annotated[str | None, Query(max_length=512, description="`meta.next_cursor` of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=reports.MAX_LIMIT, description="Page size (1-1000)")] = reports.DEFAULT_LIMIT,
) -> dict:
    """One row per movement of one asset in one account, in time order (ts, id). Keyset pagination: pass
    `meta.next_cursor` back as `cursor` with the same filters until it is null."""
    page = reports.list_transactions(conn, entity.id, date_from=date_from, date_to=date_to, account=account,
                                     asset=asset, kind=kind, cursor=cursor, limit=limit)
    return list_success(request, page.items, next_cursor=page.next_cursor, limit=page.limit, entity=entity.name,
                        filters=page.filters)


@router.get("/transactions/{tx_id}", response_model=Envelope[TransactionDetailOut],
            summary="One leg with its event's other legs and its raw source record")
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

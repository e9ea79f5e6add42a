"""``GET /api/v1/accounts`` and ``/accounts/{id}``: accounts with source, last sync and freshness."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request

from api.deps import ConnDep, CurrentEntity
from api.envelope import list_success, success
from api.errors import NotFound
from api.exports import EXPORT_RESPONSES, FormatQuery, columns_of, export_response, requested_format
from api.routes import COMMON_ERRORS
from api.schemas import AccountOut, Envelope, ListEnvelope
from warehouse import catalog
from warehouse.settings import get_settings

router = APIRouter(tags=["accounts"], responses=COMMON_ERRORS)


@router.get("/accounts", response_model=ListEnvelope[AccountOut], summary="Accounts of an entity",
            responses=EXPORT_RESPONSES)
def list_accounts(request: Request, entity: CurrentEntity, conn: ConnDep, fmt: FormatQuery = None):
    """Every account of the entity (exchange accounts by type and sub-account, wallets by chain and address),
    with its source, when it was last synced and whether that is fresh."""
    items = catalog.list_accounts(conn, entity.id, stale_after_hours=get_settings().api_freshness_hours)
    out = requested_format(request, fmt)
    if out != "json":
        return export_response(out, f"accounts-{entity.name}", columns_of(AccountOut), items)
    return list_success(request, items, entity=entity.name)


@router.get("/accounts/{account_id}", response_model=Envelope[AccountOut], summary="One account")
def get_account(request: Request, entity: CurrentEntity, conn: ConnDep,
                account_id: Annotated[int, Path(ge=1, le=2**63 - 1, description="The account id")]) -> dict:
    """One account of the entity with its sync freshness; another entity's account is 404."""
    items = catalog.list_accounts(conn, entity.id, stale_after_hours=get_settings().api_freshness_hours,
                                  account_id=account_id)
    if not items:
        raise NotFound("account not found", [{"field": "account_id", "location": "path",
                                              "message": "no such account for this API key"}])
    return success(request, items[0], entity=entity.name)

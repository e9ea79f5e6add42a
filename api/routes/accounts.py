"""``GET /api/v1/accounts``: the entity's accounts."""

from __future__ import annotations

from fastapi import APIRouter, Request

from api.deps import ConnDep, CurrentEntity
from api.envelope import list_success
from api.routes import COMMON_ERRORS
from api.schemas import AccountOut, ListEnvelope
from warehouse import reports

router = APIRouter(tags=["accounts"], responses=COMMON_ERRORS)


@router.get("/accounts", response_model=ListEnvelope[AccountOut], summary="Accounts of an entity")
def list_accounts(request: Request, entity: CurrentEntity, conn: ConnDep) -> dict:
    """Every account of the entity (exchange accounts by type and sub-account, wallets by chain and address)."""
    return list_success(request, reports.list_accounts(conn, entity.id), entity=entity.name)

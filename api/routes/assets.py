"""``GET /api/v1/assets`` and ``/assets/{id}``: the asset registry entries an entity uses."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from api.deps import ConnDep, CurrentEntity
from api.envelope import list_success, success
from api.errors import NotFound
from api.exports import EXPORT_RESPONSES, FormatQuery, columns_of, export_response, requested_format
from api.routes import COMMON_ERRORS
from api.schemas import AssetOut, Envelope, ListEnvelope
from warehouse import catalog

router = APIRouter(tags=["assets"], responses=COMMON_ERRORS)


@router.get("/assets", response_model=ListEnvelope[AssetOut], summary="Assets the entity holds or moved",
            responses=EXPORT_RESPONSES)
def list_assets(
    request: Request,
    entity: CurrentEntity,
    conn: ConnDep,
    unverified: Annotated[bool | None, Query(description="true: only assets missing from the registry "
                                                         "(kept and flagged); false: only registered ones")] = None,
    fmt: FormatQuery = None,
):
    """Registry entries used by the entity's legs or positions: symbol, decimals, fiat flag, the unverified
    flag and every per-source alias (exchange symbol, chain + contract address, price-provider id)."""
    items = catalog.list_assets(conn, entity.id, unverified=unverified)
    out = requested_format(request, fmt)
    if out != "json":
        return export_response(out, f"assets-{entity.name}", columns_of(AssetOut), items)
    return list_success(request, items, entity=entity.name)


@router.get("/assets/{asset_id}", response_model=Envelope[AssetOut], summary="One asset")
def get_asset(request: Request, entity: CurrentEntity, conn: ConnDep,
              asset_id: Annotated[int, Path(ge=1, le=2**63 - 1, description="The asset id")]) -> dict:
    """One registry entry with its aliases, if the entity uses it (else 404)."""
    item = catalog.get_asset(conn, entity.id, asset_id)
    if item is None:
        raise NotFound("asset not found", [{"field": "asset_id", "location": "path",
                                            "message": "no such asset for this API key"}])
    return success(request, item, entity=entity.name)

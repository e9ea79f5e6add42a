"""``GET /api/v1/close-periods`` (locked periods with who, why and sign-offs) and ``GET /api/v1/close-audit`` (the
audit log of locks, unlocks, sign-offs and voids; admin scope). Writing stays with the CLI (`coinfrs close lock|
unlock|signoff`): the API is read-only."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request

from api.cache import cached_by_snapshot
from api.deps import AdminKey, ConnDep, CurrentEntity
from api.envelope import list_success
from api.errors import Unprocessable
from api.routes import error_responses
from api.params import Cursor
from api.schemas import IsoDate, ListEnvelope
from api.schemas_periods import AuditEntryOut, PeriodOut
from reconciliation.periods import PeriodError, audit_log, jsonable, list_periods

router = APIRouter(tags=["closes"], responses=error_responses(400, 401, 404, 422, 429, 500, 503))
FromQuery = Annotated[IsoDate | None, Query(alias="from", description="Periods ending on or after this day")]
ToQuery = Annotated[IsoDate | None, Query(alias="to", description="Periods starting on or before this day")]


@router.get("/close-periods", response_model=ListEnvelope[PeriodOut], summary="Locked periods and their sign-offs")
@cached_by_snapshot
def list_close_periods(
    request: Request,
    entity: CurrentEntity,
    conn: ConnDep,
    date_from: FromQuery = None,
    date_to: ToQuery = None,
    locked_only: Annotated[bool, Query(description="Only the periods locked now (not the unlocked ones)")] = False,
) -> dict:
    """Every period lock overlapping from..to, in day order: its days, who locked it and why, who unlocked it and why
    (if it was), and its preparer and reviewer sign-offs (a sign-off is void once its period is unlocked)."""
    if date_from and date_to and date_from > date_to:
        raise Unprocessable.for_field("from", f"from ({date_from}) is after to ({date_to})")
    locks = list_periods(conn, entity, date_from, date_to, include_unlocked=not locked_only)
    return list_success(request, [jsonable(lock.as_dict()) for lock in locks], entity=entity.name)


@router.get("/close-audit", response_model=ListEnvelope[AuditEntryOut], summary="Audit log of the period close (admin)",
            responses=error_responses(403))
def list_close_audit(
    request: Request,
    key: AdminKey,
    entity: CurrentEntity,
    conn: ConnDep,
    date_from: FromQuery = None,
    date_to: ToQuery = None,
    action: Annotated[Literal["lock", "unlock", "signoff", "void"] | None, Query(description="Only this action")] = None,
    cursor: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="Page size (1-1000)")] = 100,
) -> dict:
    """Every lock, unlock, sign-off and void of the entity's periods, oldest first, with who did it, when and why.
    Written once: the database refuses to change or delete an entry. Needs a key with the `admin` scope (else 403).
    Keyset pagination: pass `meta.next_cursor` back as `cursor` with the same filters until it is null."""
    if date_from and date_to and date_from > date_to:
        raise Unprocessable.for_field("from", f"from ({date_from}) is after to ({date_to})")
    try:
        page = audit_log(conn, entity, date_from=date_from, date_to=date_to, action=action, cursor=cursor, limit=limit)
    except PeriodError as exc:
        raise Unprocessable.for_field("cursor", str(exc)) from None
    return list_success(request, jsonable(page.items), next_cursor=page.next_cursor, limit=page.limit,
                        entity=entity.name)

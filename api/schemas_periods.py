"""Response models of the period-close routes (``api/routes/periods.py``)."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import ConfigDict, Field

from api.schemas import Model


class SignOffOut(Model):
    role: Literal["preparer", "reviewer"]
    signed_by: str
    note: str | None
    signed_at: dt.datetime
    valid: bool = Field(description="false once voided (the period was unlocked)")
    voided_at: dt.datetime | None
    void_reason: str | None


class PeriodOut(Model):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "id": 7, "entity": "acme-fund", "period": "2026-01", "first_day": "2026-01-01", "last_day": "2026-01-31",
        "days": 31, "state": "reviewed", "locked": True, "locked_by": "alice", "lock_reason": "January books closed",
        "locked_at": "2026-02-03T09:12:00Z", "unlocked_by": None, "unlock_reason": None, "unlocked_at": None,
        "signoffs": [{"role": "preparer", "signed_by": "alice", "note": None, "signed_at": "2026-02-03T09:15:00Z",
                      "valid": True, "voided_at": None, "void_reason": None}]}]})

    id: int
    entity: str
    period: str = Field(description="a month (2026-01), `through <date>` or one day")
    first_day: dt.date
    last_day: dt.date
    days: int
    state: Literal["locked", "prepared", "reviewed", "unlocked"] = Field(
        description="locked: no sign-off yet; prepared: the preparer signed; reviewed: preparer and reviewer signed; "
                    "unlocked: released (its sign-offs are void)")
    locked: bool
    locked_by: str
    lock_reason: str
    locked_at: dt.datetime
    unlocked_by: str | None
    unlock_reason: str | None
    unlocked_at: dt.datetime | None
    signoffs: list[SignOffOut] = Field(description="every sign-off of this lock, valid or void, in order")


class AuditEntryOut(Model):
    id: int
    at: dt.datetime
    entity: str
    action: Literal["lock", "unlock", "signoff", "void"]
    actor: str = Field(description="who did it (as given to --by)")
    reason: str | None = Field(description="why (lock, unlock), the note of a sign-off, or why a sign-off was voided")
    period_lock_id: int | None
    period: str
    first_day: dt.date
    last_day: dt.date
    details: dict[str, Any] = Field(description="days locked or released, statuses, the role signed or voided")

"""Response models of ``api/routes/classifications.py``. Quantities are exact decimal text, never numbers."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import Field

from api.schemas import Model, Quantity


class UnclassifiedLegOut(Model):
    leg_id: int = Field(description="the leg to classify (`coinfrs classify --leg`)")
    date: dt.date = Field(description="its close day: PnL is blocked from this day until it is classified")
    ts: dt.datetime
    account: str
    account_type: str
    asset: str
    quantity: Quantity
    leg_index: int
    raw_record_id: int
    source: str
    stream: str
    source_raw_id: str = Field(description="the source's own id of the record")
    raw_record: dict[str, Any] = Field(description="the record exactly as the source gave it")


class ClassificationOut(Model):
    source: str
    stream: str
    source_raw_id: str = Field(description="the source's own id of the record (every version of it is classified)")
    leg_index: int
    mapped_kind: str = Field(description="what the mapper had said (often `unclassified`)")
    kind: str = Field(description="the kind a person gave it (transforms/events.py vocabulary)")
    classified_by: str = Field(description="who")
    reason: str = Field(description="why")
    classified_at: dt.datetime = Field(description="when")
    leg_ids: list[int] = Field(description="the current legs it applies to (empty until the next canonical build)")
    date: dt.date | None = Field(description="the close day of those legs")

"""Response models of the reconciliation and close routes (``api/routes/reconciliation.py``,
``api/routes/closes.py``). Quantities are exact decimal text, never numbers."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import ConfigDict, Field

from api.schemas import BreakOut, CloseOut, Model, Quantity

CauseCode = Literal["unmatched_transfer", "missing_leg", "duplicate_leg", "fee", "missing_stream", "quarantined_record",
                    "missing_trade", "unknown_asset", "timing"]


class CauseOut(Model):
    code: CauseCode = Field(description="stable cause code")
    rank: int = Field(description="1 = most likely")
    score: float = Field(description="how strongly the evidence points at this cause, 0..1 (a ranking score, not money)")
    evidence: str = Field(description="one readable sentence: what was found")
    data: dict[str, Any] = Field(description="the figures and leg ids behind the evidence (decimals as text)")


class BreakWithCausesOut(BreakOut):
    causes: list[CauseOut] = Field(description="ranked candidate causes, best first; empty when nothing explains it")


class ResultOut(Model):
    date: dt.date
    suite: str
    expectation: str
    success: bool
    severity: Literal["error", "warn"]
    checked_count: int | None
    failed_count: int | None
    observed_value: Any = Field(description="what the expectation observed")
    failing_rows: list[dict[str, Any]] = Field(description="the rows that failed (up to 100)")
    checked_at: dt.datetime


class QuarantinedOut(Model):
    date: dt.date = Field(description="the close date the record belongs to (its day closes partial)")
    source: str
    stream: str
    account: str
    source_raw_id: str = Field(description="the source's own id of the record")
    raw_record_id: int = Field(description="the staged version that failed (raw_records.id)")
    field: str | None = Field(description="the field the error names, when it names one")
    error: str = Field(description="what the mapper could not read, naming the record and the field")


class LocalisedBreakOut(Model):
    account: str
    asset: str
    account_id: int
    asset_id: int
    first_day: dt.date = Field(description="first day of the range where reported and computed disagree")
    already_off_at_start: bool
    difference_first_day: Quantity
    difference_last_day: Quantity
    persists: bool = Field(description="still off on the last day of the range")
    days_off: int
    cleared_on: dt.date | None
    break_days: list[dt.date]


class ProvenanceOut(Model):
    code_version: str
    input_counts: dict[str, int]
    source_cursors: dict[str, Any]
    output_hash: str = Field(description="sha256 of the close's outputs (figures, positions, breaks) when it closed")
    current_hash: str = Field(description="the same hash recomputed now")
    unchanged: bool = Field(description="current_hash == output_hash, and every digest of the day's inputs and "
                                        "derived rows recomputed now equals the one stored at the close")
    changed: list[str] = Field(default_factory=list,
                               description="what differs now: outputs, inputs.legs, inputs.raw_records, outputs.events, outputs.transfers, "
                                           "outputs.pnl_disposals, outputs.pnl_daily")
    computed_at: dt.datetime
    run_id: str | None


class CloseDetailOut(CloseOut):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        **CloseOut.model_config["json_schema_extra"]["examples"][0],  # type: ignore[index]
        "provenance": {"code_version": "1.4.0+g1b86f91", "input_counts": {"legs": 412, "raw_records": 230},
                       "source_cursors": {"binance/trades": "2024-03-01T23:59:58Z"},
                       "output_hash": "5e1d...", "current_hash": "5e1d...", "unchanged": True, "changed": [],
                       "computed_at": "2024-03-02T01:00:12Z", "run_id": "8f0c2d1e"},
        "report_url": "https://coinfrs.example/api/v1/closes/2024-03-01/report?entity=acme-fund"}]})

    provenance: ProvenanceOut | None
    report_url: str | None = Field(description="the HTML close report")

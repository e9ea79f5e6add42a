"""Breaks that keep their identity: written by upsert on their natural key, resolved (with the reason) when a
re-close no longer finds them, and every change recorded in ``break_events``.

A break is identified by (entity, day, account, asset) (``uq_breaks_day``): its row, and so its id, lives as long
as the day is not rebuilt from scratch, whatever the closes in between. ``coinfrs recon ack --break N`` works after
any number of re-closes.

Statuses:

- ``open``: the day does not tie; counted by the close, blocks the lock.
- ``acknowledged``: a person accepted it with a reason (``break_actions``); a re-close keeps it while the
  difference is the one acknowledged, else it is open again.
- ``adjusted``: a person staged an adjustment leg for it; the next close of the day books it and the break is
  resolved (or open again with what is left).
- ``resolved``: a re-close no longer finds it. It stays listed, with ``resolution`` (why) and
  ``resolution_detail`` (the record, action or figure behind it):

  ===================  ==========================================================================================
  ``adjustment``       an adjustment leg entered for this break (``coinfrs recon adjust``) since the close found it
  ``corrected_record`` a source restated a record of the window since: a new version of a staged record, or a
                       new balance snapshot for the window
  ``late_data``        a record of the window (or late data for a locked day, booked on this day) arrived since
  ``recomputed``       none of those: the difference went away when the day was computed again (an earlier day,
                       a price, a rule or the tolerance changed)
  ===================  ==========================================================================================

Every transition is an event (``opened``, ``changed``, ``reopened``, ``acknowledged``, ``adjusted``, ``resolved``)
with who (a person, or ``close``), what and why, when, and the status and difference before and after.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any, Iterable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from warehouse.numbers import D, to_text
from warehouse.schema import break_events

CLOSE_ACTOR = "close"
Key = tuple[date, int, int]  # (day, account_id, asset_id) within one entity


@dataclass(frozen=True)
class BreakState:
    """A stored break as a close sees it before (or after) writing."""

    id: int
    day: date
    account_id: int
    asset_id: int
    status: str
    difference: Decimal

    @property
    def key(self) -> Key:
        return (self.day, self.account_id, self.asset_id)


@dataclass(frozen=True)
class ResolutionEvidence:
    """What changed since a close last found a break that the current close no longer finds."""

    adjustment: str | None = None  # "an adjustment of -45 USD entered by bob: ..." (a break action since)
    new_leg_record: str | None = None  # a raw record behind a leg of the window, ingested since
    new_leg_restated: bool = False  # ... and that record is a new version of a record staged before
    restated_record: str | None = None  # a new version of a record of the window, ingested since (any leg)
    new_snapshot: str | None = None  # a balance snapshot of the window, ingested since


def transition(previous: BreakState | None, status: str, difference: Decimal) -> tuple[str, str] | None:
    """The event (and its reason) when a close finds a break: ``None`` when nothing changed (pure)."""
    if previous is None:
        return "opened", f"found by the close: reported differs from previous reported + legs of the day by {to_text(difference)}"
    if previous.status == "resolved":
        return "reopened", f"found again by the close (difference {to_text(difference)})"
    if previous.difference != difference:
        return "changed", f"the close found a difference of {to_text(difference)} (was {to_text(previous.difference)})"
    if previous.status != status:
        if status == "open":
            return "reopened", (f"the close still finds a difference of {to_text(difference)}"
                                + (" after the adjustment" if previous.status == "adjusted" else ""))
        return "changed", f"status {status}: an acknowledgement of this difference is on record"
    return None


def resolution_of(evidence: ResolutionEvidence) -> tuple[str, str]:
    """Why a break went away, from what changed since a close last found it: (code, detail) (pure)."""
    if evidence.adjustment:
        return "adjustment", evidence.adjustment
    if evidence.new_leg_record:
        if evidence.new_leg_restated:
            return "corrected_record", f"{evidence.new_leg_record} was restated by the source"
        return "late_data", f"{evidence.new_leg_record} arrived after the break was found"
    if evidence.restated_record:
        return "corrected_record", f"{evidence.restated_record} was restated by the source"
    if evidence.new_snapshot:
        return "corrected_record", f"{evidence.new_snapshot} restated the reported balance"
    return "recomputed", "the difference went away when the day was computed again"


_UPSERT = """
WITH incoming AS (
    SELECT * FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(
        date date, account_id bigint, asset_id bigint, previous_reported numeric, previous_reported_at timestamptz,
        legs_sum numeric, expected numeric, reported numeric, reported_at timestamptz, difference numeric,
        tolerance numeric, leg_ids jsonb)
)
INSERT INTO breaks AS b (entity_id, date, account_id, asset_id, previous_reported, previous_reported_at, legs_sum,
                         expected, reported, reported_at, difference, tolerance, leg_ids, status, run_id, seen_at)
SELECT :e, i.date, i.account_id, i.asset_id, i.previous_reported, i.previous_reported_at, i.legs_sum, i.expected,
       i.reported, i.reported_at, i.difference, i.tolerance, i.leg_ids,
       -- an acknowledgement holds while the difference is the one acknowledged
       CASE WHEN EXISTS (SELECT 1 FROM break_actions x WHERE x.entity_id = :e AND x.date = i.date
                           AND x.account_id = i.account_id AND x.asset_id = i.asset_id AND x.action = 'acknowledge'
                           AND x.difference = i.difference)
            THEN 'acknowledged' ELSE 'open' END,
       :run_id, now()
FROM incoming i
ON CONFLICT (entity_id, date, account_id, asset_id) DO UPDATE SET
    previous_reported = EXCLUDED.previous_reported, previous_reported_at = EXCLUDED.previous_reported_at,
    legs_sum = EXCLUDED.legs_sum, expected = EXCLUDED.expected, reported = EXCLUDED.reported,
    reported_at = EXCLUDED.reported_at, difference = EXCLUDED.difference, tolerance = EXCLUDED.tolerance,
    leg_ids = EXCLUDED.leg_ids, status = EXCLUDED.status, run_id = EXCLUDED.run_id, seen_at = EXCLUDED.seen_at,
    resolved_at = NULL, resolution = NULL, resolution_detail = NULL
RETURNING b.id, b.date, b.account_id, b.asset_id, b.status, b.difference
"""

# what changed since the close last found each break (``seen_at``): one row per break id
_EVIDENCE = """
SELECT b.id,
       (SELECT 'an adjustment of ' || x.quantity::text || ' ' || s.symbol || ' entered by ' || x.actor || ': ' || x.reason
        FROM break_actions x WHERE x.entity_id = b.entity_id AND x.date = b.date AND x.account_id = b.account_id
          AND x.asset_id = b.asset_id AND x.action = 'adjust' AND x.created_at >= b.seen_at
        ORDER BY x.id DESC LIMIT 1) AS adjustment,
       nl.label AS new_leg_record, coalesce(nl.restated, false) AS new_leg_restated,
       (SELECT 'raw record ' || r.id || ' (' || r.source || '/' || r.stream || ' ' || r.source_raw_id || ')'
        FROM raw_records r
        WHERE r.entity_id = b.entity_id AND r.account = a.name AND r.ingested_at > b.seen_at
          AND EXISTS (SELECT 1 FROM raw_records o WHERE o.entity_id = r.entity_id AND o.source = r.source
                        AND o.account = r.account AND o.stream = r.stream AND o.source_raw_id = r.source_raw_id
                        AND o.id <> r.id AND o.ingested_at <= b.seen_at
                        AND (o.occurred_at > coalesce(b.previous_reported_at, '-infinity') AND o.occurred_at <= b.reported_at
                             OR r.occurred_at > coalesce(b.previous_reported_at, '-infinity') AND r.occurred_at <= b.reported_at))
        ORDER BY r.id LIMIT 1) AS restated_record,
       (SELECT 'balance snapshot ' || sn.id || ' (' || sn.source || ' ' || sn.account || ', '
               || to_char(sn.snapshot_time AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') || ')'
        FROM raw_balance_snapshots sn
        WHERE sn.entity_id = b.entity_id AND sn.account = a.name AND sn.account_type = a.account_type
          AND sn.sub_account = a.sub_account AND sn.ingested_at > b.seen_at
          AND sn.snapshot_time >= coalesce(b.previous_reported_at, '-infinity') AND sn.snapshot_time <= b.reported_at
        ORDER BY sn.id LIMIT 1) AS new_snapshot
FROM breaks b
JOIN accounts a ON a.id = b.account_id
JOIN assets s ON s.id = b.asset_id
LEFT JOIN LATERAL (
    SELECT 'raw record ' || r.id || ' (' || r.source || '/' || r.stream || ' ' || r.source_raw_id || ')' AS label,
           EXISTS (SELECT 1 FROM raw_records o WHERE o.entity_id = r.entity_id AND o.source = r.source
                     AND o.account = r.account AND o.stream = r.stream AND o.source_raw_id = r.source_raw_id
                     AND o.id <> r.id AND o.ingested_at <= b.seen_at) AS restated
    FROM transactions l JOIN raw_records r ON r.id = l.raw_record_id
    WHERE l.account_id = b.account_id AND l.asset_id = b.asset_id AND r.ingested_at > b.seen_at
      AND ((NOT l.is_adjustment AND l.ts > coalesce(b.previous_reported_at, '-infinity') AND l.ts <= b.reported_at)
           OR (l.is_adjustment AND l.close_date = b.date))
    ORDER BY 2 DESC, r.id LIMIT 1
) nl ON true
WHERE b.id = ANY(:ids)
"""


def _stored_states(conn: Connection, entity_id: int, start: date, end: date, locked: list[date]) -> dict[Key, BreakState]:
    rows = conn.execute(sa.text(
        """SELECT id, date, account_id, asset_id, status, difference FROM breaks
           WHERE entity_id = :e AND date BETWEEN :s AND :t AND NOT (date = ANY(:locked))"""),
        dict(e=entity_id, s=start, t=end, locked=locked)).all()
    return {(r.date, r.account_id, r.asset_id): BreakState(r.id, r.date, r.account_id, r.asset_id, r.status, r.difference)
            for r in rows}


def _event_row(entity_id: int, state: BreakState, event: str, *, previous: BreakState | None, status: str,
               difference: Decimal | None, actor: str, reason: str, run_id: str | None) -> dict[str, Any]:
    return dict(break_id=state.id, entity_id=entity_id, date=state.day, event=event,
                previous_status=previous.status if previous else None, status=status,
                previous_difference=previous.difference if previous else None, difference=difference,
                actor=actor, reason=reason, run_id=run_id)


def record_events(conn: Connection, rows: list[dict[str, Any]]) -> int:
    if rows:
        conn.execute(sa.insert(break_events), rows)
    return len(rows)


def write_breaks(conn: Connection, entity_id: int, start: date, end: date, locked: Iterable[date],
                 found: list[dict[str, Any]], *, run_id: str | None) -> dict[str, int]:
    """Write what a close of [start, end] found (``found``: one dict per break, decimals as text) for the unlocked
    days: upsert on the natural key (ids stay), resolve the stored breaks it no longer finds, record the events.
    Returns counts of ``found``, ``opened``, ``changed``, ``resolved``."""
    locked = sorted(set(locked))
    before = _stored_states(conn, entity_id, start, end, locked)
    events: list[dict[str, Any]] = []
    counts = {"found": 0, "opened": 0, "changed": 0, "resolved": 0}
    seen: set[Key] = set()
    if found:
        written = conn.execute(sa.text(_UPSERT), dict(e=entity_id, run_id=run_id, rows=json.dumps(found))).all()
        for r in written:
            state = BreakState(r.id, r.date, r.account_id, r.asset_id, r.status, r.difference)
            seen.add(state.key)
            previous = before.get(state.key)
            change = transition(previous, state.status, state.difference)
            if change is not None:
                counts["opened" if change[0] == "opened" else "changed"] += 1
                events.append(_event_row(entity_id, state, change[0], previous=previous, status=state.status,
                                         difference=state.difference, actor=CLOSE_ACTOR, reason=change[1], run_id=run_id))
        counts["found"] = len(written)
    gone = [s for key, s in before.items() if key not in seen and s.status != "resolved"]
    if gone:
        evidence = {r.id: ResolutionEvidence(r.adjustment, r.new_leg_record, r.new_leg_restated, r.restated_record,
                                             r.new_snapshot)
                    for r in conn.execute(sa.text(_EVIDENCE), dict(ids=[s.id for s in gone]))}
        updates = []
        for state in gone:
            code, detail = resolution_of(evidence.get(state.id, ResolutionEvidence()))
            updates.append(dict(id=state.id, code=code, detail=detail, run_id=run_id))
            events.append(_event_row(entity_id, state, "resolved", previous=state, status="resolved", difference=None,
                                     actor=CLOSE_ACTOR, reason=f"{code}: {detail}", run_id=run_id))
        conn.execute(sa.text(
            """UPDATE breaks SET status = 'resolved', resolved_at = now(), resolution = :code,
                                 resolution_detail = :detail, run_id = :run_id
               WHERE id = :id"""), updates)
        counts["resolved"] = len(updates)
    record_events(conn, events)
    return counts


def record_action_event(conn: Connection, brk: Any, event: str, status: str, *, actor: str, reason: str) -> None:
    """The event of a person's action on a break (``brk``: its stored row as a mapping)."""
    state = BreakState(brk["id"], brk["date"], brk["account_id"], brk["asset_id"], brk["status"], D(brk["difference"]))
    record_events(conn, [_event_row(brk["entity_id"], state, event, previous=state, status=status,
                                    difference=state.difference, actor=actor, reason=reason, run_id=None)])

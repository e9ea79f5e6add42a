"""The break workflow (acknowledge, adjust) and break localisation over a range.

- ``acknowledge_break``: a person accepts a break with a reason. The break's status becomes
  ``acknowledged`` (it no longer blocks the lock) and the action is recorded in ``break_actions``
  (who, when, why, the difference then) and in the break's history (``break_events``). A later close
  of the day keeps the acknowledgement only while the difference is the same: a break that changed
  is open again (``reconciliation/break_history.py``).
- ``adjust_break``: a person resolves a break with an adjustment leg. The leg is staged as a manual
  record (``raw_records``, source ``manual``) carrying who/when/why, so it is rebuilt with the
  canonical layer and traces back like any leg; the action is recorded; the break is ``adjusted``
  until the day is closed again (the CLI does it), which resolves it (reason ``adjustment``).
- ``localise_breaks``: over a range, for each (account, asset) whose reported balance and the
  balance computed from legs disagree, the first day they disagree and whether it persists to the
  end of the range (set-based, over ``positions``).

Breaks keep their id across re-closes (their natural key: entity, day, account, asset), so an action
names a break by the id ``coinfrs recon breaks`` shows, before or after any number of closes. A
resolved break, or one whose adjustment is not booked yet, takes no further action.

Nothing here is silent: every action is a row with its author and reason.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from reconciliation.staleness import mark_stale, mark_stale_from_time

from reconciliation.break_history import record_action_event
from transforms.adjustments import ADJUSTMENTS_STREAM, MANUAL_SOURCE
from warehouse.entities import Entity
from warehouse.numbers import D, to_text


class BreakActionError(ValueError):
    """An action on a break that is not allowed; the message says why."""


@dataclass(frozen=True)
class BreakAction:
    id: int
    break_id: int
    date: date
    action: str
    actor: str
    reason: str
    quantity: Decimal | None
    raw_record_id: int | None
    created_at: datetime


def _load_break(conn: Connection, entity: Entity, break_id: int) -> sa.RowMapping:
    row = conn.execute(sa.text(
        """SELECT b.*, a.name AS account, a.account_type, a.sub_account, s.symbol AS asset,
                  coalesce(c.locked, false) AS locked
           FROM breaks b JOIN accounts a ON a.id = b.account_id JOIN assets s ON s.id = b.asset_id
           LEFT JOIN closes c ON c.entity_id = b.entity_id AND c.date = b.date
           WHERE b.id = :id AND b.entity_id = :e"""), dict(id=break_id, e=entity.id)).mappings().first()
    if row is None:
        raise BreakActionError(f"{entity.name} has no break {break_id}: see `coinfrs recon breaks --entity {entity.name}`")
    if row["locked"]:
        raise BreakActionError(f"break {break_id} is on {row['date']}, a locked day: it never changes")
    if row["status"] == "resolved":
        raise BreakActionError(f"break {break_id} ({row['date']}, {row['account']} {row['asset']}) was resolved on "
                               f"{row['resolved_at']:%Y-%m-%d %H:%M} UTC ({row['resolution']}: {row['resolution_detail']}): "
                               "nothing left to act on")
    if row["status"] == "adjusted":
        raise BreakActionError(f"break {break_id} already has an adjustment staged: close {row['date']} again to book it "
                               f"(`coinfrs close --entity {entity.name} --date {row['date']}`)")
    return row


def _check_words(actor: str, reason: str) -> tuple[str, str]:
    actor, reason = (actor or "").strip(), (reason or "").strip()
    if not actor:
        raise BreakActionError("who: --by is required (the person taking the action)")
    if len(reason) < 3:
        raise BreakActionError("why: --reason is required (at least a few words)")
    return actor, reason


def _record(conn: Connection, brk: sa.RowMapping, action: str, actor: str, reason: str,
            quantity: Decimal | None, raw_record_id: int | None) -> BreakAction:
    row = conn.execute(sa.text(
        """INSERT INTO break_actions (entity_id, date, account_id, asset_id, action, actor, reason, quantity, difference,
                                      raw_record_id)
           VALUES (:e, :d, :acc, :asset, :action, :actor, :reason, :q, :diff, :raw)
           RETURNING id, created_at"""),
        dict(e=brk["entity_id"], d=brk["date"], acc=brk["account_id"], asset=brk["asset_id"], action=action, actor=actor,
             reason=reason, q=quantity, diff=brk["difference"], raw=raw_record_id)).one()
    return BreakAction(row.id, brk["id"], brk["date"], action, actor, reason, quantity, raw_record_id, row.created_at)


def acknowledge_break(conn: Connection, entity: Entity, break_id: int, *, actor: str, reason: str) -> BreakAction:
    """Accept a break with a reason: status ``acknowledged``, recorded with who, when and why."""
    actor, reason = _check_words(actor, reason)
    brk = _load_break(conn, entity, break_id)
    action = _record(conn, brk, "acknowledge", actor, reason, None, None)
    conn.execute(sa.text("UPDATE breaks SET status = 'acknowledged' WHERE id = :id"), dict(id=break_id))
    mark_stale(conn, entity.id, brk["date"], f"break {break_id} acknowledged")
    record_action_event(conn, brk, "acknowledged", "acknowledged", actor=actor, reason=reason)
    return action


def adjust_break(conn: Connection, entity: Entity, break_id: int, *, actor: str, reason: str,
                 quantity: Decimal | None = None, unit_price_usd: Decimal | None = None) -> BreakAction:
    """Resolve a break with an adjustment leg (default: exactly the difference), staged as a manual record."""
    actor, reason = _check_words(actor, reason)
    brk = _load_break(conn, entity, break_id)
    qty = D(brk["difference"]) if quantity is None else D(quantity)
    if qty == 0:
        raise BreakActionError(f"break {break_id}: an adjustment of zero changes nothing")
    now = datetime.now(timezone.utc)
    raw_id = f"adjustment:{uuid.uuid4()}"
    payload = {"id": raw_id, "timestamp": brk["reported_at"].isoformat(), "action": "ADJUSTMENT", "asset": brk["asset"],
               "quantity": to_text(qty), "unit_price_usd": to_text(unit_price_usd) or "", "account": brk["account"],
               "account_type": brk["account_type"], "sub_account": brk["sub_account"], "break_id": str(break_id),
               "break_date": brk["date"].isoformat(), "entered_by": actor, "entered_at": now.isoformat(), "reason": reason}
    text = json.dumps(payload, sort_keys=True)
    run_id = uuid.uuid4()
    conn.execute(sa.text(
        """INSERT INTO ingestion_runs (id, entity_id, source, stream, started_at, finished_at, rows_seen, rows_inserted, status)
           VALUES (:id, :e, :src, :stream, :now, :now, 1, 1, 'succeeded')"""),
        dict(id=run_id, e=entity.id, src=MANUAL_SOURCE, stream=ADJUSTMENTS_STREAM, now=now))
    raw_record_id = conn.execute(sa.text(
        """INSERT INTO raw_records (entity_id, source, account, stream, source_raw_id, payload, payload_hash, occurred_at,
                                    ingestion_run_id)
           VALUES (:e, :src, :acc, :stream, :rid, CAST(:payload AS jsonb), :hash, :ts, :run) RETURNING id"""),
        dict(e=entity.id, src=MANUAL_SOURCE, acc=brk["account"], stream=ADJUSTMENTS_STREAM, rid=raw_id, payload=text,
             hash=hashlib.sha256(text.encode()).hexdigest(), ts=brk["reported_at"], run=run_id)).scalar_one()
    mark_stale_from_time(conn, entity.id, brk["reported_at"], f"adjustment of break {break_id}")
    action = _record(conn, brk, "adjust", actor, reason, qty, raw_record_id)
    conn.execute(sa.text("UPDATE breaks SET status = 'adjusted' WHERE id = :id"), dict(id=break_id))
    record_action_event(conn, brk, "adjusted", "adjusted", actor=actor,
                        reason=f"adjustment of {to_text(qty)} {brk['asset']} staged (raw record {raw_record_id}): {reason}")
    return action


def list_break_actions(conn: Connection, entity_id: int, start: date, end: date) -> list[dict]:
    rows = conn.execute(sa.text(
        """SELECT x.id, b.id AS break_id, x.date, a.name AS account, s.symbol AS asset, x.action, x.actor, x.reason,
                  x.quantity, x.difference, x.raw_record_id, x.created_at
           FROM break_actions x JOIN accounts a ON a.id = x.account_id JOIN assets s ON s.id = x.asset_id
           LEFT JOIN breaks b ON b.entity_id = x.entity_id AND b.date = x.date AND b.account_id = x.account_id
                              AND b.asset_id = x.asset_id
           WHERE x.entity_id = :e AND x.date BETWEEN :s AND :t ORDER BY x.date, x.id"""),
        dict(e=entity_id, s=start, t=end)).mappings().all()
    return [{"id": r["id"], "break_id": r["break_id"], "date": r["date"].isoformat(), "account": r["account"],
             "asset": r["asset"],
             "action": r["action"], "by": r["actor"], "reason": r["reason"], "quantity": to_text(r["quantity"]),
             "difference": to_text(r["difference"]), "raw_record_id": r["raw_record_id"],
             "at": r["created_at"].isoformat()} for r in rows]


_LOCALISE = """
WITH gaps AS (
    SELECT p.account_id, p.asset_id, p.date, p.reported_quantity - p.computed_quantity AS gap,
           CASE WHEN a.chain IS NOT NULL OR a.account_type IN ('wallet', 'vault') THEN 0::numeric
                ELSE coalesce(st.tolerance, CAST(:default_tol AS numeric)) END AS tol
    FROM positions p JOIN accounts a ON a.id = p.account_id LEFT JOIN source_tolerances st ON st.source = a.source
    WHERE p.entity_id = :e AND p.date BETWEEN :s AND :t AND p.reported_quantity IS NOT NULL
),
flagged AS (SELECT *, abs(gap) > tol AS off FROM gaps)
SELECT f.account_id, f.asset_id, min(f.date) FILTER (WHERE f.off) AS first_day,
       (array_agg(f.gap ORDER BY f.date) FILTER (WHERE f.off))[1] AS first_gap,
       (array_agg(f.gap ORDER BY f.date DESC))[1] AS last_gap, bool_or(f.off AND f.date = :s) AS off_at_start,
       (array_agg(f.off ORDER BY f.date DESC))[1] AS off_at_end, max(f.date) AS last_day,
       count(*) FILTER (WHERE f.off) AS days_off,
       (SELECT array_agg(b.date ORDER BY b.date) FROM breaks b WHERE b.entity_id = :e AND b.account_id = f.account_id
          AND b.asset_id = f.asset_id AND b.date BETWEEN :s AND :t AND b.status <> 'resolved') AS break_days,
       (SELECT min(g.date) FROM flagged g WHERE g.account_id = f.account_id AND g.asset_id = f.asset_id AND NOT g.off
          AND g.date > min(f.date) FILTER (WHERE f.off)) AS first_clear_day
FROM flagged f
GROUP BY f.account_id, f.asset_id
HAVING bool_or(f.off)
ORDER BY first_day, f.account_id, f.asset_id
"""


def localise_breaks(conn: Connection, entity: Entity, start: date, end: date) -> list[dict]:
    """Per (account, asset) off over [start, end]: first day off, whether it persists to ``end``, break days."""
    from reconciliation.completeness import DEFAULT_EXCHANGE_TOLERANCE
    from warehouse.names import load_names

    if end < start:
        raise ValueError(f"--to {end} is before --from {start}")
    names = load_names(conn, entity.id)
    rows = conn.execute(sa.text(_LOCALISE), dict(e=entity.id, s=start, t=end,
                                                default_tol=DEFAULT_EXCHANGE_TOLERANCE)).mappings().all()
    return [{
        "account": names.account(r["account_id"]), "asset": names.asset(r["asset_id"]),
        "account_id": r["account_id"], "asset_id": r["asset_id"],
        "first_day": r["first_day"].isoformat(), "already_off_at_start": bool(r["off_at_start"]),
        "difference_first_day": to_text(r["first_gap"]), "difference_last_day": to_text(r["last_gap"]),
        "persists": bool(r["off_at_end"]), "days_off": r["days_off"],
        "cleared_on": r["first_clear_day"].isoformat() if r["first_clear_day"] and not r["off_at_end"] else None,
        "break_days": [d.isoformat() for d in (r["break_days"] or [])],
    } for r in rows]

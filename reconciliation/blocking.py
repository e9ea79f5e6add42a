"""Blocking per entity and day: a completeness break at ERROR severity, or a leg of kind ``unclassified`` (an
operation no mapper understands, transforms/events.py), stops PnL and the close of its entity from that day on,
while other entities (and the days before it) close normally.

Severity. An entity's reconciliation policy (``recon_policies``, ``coinfrs recon policy``) may set
``block_above_usd``: an OPEN break worth more than that (|difference| x the day's close price of the
asset; a break whose price is unknown counts as above) is at ERROR severity. Without a threshold (the
default) every break only warns, as before. Acknowledged breaks never block.

Why PnL stops at the first blocked day and not only on it: cost basis is path-dependent. Lots opened,
consumed or moved on the blocked day feed every later disposal, so booking the days after it would
book figures computed from a ledger known to be wrong. So for an entity whose first blocked day is B:

- PnL (every book) is booked up to B - 1 and not at all from B on (stored rows of those days removed);
- the close of B has status ``breaks`` when it has open breaks, else ``blocked``, and its message says why (its
  unclassified legs, labelled as such, or its breaks at ERROR severity); the days after B have status ``blocked``
  with a message naming B; none can be locked;
- once the break is acknowledged or resolved (an adjustment, late data, a corrected snapshot), the
  next close of B.. books them again.

Locked days are never touched (they cannot have open breaks: the lock refuses them).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from reconciliation.staleness import mark_stale

from transforms.transfer_matching import DEFAULT_FEE_TOLERANCE, DEFAULT_WINDOW_SECONDS
from warehouse.calendar import locked_dates
from warehouse.entities import Entity

PNL_TABLES = ("pnl_disposals", "pnl_daily", "pnl_open_lots", "pnl_book_states")


@dataclass(frozen=True)
class ReconPolicy:
    block_above_usd: Decimal | None = None
    transfer_window_seconds: int = DEFAULT_WINDOW_SECONDS
    transfer_fee_tolerance: Decimal = DEFAULT_FEE_TOLERANCE


def load_policy(conn: Connection, entity_id: int) -> ReconPolicy:
    row = conn.execute(sa.text(
        "SELECT block_above_usd, transfer_window_seconds, transfer_fee_tolerance FROM recon_policies WHERE entity_id = :e"),
        dict(e=entity_id)).first()
    if row is None:
        return ReconPolicy()
    return ReconPolicy(row.block_above_usd, row.transfer_window_seconds, row.transfer_fee_tolerance)


def write_policy(conn: Connection, entity_id: int, policy: ReconPolicy) -> ReconPolicy:
    """Store the entity's policy (validated); it applies from the next close."""
    if policy.block_above_usd is not None and policy.block_above_usd < 0:
        raise ValueError(f"block_above_usd must be 0 or more, got {policy.block_above_usd}")
    if policy.transfer_window_seconds <= 0:
        raise ValueError(f"the transfer window must be a positive number of seconds, got {policy.transfer_window_seconds}")
    if not (0 <= policy.transfer_fee_tolerance < 1):
        raise ValueError(f"the transfer fee tolerance is a fraction in [0, 1), got {policy.transfer_fee_tolerance}")
    conn.execute(sa.text(
        """INSERT INTO recon_policies (entity_id, block_above_usd, transfer_window_seconds, transfer_fee_tolerance)
           VALUES (:e, :b, :w, :f)
           ON CONFLICT (entity_id) DO UPDATE SET block_above_usd = EXCLUDED.block_above_usd,
               transfer_window_seconds = EXCLUDED.transfer_window_seconds,
               transfer_fee_tolerance = EXCLUDED.transfer_fee_tolerance, updated_at = now()"""),
        dict(e=entity_id, b=policy.block_above_usd, w=policy.transfer_window_seconds, f=policy.transfer_fee_tolerance))
    mark_stale(conn, entity_id, date.min, "the reconciliation policy changed")
    return load_policy(conn, entity_id)


def classify_breaks(conn: Connection, entity_id: int, start: date, end: date) -> int:
    """Set the severity of the breaks of [start, end] from the policy; returns how many are at ERROR severity."""
    threshold = load_policy(conn, entity_id).block_above_usd
    return conn.execute(sa.text(
        """UPDATE breaks b SET severity = CASE
               WHEN b.status = 'open' AND CAST(:limit AS numeric) IS NOT NULL
                    AND coalesce(abs(b.difference) * (SELECT p.close_price_usd FROM positions p WHERE p.account_id = b.account_id
                                                        AND p.asset_id = b.asset_id AND p.date = b.date)
                                 > CAST(:limit AS numeric), true) THEN 'error'
               ELSE 'warn' END
           WHERE b.entity_id = :e AND b.date BETWEEN :s AND :t AND b.status <> 'resolved'
             AND NOT EXISTS (SELECT 1 FROM closes c WHERE c.entity_id = b.entity_id AND c.date = b.date AND c.locked)
           RETURNING b.severity"""), dict(e=entity_id, s=start, t=end, limit=threshold)).scalars().all().count("error")


def first_blocked_day(conn: Connection, entity_id: int, up_to: date) -> date | None:
    """The entity's first day (up to ``up_to``, any earlier run included) with an open break at ERROR severity or an
    ``unclassified`` leg (an operation no mapper understands: PnL cannot be right from that day until it is classified)."""
    return conn.execute(sa.text(
        """SELECT min(day) FROM (
               SELECT min(date) AS day FROM breaks WHERE entity_id = :e AND date <= :t AND status = 'open' AND severity = 'error'
               UNION ALL
               SELECT min(close_date) FROM transactions WHERE entity_id = :e AND close_date <= :t AND kind = 'unclassified'
           ) x"""), dict(e=entity_id, t=up_to)).scalar()


def block_reason(conn: Connection, entity_id: int, day: date) -> str:
    """Why ``day`` blocks the entity's PnL: its unclassified legs (an operation no rule understands), its open breaks at
    ERROR severity, or both, in one line."""
    row = conn.execute(sa.text(
        """SELECT (SELECT count(*) FROM transactions WHERE entity_id = :e AND close_date = :d AND kind = 'unclassified') AS legs,
                  (SELECT count(*) FROM breaks WHERE entity_id = :e AND date = :d AND status = 'open' AND severity = 'error')
                  AS breaks"""), dict(e=entity_id, d=day)).one()
    reasons = []
    if row.legs:
        reasons.append(f"unclassified: {row.legs} leg(s) no rule understands (classify them: `coinfrs classify`)")
    if row.breaks:
        reasons.append(f"{row.breaks} break(s) at ERROR severity (recon policy)")
    return " and ".join(reasons) or "a break at ERROR severity (recon policy)"


def clear_pnl(conn: Connection, entity: Entity, start: date, end: date) -> None:
    """Remove every book's stored PnL of the unlocked days of [start, end] (blocked: nothing booked)."""
    params = dict(e=entity.id, s=start, t=end, locked=sorted(locked_dates(conn, entity.id, start, end)))
    for table in PNL_TABLES:
        conn.execute(sa.text(f"DELETE FROM {table} WHERE entity_id = :e AND date BETWEEN :s AND :t"
                             " AND NOT (date = ANY(:locked))"), params)


@dataclass(frozen=True)
class PnlRun:
    booked_through: date | None  # the last day PnL was booked for in this run (None: none)
    blocked_from: date | None  # the entity's first blocked day, when it falls on or before the run's end
    stats: object | None  # transforms.pnl.PnlStats of the booked part
    blocked_by: str | None = None  # why that day blocks (``block_reason``)


def build_pnl_until_blocked(conn: Connection, entity: Entity, start: date, end: date, *,
                            run_id: str | None = None) -> PnlRun:
    """Book PnL for [start, end] up to the day before the entity's first blocked day; nothing from that day on."""
    from transforms.pnl import build_pnl

    blocked = first_blocked_day(conn, entity.id, end)
    last = end if blocked is None else min(end, blocked - timedelta(days=1))
    stats = build_pnl(conn, entity, start, last, run_id=run_id) if last >= start else None
    if blocked is not None:
        clear_pnl(conn, entity, max(start, blocked), end)
    return PnlRun(last if last >= start else None, blocked, stats,
                  block_reason(conn, entity.id, blocked) if blocked is not None else None)

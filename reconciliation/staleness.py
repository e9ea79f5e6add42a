"""Fresh forward: a change to an entity's inputs makes every closed day from the first day it affects ``stale``.

Positions and cost basis roll forward, so a new or changed input on day D changes the figures of D and of every
day after it. The writers of inputs call ``mark_stale`` (or ``mark_stale_from_time``) in the transaction of their
write: staged records and balance snapshots (``ingestion/staging.py``), prices, a book change, an approved asset,
a break action, a source outage. Locked days never change (late data for them is booked as an adjustment on the
first open day), so they are never marked.

A stale day shows status ``stale`` (CLI, API, report), with what changed in its message, and cannot be locked.
Closing day D recomputes from the earliest stale (or failed) day through D (``close_window``); a close of later days while an
earlier day is still stale leaves them stale too (``restale_after``), since their figures roll forward from it.
The schedule and the inbox sensor re-close from the earliest stale day.
"""

from __future__ import annotations

from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

STALE = "stale"

_MARK = """
UPDATE closes SET status = 'stale', message = :message
WHERE entity_id = :e AND date >= :d AND NOT locked AND status NOT IN ('stale', 'failed')
"""


def mark_stale(conn: Connection, entity_id: int, first_day: date, reason: str) -> int:
    """Mark the entity's unlocked closes from ``first_day`` on ``stale`` because of ``reason``; returns how many."""
    message = f"stale: {reason} (affects {first_day} on); close again to recompute"
    return conn.execute(sa.text(_MARK), dict(e=entity_id, d=first_day, message=message[:2000])).rowcount


def mark_stale_from_time(conn: Connection, entity_id: int, moment: datetime | None, reason: str) -> int:
    """``mark_stale`` from the close day of ``moment`` in the entity's timezone (a moment at a cutoff belongs to the
    day it ends). Nothing when ``moment`` is None."""
    if moment is None:
        return 0
    day = conn.execute(sa.text(
        "SELECT ((CAST(:ts AS timestamptz) - interval '1 microsecond') AT TIME ZONE timezone)::date"
        " FROM entities WHERE id = :e"), dict(ts=moment, e=entity_id)).scalar_one()
    return mark_stale(conn, entity_id, day, reason)


def earliest_stale_day(conn: Connection, entity_id: int) -> date | None:
    """The first day whose close is not fresh: ``stale``, or ``failed`` (a failed close kept its old figures)."""
    return conn.execute(sa.text(
        "SELECT min(date) FROM closes WHERE entity_id = :e AND status IN ('stale', 'failed') AND NOT locked"),
        dict(e=entity_id)).scalar()


def close_window(conn: Connection, entity_id: int, start: date, end: date) -> date:
    """The first day a close of [start, end] must recompute: the earliest stale day when it is earlier."""
    stale = earliest_stale_day(conn, entity_id)
    return stale if stale is not None and stale < start else start


def close_starts(conn: Connection, entity_ids: list[int], start: date, end: date) -> dict[int, date]:
    """Per entity, the first day a close of [start, end] must recompute (``close_window``): entities closed together
    each start from their own earliest stale day, not from the earliest over all of them."""
    return {entity_id: close_window(conn, entity_id, start, end) for entity_id in entity_ids}


def restale_after(conn: Connection, entity_id: int, start: date, end: date) -> int:
    """After closing [start, end]: when a day before ``start`` is still stale, the days just closed roll forward
    from it and stay stale (a run launched for a single partition from the UI, say)."""
    stale = conn.execute(sa.text(
        "SELECT min(date) FROM closes WHERE entity_id = :e AND status IN ('stale', 'failed') AND date < :s AND NOT locked"),
        dict(e=entity_id, s=start)).scalar()
    if stale is None:
        return 0
    return conn.execute(sa.text(
        "UPDATE closes SET status = 'stale', message = :m WHERE entity_id = :e AND date BETWEEN :s AND :t"
        " AND NOT locked AND status <> 'failed'"),
        dict(e=entity_id, s=start, t=end,
             m=f"stale: {stale} before it is stale or failed and its figures roll forward; close from {stale}")).rowcount


def stale_days_between(conn: Connection, entity_id: int, start: date, end: date) -> list[date]:
    return list(conn.execute(sa.text(
        "SELECT date FROM closes WHERE entity_id = :e AND status = 'stale' AND date BETWEEN :s AND :t ORDER BY date"),
        dict(e=entity_id, s=start, t=end)).scalars())


def describe_stale(days: list[date]) -> str:
    span = f"{days[0]}" if len(days) == 1 else f"{days[0]}..{days[-1]} ({len(days)} days)"
    return (f"the close of {span} is stale: its inputs changed after it was closed; close again from {days[0]} "
            "(`coinfrs close --entity E --date D` recomputes from the earliest stale day)")

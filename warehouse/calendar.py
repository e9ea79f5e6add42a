"""Close days, cutoffs and locked days.

Close day D of an entity is the interval (cutoff(D-1), cutoff(D)], where cutoff(D) is the
local midnight that ends D in the entity's timezone. A moment exactly at a cutoff belongs to
the day it ends, so a balance snapshot stamped ``D+1T00:00:00`` is D's closing balance.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from warehouse.schema import closes


def close_date_of(ts: datetime, tz: ZoneInfo) -> date:
    local = ts.astimezone(tz)
    if local.hour == 0 and local.minute == 0 and local.second == 0 and local.microsecond == 0:
        return local.date() - timedelta(days=1)
    return local.date()


def cutoff_of(day: date, tz: ZoneInfo) -> datetime:
    """The instant that ends close day ``day`` in ``tz``."""
    return datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=tz)


def days_between(start: date, end: date) -> Iterator[date]:
    day = start
    while day <= end:
        yield day
        day += timedelta(days=1)


def locked_dates(conn: Connection, entity_id: int, start: date | None = None, end: date | None = None) -> set[date]:
    """Days of the entity whose close is locked: nothing of theirs is ever rewritten."""
    query = sa.select(closes.c.date).where(closes.c.entity_id == entity_id, closes.c.locked.is_(True))
    if start is not None:
        query = query.where(closes.c.date >= start)
    if end is not None:
        query = query.where(closes.c.date <= end)
    return set(conn.execute(query).scalars())


def first_open_day_after(day: date, locked: set[date]) -> date:
    candidate = day + timedelta(days=1)
    while candidate in locked:
        candidate += timedelta(days=1)
    return candidate

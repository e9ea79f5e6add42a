"""A source sync that fails marks the days it could not read as source outages (the close of those days is then
``partial`` and says which source); a later sync that succeeds clears them, since it re-read those days.

The days a sync covers run from the first day some stream of the source is not yet complete (its cursor's
``until``, in ms, or the source's ``since`` when a stream has never been read) to today in the entity's time
zone (or the last day of a bounded backfill's ``until``). Nothing staged is deleted: the outage only says the day's data may be incomplete.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, timedelta, timezone

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from reconciliation.outages import clear_outage_days, record_outage_days
from warehouse.calendar import close_date_of, days_between
from warehouse.entities import Entity
from warehouse.schema import ingestion_cursors


def first_incomplete_day(conn: Connection, entity: Entity, source: str, account: str, streams: Iterable[str],
                         since: datetime) -> date:
    """The first day some of ``streams`` (time-windowed cursors ``{"until": ms}``) has not been read through."""
    names = list(streams)
    rows = dict(conn.execute(sa.select(ingestion_cursors.c.stream, ingestion_cursors.c.cursor).where(
        ingestion_cursors.c.entity_id == entity.id, ingestion_cursors.c.source == source,
        ingestion_cursors.c.account == account, ingestion_cursors.c.stream.in_(names))).all())
    reached = [datetime.fromtimestamp(int(rows[n]["until"]) / 1000, tz=timezone.utc)
               if n in rows and isinstance(rows[n], dict) and "until" in rows[n] else since for n in names]
    # the first instant not yet read is just after ``until`` (inclusive) / at ``since``; a day ends at its cutoff
    return close_date_of(min(reached, default=since) + timedelta(milliseconds=1), entity.tz)


def last_day_read(entity: Entity, until: datetime | None) -> date:
    """The last day a sync reads: today, or the day of its ``until`` (exclusive) for a bounded backfill."""
    end = min(until, datetime.now(timezone.utc)) - timedelta(milliseconds=1) if until else datetime.now(timezone.utc)
    return close_date_of(end, entity.tz)


def mark_sync_failed(conn: Connection, entity: Entity, source: str, name: str, first_day: date, last_day: date,
                     status: str, message: str) -> int:
    """Record ``source`` as down on every day from ``first_day`` to ``last_day``; returns the number of days."""
    return record_outage_days(conn, entity.id, source, days_between(first_day, max(first_day, last_day)),
                              f"sync of source {name!r} {status}: {message}")


def clear_sync_outages(conn: Connection, entity: Entity, source: str, first_day: date, last_day: date) -> int:
    """A sync succeeded: every day from ``first_day`` (where it started reading) to ``last_day`` is complete again."""
    return clear_outage_days(conn, entity.id, source, first=first_day, through=last_day)

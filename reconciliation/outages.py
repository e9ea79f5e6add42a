"""Source outages: a source (or one of its streams) that was down for a close day.

Ingestion code calls ``record_outage_days`` (or ``record_source_outage`` for one day) when a source cannot be
read (after its retries gave up: the shared policy, ingestion/retry.py), and ``clear_outage_days`` when a later
sync read those days again. Every connector records through these two: exchanges and custodians
(ingestion/connectors.py), chains (ingestion/wallets.py), expectation suites. The close of that day is then ``partial`` (it says which
source and why) instead of pretending the data is complete, and a break of an account of that
source lists ``missing_stream`` as a cause. Data never disappears: nothing is deleted.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection

from warehouse.schema import source_outages

ALL_STREAMS = "*"


def record_source_outage(conn: Connection, entity_id: int, source: str, day: date, reason: str, *,
                         stream: str = ALL_STREAMS) -> None:
    """Record that ``source`` (or one ``stream`` of it) was down on ``day``; recording it again updates the reason."""
    if not source.strip() or not reason.strip():
        raise ValueError("a source outage needs a source and a reason")
    statement = insert(source_outages).values(entity_id=entity_id, source=source.strip(), stream=stream.strip() or ALL_STREAMS,
                                              date=day, reason=reason.strip()[:2000])
    conn.execute(statement.on_conflict_do_update(
        index_elements=["entity_id", "source", "stream", "date"],
        set_={"reason": statement.excluded.reason, "recorded_at": sa.func.now()}))


def record_outage_days(conn: Connection, entity_id: int, source: str, days: Iterable[date], reason: str, *,
                       stream: str = ALL_STREAMS) -> int:
    """Record ``source`` (or one ``stream`` of it) as down on each of ``days``; returns how many days."""
    count = 0
    for day in days:
        record_source_outage(conn, entity_id, source, day, reason, stream=stream)
        count += 1
    return count


def clear_outage_days(conn: Connection, entity_id: int, source: str, *, stream: str = ALL_STREAMS,
                      first: date | None = None, through: date | None = None, reason_prefix: str | None = None) -> int:
    """The outages of ``source`` (one ``stream``) on [first, through] (open ends: every day) no longer apply, because
    a sync read those days again; ``reason_prefix`` limits it to the outages one account's failed sync recorded."""
    query = source_outages.delete().where(source_outages.c.entity_id == entity_id, source_outages.c.source == source,
                                          source_outages.c.stream == stream)
    if first is not None:
        query = query.where(source_outages.c.date >= first)
    if through is not None:
        query = query.where(source_outages.c.date <= through)
    if reason_prefix is not None:
        query = query.where(source_outages.c.reason.startswith(reason_prefix, autoescape=True))
    return conn.execute(query).rowcount


def clear_source_outage(conn: Connection, entity_id: int, source: str, day: date, *, stream: str = ALL_STREAMS) -> int:
    """The source was re-read successfully for ``day``: the outage no longer applies."""
    return conn.execute(source_outages.delete().where(
        source_outages.c.entity_id == entity_id, source_outages.c.source == source, source_outages.c.stream == stream,
        source_outages.c.date == day)).rowcount


def outages_by_day(conn: Connection, entity_id: int, start: date, end: date) -> dict[date, list[dict[str, str]]]:
    rows = conn.execute(sa.select(source_outages).where(
        source_outages.c.entity_id == entity_id, source_outages.c.date.between(start, end))
        .order_by(source_outages.c.date, source_outages.c.source, source_outages.c.stream)).all()
    result: dict[date, list[dict[str, str]]] = {}
    for r in rows:
        result.setdefault(r.date, []).append({"source": r.source, "stream": r.stream, "reason": r.reason})
    return result

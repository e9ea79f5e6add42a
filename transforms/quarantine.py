"""Quarantined records: staged records a mapper could not read (errors as values, issue 15).

The canonical build (transforms/canonical.py) maps every staged record of the days it rebuilds through
``try_map_record`` (transforms/mappers.py). A record whose mapper fails books no leg; it is stored here with the
error, the field it names and the staged version (``raw_record_id``), and the close of its day is ``partial``
naming it (reconciliation/close.py). The rest of the entity closes.

A quarantine is derived like the legs: ``write_quarantine`` replaces the quarantine of the days a build rebuilt,
so a mapper fix (the next close maps the record) or a new version of the record (the latest version is mapped)
clears it. Keyed by the record's identity (source, stream, source_raw_id): one row per record whatever its versions.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection

from transforms.mappers import MappingFailure
from warehouse.schema import quarantined_records


@dataclass(frozen=True)
class Quarantined:
    """One quarantined record, as listed and as named by its day's close."""

    source: str
    stream: str
    source_raw_id: str
    raw_record_id: int
    account: str
    close_date: date
    field: str | None
    error: str

    def as_dict(self) -> dict[str, object]:
        """The record as the CLI's ``--json`` and the API serve it (day as ISO text)."""
        return {"date": self.close_date.isoformat(), "source": self.source, "stream": self.stream,
                "account": self.account, "source_raw_id": self.source_raw_id, "raw_record_id": self.raw_record_id,
                "field": self.field, "error": self.error}


def write_quarantine(conn: Connection, entity_id: int, start: date, end: date, locked: Iterable[date],
                     failures: list[tuple[MappingFailure, date]], mapped_keys: Iterable[tuple[str, str, str]],
                     *, run_id: str | None = None) -> int:
    """Replace the quarantine of the unlocked days [start, end] with ``failures`` (each with its booking day), and
    drop the quarantine of every record mapped in this build (``mapped_keys``: its latest version now reads, on
    whatever day it was quarantined). Returns the records quarantined."""
    locked = sorted(locked)
    conn.execute(quarantined_records.delete().where(
        quarantined_records.c.entity_id == entity_id, quarantined_records.c.close_date.between(start, end),
        sa.not_(quarantined_records.c.close_date.in_(locked)) if locked else sa.true()))
    elsewhere = {(r.source, r.stream, r.source_raw_id) for r in conn.execute(sa.select(
        quarantined_records.c.source, quarantined_records.c.stream, quarantined_records.c.source_raw_id).where(
        quarantined_records.c.entity_id == entity_id))}  # usually none: the days outside this build
    if elsewhere:
        for source, stream, raw_id in elsewhere & set(mapped_keys):
            conn.execute(quarantined_records.delete().where(
                quarantined_records.c.entity_id == entity_id, quarantined_records.c.source == source,
                quarantined_records.c.stream == stream, quarantined_records.c.source_raw_id == raw_id))
    if not failures:
        return 0
    rows = {}
    for failure, day in failures:
        r = failure.record
        rows[(r.source, r.stream, r.source_raw_id)] = dict(
            entity_id=entity_id, source=r.source, stream=r.stream, source_raw_id=r.source_raw_id, raw_record_id=r.id,
            account=r.account, close_date=day, field=failure.field, error=failure.error, run_id=run_id)
    statement = insert(quarantined_records).values(list(rows.values()))
    conn.execute(statement.on_conflict_do_update(
        index_elements=["entity_id", "source", "stream", "source_raw_id"],
        set_={c: statement.excluded[c] for c in ("raw_record_id", "account", "close_date", "field", "error", "run_id")}
        | {"quarantined_at": sa.func.now()}))
    return len(rows)


def list_quarantined(conn: Connection, entity_id: int, start: date | None = None,
                     end: date | None = None) -> list[Quarantined]:
    """The records quarantined for the entity (on [start, end] when given), by day and identity."""
    q = quarantined_records.c
    query = sa.select(quarantined_records).where(q.entity_id == entity_id)
    if start is not None:
        query = query.where(q.close_date >= start)
    if end is not None:
        query = query.where(q.close_date <= end)
    rows = conn.execute(query.order_by(q.close_date, q.source, q.stream, q.source_raw_id)).all()
    return [Quarantined(r.source, r.stream, r.source_raw_id, r.raw_record_id, r.account, r.close_date, r.field, r.error)
            for r in rows]

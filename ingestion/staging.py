"""Writers of the staging layer (layer 1), shared by every source: CSV files, exchanges, chains, custodians.

Staging is append-only. A record is identified by (entity, source, account, stream, source_raw_id,
payload hash): writing the same record again is a no-op, and a source that changes a record yields a new
version (a new row), never an overwrite. Every write belongs to an ``ingestion_runs`` row.

Incremental sources keep a cursor per (entity, source, account, stream) in ``ingestion_cursors``.
``write_cursor`` is meant to be called in the same transaction as the staging write it follows, so a cursor
only ever advances past records that are committed (a killed run re-fetches from the old cursor; the
natural key makes the overlap harmless).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection

from reconciliation.staleness import mark_stale_from_time
from warehouse.bulk import copy_rows, copy_text
from warehouse.calendar import close_date_of, cutoff_of, days_between
from warehouse.schema import ingestion_cursors, ingestion_runs


def payload_hash(payload: Any) -> str:
    """sha256 of the payload's canonical JSON (sorted keys): the same content always hashes the same."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class RawRecordIn:
    """One record exactly as a source returned it."""

    account: str
    source_raw_id: str  # the source's own id; unique per (entity, source, stream)
    occurred_at: datetime | None  # the record's own event time, parsed at ingestion
    payload: Any  # JSON-serializable, unedited
    payload_hash: str | None = None  # default: payload_hash(payload)
    line_number: int | None = None


@dataclass(frozen=True)
class BalanceSnapshotIn:
    """A balance the source reported for one account (type, sub-account) at one instant."""

    account: str
    account_type: str
    sub_account: str
    snapshot_time: datetime
    balances: dict[str, str]  # {asset symbol: exact decimal text}
    payload: Any  # the source's own record
    payload_hash: str | None = None
    line_number: int | None = None


@dataclass(frozen=True)
class RunFile:
    """Where a run's records came from, for file sources."""

    name: str | None = None
    hash: str | None = None


def start_run(conn: Connection, entity_id: int, source: str, stream: str, *, rows: int = 0,
              file: RunFile = RunFile()) -> uuid.UUID:
    run_id = uuid.uuid4()
    conn.execute(ingestion_runs.insert().values(
        id=run_id, entity_id=entity_id, source=source, stream=stream, file_name=file.name,
        file_hash=file.hash, rows_seen=rows, status="running"))
    return run_id


def finish_run(conn: Connection, run_id: uuid.UUID, *, seen: int, inserted: int, status: str = "succeeded") -> None:
    conn.execute(ingestion_runs.update().where(ingestion_runs.c.id == run_id).values(
        rows_seen=seen, rows_inserted=inserted, status=status, finished_at=sa.func.now()))


RAW_RECORDS_TEMP = "tmp_raw_records"
RAW_RECORDS_TEMP_COLUMNS = ("source_raw_id", "account", "payload", "payload_hash", "occurred_at", "line_number", "ord")
BALANCES_TEMP = "tmp_raw_balances"
BALANCES_TEMP_COLUMNS = ("account", "account_type", "sub_account", "snapshot_time", "balances", "payload", "payload_hash",
                         "line_number", "ord")


# A COPY straight into raw_records (``raw_records_copy_prefix``): the run's fields, the same on every line, then the
# record's own. Records already staged make it fail (``already_staged``): such a writer falls back to the temporary
# table and ``insert_raw_records_from_temp``, which skips them.
RAW_RECORDS_RUN_COLUMNS = ("entity_id", "source", "stream", "ingestion_run_id", "file_name", "file_hash")
RAW_RECORDS_RECORD_COLUMNS = ("account", "source_raw_id", "payload", "payload_hash", "occurred_at", "line_number")


def raw_records_copy_prefix(entity_id: int, source: str, stream: str, run_id: uuid.UUID, file: RunFile) -> str:
    """The start of every line of a COPY of ``RAW_RECORDS_RUN_COLUMNS + RAW_RECORDS_RECORD_COLUMNS``."""
    return "".join(copy_text(v) + "\t" for v in (entity_id, source, stream, run_id, file.name, file.hash))


def last_raw_record_id(conn: Connection) -> int:
    """The highest id in raw_records (0 when empty): records staged afterwards have higher ids."""
    return conn.execute(sa.text("SELECT coalesce(max(id), 0) FROM raw_records")).scalar_one()


def already_staged(exc: BaseException) -> bool:
    """Whether a COPY into raw_records failed on a record already there (or twice in what was copied)."""
    diag = getattr(getattr(exc, "orig", exc), "diag", None)
    return getattr(diag, "constraint_name", None) == "uq_raw_records_natural_key"


def mark_staged(conn: Connection, entity_id: int, source: str, stream: str, inserted: int,
                earliest: datetime | None) -> None:
    """After records were staged: the closes from the earliest of them are stale."""
    mark_stale_from_time(conn, entity_id, earliest, f"{inserted} new or changed {source}/{stream} record(s)")


def create_raw_records_temp(conn: Connection) -> tuple[str, tuple[str, ...]]:
    """The temporary table records are COPied into before ``insert_raw_records_from_temp``: (name, columns).
    ``ord`` is the record's position (the first of identical records wins)."""
    conn.execute(sa.text(
        f"CREATE TEMP TABLE {RAW_RECORDS_TEMP} (source_raw_id text, account text, payload jsonb, payload_hash text,"
        " occurred_at timestamptz, line_number int, ord int) ON COMMIT DROP"))
    return RAW_RECORDS_TEMP, RAW_RECORDS_TEMP_COLUMNS


def insert_raw_records_from_temp(conn: Connection, entity_id: int, source: str, stream: str, run_id: uuid.UUID, *,
                                 file: RunFile = RunFile(), in_file_duplicates: bool = True) -> int:
    """Append the records of the temporary table to ``raw_records`` (those already staged are skipped), drop it
    and mark the closes from the earliest new record stale. ``in_file_duplicates=False`` (no natural key twice in
    the table) spares sorting them by position. Returns rows inserted."""
    inserted, earliest = conn.execute(sa.text(
        f"""
        WITH added AS (
        INSERT INTO raw_records (entity_id, source, account, stream, source_raw_id, payload, payload_hash,
                                 occurred_at, file_name, line_number, file_hash, ingestion_run_id)
        SELECT :entity_id, :source, t.account, :stream, t.source_raw_id, t.payload, t.payload_hash,
               t.occurred_at, :file_name, t.line_number, :file_hash, :run_id
        FROM {RAW_RECORDS_TEMP} t
        {"ORDER BY t.ord" if in_file_duplicates else ""}
        ON CONFLICT ON CONSTRAINT uq_raw_records_natural_key DO NOTHING
        RETURNING occurred_at)
        SELECT count(*), min(occurred_at) FROM added
        """), dict(entity_id=entity_id, source=source, stream=stream, file_name=file.name, file_hash=file.hash,
                   run_id=run_id)).one()
    conn.execute(sa.text(f"DROP TABLE {RAW_RECORDS_TEMP}"))
    mark_staged(conn, entity_id, source, stream, inserted, earliest)
    return inserted


def write_raw_records(conn: Connection, entity_id: int, source: str, stream: str, records: Sequence[RawRecordIn],
                      run_id: uuid.UUID, *, file: RunFile = RunFile()) -> int:
    """Append ``records`` to ``raw_records`` through COPY; those already staged are skipped. Returns rows inserted."""
    if not records:
        return 0
    table, columns = create_raw_records_temp(conn)
    copy_rows(conn, table, columns,
              ((r.source_raw_id, r.account, json.dumps(r.payload), r.payload_hash or payload_hash(r.payload),
                r.occurred_at, r.line_number, i) for i, r in enumerate(records)))
    return insert_raw_records_from_temp(conn, entity_id, source, stream, run_id, file=file)


def create_balance_snapshots_temp(conn: Connection) -> tuple[str, tuple[str, ...]]:
    """``create_raw_records_temp`` for balance snapshots."""
    conn.execute(sa.text(
        f"CREATE TEMP TABLE {BALANCES_TEMP} (account text, account_type text, sub_account text, snapshot_time timestamptz,"
        " balances jsonb, payload jsonb, payload_hash text, line_number int, ord int) ON COMMIT DROP"))
    return BALANCES_TEMP, BALANCES_TEMP_COLUMNS


def insert_balance_snapshots_from_temp(conn: Connection, entity_id: int, source: str, run_id: uuid.UUID, *,
                                       file: RunFile = RunFile()) -> int:
    """``insert_raw_records_from_temp`` for balance snapshots."""
    inserted, earliest = conn.execute(sa.text(
        f"""
        WITH added AS (
        INSERT INTO raw_balance_snapshots (entity_id, source, account, account_type, sub_account, snapshot_time,
                                           balances, payload, payload_hash, file_name, line_number, file_hash,
                                           ingestion_run_id)
        SELECT :entity_id, :source, t.account, t.account_type, t.sub_account, t.snapshot_time, t.balances, t.payload,
               t.payload_hash, :file_name, t.line_number, :file_hash, :run_id
        FROM {BALANCES_TEMP} t
        ORDER BY t.ord
        ON CONFLICT ON CONSTRAINT uq_raw_balance_snapshots_natural_key DO NOTHING
        RETURNING snapshot_time)
        SELECT count(*), min(snapshot_time) FROM added
        """), dict(entity_id=entity_id, source=source, file_name=file.name, file_hash=file.hash,
                   run_id=run_id)).one()
    conn.execute(sa.text(f"DROP TABLE {BALANCES_TEMP}"))
    mark_stale_from_time(conn, entity_id, earliest, f"{inserted} new {source} balance snapshot(s)")
    return inserted


def write_balance_snapshots(conn: Connection, entity_id: int, source: str, snapshots: Sequence[BalanceSnapshotIn],
                            run_id: uuid.UUID, *, file: RunFile = RunFile()) -> int:
    """Append ``snapshots`` to ``raw_balance_snapshots``; those already staged are skipped. Returns rows inserted."""
    if not snapshots:
        return 0
    table, columns = create_balance_snapshots_temp(conn)
    copy_rows(conn, table, columns,
              ((s.account, s.account_type, s.sub_account, s.snapshot_time, json.dumps(s.balances), json.dumps(s.payload),
                s.payload_hash or payload_hash(s.payload), s.line_number, i) for i, s in enumerate(snapshots)))
    return insert_balance_snapshots_from_temp(conn, entity_id, source, run_id, file=file)


# ------------------------------------------------------------------------------- cursors


def load_cursor(conn: Connection, entity_id: int, source: str, account: str, stream: str) -> Any | None:
    """The stored cursor of one stream (JSON), or None before its first successful run."""
    return conn.execute(sa.select(ingestion_cursors.c.cursor).where(
        ingestion_cursors.c.entity_id == entity_id, ingestion_cursors.c.source == source,
        ingestion_cursors.c.account == account, ingestion_cursors.c.stream == stream)).scalar_one_or_none()


def write_cursor(conn: Connection, entity_id: int, source: str, account: str, stream: str, cursor: Any,
                 run_id: uuid.UUID | None = None) -> None:
    """Store a stream's cursor; call it in the transaction that staged the records it moves past."""
    statement = insert(ingestion_cursors).values(entity_id=entity_id, source=source, account=account, stream=stream,
                                                 cursor=cursor, run_id=run_id)
    conn.execute(statement.on_conflict_do_update(
        constraint="pk_ingestion_cursors",
        set_=dict(cursor=statement.excluded.cursor, run_id=statement.excluded.run_id, updated_at=sa.func.now())))


# ------------------------------------------------------------------------------- balances rolled back through movements
# A source with no historical balances (Binance's funding wallet and other accounts without a daily snapshot,
# Fireblocks vaults) stages each day's balance rolled back from the run-time balance through the staged movements
# after the day's cutoff, under a cursor ``{"day": last day written, "through_record": last raw record seen}``. A
# movement staged later for a day already written (listed late, or a new version of a record) changes the balance at
# every cutoff before it: those days are written again, as new snapshot versions (the latest version is reconciled).


def load_late_movement(conn: Connection, entity_id: int, source: str, account: str, streams: Sequence[str],
                       cursor: Any | None, tz: Any) -> tuple[datetime | None, int]:
    """The time of the latest record of ``streams`` staged since the cursor's ``through_record`` that falls on or
    before the cutoff of its ``day`` (None: none), and the newest raw record id of the account (or the cursor's)."""
    seen = int(cursor.get("through_record", 0)) if cursor else 0
    late, newest = conn.execute(sa.text(
        """SELECT max(occurred_at) FILTER (WHERE occurred_at <= :written AND stream = ANY(:streams)), max(id)
           FROM raw_records WHERE entity_id = :e AND source = :s AND account = :a AND id > :seen"""),
        dict(e=entity_id, s=source, a=account, seen=seen, streams=list(streams),
             written=cutoff_of(date.fromisoformat(cursor["day"]), tz) if cursor else None)).one()
    return late, max(seen, newest or 0)


def rolled_back_days(cursor: Any | None, history_start: date, last_day: date, late: datetime | None, seen: int,
                     tz: Any) -> tuple[list[date], dict[str, Any] | None]:
    """The days to write, oldest first: every written day before the day of ``late`` again (from ``history_start``,
    the first day with a movement), then the new ones, from the day after the cursor's (or ``history_start``) through
    ``last_day``; and the cursor to store with them (None: nothing written yet, nothing to store)."""
    first_day = date.fromisoformat(cursor["day"]) + timedelta(days=1) if cursor else history_start
    # a movement at time t is in the run-time balance: the balance of its day and of later days nets it out
    reopened = list(days_between(history_start, close_date_of(late, tz) - timedelta(days=1))) if late else []
    written = max(last_day, first_day - timedelta(days=1))
    moved = {"day": written.isoformat(), "through_record": seen} if cursor or last_day >= first_day else None
    return reopened + list(days_between(first_day, last_day)), moved

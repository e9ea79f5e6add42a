"""Every configured source kind behind one small interface that ``ingestion/sources.py`` dispatches to.

- ``binance``: Binance's own connector (ingestion/binance/).
- ``kraken`` or ``ccxt.<exchange id>``: the generic ccxt connector (ingestion/ccxt/).
- ``fireblocks``: the Fireblocks custodian connector (ingestion/fireblocks/).

Each kind reads its credentials (file or environment, never the command line), checks them when added and
before each sync, reports what it finds (``coinfrs source test``) and syncs into staging. A sync that fails
after its retries records a source outage (reconciliation.outages) for every day from the first day it may
have missed through the last day it reads, so those closes are ``partial`` and name the source; a later
successful sync of the same source clears the outages it recorded. This is the one outage recorder of configured
sources (chains record theirs through ingestion/wallets.py, on the same ``reconciliation.outages``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ingestion.credentials import CredentialError
from ingestion.retry import RetryPolicy
from reconciliation.outages import clear_outage_days, record_outage_days
from warehouse.calendar import close_date_of, days_between
from warehouse.entities import Entity
from warehouse.schema import ingestion_cursors

KINDS = ("binance", "kraken", "ccxt.<exchange id>", "fireblocks")


@dataclass(frozen=True)
class Connector:
    """What a source kind provides; ``credentials`` and ``config`` are the stored (decrypted) ones."""

    staging_source: str
    read_credentials: Callable[[Path | None], dict[str, str]]
    check: Callable[[dict[str, str], dict[str, Any]], dict[str, Any]]
    # -> (permissions, how many markets / vault accounts, balances per account type, one-line summary or None)
    inspect: Callable[[dict[str, str], dict[str, Any]], tuple[dict[str, Any], int, dict[str, dict[str, str]], str | None]]
    make_sync: Callable[..., Any]  # (engine, entity_id, account, credentials, config) -> an object with .stats, .run()
    # the streams whose cursors ``{"until": ms}`` say how far a sync has read (None: every such cursor of the account)
    window_streams: Callable[[], list[str]] | None = None
    bounded: bool = False  # the sync honours the ``until`` setting (a bounded backfill)


@dataclass
class SyncStats:
    """What one sync of a configured source did, the same for every kind (``coinfrs source sync``, the Dagster
    asset and the benchmarks read it); a connector may add fields of its own."""

    source: str
    records_seen: dict[str, int] = field(default_factory=dict)
    records_inserted: dict[str, int] = field(default_factory=dict)
    snapshots_inserted: int = 0
    calls: int = 0
    notes: list[str] = field(default_factory=list)  # what the account does not have (not an error)

    def add(self, stream: str, seen: int, inserted: int) -> None:
        self.records_seen[stream] = self.records_seen.get(stream, 0) + seen
        self.records_inserted[stream] = self.records_inserted.get(stream, 0) + inserted


def is_known_kind(kind: str) -> bool:
    return kind in ("binance", "fireblocks", "kraken") or kind.startswith("ccxt.")


def retry_policy(config: dict[str, Any]) -> RetryPolicy:
    """The shared retry policy (ingestion/retry.py) with a source's ``retry_*`` settings."""
    return RetryPolicy(attempts=int(config.get("retry_attempts", RetryPolicy.attempts)),
                       initial_seconds=float(config.get("retry_initial_seconds", RetryPolicy.initial_seconds)),
                       max_seconds=float(config.get("retry_max_seconds", RetryPolicy.max_seconds)))


def since_of(config: dict[str, Any]) -> datetime:
    since = date.fromisoformat(config.get("since", "2020-01-01"))
    return datetime(since.year, since.month, since.day, tzinfo=timezone.utc)


def until_of(config: dict[str, Any]) -> datetime | None:
    """The end (exclusive) of a bounded backfill: the start of the day after ``until``; None: up to now."""
    if not config.get("until"):
        return None
    until = date.fromisoformat(config["until"]) + timedelta(days=1)
    return datetime(until.year, until.month, until.day, tzinfo=timezone.utc)


def read_json_credentials(kind: str, path: Path | None, fields: dict[str, tuple[str, ...]]) -> dict[str, str]:
    """``fields``: stored name -> accepted names in the file; from ``COINFRS_<KIND>_<NAME>`` without a file."""
    prefix = "COINFRS_" + kind.upper().replace(".", "_").replace("-", "_") + "_"
    if path is not None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise CredentialError(f"cannot read credentials file {path}: {type(error).__name__}") from None
        if not isinstance(data, dict):
            raise CredentialError(f"credentials file {path}: expected a JSON object with {', '.join(fields)}")
        values = {name: next((data[a] for a in names if data.get(a)), None) for name, names in fields.items()}
        where = f"credentials file {path}"
    else:
        values = {name: os.environ.get(prefix + name.upper()) for name in fields}
        where = " / ".join(prefix + name.upper() for name in fields)
    missing = [n for n, v in values.items() if not isinstance(v, str) or not v.strip()]
    if missing:
        raise CredentialError(f"{where}: missing {', '.join(missing)}")
    return {n: v.strip() for n, v in values.items()}


def connector_for(kind: str) -> Connector:
    """The connector of ``kind``; an unknown kind is a ``ValueError`` naming the known ones."""
    if not is_known_kind(kind):
        raise ValueError(f"unknown source kind {kind!r}; known: {', '.join(KINDS)}")
    if kind == "binance":
        from ingestion.binance.sync import CONNECTOR as BINANCE

        return BINANCE
    if kind == "fireblocks":
        from ingestion.fireblocks.sync import CONNECTOR

        return CONNECTOR
    from ingestion.ccxt.sync import ccxt_connector

    return ccxt_connector(kind)


# ------------------------------------------------------------------------------ outages
# A sync that fails marks the days it could not read as source outages (the close of those days is then ``partial``
# and says which source); a later sync of the same source that succeeds clears them, since it re-read those days.
# The days run from the first day some stream of the source is not yet complete (its cursor's ``until``, in ms, or
# the source's ``since`` when a stream has never been read) to the last day the sync reads (today in the entity's
# time zone, or the last day of a bounded backfill). Nothing staged is deleted: an outage only says the day's data
# may be incomplete.

OUTAGE_REASON = "sync of source {name!r} "


def first_incomplete_day(conn: Connection, entity: Entity, source: str, account: str, streams: Iterable[str] | None,
                         since: datetime) -> date:
    """The first day some of ``streams`` (time-windowed cursors ``{"until": ms}``; None: every such cursor of the
    account) has not been read through; ``since`` for a stream never read."""
    query = sa.select(ingestion_cursors.c.stream, ingestion_cursors.c.cursor).where(
        ingestion_cursors.c.entity_id == entity.id, ingestion_cursors.c.source == source,
        ingestion_cursors.c.account == account)
    names = list(streams) if streams is not None else None
    if names is not None:
        query = query.where(ingestion_cursors.c.stream.in_(names))
    rows = {stream: cursor for stream, cursor in conn.execute(query).all()
            if isinstance(cursor, dict) and "until" in cursor}
    reached = [datetime.fromtimestamp(int(rows[n]["until"]) / 1000, tz=timezone.utc) if n in rows else since
               for n in (names if names is not None else rows)]
    # the first instant not yet read is just after ``until`` (inclusive) / at ``since``; a day ends at its cutoff
    return close_date_of(min(reached, default=since) + timedelta(milliseconds=1), entity.tz)


def last_day_read(entity: Entity, until: datetime | None) -> date:
    """The last day a sync reads: today, or the day of its ``until`` (exclusive) for a bounded backfill."""
    end = min(until, datetime.now(timezone.utc)) - timedelta(milliseconds=1) if until else datetime.now(timezone.utc)
    return close_date_of(end, entity.tz)


def record_sync_outage(conn: Connection, entity: Entity, source: str, name: str, first_day: date, last_day: date,
                       status: str, message: str) -> int:
    """Record ``source`` as down on every day from ``first_day`` to ``last_day`` because the sync of the configured
    source ``name`` ended ``status``; returns the number of days."""
    return record_outage_days(conn, entity.id, source, days_between(first_day, max(first_day, last_day)),
                              OUTAGE_REASON.format(name=name) + f"{status}: {message}")


def clear_sync_outages(conn: Connection, entity: Entity, source: str, name: str) -> int:
    """The sync of ``name`` succeeded: it read every stream through its last day, so the outages its failed syncs
    recorded no longer apply (those of another source of the same kind stay)."""
    return clear_outage_days(conn, entity.id, source, reason_prefix=OUTAGE_REASON.format(name=name))

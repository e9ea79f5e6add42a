"""Source kinds beyond Binance, behind one small interface that ``ingestion/sources.py`` dispatches to.

- ``kraken`` or ``ccxt.<exchange id>``: the generic ccxt connector (ingestion/ccxt/sync.py).
- ``fireblocks``: the Fireblocks custodian connector (ingestion/fireblocks/sync.py).

Each kind reads its credentials (file or environment, never the command line), checks them when added and
before each sync, reports what it finds (``coinfrs source test``) and syncs into staging. A sync that fails
after its retries records a source outage (reconciliation.outages) for every day from the first day it may
have missed through today, so those closes are ``partial`` and name the source; a later successful sync
clears the outages it recorded.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ingestion.credentials import CredentialError
from ingestion.ccxt.client import RetryPolicy
from reconciliation.outages import clear_outage_days, record_outage_days
from warehouse.calendar import days_between
from warehouse.schema import ingestion_cursors

OUTAGE_REASON = "sync failed: "


@dataclass(frozen=True)
class Connector:
    """What a source kind provides; ``credentials`` and ``config`` are the stored (decrypted) ones."""

    staging_source: str
    read_credentials: Callable[[Path | None], dict[str, str]]
    check: Callable[[dict[str, str], dict[str, Any]], dict[str, Any]]
    # -> (permissions, how many markets / vault accounts, balances per account type, one-line summary)
    inspect: Callable[[dict[str, str], dict[str, Any]], tuple[dict[str, Any], int, dict[str, dict[str, str]], str]]
    make_sync: Callable[[Engine, int, str, dict[str, str], dict[str, Any]], Any]  # an object with .stats and .run()


def is_other_kind(kind: str) -> bool:
    return kind == "fireblocks" or kind == "kraken" or kind.startswith("ccxt.")


def retry_policy(config: dict[str, Any]) -> RetryPolicy:
    return RetryPolicy(attempts=int(config.get("retry_attempts", RetryPolicy.attempts)),
                       initial_seconds=float(config.get("retry_initial_seconds", RetryPolicy.initial_seconds)),
                       max_seconds=float(config.get("retry_max_seconds", RetryPolicy.max_seconds)))


def since_of(config: dict[str, Any]) -> datetime:
    since = date.fromisoformat(config.get("since", "2020-01-01"))
    return datetime(since.year, since.month, since.day, tzinfo=timezone.utc)


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
    if kind == "fireblocks":
        from ingestion.fireblocks.sync import CONNECTOR

        return CONNECTOR
    from ingestion.ccxt.sync import ccxt_connector

    return ccxt_connector(kind)


# ------------------------------------------------------------------------------ outages


def first_day_possibly_missed(conn: sa.Connection, entity_id: int, source: str, account: str, config: dict[str, Any]) -> date:
    """The day of the stream cursor that is furthest behind (or ``since`` before any cursor)."""
    cursors = conn.execute(sa.select(ingestion_cursors.c.cursor).where(
        ingestion_cursors.c.entity_id == entity_id, ingestion_cursors.c.source == source,
        ingestion_cursors.c.account == account)).scalars().all()
    untils = [int(c["until"]) for c in cursors if isinstance(c, dict) and "until" in c]
    if not untils:
        return since_of(config).date()
    return datetime.fromtimestamp(min(untils) / 1000, tz=timezone.utc).date()


def record_sync_outage(engine: Engine, entity_id: int, source: str, account: str, config: dict[str, Any],
                       message: str, today: date | None = None) -> int:
    """Record ``source`` as down on every day from the first it may have missed through today; returns the days."""
    today = today or datetime.now(timezone.utc).date()
    with engine.begin() as conn:
        first = min(first_day_possibly_missed(conn, entity_id, source, account, config), today)
        return record_outage_days(conn, entity_id, source, days_between(first, today),
                                  OUTAGE_REASON + f"{account}: {message}")


def clear_sync_outages(engine: Engine, entity_id: int, source: str, account: str) -> int:
    """A sync of ``account`` succeeded: the outages an earlier failed sync of it recorded no longer apply."""
    with engine.begin() as conn:
        return clear_outage_days(conn, entity_id, source, reason_prefix=OUTAGE_REASON + f"{account}: ")

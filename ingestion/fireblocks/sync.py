"""Fireblocks (custodian): stage vault transactions and balances read through ingestion/fireblocks/client.py.

Staged:
  raw_records ``transactions`` (source ``fireblocks``): ``GET /v1/transactions`` sorted by ``createdAt``
      ascending, in time windows (``after``/``before``) from the cursor minus an overlap (3 days: a transaction
      whose status changes is staged again as a new version, the latest wins), following the ``next-page``
      header. Each window commits with its cursor.
  raw_balance_snapshots (account type ``vault``, sub-account = the vault account's id):
      ``GET /v1/vault/accounts_paged`` (cursor paging) at run time: each vault's ``total`` per asset; and, as
      Fireblocks has no historical balances, the run-time balances rolled back to each day's cutoff with the
      staged completed transactions after it (ingestion/fireblocks/mapping.py says what each one moved).
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ingestion.connectors import Connector, SyncStats
from ingestion.fireblocks.client import (DAY_MS, FireblocksClient, FireblocksOptions, check, client_of, inspect,
                                         read_credentials)
from ingestion.staging import (BalanceSnapshotIn, RawRecordIn, finish_run, load_cursor, load_late_movement,
                               rolled_back_days, start_run, write_balance_snapshots, write_cursor, write_raw_records)
from ingestion.fireblocks.mapping import ACCOUNT_TYPE, SOURCE, STREAM, vault_changes
from transforms.mappers import StagedRecord
from warehouse.calendar import close_date_of, cutoff_of
from warehouse.numbers import D, ZERO

def _utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc)


@dataclass
class FireblocksSyncStats(SyncStats):
    vault_accounts: int = 0


class FireblocksSync:
    """One sync of one configured Fireblocks workspace of one entity."""

    def __init__(self, engine: Engine, entity_id: int, account: str, client: FireblocksClient,
                 options: FireblocksOptions, tz=timezone.utc) -> None:  # type: ignore[no-untyped-def]
        self.engine, self.entity_id, self.account, self.client, self.options = engine, entity_id, account, client, options
        self.tz = tz
        self.stats = FireblocksSyncStats(account)
        self.now = int(time.time() * 1000)

    def sync_transactions(self) -> None:
        with self.engine.connect() as conn:
            cursor = load_cursor(conn, self.entity_id, SOURCE, self.account, STREAM)
        since = int(self.options.since.timestamp() * 1000)
        start = since if cursor is None else max(since, int(cursor["until"]) - self.options.overlap_ms)
        size = self.options.window_days * DAY_MS
        while start < self.now:
            end = min(start + size, self.now)
            rows = self.client.transactions(start - 1, end + 1)  # (start - 1, end + 1): createdAt in [start, end]
            self.stats.calls = self.client.calls
            records = [RawRecordIn(self.account, f"{self.account}|{r['id']}", _utc(int(r["createdAt"])), r) for r in rows]
            with self.engine.begin() as conn:
                run = start_run(conn, self.entity_id, SOURCE, STREAM, rows=len(records))
                inserted = write_raw_records(conn, self.entity_id, SOURCE, STREAM, records, run)
                write_cursor(conn, self.entity_id, SOURCE, self.account, STREAM, {"until": end}, run)
                finish_run(conn, run, seen=len(records), inserted=inserted)
            self.stats.add(STREAM, len(records), inserted)
            start = end

    def sync_balances(self) -> None:
        """Vault balances now, and rolled back to each day's cutoff since the last day snapshotted."""
        taken = datetime.now(timezone.utc)
        accounts = self.client.vault_accounts()
        self.stats.vault_accounts, self.stats.calls = len(accounts), self.client.calls
        now_held = {str(a["id"]): {str(x["id"]).upper(): x["total"] for x in a.get("assets") or []} for a in accounts}
        snapshots = [BalanceSnapshotIn(self.account, ACCOUNT_TYPE, str(a["id"]), taken, now_held[str(a["id"])],
                                       {"endpoint": "/v1/vault/accounts_paged", "account": a}) for a in accounts]
        with self.engine.connect() as conn:
            cursor = load_cursor(conn, self.entity_id, SOURCE, self.account, "balances")
            late, seen = load_late_movement(conn, self.entity_id, SOURCE, self.account, [STREAM], cursor, self.tz)
            staged = conn.execute(sa.text(
                """SELECT DISTINCT ON (source_raw_id) id, source_raw_id, occurred_at, payload FROM raw_records
                   WHERE entity_id = :e AND source = :s AND stream = :st AND account = :a
                   ORDER BY source_raw_id, id DESC"""),
                dict(e=self.entity_id, s=SOURCE, st=STREAM, a=self.account)).all()
        changes = [(r.occurred_at, leg) for r in staged
                   for leg in vault_changes(StagedRecord(r.id, SOURCE, STREAM, self.account, r.source_raw_id,
                                                         r.occurred_at, r.payload))]
        last_day = close_date_of(taken, self.tz) - timedelta(days=1)
        history_start = min((close_date_of(t, self.tz) for t, _ in changes), default=last_day + timedelta(days=1))
        days, moved = rolled_back_days(cursor, history_start, last_day, late, seen, self.tz)  # late data: days again
        for day in days:
            cutoff = cutoff_of(day, self.tz)
            later: dict[tuple[str, str], Any] = defaultdict(lambda: ZERO)
            for when, leg in changes:
                if when > cutoff:
                    later[(leg.sub_account, leg.asset)] += leg.quantity
            for vault, held in now_held.items():
                assets = set(held) | {asset for (v, asset) in later if v == vault}
                balances = {asset: format(D(held.get(asset, "0")) - later[(vault, asset)], "f") for asset in sorted(assets)}
                snapshots.append(BalanceSnapshotIn(self.account, ACCOUNT_TYPE, vault, cutoff, balances, {
                    "rolled_back_from": taken.isoformat(), "vault_account": vault, "balances_then": held,
                    "transactions_after_cutoff": sorted({leg.tx_hash or "" for w, leg in changes
                                                         if w > cutoff and leg.sub_account == vault} - {""})}))
        with self.engine.begin() as conn:
            run = start_run(conn, self.entity_id, SOURCE, "balances", rows=len(snapshots))
            inserted = write_balance_snapshots(conn, self.entity_id, SOURCE, snapshots, run)
            if moved is not None:
                write_cursor(conn, self.entity_id, SOURCE, self.account, "balances", moved, run)
            finish_run(conn, run, seen=len(snapshots), inserted=inserted)
        self.stats.snapshots_inserted += inserted

    def run(self) -> FireblocksSyncStats:
        self.sync_transactions()
        self.sync_balances()
        return self.stats


# ------------------------------------------------------------------------------ the source kind


def _make_sync(engine: Engine, entity_id: int, account: str, credentials: dict[str, str], config: dict[str, Any]):
    from warehouse.entities import resolve_entity

    client, options = client_of(credentials, config)
    with engine.connect() as conn:
        tz = resolve_entity(conn, entity_id).tz
    return FireblocksSync(engine, entity_id, account, client, options, tz)


CONNECTOR = Connector(SOURCE, read_credentials, check, inspect, _make_sync)

"""Sync one Bitcoin wallet through an Esplora API: addresses, new final transactions, balances at each day's cutoff.

1. One consistent read pass: the tip (hash and height); the wallet's addresses with their stats (``GET /address``;
   an extended key's receive and change chains up to ``gap_limit`` unused addresses in a row); for each address whose
   confirmed ``tx_count`` grew, its confirmed history newest first (pages of 25) down to the last transaction staged
   for it (the address cursor). The count staged plus the count read must equal the address's ``tx_count`` (no page
   missed), and the tip must be the same at the end of the pass; otherwise a block arrived during the pass and it
   is read again (3 passes at most).
2. Finality by confirmations: a transaction is final with ``confirmations`` (default 6) blocks, i.e. in a block at
   height <= tip - confirmations + 1. Final transactions are staged (one record per wallet and txid) and the address
   cursors move past them, in one database transaction with the records. Confirmed but not yet final ones are read
   again next time.
3. Balances: Esplora has no balance at a past height. A day is complete once its cutoff is at or before the median
   time past of the final block (every later block is stamped after it, by consensus). Its balance is the wallet's
   confirmed balance now (the sum over its addresses of ``funded_txo_sum - spent_txo_sum``, the indexer's own
   figure) minus the changes of the transactions after the cutoff (staged ones and those still unfinal): one
   balance snapshot per complete day, stamped at the cutoff. A missing record before the cutoff thus shows as a
   break, since the indexer's balance does not come from the staged records.
"""

from __future__ import annotations

import os
import re
import time
from bisect import bisect_right
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ingestion.bitcoin.client import EsploraClient, EsploraError
from ingestion.bitcoin.keys import (CHANGE, DEFAULT_CONFIRMATIONS, DEFAULT_GAP_LIMIT, RECEIVE, BitcoinKeyError,
                                    WalletKeys, parse_wallet)
from ingestion.bitcoin.mapping import ACCOUNT_TYPE, SOURCE, STREAM, net_change, sats
from ingestion.retry import SourceError
from ingestion.staging import (BalanceSnapshotIn, RawRecordIn, finish_run, load_cursor, start_run,
                               write_balance_snapshots, write_cursor, write_raw_records)
from ingestion.wallets import Wallet
from warehouse.calendar import close_date_of, cutoff_of, days_between
from warehouse.entities import Entity

HISTORY_STREAM = "history"  # cursor per address: history:<address>
BALANCES_STREAM = "balances"
MAX_PASSES = 3


class BitcoinSyncError(SourceError):
    """The wallet could not be synced (API down or refusing, inconsistent answers, a bad wallet key)."""


DEFAULT_WORKERS = 4


@dataclass(frozen=True)
class BitcoinSettings:
    confirmations: int = DEFAULT_CONFIRMATIONS
    gap_limit: int = DEFAULT_GAP_LIMIT
    workers: int = DEFAULT_WORKERS  # concurrent requests to the API (address stats and histories)


def settings_from_env(chain: str) -> BitcoinSettings:
    """``COINFRS_CONFIRMATIONS_<CHAIN>``, ``COINFRS_GAP_LIMIT_<CHAIN>`` and ``COINFRS_WORKERS_<CHAIN>`` (e.g.
    ``COINFRS_CONFIRMATIONS_BITCOIN``)."""
    key = re.sub(r"[^A-Z0-9]", "_", chain.upper())
    values = {}
    for name, default in (("CONFIRMATIONS", DEFAULT_CONFIRMATIONS), ("GAP_LIMIT", DEFAULT_GAP_LIMIT),
                          ("WORKERS", DEFAULT_WORKERS)):
        text = os.environ.get(f"COINFRS_{name}_{key}", "").strip()
        if text and (not text.isdigit() or int(text) < 1):
            raise BitcoinSyncError(f"COINFRS_{name}_{key}={text!r}: expected a whole number >= 1")
        values[name.lower()] = int(text) if text else default
    return BitcoinSettings(**values)


@dataclass
class BitcoinSyncResult:
    wallet: str
    addresses: int = 0
    used_addresses: int = 0
    transactions: int = 0  # new final transactions read
    pending: int = 0  # confirmed, not final yet
    inserted: int = 0
    snapshots: int = 0
    tip_height: int | None = None
    final_height: int | None = None
    passes: int = 0
    requests: int = 0
    affected_days: set[date] = field(default_factory=set)
    synced_through: datetime | None = None
    seconds: float = 0.0


@dataclass
class _Pass:
    tip_height: int
    tip_hash: str
    addresses: dict[str, tuple[str, dict[str, Any]]]  # address -> (derivation path, GET /address answer)
    histories: dict[str, list[dict[str, Any]]]  # address -> new confirmed transactions, newest first


class _Moved(Exception):
    """The chain moved during a read pass."""


def _ts(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


def discover_addresses(client: EsploraClient, keys: WalletKeys, gap_limit: int, *,
                       pool: ThreadPoolExecutor | None = None) -> dict[str, tuple[str, dict[str, Any]]]:
    """The wallet's addresses with their stats: the address itself, or each chain of the extended key up to
    ``gap_limit`` unused addresses in a row after the last used one (used: any confirmed or mempool transaction).
    The addresses still needed are asked for together (``pool``): the same set a one-by-one scan would ask for."""
    if not keys.is_extended:
        return {keys.spec: ("", client.fetch_address(keys.spec))}
    found: dict[str, tuple[str, dict[str, Any]]] = {}
    for chain in (RECEIVE, CHANGE):
        last_used, asked = -1, 0
        while asked < last_used + 1 + gap_limit:
            batch = [(i, keys.address(chain, i)) for i in range(asked, last_used + 1 + gap_limit)]
            answers = list((pool.map if pool else map)(lambda item: client.fetch_address(item[1]), batch))
            for (index, address), stats in zip(batch, answers):
                found[address] = (f"{chain}/{index}", stats)
                if stats["chain_stats"]["tx_count"] + stats["mempool_stats"]["tx_count"] > 0:
                    last_used = index
            asked = batch[-1][0] + 1
    return found


def _read_pass(client: EsploraClient, keys: WalletKeys, gap_limit: int, cursors: dict[str, dict[str, Any]],
               pool: ThreadPoolExecutor) -> _Pass:
    tip_hash = client.fetch_tip_hash()
    tip_height = client.fetch_tip_height()
    addresses = discover_addresses(client, keys, gap_limit, pool=pool)

    def history(address: str) -> list[dict[str, Any]]:
        cursor = cursors.get(address)
        known = int(cursor["count"]) if cursor else 0
        count = addresses[address][1]["chain_stats"]["tx_count"]
        if count == known:
            return []
        try:
            new = client.fetch_history_since(address, cursor["txid"] if cursor else None)
        except EsploraError:
            if client.fetch_tip_hash() != tip_hash:
                raise _Moved() from None
            raise
        if known + len(new) != count:
            raise _Moved()
        return new

    histories = dict(zip(addresses, pool.map(history, list(addresses))))
    if client.fetch_tip_hash() != tip_hash:
        raise _Moved()
    return _Pass(tip_height, tip_hash, addresses, histories)


def _load_cursors(engine: Engine, entity: Entity, wallet: Wallet) -> dict[str, dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT stream, cursor FROM ingestion_cursors WHERE entity_id = :e AND source = :s AND account = :a"),
            dict(e=entity.id, s=SOURCE, a=wallet.account)).all()
    return {r.stream.split(":", 1)[1]: r.cursor for r in rows if r.stream.startswith(HISTORY_STREAM + ":")}


def sync_bitcoin_wallet(engine: Engine, entity: Entity, wallet: Wallet, *, urls: list[str] | tuple[str, ...],
                        settings: BitcoinSettings | None = None, client: EsploraClient | None = None) -> BitcoinSyncResult:
    """Stage the wallet's new final transactions and a balance snapshot at each complete day's cutoff."""
    started = time.perf_counter()
    settings = settings or BitcoinSettings()
    result = BitcoinSyncResult(wallet.address)
    try:
        keys = parse_wallet(wallet.address, wallet.chain)
    except BitcoinKeyError as exc:
        raise BitcoinSyncError(f"wallet {wallet.account}: {exc}") from None
    client = client or EsploraClient(urls)
    cursors = _load_cursors(engine, entity, wallet)
    read: _Pass | None = None
    with ThreadPoolExecutor(max_workers=max(1, settings.workers), thread_name_prefix="esplora") as pool:
        for attempt in range(1, MAX_PASSES + 1):
            result.passes = attempt
            try:
                read = _read_pass(client, keys, settings.gap_limit, cursors, pool)
                break
            except _Moved:
                continue
    if read is None:
        raise BitcoinSyncError(f"{wallet.account}: the chain kept moving during {MAX_PASSES} read passes "
                               f"(a block arrived, or the API's history disagrees with its address stats)")
    result.tip_height = read.tip_height
    final_height = read.tip_height - settings.confirmations + 1
    result.final_height = final_height
    own = {address: path for address, (path, _) in read.addresses.items()}
    result.addresses = len(own)
    result.used_addresses = sum(1 for _, s in read.addresses.values() if s["chain_stats"]["tx_count"])

    transactions: dict[str, dict[str, Any]] = {}
    for history in read.histories.values():
        for tx in history:
            transactions.setdefault(tx["txid"], tx)
    final = {t: tx for t, tx in transactions.items() if tx["status"]["block_height"] <= final_height}
    pending = {t: tx for t, tx in transactions.items() if t not in final}
    result.transactions, result.pending = len(final), len(pending)

    records = []
    for txid, tx in sorted(final.items(), key=lambda kv: (kv[1]["status"]["block_height"], kv[0])):
        touched = [e["prevout"].get("scriptpubkey_address") for e in tx["vin"] if e.get("prevout")] + \
                  [o.get("scriptpubkey_address") for o in tx["vout"]]
        payload = {"chain": wallet.chain, "wallet": wallet.address, "native_symbol": keys.network.native_symbol,
                   "own": {a: own[a] for a in sorted(set(touched)) if a in own}, "transaction": tx}
        records.append(RawRecordIn(wallet.account, f"{wallet.chain}:{wallet.address}:{txid}",
                                   _ts(tx["status"]["block_time"]), payload))
    with engine.begin() as conn:
        run_id = start_run(conn, entity.id, SOURCE, STREAM)
        result.inserted = write_raw_records(conn, entity.id, SOURCE, STREAM, records, run_id)
        for address, history in read.histories.items():
            newly_final = [tx for tx in history if tx["txid"] in final]
            if newly_final:  # newest first: the first final one is the newest staged
                known = int(cursors[address]["count"]) if address in cursors else 0
                newest = newly_final[0]
                write_cursor(conn, entity.id, SOURCE, wallet.account, f"{HISTORY_STREAM}:{address}",
                             {"txid": newest["txid"], "height": newest["status"]["block_height"],
                              "count": known + len(newly_final)}, run_id)
        finish_run(conn, run_id, seen=len(records), inserted=result.inserted)
    result.affected_days.update(close_date_of(r.occurred_at, entity.tz) for r in records)

    if final_height >= 0:
        block = client.fetch_block(client.fetch_block_hash(final_height))
        safe_time = _ts(block.get("mediantime") or block["timestamp"])
        result.synced_through = safe_time
        result.snapshots = snapshot_balances(engine, entity, wallet, keys, read, own, pending, block, safe_time,
                                             run_id, result)
    result.requests = client.stats.requests
    result.seconds = time.perf_counter() - started
    return result


def snapshot_balances(engine: Engine, entity: Entity, wallet: Wallet, keys: WalletKeys, read: _Pass,
                      own: dict[str, str], pending: dict[str, dict[str, Any]], final_block: dict[str, Any],
                      safe_time: datetime, run_id, result: BitcoinSyncResult) -> int:  # type: ignore[no-untyped-def]
    """The indexer's confirmed balance now, rolled back to each complete day's cutoff."""
    tz = entity.tz
    last = close_date_of(safe_time, tz)
    if cutoff_of(last, tz) > safe_time:
        last -= timedelta(days=1)
    with engine.connect() as conn:
        cursor = load_cursor(conn, entity.id, SOURCE, wallet.account, BALANCES_STREAM)
        if cursor:
            first = date.fromisoformat(cursor["day"]) + timedelta(days=1)
        else:
            earliest = conn.execute(sa.text(
                "SELECT min(occurred_at) FROM raw_records WHERE entity_id = :e AND source = :s AND stream = :st"
                " AND account = :a AND processing_status <> 'orphaned'"),
                dict(e=entity.id, s=SOURCE, st=STREAM, a=wallet.account)).scalar()
            if earliest is None:
                return 0
            first = close_date_of(earliest, tz)
        days = list(days_between(first, last))
        if not days:
            return 0
        staged = conn.execute(sa.text(
            """
            SELECT DISTINCT ON (source_raw_id) source_raw_id, occurred_at, payload->'transaction' AS tx FROM raw_records
            WHERE entity_id = :e AND source = :s AND stream = :st AND account = :a AND processing_status <> 'orphaned'
              AND occurred_at > :after
            ORDER BY source_raw_id, id DESC
            """), dict(e=entity.id, s=SOURCE, st=STREAM, a=wallet.account, after=cutoff_of(days[0], tz))).all()
    changes: dict[str, tuple[datetime, int]] = {}
    for row in staged:
        changes[row.tx["txid"]] = (row.occurred_at, net_change(row.source_raw_id, row.tx, own))
    for txid, tx in pending.items():
        changes[txid] = (_ts(tx["status"]["block_time"]), net_change(txid, tx, own))
    stats = {a: s["chain_stats"] for a, (_, s) in read.addresses.items() if s["chain_stats"]["tx_count"]}
    now = sum(s["funded_txo_sum"] - s["spent_txo_sum"] for s in stats.values())
    ordered = sorted(changes.values())
    times = [when for when, _ in ordered]
    suffix = [0] * (len(ordered) + 1)  # suffix[i]: the change of ordered[i:]
    for i in range(len(ordered) - 1, -1, -1):
        suffix[i] = suffix[i + 1] + ordered[i][1]
    snapshots = []
    for day in days:
        cutoff = cutoff_of(day, tz)
        i = bisect_right(times, cutoff)  # the transactions after the cutoff: ordered[i:]
        balance = now - suffix[i]
        snapshots.append(BalanceSnapshotIn(
            wallet.account, ACCOUNT_TYPE, "", cutoff, {keys.network.native_symbol: format(sats(balance), "f")},
            {"chain": wallet.chain, "wallet": wallet.address, "tip": {"height": read.tip_height, "hash": read.tip_hash},
             "final_block": {"height": final_block["height"], "hash": final_block["id"],
                             "mediantime": final_block.get("mediantime"), "timestamp": final_block["timestamp"]},
             "chain_stats": stats, "confirmed_balance_sats": now,
             "rolled_back": {"transactions": len(ordered) - i, "sats": suffix[i]}}))
    with engine.begin() as conn:
        inserted = write_balance_snapshots(conn, entity.id, SOURCE, snapshots, run_id)
        write_cursor(conn, entity.id, SOURCE, wallet.account, BALANCES_STREAM, {"day": days[-1].isoformat()}, run_id)
    result.affected_days.update(days)
    return inserted

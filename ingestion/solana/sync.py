"""Sync one Solana wallet (read through ingestion/solana/client.py): balances now, new signatures (before/until pagination), transactions, balances at cutoffs.

Everything at commitment ``finalized``. Order matters: balances are read first (at slot S), then the signatures of
the wallet and of every token account it owns, so every transaction up to S is staged; a day's balance is the
balance at S minus the changes of the staged transactions after the day's cutoff and at or before S (Solana RPC
has no historical balance query). Each address has a signature cursor (the newest staged signature), written in
the same transaction as the records; dedupe on ``wallet:signature``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ingestion.solana.client import PAGE, FetchedWallet, fetch_wallet
from ingestion.solana.mapping import (ACCOUNT_TYPE, NATIVE_SYMBOL, SOL_DECIMALS, SOURCE, STREAM, base_units,
                                      compute_changes, mint_alias)
from ingestion.staging import (BalanceSnapshotIn, RawRecordIn, finish_run, load_cursor, start_run,
                               write_balance_snapshots, write_cursor, write_raw_records)
from ingestion.wallets import Wallet
from transforms.asset_registry import register_token
from warehouse.calendar import close_date_of, cutoff_of, days_between
from warehouse.entities import Entity

KNOWN_MINTS = {
    "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v": "USDC",
    "Es9vMFrzaCERmJfrF4H2FYD4KCoNkY11McCe8BenwNYB": "USDT",
}
SIGNATURES_STREAM = "signatures"
BALANCES_STREAM = "balances"


@dataclass
class SolanaSyncResult:
    wallet: str
    signatures: int = 0
    inserted: int = 0
    snapshots: int = 0
    slot: int | None = None
    affected_days: set[date] = field(default_factory=set)
    synced_through: datetime | None = None
    seconds: float = 0.0


def _ts(seconds: int | None) -> datetime | None:
    return datetime.fromtimestamp(seconds, tz=timezone.utc) if seconds is not None else None


def sync_solana_wallet(engine: Engine, entity: Entity, wallet: Wallet, *, urls: Sequence[str],
                       as_of: datetime | None = None, known_mints: dict[str, str] | None = None,
                       timeout: float = 30.0, page: int = PAGE) -> SolanaSyncResult:
    """Stage the wallet's new finalized transactions and a balance snapshot at each day's cutoff up to ``as_of``
    (default: now; the balances read are taken as of that moment)."""
    started = time.perf_counter()
    result = SolanaSyncResult(wallet.address)
    known = {**KNOWN_MINTS, **(known_mints or {})}
    tz = entity.tz
    with engine.connect() as conn:
        cursors: dict[str, str | None] = {}
        rows = conn.execute(sa.text(
            "SELECT stream, cursor FROM ingestion_cursors WHERE entity_id = :e AND source = :s AND account = :a"),
            dict(e=entity.id, s=SOURCE, a=wallet.account)).all()
        for row in rows:
            if row.stream.startswith(SIGNATURES_STREAM + ":"):
                cursors[row.stream.split(":", 1)[1]] = row.cursor["signature"]
    fetched = fetch_wallet(urls, wallet.address, cursors, timeout=timeout, page=page)
    as_of = as_of or datetime.now(timezone.utc)
    result.slot = fetched.slot

    records = []
    mints: dict[str, int] = {}
    for signature, tx in sorted(fetched.transactions.items(), key=lambda kv: (kv[1]["slot"], kv[0])):
        payload = {"wallet": wallet.address, "signature": signature, "transaction": tx}
        _, _, tokens = compute_changes(signature, wallet.address, tx)
        for mint, (_, decimals) in tokens.items():
            mints[mint] = decimals
        records.append(RawRecordIn(wallet.account, f"{wallet.address}:{signature}", _ts(tx.get("blockTime")), payload))
    mints.update({m: d for m, (_, d) in fetched.holdings.items()})
    with engine.begin() as conn:
        run_id = start_run(conn, entity.id, SOURCE, STREAM)
        for mint, decimals in sorted(mints.items()):
            symbol = known.get(mint)
            register_token(conn, source=SOURCE, alias=mint_alias(mint), symbol=symbol or mint[:8], name=None,
                           decimals=decimals, verified=symbol is not None)
        result.inserted = write_raw_records(conn, entity.id, SOURCE, STREAM, records, run_id)
        for address, infos in fetched.new.items():
            if infos:
                write_cursor(conn, entity.id, SOURCE, wallet.account, f"{SIGNATURES_STREAM}:{address}",
                             {"signature": infos[0]["signature"], "slot": infos[0]["slot"]}, run_id)
        finish_run(conn, run_id, seen=len(records), inserted=result.inserted)
    result.signatures = len(records)
    result.affected_days.update(close_date_of(r.occurred_at, tz) for r in records if r.occurred_at)
    result.snapshots = snapshot_balances(engine, entity, wallet, fetched, as_of, run_id, result)
    result.synced_through = as_of
    result.seconds = time.perf_counter() - started
    return result


def snapshot_balances(engine: Engine, entity: Entity, wallet: Wallet, fetched: FetchedWallet, as_of: datetime,
                      run_id, result: SolanaSyncResult) -> int:  # type: ignore[no-untyped-def]
    """Roll the balances read at slot S back to each day's cutoff with the staged transactions after it."""
    tz = entity.tz
    with engine.connect() as conn:
        cursor = load_cursor(conn, entity.id, SOURCE, wallet.account, BALANCES_STREAM)
        staged = conn.execute(sa.text(
            """
            SELECT DISTINCT ON (source_raw_id) source_raw_id, occurred_at, payload FROM raw_records
            WHERE entity_id = :e AND source = :s AND stream = :st AND account = :a AND processing_status <> 'orphaned'
            ORDER BY source_raw_id, id DESC
            """), dict(e=entity.id, s=SOURCE, st=STREAM, a=wallet.account)).all()
    if not staged:
        return 0
    first_day = (date.fromisoformat(cursor["day"]) + timedelta(days=1) if cursor
                 else close_date_of(min(r.occurred_at for r in staged if r.occurred_at), tz))
    last_day = close_date_of(as_of, tz)
    if cutoff_of(last_day, tz) > as_of:
        last_day -= timedelta(days=1)
    days = list(days_between(first_day, last_day))
    if not days:
        return 0
    changes = []  # (time, sol change incl. fee, {mint: change})
    decimals: dict[str, int] = {m: d for m, (_, d) in fetched.holdings.items()}
    for row in staged:
        tx = row.payload["transaction"]
        if tx["slot"] > fetched.slot or row.occurred_at is None:
            continue  # finalized after the balances were read: not in them
        sol, fee, tokens = compute_changes(row.source_raw_id, wallet.address, tx)
        changes.append((row.occurred_at, sol - fee, {m: c for m, (c, _) in tokens.items()}))
        decimals.update({m: d for m, (_, d) in tokens.items()})
    snapshots = []
    for day in days:
        cutoff = cutoff_of(day, tz)
        lamports = fetched.lamports - sum(sol for t, sol, _ in changes if t > cutoff)
        balances = {NATIVE_SYMBOL: format(base_units(lamports, SOL_DECIMALS), "f")}
        for mint in sorted(decimals):
            amount = fetched.holdings.get(mint, (0, 0))[0] - sum(tok.get(mint, 0) for t, _, tok in changes if t > cutoff)
            balances[mint_alias(mint)] = format(base_units(amount, decimals[mint]), "f")
        snapshots.append(BalanceSnapshotIn(
            wallet.account, ACCOUNT_TYPE, "", cutoff, balances,
            {"wallet": wallet.address, "slot": fetched.slot, "read_at": as_of.isoformat(),
             "getBalance": fetched.balance_raw, "getTokenAccountsByOwner": fetched.token_accounts_raw,
             "rolled_back": sorted(t.isoformat() for t, _, _ in changes if t > cutoff)}))
    with engine.begin() as conn:
        inserted = write_balance_snapshots(conn, entity.id, SOURCE, snapshots, run_id)
        write_cursor(conn, entity.id, SOURCE, wallet.account, BALANCES_STREAM, {"day": days[-1].isoformat()}, run_id)
    result.affected_days.update(days)
    return inserted

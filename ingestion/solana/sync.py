"""Sync one Solana wallet: balances now, new signatures (before/until pagination), transactions, balances at cutoffs.

Everything at commitment ``finalized``. Order matters: balances are read first (at slot S), then the signatures of
the wallet and of every token account it owns, so every transaction up to S is staged; a day's balance is the
balance at S minus the changes of the staged transactions after the day's cutoff and at or before S (Solana RPC
has no historical balance query). Each address has a signature cursor (the newest staged signature), written in
the same transaction as the records; dedupe on ``wallet:signature``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any

import sqlalchemy as sa
from solana.exceptions import SolanaRpcException
from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Finalized
from solana.rpc.models import TokenAccountOpts
from solders.commitment_config import CommitmentLevel
from solders.pubkey import Pubkey
from solders.rpc.config import RpcTransactionConfig
from solders.rpc.requests import GetTransaction
from solders.rpc.responses import GetTransactionResp
from solders.signature import Signature
from solders.transaction_status import UiTransactionEncoding
from sqlalchemy.engine import Engine

from ingestion.evm.chains import redact_url
from ingestion.retry import RetryPolicy, TransientError, retry_call
from spl.token.constants import TOKEN_2022_PROGRAM_ID, TOKEN_PROGRAM_ID

from ingestion.solana.mapping import (ACCOUNT_TYPE, NATIVE_SYMBOL, SOL_DECIMALS, SOURCE, STREAM, base_units,
                                      compute_changes, mint_alias)
from ingestion.staging import (BalanceSnapshotIn, RawRecordIn, finish_run, load_cursor, start_run,
                               write_balance_snapshots, write_cursor, write_raw_records)
from ingestion.wallets import Wallet
from transforms.asset_registry import register_token
from warehouse.calendar import close_date_of, cutoff_of, days_between
from warehouse.entities import Entity

# the SPL Token and Token-2022 program ids as solana-py itself defines them (a misspelt id is refused by every node)
TOKEN_PROGRAMS = (str(TOKEN_PROGRAM_ID), str(TOKEN_2022_PROGRAM_ID))
KNOWN_MINTS = {
    "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v": "USDC",
    "Es9vMFrzaCERmJfrF4H2FYD4KCoNkY11McCe8BenwNYB": "USDT",
}
PAGE = 1000
SIGNATURES_STREAM = "signatures"
BALANCES_STREAM = "balances"


class SolanaSyncError(RuntimeError):
    """The Solana RPC failed for good; the message names the method and host, never the URL's path or query."""


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


@dataclass
class _Fetched:
    slot: int
    lamports: int
    balance_raw: Any
    token_accounts_raw: list[Any]
    holdings: dict[str, tuple[int, int]]  # mint -> (amount, decimals) now
    new: dict[str, list[dict[str, Any]]]  # address -> signature infos, newest first
    transactions: dict[str, dict[str, Any]]  # signature -> getTransaction result (raw)


async def _fetch(url: str, wallet: str, cursors: dict[str, str | None], *, timeout: float, page: int) -> _Fetched:
    async with AsyncClient(url, commitment=Finalized, timeout=timeout) as client:
        owner = Pubkey.from_string(wallet)
        balance = await client.get_balance(owner, commitment=Finalized)
        raw_accounts: list[Any] = []
        holdings: dict[str, list[int]] = {}
        token_addresses: list[str] = []
        for program in TOKEN_PROGRAMS:
            response = await client.get_token_accounts_by_owner_json_parsed(
                owner, TokenAccountOpts(program_id=Pubkey.from_string(program)), commitment=Finalized)
            for account in response.value:
                raw = json.loads(account.to_json())
                raw_accounts.append(raw)
                info = raw["account"]["data"]["parsed"]["info"]
                amount = info["tokenAmount"]
                slot = holdings.setdefault(info["mint"], [0, int(amount["decimals"])])
                slot[0] += int(amount["amount"])
                token_addresses.append(raw["pubkey"])
        new: dict[str, list[dict[str, Any]]] = {}
        for address in [wallet, *token_addresses]:
            until = cursors.get(address)
            before: Signature | None = None
            found: list[dict[str, Any]] = []
            while True:
                listed = await client.get_signatures_for_address(
                    Pubkey.from_string(address), before=before, limit=page, commitment=Finalized,
                    until=Signature.from_string(until) if until else None)
                infos = [json.loads(s.to_json()) for s in listed.value]
                found.extend(infos)
                if len(infos) < page:
                    break
                before = Signature.from_string(infos[-1]["signature"])
            new[address] = found
        transactions: dict[str, dict[str, Any]] = {}
        config = RpcTransactionConfig(encoding=UiTransactionEncoding.JsonParsed, commitment=CommitmentLevel.Finalized,
                                      max_supported_transaction_version=0)
        for signature in sorted({s["signature"] for infos in new.values() for s in infos}):
            body = GetTransaction(Signature.from_string(signature), config)
            raw = await client._provider.make_request_unparsed(body)  # the node's own text, kept unchanged
            parsed = GetTransactionResp.from_json(raw)  # strict check by solders: raises on a malformed answer
            if not isinstance(parsed, GetTransactionResp) or parsed.value is None:
                raise SolanaSyncError(f"getTransaction {signature}: no finalized transaction ({json.loads(raw).get('error')})")
            transactions[signature] = json.loads(raw)["result"]
    return _Fetched(balance.context.slot, balance.value, json.loads(balance.to_json())["result"], raw_accounts,
                    {m: (v[0], v[1]) for m, v in holdings.items()}, new, transactions)


def fetch_wallet(urls: Sequence[str], wallet: str, cursors: dict[str, str | None], *, timeout: float = 30.0,
                 retries: int = 2, backoff: float = 0.25, page: int = PAGE) -> _Fetched:
    """Everything needed from the RPC, trying each URL in turn on transport errors (network only)."""
    if not urls:
        raise SolanaSyncError("solana: no RPC URL (wallet --rpc-url or COINFRS_RPC_SOLANA)")
    def once() -> _Fetched:  # every URL in turn; a round where none answers is a transient failure
        last: Exception | None = None
        for url in urls:
            try:
                return asyncio.run(_fetch(url, wallet, cursors, timeout=timeout, page=page))
            except SolanaRpcException as exc:  # transport: connection refused, timeout, HTTP error
                last = exc
        raise TransientError(type(last).__name__)

    try:  # the shared retry policy (ingestion/retry.py)
        return retry_call(once, RetryPolicy(attempts=retries + 1, initial_seconds=backoff, max_seconds=8.0))
    except TransientError as last:
        hosts = ", ".join(redact_url(u) for u in urls)
        raise SolanaSyncError(f"solana: no RPC URL answered ({hosts}): {last}") from None


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


def snapshot_balances(engine: Engine, entity: Entity, wallet: Wallet, fetched: _Fetched, as_of: datetime,
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

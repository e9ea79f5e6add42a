"""Sync the EVM wallets of one entity on one chain: reorg check, block-range scan, staging, balances at cutoffs.

1. Reorg check: the hashes of the last ``reorg_check_depth`` recorded blocks are compared with the node's. From
   the lowest changed block on, staged records are marked ``orphaned`` (kept, never deleted), recorded blocks are
   dropped and the wallets' cursors rewound, so the scan below re-ingests the new branch; the days from the fork
   on are returned as affected (to be closed again).
2. Scan, in chunks of ``blocks_per_request`` up to the final block (the node's ``finalized`` block or head - K):
   every block with its transactions (native transfers from/to a wallet, with receipts for the fee), and
   ``eth_getLogs`` on the ERC-20 Transfer topic with the wallets as ``from`` and as ``to``. Each chunk is one
   transaction: raw records (dedupe ``tx_hash`` / ``tx_hash:log_index`` per wallet), block hashes, token metadata
   into the asset registry, and the wallets' block cursors. A killed run resumes after the last committed chunk.
   With an Etherscan-compatible account API configured (ingestion/evm/explorer.py), the chunk reads only the blocks
   it names (txlist, txlistinternal; tokentx for the blocks whose logs to read), the chunk's ends and the last block
   before each cutoff (binary search by timestamp): the same raw records, from the node, without reading every block.
3. Balances: for every day whose cutoff is covered by final blocks, the native balance and every token balance of
   each wallet at the last block at or before the cutoff -> one balance snapshot stamped at the cutoff.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ingestion.evm.chains import ChainConfig, ChainConfigError
from ingestion.evm.mapping import (ACCOUNT_TYPE, INTERNAL_STREAM, LOG_STREAM, NATIVE_DECIMALS, OPENING_STREAM, REVERSAL_STREAM, SOURCE,
                                   TRANSFER_TOPIC, TX_STREAM, base_units, internal_moves, reversal_payload,
                                   token_alias)
from ingestion.evm.explorer import ExplorerClient
from ingestion.evm.client import EvmRpc, RpcError
from ingestion.staging import (BalanceSnapshotIn, RawRecordIn, finish_run, load_cursor, start_run,
                               write_balance_snapshots, write_cursor, write_raw_records)
from ingestion.wallets import Wallet
from transforms.asset_registry import register_token
from transforms.mappers import StagedRecord, map_record
from warehouse.bulk import copy_rows
from warehouse.calendar import close_date_of, cutoff_of, days_between, locked_dates
from warehouse.entities import Entity

BLOCKS_STREAM = "blocks"
BALANCES_STREAM = "balances"
BALANCE_OF = "0x70a08231"
SYMBOL, NAME, DECIMALS = "0x95d89b41", "0x06fdde03", "0x313ce567"


@dataclass
class EvmSyncResult:
    chain: str
    from_block: int | None = None
    to_block: int | None = None
    blocks: int = 0
    transactions: int = 0
    logs: int = 0
    internal: int = 0  # internal native transfers (traces)
    traces_available: bool = True  # false: the node offers no trace methods (internal transfers not booked)
    inserted: int = 0
    snapshots: int = 0
    orphaned: int = 0
    reversals: int = 0  # orphaned records whose legs were booked on locked days: reversed in the first open day
    fork_block: int | None = None
    reorg_days: set[date] = field(default_factory=set)  # the close days whose orphaned records or balances changed
    affected_days: set[date] = field(default_factory=set)
    synced_through: datetime | None = None
    seconds: float = 0.0


def _ts(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


def _pad(address: str) -> str:
    return "0x" + "0" * 24 + address[2:].lower()


def _decode_string(raw: str | None) -> str | None:
    """An ABI ``string`` return value, or a ``bytes32`` one (older tokens); None if neither."""
    if not raw or raw == "0x":
        return None
    data = bytes.fromhex(raw[2:])
    try:
        if len(data) >= 64:
            offset = int.from_bytes(data[:32], "big")
            length = int.from_bytes(data[offset:offset + 32], "big")
            if offset + 32 + length <= len(data):
                return data[offset + 32:offset + 32 + length].decode("utf-8", "replace")
        if len(data) == 32:
            return data.rstrip(b"\0").decode("utf-8", "replace")
    except (ValueError, OverflowError):
        return None
    return None


def _block_info(block: dict[str, Any]) -> dict[str, Any]:
    return {"number": int(block["number"], 16), "hash": block["hash"], "timestamp": int(block["timestamp"], 16)}


# ---------------------------------------------------------------------------------------------- cursors


def _block_cursor(conn: Connection, entity: Entity, wallet: Wallet) -> int:
    cursor = load_cursor(conn, entity.id, SOURCE, wallet.account, BLOCKS_STREAM)
    return int(cursor["block"]) if cursor else wallet.start_block - 1


def _balance_cursor(conn: Connection, entity: Entity, wallet: Wallet) -> date | None:
    cursor = load_cursor(conn, entity.id, SOURCE, wallet.account, BALANCES_STREAM)
    return date.fromisoformat(cursor["day"]) if cursor else None


# ---------------------------------------------------------------------------------------------- reorgs


def check_reorg(engine: Engine, entity: Entity, chain: ChainConfig, rpc: EvmRpc, wallets: list[Wallet],
                result: EvmSyncResult, run_id) -> int | None:  # type: ignore[no-untyped-def]
    """Compare recorded block hashes with the node's; on a change, orphan and rewind. Returns the fork block."""
    with engine.connect() as conn:
        recorded = conn.execute(sa.text(
            "SELECT number, hash, timestamp FROM chain_blocks WHERE entity_id = :e AND chain_id = :c"
            " ORDER BY number DESC LIMIT :n"), dict(e=entity.id, c=chain.chain_id, n=chain.reorg_check_depth)).all()
    if not recorded:
        return None
    nodes = rpc.batch([("eth_getBlockByNumber", [hex(r.number), False]) for r in recorded], tolerant=True)
    changed = [r for r, node in zip(recorded, nodes) if node is None or node.get("hash") != r.hash]
    if not changed:
        return None
    fork = min(changed, key=lambda r: r.number)
    if len(recorded) == chain.reorg_check_depth and fork.number == recorded[-1].number:
        raise RpcError(f"{chain.name}: reorg deeper than {chain.reorg_check_depth} recorded blocks at block "
                       f"{fork.number}; raise reorg_check_depth and sync again")
    orphan_from(engine, entity, chain, wallets, fork.number, fork.timestamp, result, run_id)
    return fork.number


def stage_reversals(conn: Connection, entity: Entity, chain: ChainConfig, fork: int, orphaned: list[sa.Row],
                    run_id) -> int:  # type: ignore[no-untyped-def]
    """Orphaned records whose legs are booked on a locked day stay there (a locked day never changes): stage, for
    each, the reversal of those legs, which the canonical build books as adjustments on the first open day."""
    locked = sorted(locked_dates(conn, entity.id))
    if not locked or not orphaned:
        return 0
    booked = {r.raw_record_id: set(r.legs) for r in conn.execute(sa.text(
        "SELECT raw_record_id, array_agg(leg_index) AS legs FROM transactions WHERE entity_id = :e"
        " AND raw_record_id = ANY(:ids) AND close_date = ANY(:locked) GROUP BY 1"),
        dict(e=entity.id, ids=[r.id for r in orphaned], locked=locked))}
    reversals = []
    for row in orphaned:
        if row.id not in booked:
            continue
        record = StagedRecord(row.id, SOURCE, row.stream, row.account, row.source_raw_id, row.occurred_at, row.payload)
        legs = [d for d in map_record(record) if d.leg_index in booked[row.id]]
        reversals.append(RawRecordIn(row.account, f"reversal:{row.id}", row.occurred_at,
                                     reversal_payload(chain.name, chain.chain_id, fork, record, legs)))
    return write_raw_records(conn, entity.id, SOURCE, REVERSAL_STREAM, reversals, run_id)


def orphan_from(engine: Engine, entity: Entity, chain: ChainConfig, wallets: list[Wallet], fork: int,
                fork_time: datetime, result: EvmSyncResult, run_id) -> None:  # type: ignore[no-untyped-def]
    """Mark the staged records of blocks >= ``fork`` orphaned and rewind the wallets to re-ingest from there."""
    tz = entity.tz
    with engine.begin() as conn:
        orphaned = conn.execute(sa.text(
            """
            UPDATE raw_records SET processing_status = 'orphaned'
            WHERE entity_id = :e AND source = :s AND stream IN (:tx, :logs, :internal) AND processing_status <> 'orphaned'
              AND (payload->>'chain_id')::bigint = :c AND (payload->'block'->>'number')::bigint >= :fork
            RETURNING id, stream, account, source_raw_id, occurred_at, payload
            """), dict(e=entity.id, s=SOURCE, tx=TX_STREAM, logs=LOG_STREAM, internal=INTERNAL_STREAM, c=chain.chain_id,
                       fork=fork)).all()
        times = [r.occurred_at for r in orphaned]
        result.reversals += stage_reversals(conn, entity, chain, fork, orphaned, run_id)
        conn.execute(sa.text("DELETE FROM chain_blocks WHERE entity_id = :e AND chain_id = :c AND number >= :fork"),
                     dict(e=entity.id, c=chain.chain_id, fork=fork))
        fork_day = close_date_of(fork_time, tz)
        for wallet in wallets:
            block = _block_cursor(conn, entity, wallet)
            if block >= fork:  # never before the wallet's start (its opening balance stands for what came before)
                write_cursor(conn, entity.id, SOURCE, wallet.account, BLOCKS_STREAM,
                             {"block": max(fork, wallet.start_block) - 1})
            day = _balance_cursor(conn, entity, wallet)
            if day is not None and day >= fork_day:
                write_cursor(conn, entity.id, SOURCE, wallet.account, BALANCES_STREAM,
                             {"day": (fork_day - timedelta(days=1)).isoformat()})
    result.orphaned += len(times)
    result.fork_block = fork if result.fork_block is None else min(result.fork_block, fork)
    result.reorg_days.update(close_date_of(t, tz) for t in times if t is not None)
    result.reorg_days.add(fork_day)
    result.affected_days.update(result.reorg_days)


# ---------------------------------------------------------------------------------------------- scan


@dataclass
class _Chunk:
    blocks: list[dict[str, Any]]
    transactions: list[RawRecordIn]
    logs: list[RawRecordIn]
    tokens: dict[str, dict[str, Any]]
    internal: list[RawRecordIn] = field(default_factory=list)
    traces_available: bool = True


def decode_decimals(raw: str | None) -> int | None:
    """``decimals()``'s answer as a number, or None when the call did not answer one: reverted (None), a contract
    without code at that block (``0x``), or anything but one 32-byte word up to 255. Never 0 from a failed call."""
    if not isinstance(raw, str) or not raw.startswith("0x") or len(raw) != 66:
        return None
    try:
        value = int(raw, 16)
    except ValueError:
        return None
    return value if value <= 255 else None


def fetch_token_metadata(rpc: EvmRpc, chain: ChainConfig, contracts: list[str], block: int,
                         cache: dict[str, dict[str, Any]]) -> None:
    """symbol(), name(), decimals() of each contract into ``cache``: at ``block``, and for a contract that did not
    answer there (not deployed yet at that block: ``eth_call`` gives ``0x``) at the latest block. Decimals that no
    call answered stay None (unknown, never 0): such a token is not registered and its transfers are quarantined."""
    contracts = [c for c in contracts if c not in cache]
    if not contracts:
        return

    def ask(targets: list[str], at: str) -> dict[str, tuple[Any, Any, Any]]:
        calls = [("eth_call", [{"to": t, "data": sel}, at]) for t in targets for sel in (SYMBOL, NAME, DECIMALS)]
        answers = rpc.batch(calls, tolerant=True)
        return {t: tuple(answers[3 * i:3 * i + 3]) for i, t in enumerate(targets)}  # type: ignore[misc]

    found = ask(contracts, hex(block))
    retry = [c for c, (_, _, decimals) in found.items() if decode_decimals(decimals) is None]
    if retry:
        found.update({c: answer for c, answer in ask(retry, "latest").items() if decode_decimals(answer[2]) is not None})
    for contract in contracts:
        symbol, name, decimals = found[contract]
        cache[contract] = {
            "address": contract, "alias": token_alias(chain.name, contract),
            "symbol": _decode_string(symbol) or "?", "name": _decode_string(name),
            "decimals": decode_decimals(decimals),
            "verified_symbol": chain.tokens.get(contract),
            "raw": {"symbol": symbol, "name": name, "decimals": decimals},
        }


def register_tokens(conn: Connection, tokens: list[dict[str, Any]]) -> None:
    """Tokens into the asset registry; one whose decimals are unknown is left out (registered when they are known)."""
    for token in tokens:
        verified = token["verified_symbol"]
        register_token(conn, source=SOURCE, alias=token["alias"], symbol=verified or token["symbol"],
                       name=token["name"], decimals=token["decimals"], verified=bool(verified))


def stage_opening_balances(engine: Engine, entity: Entity, chain: ChainConfig, rpc: EvmRpc, wallet: Wallet,
                           token_cache: dict[str, dict[str, Any]], run_id) -> int:  # type: ignore[no-untyped-def]
    """A wallet scanned from ``start_block`` > 0 starts with what it held before: native and verified tokens."""
    before = wallet.start_block - 1
    [start] = rpc.fetch_blocks([wallet.start_block], full=False)
    contracts = sorted(chain.tokens)
    fetch_token_metadata(rpc, chain, contracts, before, token_cache)
    answers = rpc.batch([("eth_getBalance", [wallet.address, hex(before)])] + [
        ("eth_call", [{"to": c, "data": BALANCE_OF + _pad(wallet.address)[2:]}, hex(before)]) for c in contracts])
    tokens = [{**{k: v for k, v in token_cache[c].items() if k != "raw"}, "balanceOf": raw}
              for c, raw in zip(contracts, answers[1:])]
    record = RawRecordIn(wallet.account, f"{chain.name}:{wallet.address}:opening:{wallet.start_block}",
                         _ts(int(start["timestamp"], 16)),
                         {"chain": chain.name, "chain_id": chain.chain_id, "wallet": wallet.address,
                          "native_symbol": chain.native_symbol, "block": _block_info(start), "eth_getBalance": answers[0],
                          "tokens": tokens})
    with engine.begin() as conn:
        register_tokens(conn, [token_cache[c] for c in contracts])
        inserted = write_raw_records(conn, entity.id, SOURCE, OPENING_STREAM, [record], run_id)
        write_cursor(conn, entity.id, SOURCE, wallet.account, BLOCKS_STREAM, {"block": before}, run_id)
    return inserted


def block_at_or_before(rpc: EvmRpc, moment: datetime, lo: int, hi: int, times: dict[int, int]) -> int | None:
    """The last block in [lo, hi] stamped at or before ``moment`` (binary search over RPC; ``times`` caches)."""
    target = int(moment.timestamp())

    def stamp(n: int) -> int:
        if n not in times:
            times[n] = int(rpc.fetch_blocks([n], full=False)[0]["timestamp"], 16)
        return times[n]

    if stamp(lo) > target:
        return None
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if stamp(mid) <= target:
            lo = mid
        else:
            hi = mid - 1
    return lo


def explorer_blocks(rpc: EvmRpc, explorer: ExplorerClient, cursors: dict[str, int], first: int, last: int,
                    entity: Entity) -> tuple[list[int], list[int], list[str]]:
    """The blocks of [first, last] to read when an account API names the wallets' activity: those of their
    transactions, internal transfers and token transfers, the range's ends and the last block before each day's
    cutoff (for the balances). Returns (blocks to read, blocks whose logs to read, transactions to trace)."""
    wanted, token_blocks, internal = {first, last}, set(), set()
    for address, cursor in cursors.items():
        start = max(first, cursor + 1)
        if start > last:
            continue
        wanted.update(int(e["blockNumber"]) for e in explorer.fetch_account("txlist", address, start, last))
        for entry in explorer.fetch_account("txlistinternal", address, start, last):
            wanted.add(int(entry["blockNumber"]))
            internal.add(entry["hash"])
        token_blocks.update(int(e["blockNumber"]) for e in explorer.fetch_account("tokentx", address, start, last))
    times: dict[int, int] = {}
    first_day = close_date_of(_ts(int(rpc.fetch_blocks([first], full=False)[0]["timestamp"], 16)), entity.tz)
    last_time = _ts(int(rpc.fetch_blocks([last], full=False)[0]["timestamp"], 16))
    for day in days_between(first_day, close_date_of(last_time, entity.tz)):
        number = block_at_or_before(rpc, cutoff_of(day, entity.tz), first, last, times)
        if number is not None:
            wanted.add(number)
    return sorted(wanted | token_blocks), sorted(token_blocks), sorted(internal)


def fetch_chunk(rpc: EvmRpc, chain: ChainConfig, cursors: dict[str, int], first: int, last: int,
                token_cache: dict[str, dict[str, Any]], *, numbers: list[int] | None = None,
                log_blocks: list[int] | None = None, traced: list[str] | None = None, traces: bool = True) -> _Chunk:
    """Everything the wallets did in blocks [first, last] (network only): every block, or only ``numbers`` (and the
    logs of ``log_blocks``) when an account API said where the wallets' activity is."""
    blocks = rpc.fetch_blocks(numbers if numbers is not None else list(range(first, last + 1)), full=True)
    by_number = {int(b["number"], 16): b for b in blocks}
    for number, block in by_number.items():
        parent = by_number.get(number - 1)
        if parent is not None and block["parentHash"] != parent["hash"]:
            raise RpcError(f"{chain.name}: block {number} does not extend block {number - 1} (the chain moved "
                           f"during the scan); sync again")
    matched: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
    for block in blocks:
        number = int(block["number"], 16)
        for tx in block["transactions"]:
            parties = {(tx.get("from") or "").lower(), (tx.get("to") or "").lower()}
            for address in sorted(parties & cursors.keys()):
                if number > cursors[address]:
                    matched.append((address, block, tx))
    receipts = dict(zip(sorted({tx["hash"] for _, _, tx in matched}),
                        rpc.fetch_receipts(sorted({tx["hash"] for _, _, tx in matched}))))
    padded = [_pad(a) for a in sorted(cursors)]
    ranges = [(first, last)] if log_blocks is None else [(n, n) for n in log_blocks]
    answers = rpc.batch([("eth_getLogs", [{"fromBlock": hex(a), "toBlock": hex(b), "topics": topics}])
                         for a, b in ranges for topics in ([TRANSFER_TOPIC, padded], [TRANSFER_TOPIC, None, padded])])
    raw_logs = [log for answer in answers for log in answer]
    logs: dict[tuple[str, int], dict[str, Any]] = {}
    for log in raw_logs:
        if log.get("removed") or len(log.get("topics") or []) != 3:
            continue  # a removed log is not on the chain; 4 topics = ERC-721, not a fungible transfer
        logs[(log["transactionHash"], int(log["logIndex"], 16))] = log
    new_tokens = sorted({log["address"].lower() for log in logs.values()} - token_cache.keys())
    fetch_token_metadata(rpc, chain, new_tokens, last, token_cache)

    def envelope(address: str, block: dict[str, Any]) -> dict[str, Any]:
        return {"chain": chain.name, "chain_id": chain.chain_id, "wallet": address, "block": _block_info(block)}

    tx_records = [
        RawRecordIn(f"{chain.name}:{address}", f"{chain.name}:{address}:{tx['hash']}",
                    _ts(int(block["timestamp"], 16)),
                    {**envelope(address, block), "native_symbol": chain.native_symbol, "transaction": tx,
                     "receipt": receipts[tx["hash"]]})
        for address, block, tx in matched]
    log_records = []
    for (tx_hash, index), log in sorted(logs.items(), key=lambda kv: (int(kv[1]["blockNumber"], 16), kv[0][1])):
        number = int(log["blockNumber"], 16)
        block = by_number[number]
        if log["blockHash"] != block["hash"]:
            raise RpcError(f"{chain.name}: log {tx_hash}:{index} is in block {log['blockHash']}, the scan saw "
                           f"{block['hash']} at {number} (the chain moved during the scan); sync again")
        sender, receiver = "0x" + log["topics"][1][-40:].lower(), "0x" + log["topics"][2][-40:].lower()
        token = {k: v for k, v in token_cache[log["address"].lower()].items() if k != "raw"}
        for address in sorted({sender, receiver} & cursors.keys()):
            if number > cursors[address]:
                log_records.append(RawRecordIn(
                    f"{chain.name}:{address}", f"{chain.name}:{address}:{tx_hash}:{index}", _ts(int(block["timestamp"], 16)),
                    {**envelope(address, block), "token": token, "log": log}))
    internal, available = fetch_internal(rpc, chain, cursors, first, last, by_number, traced, envelope) \
        if traces else ([], False)
    return _Chunk(blocks, tx_records, log_records, {c: token_cache[c] for c in new_tokens}, internal, available)


def _unsupported(error: RpcError) -> bool:
    text = str(error).lower()
    return "-32601" in text or "not supported" in text or "unsupported" in text or "does not exist" in text \
        or "not found" in text and "method" in text


def fetch_internal(rpc: EvmRpc, chain: ChainConfig, cursors: dict[str, int], first: int, last: int,
                   by_number: dict[int, dict[str, Any]], traced: list[str] | None,
                   envelope) -> tuple[list[RawRecordIn], bool]:  # type: ignore[no-untyped-def]
    """Internal native transfers from or to the wallets, from the node's traces (``trace_transaction``) of the
    transactions ``traced`` (named by an account API), else of those ``trace_filter`` finds in [first, last].
    A node without trace methods gives none: (records, traces available)."""
    try:
        if traced is None:
            step = max(1, chain.trace_blocks_per_request)  # nodes cap trace_filter's range (Anvil: 300 blocks)
            found = rpc.batch([("trace_filter", [{"fromBlock": hex(a), "toBlock": hex(min(a + step - 1, last)),
                                                  side: sorted(cursors)}])
                               for a in range(first, last + 1, step) for side in ("fromAddress", "toAddress")])
            traced = sorted({t["transactionHash"] for answer in found for t in answer
                             if t.get("traceAddress") and t.get("transactionHash")})
        answers = rpc.batch([("trace_transaction", [h]) for h in traced])
    except RpcError as error:
        if _unsupported(error):
            return [], False
        raise
    records = []
    for tx_hash, traces in zip(traced, answers):
        if not traces:
            continue
        number = int(traces[0]["blockNumber"], 16) if isinstance(traces[0]["blockNumber"], str) else int(traces[0]["blockNumber"])
        block = by_number.get(number)
        if block is None or traces[0].get("blockHash") != block["hash"]:
            raise RpcError(f"{chain.name}: the trace of {tx_hash} is in block {number}, which the scan did not read "
                           f"(or read with another hash); sync again")
        for address in sorted(cursors):
            if number > cursors[address] and any(internal_moves(traces, address)):
                records.append(RawRecordIn(
                    f"{chain.name}:{address}", f"{chain.name}:{address}:{tx_hash}:internal", _ts(int(block["timestamp"], 16)),
                    {**envelope(address, block), "native_symbol": chain.native_symbol, "transaction_hash": tx_hash,
                     "traces": traces}))
    return records, True


def write_chunk(conn: Connection, entity: Entity, chain: ChainConfig, wallets: list[Wallet], chunk: _Chunk,
                first: int, last: int, run_id) -> int:  # type: ignore[no-untyped-def]
    """Stage one scanned chunk, its block hashes and token metadata, and move the cursors past it (one transaction)."""
    register_tokens(conn, list(chunk.tokens.values()))
    inserted = write_raw_records(conn, entity.id, SOURCE, TX_STREAM, chunk.transactions, run_id)
    inserted += write_raw_records(conn, entity.id, SOURCE, LOG_STREAM, chunk.logs, run_id)
    inserted += write_raw_records(conn, entity.id, SOURCE, INTERNAL_STREAM, chunk.internal, run_id)
    conn.execute(sa.text("DELETE FROM chain_blocks WHERE entity_id = :e AND chain_id = :c AND number BETWEEN :a AND :b"),
                 dict(e=entity.id, c=chain.chain_id, a=first, b=last))
    copy_rows(conn, "chain_blocks", ("entity_id", "chain_id", "number", "hash", "parent_hash", "timestamp"),
              ((entity.id, chain.chain_id, int(b["number"], 16), b["hash"], b["parentHash"], _ts(int(b["timestamp"], 16)))
               for b in chunk.blocks))
    for wallet in wallets:
        if _block_cursor(conn, entity, wallet) < last:
            write_cursor(conn, entity.id, SOURCE, wallet.account, BLOCKS_STREAM, {"block": last}, run_id)
    return inserted


# ---------------------------------------------------------------------------------------------- balances


def last_final_day(safe_time: datetime, entity: Entity) -> date:
    """The last close day whose cutoff is at or before ``safe_time`` (data through ``safe_time`` is complete for it)."""
    day = close_date_of(safe_time, entity.tz)
    return day if cutoff_of(day, entity.tz) <= safe_time else day - timedelta(days=1)


def snapshot_balances(engine: Engine, entity: Entity, chain: ChainConfig, rpc: EvmRpc, wallets: list[Wallet],
                      safe_time: datetime, run_id, result: EvmSyncResult) -> None:  # type: ignore[no-untyped-def]
    """Native and token balances of each wallet at the last block at or before each final day's cutoff."""
    tz = entity.tz
    last_day = last_final_day(safe_time, entity)
    for wallet in wallets:
        with engine.connect() as conn:
            done = _balance_cursor(conn, entity, wallet)
            first_block = conn.execute(sa.text(
                "SELECT min(timestamp) FROM chain_blocks WHERE entity_id = :e AND chain_id = :c AND number >= :n"),
                dict(e=entity.id, c=chain.chain_id, n=wallet.start_block)).scalar()
            if first_block is None:
                continue
            first_day = done + timedelta(days=1) if done else close_date_of(first_block, tz)
            days = list(days_between(first_day, last_day))
            if not days:
                continue
            at_cutoff = {}
            for day in days:
                row = conn.execute(sa.text(
                    "SELECT number, hash, timestamp FROM chain_blocks WHERE entity_id = :e AND chain_id = :c"
                    " AND number >= :n AND timestamp <= :t ORDER BY number DESC LIMIT 1"),
                    dict(e=entity.id, c=chain.chain_id, n=wallet.start_block, t=cutoff_of(day, tz))).first()
                if row is not None:
                    at_cutoff[day] = row
            tokens = [r[0] for r in conn.execute(sa.text(
                """
                SELECT DISTINCT ON (payload->'token'->>'address') payload->'token' FROM raw_records
                WHERE entity_id = :e AND source = :s AND stream = :st AND account = :a
                ORDER BY payload->'token'->>'address', id DESC
                """), dict(e=entity.id, s=SOURCE, st=LOG_STREAM, a=wallet.account)).all()
                      if isinstance(r[0].get("decimals"), int)]  # unknown decimals: no balance can be stated
        # every token the wallet was ever seen with, orphaned ones included: a snapshot after a reorg must say 0
        # for a token whose transfer the reorg removed, or the older snapshot's balance would stay the latest
        numbers = sorted({r.number for r in at_cutoff.values()})
        calls: list[tuple[str, list[Any]]] = []
        for n in numbers:
            calls.append(("eth_getBalance", [wallet.address, hex(n)]))
            calls.extend(("eth_call", [{"to": t["address"], "data": BALANCE_OF + _pad(wallet.address)[2:]}, hex(n)])
                         for t in tokens)
        answers = rpc.batch(calls)
        per_block: dict[int, tuple[str, dict[str, str]]] = {}
        width = 1 + len(tokens)
        for i, n in enumerate(numbers):
            row = answers[i * width:(i + 1) * width]
            per_block[n] = (row[0], {t["address"]: row[1 + j] for j, t in enumerate(tokens)})
        snapshots = []
        for day, block in sorted(at_cutoff.items()):
            native, token_raw = per_block[block.number]
            balances = {chain.native_symbol: format(base_units(int(native, 16), NATIVE_DECIMALS), "f")}
            for t in tokens:
                raw = token_raw[t["address"]]
                balances[t["alias"]] = format(base_units(int(raw, 16) if raw and raw != "0x" else 0, int(t["decimals"])), "f")
            snapshots.append(BalanceSnapshotIn(
                wallet.account, ACCOUNT_TYPE, "", cutoff_of(day, tz), balances,
                {"chain": chain.name, "chain_id": chain.chain_id, "wallet": wallet.address,
                 "block": {"number": block.number, "hash": block.hash, "timestamp": int(block.timestamp.timestamp())},
                 "eth_getBalance": native, "balanceOf": token_raw}))
        with engine.begin() as conn:
            result.snapshots += write_balance_snapshots(conn, entity.id, SOURCE, snapshots, run_id)
            write_cursor(conn, entity.id, SOURCE, wallet.account, BALANCES_STREAM, {"day": days[-1].isoformat()}, run_id)
        result.affected_days.update(d for d in at_cutoff)


# ---------------------------------------------------------------------------------------------- the sync


class ScanRefused(ChainConfigError):
    """A first plain-RPC scan too long to be what the user meant: the message says what it would cost and what to do."""


def check_scan_length(chain: ChainConfig, wallet: Wallet, safe: int, max_batch: int = 200) -> None:
    """Refuse a wallet's first block-by-block scan over more than ``chain.max_scan_blocks`` blocks (a wallet added
    with start block 0 on a long chain), with the estimated cost: one eth_getBlockByNumber per block, two eth_getLogs
    per chunk, sent as batches of ``max_batch``."""
    blocks = safe - wallet.start_block + 1
    if blocks <= chain.max_scan_blocks:
        return
    chunks = -(-blocks // chain.blocks_per_request)
    calls = blocks + 2 * chunks
    requests = chunks * (-(-chain.blocks_per_request // max_batch) + 1)
    rate = (f", ≈{requests / chain.max_requests_per_second / 3600:,.1f} h at {chain.max_requests_per_second:g} req/s"
            if chain.max_requests_per_second > 0 else "")
    raise ScanRefused(
        f"{chain.name}: refusing a plain-RPC scan of {blocks:,} blocks from block {wallet.start_block:,} (≈{calls:,} "
        f"JSON-RPC calls, ≈{requests:,} requests{rate}): give the wallet a --start-block or set "
        f"COINFRS_EXPLORER_URL_{chain.name.upper()} (explorer API); limit "
        f"COINFRS_MAX_SCAN_BLOCKS_{chain.name.upper()}={chain.max_scan_blocks}")



def sync_evm_chain(engine: Engine, entity: Entity, chain: ChainConfig, wallets: list[Wallet], *,
                   rpc: EvmRpc | None = None, to_block: int | None = None,
                   explorer: ExplorerClient | None = None) -> EvmSyncResult:
    """Bring the wallets of ``entity`` on ``chain`` up to the chain's final block (or ``to_block`` if lower).

    With an account API configured (``chain.explorer``), only the blocks it names are read; else every block."""
    started = time.perf_counter()
    result = EvmSyncResult(chain.name)
    wallets = [w for w in wallets if w.chain == chain.name]
    if not wallets:
        return result
    rpc = rpc or EvmRpc(chain)
    if explorer is None and chain.explorer is not None:
        explorer = ExplorerClient(chain.explorer)
    node_chain_id = rpc.fetch_chain_id()
    if node_chain_id != chain.chain_id:
        raise ChainConfigError(f"chain {chain.name!r} expects chain id {chain.chain_id}, the RPC node serves {node_chain_id}")
    safe = rpc.fetch_safe_block_number()
    if to_block is not None:
        safe = min(safe, to_block)
    if explorer is None:  # before anything is staged: a refused scan leaves no half-synced wallet
        for wallet in wallets:
            with engine.connect() as conn:
                if load_cursor(conn, entity.id, SOURCE, wallet.account, BLOCKS_STREAM) is None:
                    check_scan_length(chain, wallet, safe, rpc.max_batch)
    with engine.begin() as conn:
        run_id = start_run(conn, entity.id, SOURCE, chain.name)
    check_reorg(engine, entity, chain, rpc, wallets, result, run_id)
    token_cache: dict[str, dict[str, Any]] = {}
    for wallet in wallets:
        with engine.connect() as conn:
            fresh = load_cursor(conn, entity.id, SOURCE, wallet.account, BLOCKS_STREAM) is None
        if fresh and 0 < wallet.start_block <= safe:
            result.inserted += stage_opening_balances(engine, entity, chain, rpc, wallet, token_cache, run_id)
    seen = 0
    traces = chain.traces
    while True:
        with engine.connect() as conn:
            cursors = {w.address: _block_cursor(conn, entity, w) for w in wallets}
        first = min(cursors.values()) + 1
        if first > safe:
            break
        if explorer is None:
            last = min(first + chain.blocks_per_request - 1, safe)
            chunk = fetch_chunk(rpc, chain, cursors, first, last, token_cache, traces=traces)
        else:
            last = min(first + explorer.config.blocks_per_request - 1, safe)
            numbers, log_blocks, traced = explorer_blocks(rpc, explorer, cursors, first, last, entity)
            chunk = fetch_chunk(rpc, chain, cursors, first, last, token_cache, numbers=numbers, log_blocks=log_blocks,
                                traced=traced, traces=traces)
        with engine.connect() as conn:
            recorded_parent = conn.execute(sa.text(
                "SELECT hash FROM chain_blocks WHERE entity_id = :e AND chain_id = :c AND number = :n"),
                dict(e=entity.id, c=chain.chain_id, n=first - 1)).scalar()
        if recorded_parent is not None and chunk.blocks[0]["parentHash"] != recorded_parent:
            if check_reorg(engine, entity, chain, rpc, wallets, result, run_id) is None:
                raise RpcError(f"{chain.name}: block {first} does not extend the recorded block {first - 1}")
            continue
        with engine.begin() as conn:
            result.inserted += write_chunk(conn, entity, chain, wallets, chunk, first, last, run_id)
        result.from_block = first if result.from_block is None else min(result.from_block, first)
        result.to_block = last
        result.blocks += len(chunk.blocks)
        result.transactions += len(chunk.transactions)
        result.logs += len(chunk.logs)
        result.internal += len(chunk.internal)
        if not chunk.traces_available:
            traces = result.traces_available = False  # the node offers no traces: ask no more in this sync
        seen += len(chunk.transactions) + len(chunk.logs) + len(chunk.internal)
        result.affected_days.update(close_date_of(r.occurred_at, entity.tz) for r in chunk.transactions + chunk.logs + chunk.internal
                                    if r.occurred_at is not None)
    with engine.connect() as conn:
        safe_time = conn.execute(sa.text(
            "SELECT timestamp FROM chain_blocks WHERE entity_id = :e AND chain_id = :c AND number <= :n"
            " ORDER BY number DESC LIMIT 1"), dict(e=entity.id, c=chain.chain_id, n=safe)).scalar()
    if safe_time is not None:
        result.synced_through = safe_time
        snapshot_balances(engine, entity, chain, rpc, wallets, safe_time, run_id, result)
    with engine.begin() as conn:
        finish_run(conn, run_id, seen=seen, inserted=result.inserted)
    result.seconds = time.perf_counter() - started
    return result

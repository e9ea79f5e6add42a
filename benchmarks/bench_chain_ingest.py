"""Benchmark of EVM ingestion: throughput in legs/s over 10,000 blocks of transfers on a real Anvil node.

What it does, in a database of its own (on DATABASE_URL's server, else the embedded one):
  1. starts Anvil (npm @foundry-rs/anvil, installed into .coinfrs/node if missing) and deploys the test ERC-20;
  2. mines ``--blocks`` blocks (default 10,000) spread over ``--days`` days, each with three transactions touching
     the wallet: ETH in, an ERC-20 transfer in, ETH out (value + gas fee) -> 4 legs per block;
  3. syncs the wallet with ``sync_evm_chain`` (block-range scan, receipts, eth_getLogs, token metadata, block hashes,
     staging through COPY, cursors, balance snapshots at each day's cutoff) and times it;
  4. builds the canonical layer for the days (legs from staging) and times it; checks the last day's positions equal
     the chain's balances to the base unit.

Figures: ``ingest_legs_per_s`` = legs staged / sync seconds (network + staging), ``canonical_legs_per_s`` = legs /
canonical build seconds, ``end_to_end_legs_per_s`` = legs / (sync + canonical) seconds.

Run:  .venv/bin/python benchmarks/bench_chain_ingest.py [--blocks 10000 --days 10 --chunk 500]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")

WALLET = "0x1000000000000000000000000000000000000001"
OTHER = "0x3000000000000000000000000000000000000003"


def generate(url: str, blocks: int, start: datetime, spacing: int) -> str:
    """Mine ``blocks`` blocks of transfers through JSON-RPC batches; returns the token address."""
    from web3 import HTTPProvider, Web3

    from samples.chains.anvil import DEV, Chain

    chain = Chain(url)
    token = chain.deploy_token((start - timedelta(hours=1)).replace(tzinfo=None).isoformat(), "Bench USD", "BUSD", 6,
                               10 ** 30)
    chain.fund((start - timedelta(minutes=30)).replace(tzinfo=None).isoformat(), WALLET, 10 ** 21)
    provider = HTTPProvider(url, request_kwargs={"timeout": 120})
    provider.make_request("evm_setAutomine", [False])
    data = chain.token(token).encode_abi("transfer", [Web3.to_checksum_address(WALLET), 1_000_001])
    fees = {"gas": hex(60_000), "maxFeePerGas": hex(10 ** 10), "maxPriorityFeePerGas": hex(10 ** 9)}
    base = int(start.timestamp())
    dev_nonce = int(provider.make_request("eth_getTransactionCount", [DEV, "latest"])["result"], 16)
    for i in range(blocks):  # one batch of three transactions (explicit nonces), then the block that mines them
        responses = provider.make_batch_request([
            ("eth_sendTransaction", [{"from": DEV, "to": WALLET, "value": hex(10 ** 15 + i), "nonce": hex(dev_nonce), **fees}]),
            ("eth_sendTransaction", [{"from": DEV, "to": token, "data": data, "nonce": hex(dev_nonce + 1), **fees}]),
            ("eth_sendTransaction", [{"from": WALLET, "to": OTHER, "value": hex(10 ** 14 + i), "nonce": hex(i), **fees}]),
        ])
        dev_nonce += 2
        errors = [r["error"] for r in responses if "error" in r]
        mined = provider.make_request("evm_mine", [base + i * spacing])
        if errors or "error" in mined:
            raise RuntimeError(f"generating block {i} failed: {errors[:3] or mined}")
    provider.make_request("evm_setAutomine", [True])
    chain.mine(datetime.fromtimestamp(base + blocks * spacing + 86_400, tz=timezone.utc).replace(tzinfo=None).isoformat())
    return token


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--blocks", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=10)
    parser.add_argument("--chunk", type=int, default=500, help="blocks per scan request")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database")
    args = parser.parse_args()

    import sqlalchemy as sa

    from _database import bench_database  # benchmarks/_database.py: the script's folder is on sys.path
    from samples.chains.anvil import ANVIL_CHAIN_ID, AnvilNode

    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    spacing = max(1, args.days * 86_400 // args.blocks)
    figures: dict[str, object] = {"blocks": args.blocks, "days": args.days, "chunk": args.chunk}
    with bench_database("chain", keep=args.keep) as url:
        from ingestion.evm.chains import ChainConfig
        from ingestion.evm.mapping import base_units
        from ingestion.evm.client import EvmRpc
        from ingestion.evm.sync import sync_evm_chain
        from ingestion.wallets import write_wallet
        from transforms.canonical import build_canonical
        from warehouse.calendar import close_date_of
        from warehouse.db import get_engine
        from warehouse.entities import get_or_create_entity

        engine = get_engine(url)
        # keep every block's state: the balances at past cutoffs are read at past blocks (an archive node's job)
        with AnvilNode(genesis=start - timedelta(days=1), extra=["--max-persisted-states", str(args.blocks + 100)]) as node:
            t = time.perf_counter()
            token = generate(node.url, args.blocks, start, spacing)
            figures["generate_s"] = round(time.perf_counter() - t, 1)
            print(f"mined {args.blocks} blocks of transfers in {figures['generate_s']}s", flush=True)
            config = ChainConfig("anvil", ANVIL_CHAIN_ID, "ETH", confirmations=0, rpc_urls=(node.url,),
                                 tokens={token: "USDC"}, blocks_per_request=args.chunk)
            with engine.begin() as conn:
                entity = get_or_create_entity(conn, "bench-chain")
                wallet = write_wallet(conn, entity.id, chain="anvil", chain_id=ANVIL_CHAIN_ID, address=WALLET,
                                      rpc_urls=[node.url])
            rpc = EvmRpc(config)
            t = time.perf_counter()
            result = sync_evm_chain(engine, entity, config, [wallet], rpc=rpc)
            figures["sync_s"] = round(time.perf_counter() - t, 2)
            head = rpc.fetch_block_number()
            last_block_time = datetime.fromtimestamp(int(rpc.call("eth_getBlockByNumber", [hex(head - 1), False])["timestamp"], 16),
                                                     tz=timezone.utc)
            eth_now = int(rpc.call("eth_getBalance", [WALLET, hex(head - 1)]), 16)
        figures.update(records_staged=result.inserted, blocks_scanned=result.blocks, snapshots=result.snapshots,
                       rpc_requests=rpc.stats.requests)
        first_day, last_day = close_date_of(start, entity.tz) - timedelta(days=1), close_date_of(last_block_time, entity.tz)
        t = time.perf_counter()
        with engine.begin() as conn:
            stats = build_canonical(conn, entity, first_day, last_day)
        figures["canonical_s"] = round(time.perf_counter() - t, 2)
        legs = stats.legs
        with engine.connect() as conn:
            eth = conn.execute(sa.text(
                """SELECT p.computed_quantity, p.reported_quantity FROM positions p JOIN assets s ON s.id = p.asset_id
                   WHERE s.symbol = 'ETH' AND p.date = :d"""), dict(d=last_day)).one()
        assert eth.computed_quantity == eth.reported_quantity == base_units(eth_now, 18), (eth, eth_now)
        figures.update(legs=legs,
                       ingest_legs_per_s=round(legs / figures["sync_s"]),
                       canonical_legs_per_s=round(legs / figures["canonical_s"]),
                       end_to_end_legs_per_s=round(legs / (figures["sync_s"] + figures["canonical_s"])))
        print(f"synced {result.blocks} blocks ({result.inserted} raw records, {result.snapshots} snapshots) in "
              f"{figures['sync_s']}s: {legs} legs -> {figures['ingest_legs_per_s']} legs/s ingested; canonical build "
              f"{figures['canonical_s']}s; the last day's ETH position equals the chain's balance", flush=True)
    print(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

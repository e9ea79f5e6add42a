"""Benchmark of Bitcoin ingestion: sync throughput in records/s of an xpub wallet through the local Esplora API.

What it does, in a database of its own (on DATABASE_URL's server, else the embedded one):
  1. generates a chain (tests/servers/esplora.py) with ``--txs`` transactions of a zpub wallet over ``--days`` days:
     payments in from outside to ``--addresses`` receive addresses, and every ``--spend-every``-th transaction a
     payment out with change to the change chain (fee each time); then 20 empty blocks (finality);
  2. syncs the wallet with ``sync_bitcoin_wallet`` over HTTP (requests): address discovery (receive and change chains,
     gap limit 20), the histories in pages of 25, staging through COPY, cursors, the balance at each day's cutoff;
  3. builds the canonical layer for the days and checks the last day's position equals the chain's balance to the
     satoshi.

Figures: ``sync_records_per_s`` = transactions staged / sync seconds (network + staging + balances),
``canonical_legs_per_s`` = legs / canonical build seconds, ``requests`` = HTTP requests to the API.

``--latency-ms`` adds a round trip to every answer of the local API (a remote API), ``--workers`` sets how many
requests the sync keeps in flight.

Run:  .venv/bin/python benchmarks/bench_bitcoin_ingest.py [--txs 5000 --days 20 --addresses 40 --spend-every 4
      --workers 4 --latency-ms 0]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")

ZPUB = "zpub6rFR7y4Q2AijBEqTUquhVz398htDFrtymD9xYYfG1m4wAcvPhXNfE3EfH1r1ADqtfSdVCToUG868RvUUkgDKf31mGDtKsAYz2oz2AGutZYs"
OUTSIDE = "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2"


def generate(txs: int, days: int, addresses: int, spend_every: int):  # type: ignore[no-untyped-def]
    from ingestion.bitcoin.keys import parse_wallet
    from tests.servers.esplora import BitcoinChain

    keys = parse_wallet(ZPUB, "bitcoin")
    receive = [keys.address(0, i) for i in range(addresses)]
    change = [keys.address(1, i) for i in range(max(1, txs // spend_every + 1))]
    own = set(receive) | set(change)
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    chain = BitcoinChain(start - timedelta(hours=1))
    for i in range(20):
        chain.fund(start - timedelta(minutes=50 - i), OUTSIDE, 1_000 * 100_000_000)
    spacing = days * 86_400 // (txs + 1)
    spent = 0
    for i in range(txs):
        when = start + timedelta(seconds=(i + 1) * spacing)
        if spend_every and i % spend_every == spend_every - 1:
            chain.send(when, own, [(OUTSIDE, 10_000 + i)], 150 + i % 50, change=change[spent])
            spent += 1
        else:
            chain.send(when, [OUTSIDE], [(receive[i % addresses], 100_000 + i)], 200)
    chain.mine(start + timedelta(days=days, minutes=10), 20)
    return chain, own


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--txs", type=int, default=5_000)
    parser.add_argument("--days", type=int, default=20)
    parser.add_argument("--addresses", type=int, default=40)
    parser.add_argument("--spend-every", type=int, default=4)
    parser.add_argument("--workers", type=int, default=4, help="concurrent requests to the API")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added to every answer of the local API")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database")
    args = parser.parse_args()

    import sqlalchemy as sa

    from _database import bench_database  # benchmarks/_database.py: the script's folder is on sys.path

    figures: dict[str, object] = {"txs": args.txs, "days": args.days, "addresses": args.addresses,
                                  "spend_every": args.spend_every, "workers": args.workers, "latency_ms": args.latency_ms}
    t = time.perf_counter()
    chain, own = generate(args.txs, args.days, args.addresses, args.spend_every)
    figures["generate_s"] = round(time.perf_counter() - t, 1)
    with bench_database("bitcoin", keep=args.keep) as url:
        from ingestion.bitcoin.client import EsploraClient
        from ingestion.bitcoin.mapping import sats
        from ingestion.bitcoin.sync import BitcoinSettings, sync_bitcoin_wallet
        from ingestion.wallets import write_wallet
        from tests.servers.esplora import EsploraServer
        from transforms.canonical import build_canonical
        from warehouse.calendar import cutoff_of
        from warehouse.db import get_engine
        from warehouse.entities import get_or_create_entity

        engine = get_engine(url)
        with EsploraServer(chain, latency=args.latency_ms / 1000) as api:
            with engine.begin() as conn:
                entity = get_or_create_entity(conn, "bench-bitcoin")
                wallet = write_wallet(conn, entity.id, chain="bitcoin", chain_id=None, address=ZPUB, rpc_urls=[api])
            client = EsploraClient([api])
            t = time.perf_counter()
            result = sync_bitcoin_wallet(engine, entity, wallet, urls=[api], client=client,
                                         settings=BitcoinSettings(workers=args.workers))
            figures["sync_s"] = round(time.perf_counter() - t, 2)
        figures.update(records_staged=result.inserted, addresses_scanned=result.addresses,
                       addresses_used=result.used_addresses, snapshots=result.snapshots, requests=client.stats.requests,
                       sync_records_per_s=round(result.inserted / figures["sync_s"]))
        first_day = date(2026, 1, 1)
        last_day = first_day + timedelta(days=args.days - 1)
        t = time.perf_counter()
        with engine.begin() as conn:
            stats = build_canonical(conn, entity, first_day, last_day)
        figures["canonical_s"] = round(time.perf_counter() - t, 2)
        with engine.connect() as conn:
            position = conn.execute(sa.text(
                """SELECT p.computed_quantity, p.reported_quantity FROM positions p JOIN assets s ON s.id = p.asset_id
                   WHERE s.symbol = 'BTC' AND p.date = :d"""), dict(d=last_day)).one()
        expected = sats(chain.balance(own, cutoff_of(last_day, entity.tz)))
        assert position.computed_quantity == position.reported_quantity == expected, (position, expected)
        figures.update(legs=stats.legs, canonical_legs_per_s=round(stats.legs / figures["canonical_s"]))
        print(f"synced {result.inserted} transactions ({result.addresses} addresses, {client.stats.requests} requests, "
              f"{result.snapshots} snapshots) in {figures['sync_s']}s: {figures['sync_records_per_s']} records/s; "
              f"canonical build {figures['canonical_s']}s ({stats.legs} legs); the last day's BTC position equals the "
              f"chain's balance", flush=True)
    print(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

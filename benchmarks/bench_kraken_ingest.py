"""Benchmark of the generic ccxt connector on Kraken: records staged per second through the real ccxt.kraken.

What it does, in a database of its own (on DATABASE_URL's server, else the embedded one):
  1. generates a Kraken account history of D days (tests/servers/kraken_history.py) and serves it from the local
     Kraken server (API-Sign verified, 50 ledger entries or trades per page, as Kraken pages);
  2. one full sync with the real ccxt.kraken (ccxt's rate limiter at 0.05 ms per call, so the figure is ours and
     the server's, not Kraken's public rate limit): ledger, trades, deposits, withdrawals, ledger balance snapshots
     and the run-time balance; records/s and API calls;
  3. a second sync (nothing new: the incremental path) and the pure mapping of the staged ledger (entries/s).

Run:  .venv/bin/python benchmarks/bench_kraken_ingest.py [--days 365 --trades-per-day 20,40] [--keep]
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--trades-per-day", default="20,40")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database")
    args = parser.parse_args()

    import sqlalchemy as sa

    from _database import bench_database  # benchmarks/_database.py: the script's folder is on sys.path
    from ingestion.ccxt.client import CcxtOptions, make_client
    from ingestion.ccxt.sync import CcxtSync
    from tests.servers.kraken_history import generate_history
    from tests.servers.kraken_server import KrakenServer, KrakenState
    from transforms.mappers import StagedRecord, map_record
    from warehouse.db import get_engine
    from warehouse.entities import get_or_create_entity

    low, high = (int(x) for x in args.trades_per_day.split(","))
    start = date(2025, 1, 1)
    t = time.perf_counter()
    history = generate_history(start, start + timedelta(days=args.days - 1), trades_per_day=(low, high))
    print(f"generated {history.record_count:,} Kraken records ({len(history.ledger):,} ledger entries, "
          f"{len(history.trades):,} trades) in {time.perf_counter() - t:.1f} s")
    key, secret = "bench-key", base64.b64encode(b"bench-secret-0123456789").decode()
    state = KrakenState(history)
    state.add_key(key, secret)
    server = KrakenServer(state).start()

    try:  # the server stops even if the database cannot be made
        with bench_database("kraken", keep=args.keep, set_env=False, announce="database {url}") as url:
            engine = get_engine(url)
            with engine.begin() as conn:
                entity = get_or_create_entity(conn, "bench-kraken")
            options = CcxtOptions(api_url=server.base_url, since=datetime(start.year, start.month, start.day, tzinfo=timezone.utc),
                                  rate_limit_ms=0.05, timeout_ms=10_000)
            for label in ("first sync", "second sync"):
                t = time.perf_counter()
                stats = CcxtSync(engine, entity.id, "kraken", make_client("kraken", key, secret, options), options).run()
                seconds = time.perf_counter() - t
                seen, new = sum(stats.records_seen.values()), sum(stats.records_inserted.values())
                print(f"{label}:  {seen:,} records read, {new:,} new, {stats.snapshots_inserted:,} balance snapshots, "
                      f"{stats.calls:,} API calls in {seconds:.2f} s = {seen / seconds:,.0f} records/s")
            with engine.connect() as conn:
                rows = conn.execute(sa.text("SELECT id, source_raw_id, occurred_at, payload FROM raw_records"
                                            " WHERE stream = 'ledger'")).all()
            staged = [StagedRecord(r.id, "kraken", "ledger", "kraken", r.source_raw_id, r.occurred_at, r.payload) for r in rows]
            t = time.perf_counter()
            map_record(staged[0])  # ccxt's kraken parser is built once per process (import and set-up), not per entry
            print(f"mapper set-up: {time.perf_counter() - t:.2f} s (once per process)")
            t = time.perf_counter()
            legs = sum(len(map_record(s)) for s in staged)
            mapping = time.perf_counter() - t
            print(f"pure mapping:  {len(staged):,} ledger entries -> {legs:,} legs in {mapping:.2f} s = "
                  f"{len(staged) / mapping:,.0f} entries/s")
            engine.dispose()
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

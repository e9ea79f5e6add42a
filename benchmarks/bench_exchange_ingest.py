"""Benchmark of exchange ingestion (issue 6): staging load and canonical mapping of 100,000 Binance trades.

What it does, in a database of its own (on DATABASE_URL's server, else the embedded one):
  1. generates N spot trades shaped like Binance's /api/v3/myTrades records (exact strings) over D days;
  2. COPYs them alone into a temp table (the raw COPY rate); stages them with ``write_raw_records`` (COPY into a temp table, then one INSERT .. ON CONFLICT) in one
     transaction: rows/s of the staging load; then stages them again (every row a duplicate: the no-op path);
  3. maps them with the pure mapper (``map_record``): records/s and legs/s, no database;
  4. builds the canonical layer for the D days (``build_canonical``: legs written by COPY, transfers,
     positions): trades/s end to end from staging to legs and positions.

Run:  .venv/bin/python benchmarks/bench_exchange_ingest.py [--trades 100000 --days 30] [--keep]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

PAIRS = [("BTC", "USDT", Decimal("42000.00")), ("ETH", "USDT", Decimal("2400.00")), ("ETH", "BTC", Decimal("0.057000")),
         ("BNB", "USDT", Decimal("310.00")), ("SOL", "USDT", Decimal("95.00"))]


def generate_trades(count: int, start: date, days: int, seed: int = 3):
    from ingestion.staging import RawRecordIn

    rng = random.Random(seed)
    t0 = datetime(start.year, start.month, start.day, tzinfo=timezone.utc)
    step = days * 86_400_000 // count
    records = []
    for i in range(count):
        base, quote, price = PAIRS[i % len(PAIRS)]
        qty = Decimal(rng.randint(1, 100_000)) / Decimal(10_000)
        quote_qty = price * qty
        when = t0 + timedelta(milliseconds=i * step + 1)
        trade = {"symbol": base + quote, "id": 1_000_000 + i, "orderId": 9_000_000 + i, "orderListId": -1,
                 "price": f"{price:.8f}", "qty": f"{qty:.8f}", "quoteQty": f"{quote_qty:.8f}",
                 "commission": f"{qty / 1000:.8f}", "commissionAsset": base, "time": int(when.timestamp() * 1000),
                 "isBuyer": i % 2 == 0, "isMaker": False, "isBestMatch": True}
        records.append(RawRecordIn("binance-bench", f"binance-bench|{base}/{quote}|{trade['id']}", when, trade))
    return records


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trades", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--start", default="2026-01-01")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database")
    args = parser.parse_args()

    import sqlalchemy as sa

    from _database import bench_database  # benchmarks/_database.py: the script's folder is on sys.path
    from ingestion.staging import start_run, write_raw_records
    from transforms.canonical import build_canonical
    from transforms.mappers import StagedRecord, map_record
    from warehouse.db import get_engine
    from warehouse.entities import get_or_create_entity

    with bench_database("exch", keep=args.keep, set_env=False, announce="database {url}") as url:
        engine = get_engine(url)
        start = date.fromisoformat(args.start)
        t = time.perf_counter()
        records = generate_trades(args.trades, start, args.days)
        print(f"generated {len(records):,} trades in {time.perf_counter() - t:.1f} s")

        with engine.begin() as conn:
            entity = get_or_create_entity(conn, "bench-exchange")
        import json

        from warehouse.bulk import copy_rows

        t = time.perf_counter()
        with engine.begin() as conn:  # the COPY step alone, into a temp table like the writer's
            conn.execute(sa.text("CREATE TEMP TABLE bench_copy (source_raw_id text, account text, payload jsonb,"
                                 " occurred_at timestamptz) ON COMMIT DROP"))
            copy_rows(conn, "bench_copy", ("source_raw_id", "account", "payload", "occurred_at"),
                      ((r.source_raw_id, r.account, json.dumps(r.payload), r.occurred_at) for r in records))
        copy_only = time.perf_counter() - t
        print(f"COPY alone:        {len(records):,} rows in {copy_only:.2f} s = {len(records) / copy_only:,.0f} rows/s")
        t = time.perf_counter()
        with engine.begin() as conn:
            run = start_run(conn, entity.id, "binance", "trades")
            inserted = write_raw_records(conn, entity.id, "binance", "trades", records, run)
        load = time.perf_counter() - t
        print(f"staging load:      {inserted:,} rows in {load:.2f} s = {inserted / load:,.0f} rows/s (COPY + insert)")
        t = time.perf_counter()
        with engine.begin() as conn:
            again = write_raw_records(conn, entity.id, "binance", "trades", records, run)
        dup = time.perf_counter() - t
        print(f"staging re-load:   {again:,} new of {len(records):,} in {dup:.2f} s = {len(records) / dup:,.0f} rows/s (all duplicates)")

        staged = [StagedRecord(i, "binance", "trades", r.account, r.source_raw_id, r.occurred_at, r.payload)
                  for i, r in enumerate(records, 1)]
        t = time.perf_counter()
        legs = sum(len(map_record(s)) for s in staged)
        mapping = time.perf_counter() - t
        print(f"pure mapping:      {len(staged):,} trades -> {legs:,} legs in {mapping:.2f} s = "
              f"{len(staged) / mapping:,.0f} trades/s, {legs / mapping:,.0f} legs/s")

        end = start + timedelta(days=args.days - 1)
        t = time.perf_counter()
        with engine.begin() as conn:
            stats = build_canonical(conn, entity, start, end)
        canonical = time.perf_counter() - t
        print(f"canonical build:   {stats.legs:,} legs, {stats.positions:,} positions for {args.days} days in "
              f"{canonical:.2f} s = {args.trades / canonical:,.0f} trades/s (staging -> legs -> positions)")
        engine.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

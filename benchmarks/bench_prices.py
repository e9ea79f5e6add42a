"""Benchmark of the price service: a first fetch of several years of day closes, then the cached re-fetch.

What it does, in a database of its own (on DATABASE_URL's server, else the embedded one):
  1. starts the local CoinGecko/Binance server of the tests (127.0.0.1) with daily points for N assets;
  2. fetches [start, end] for those assets from CoinGecko and Binance candles through the real clients
     (requests, ccxt), plus EUR/GBP rates, and stores them with provenance and flags;
  3. fetches the same range again: every price comes from the prices table, no request is made.

Run:  .venv/bin/python benchmarks/bench_prices.py [--assets 20 --years 5]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SYMBOLS = ["BTC", "ETH", "SOL", "USDC", "BNB", "MATIC", "POL", "ARB", "DAI", "XRP", "ADA", "DOT", "AVAX", "LINK"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--assets", type=int, default=len(SYMBOLS))
    parser.add_argument("--years", type=int, default=5)
    args = parser.parse_args()

    import sqlalchemy as sa

    from _database import bench_database  # benchmarks/_database.py: the script's folder is on sys.path

    with bench_database("prices", announce=None) as url:
        from ingestion.prices.service import fetch_prices
        from ingestion.prices.settings import PriceSettings
        from tests.integration.price_servers import PriceServer
        from transforms.asset_registry import ensure_assets
        from warehouse.db import get_engine
        from warehouse.entities import get_or_create_entity

        symbols = (SYMBOLS * (args.assets // len(SYMBOLS) + 1))[: args.assets]
        symbols = list(dict.fromkeys(symbols))
        ids = {s: f"coin-{s.lower()}" for s in symbols}
        start = date(2021, 1, 1)
        end = start.replace(year=start.year + args.years) - timedelta(days=1)
        days = (end - start).days + 1
        first = datetime(2020, 12, 31, tzinfo=timezone.utc)
        engine = get_engine(url)
        with engine.begin() as conn:
            entity = get_or_create_entity(conn, "bench")
            ensure_assets(conn, symbols)
        with PriceServer() as server:
            points = [first + timedelta(days=i) for i in range(days + 2)]
            for n, symbol in enumerate(symbols):
                server.state.add_chart(ids[symbol], "usd", [(t, f"{100 + n}.{i:06d}") for i, t in enumerate(points)])
                server.state.add_daily_klines(symbol, "USDT", [(t, f"{100 + n}.{i:06d}") for i, t in enumerate(points)])
            for vs, base in (("usd", 30000), ("eur", 27000), ("gbp", 24000)):
                server.state.add_chart("bitcoin", vs, [(t, f"{base}.{i:06d}") for i, t in enumerate(points)])
            settings = PriceSettings(coingecko_url=server.url, coingecko_min_interval_seconds=0, price_exchange="binance",
                                     price_exchange_url=server.url, coingecko_ids=",".join(f"{s}={i}" for s, i in ids.items()))
            now = datetime(2026, 11, 1, tzinfo=timezone.utc)
            t0 = time.perf_counter()
            report = fetch_prices(engine, entity, start, end, settings=settings, symbols=symbols, now=now)
            first_seconds = time.perf_counter() - t0
            first_requests = len(server.state.requests)
            t0 = time.perf_counter()
            cached = fetch_prices(engine, entity, start, end, settings=settings, symbols=symbols, now=now)
            cached_seconds = time.perf_counter() - t0
            cached_requests = len(server.state.requests) - first_requests
        with engine.connect() as conn:
            stored = conn.execute(sa.text("SELECT count(*) FROM prices")).scalar_one()
        print(json.dumps({
            "assets": len(symbols), "days": days, "errors": len(report.errors), "prices_stored": stored,
            "first_fetch_seconds": round(first_seconds, 2), "first_fetch_requests": first_requests,
            "cached_fetch_seconds": round(cached_seconds, 2), "cached_fetch_requests": cached_requests,
            "cached_rows_written": cached.rows_written,
        }, indent=2))
        engine.dispose()
        return 0


if __name__ == "__main__":
    raise SystemExit(main())

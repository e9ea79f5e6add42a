"""Sync throughput of a third ccxt exchange through the generic connector: the real ``ccxt.okx`` against the local
OKX v5 server (tests/servers/okx_server.py, signatures verified), pages of 100 as OKX pages.

    .venv/bin/python benchmarks/bench_okx_ingest.py [--days 90 --trades-per-day 20,40]

Prints records staged, API calls and records/s of one full sync, then of an incremental sync, then the pure mapping
rate (records/s) of the staged records.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository: tests/servers, the packages


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--trades-per-day", default="20,40")
    args = parser.parse_args()
    from _database import bench_database  # benchmarks/_database.py: the script's folder is on sys.path
    from warehouse.db import get_engine
    from ingestion.ccxt.client import CcxtOptions, RetryPolicy, make_client
    from ingestion.ccxt.sync import CcxtSync
    from tests.servers.okx_history import generate_history
    from tests.servers.okx_server import OkxServer, OkxState
    from transforms.mappers import StagedRecord, map_record
    from warehouse.entities import get_or_create_entity

    low, high = (int(x) for x in args.trades_per_day.split(","))
    end = datetime.now(timezone.utc).date() - timedelta(days=1)
    start = end - timedelta(days=args.days - 1)
    history = generate_history(start, end, trades_per_day=(low, high))
    state = OkxState(history)
    state.add_key("bench", "bench-secret", "bench-pass")
    server = OkxServer(state).start()
    options = CcxtOptions(api_url=server.base_url, since=datetime(start.year, start.month, start.day, tzinfo=timezone.utc),
                          rate_limit_ms=0, timeout_ms=10_000, retry=RetryPolicy(attempts=3))
    with bench_database("okx", set_env=False, announce="database {url}") as url:
        engine = get_engine(url)
        with engine.begin() as conn:
            entity = get_or_create_entity(conn, f"okx-bench-{time.time_ns()}")
        began = time.perf_counter()
        stats = CcxtSync(engine, entity.id, "ccxt.okx", make_client("okx", "bench", "bench-secret", options, "bench-pass"),
                         options).run()
        took = time.perf_counter() - began
        staged = sum(stats.records_inserted.values())
        print(f"full sync: {staged} records ({stats.records_inserted}) + {stats.snapshots_inserted} snapshots in "
              f"{took:.1f} s = {staged / took:,.0f} records/s over {stats.calls} calls ({1000 * took / stats.calls:.0f} ms/call)")
        began = time.perf_counter()
        again = CcxtSync(engine, entity.id, "ccxt.okx", make_client("okx", "bench", "bench-secret", options, "bench-pass"),
                         options).run()
        print(f"incremental sync: {sum(again.records_inserted.values())} new in {time.perf_counter() - began:.2f} s "
              f"({again.calls} calls)")
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT id, source, stream, account, source_raw_id, occurred_at, payload "
                                        "FROM raw_records WHERE entity_id = :e"), dict(e=entity.id)).all()
        records = [StagedRecord(*r) for r in rows]
        map_record(records[0])  # ccxt's okx parser is built once per process
        began = time.perf_counter()
        legs = sum(len(map_record(r)) for r in records)
        took = time.perf_counter() - began
        print(f"mapping: {len(records)} records -> {legs} legs in {took:.2f} s = {len(records) / took:,.0f} records/s")
    server.stop()


if __name__ == "__main__":
    main()

"""Benchmark: internal transfer matching of 20,000 transfer legs (10,000 withdrawals and their deposits) without
tx hashes, so every pair goes through the amount-and-time fallback (the worst case).

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres nice .venv/bin/python benchmarks/bench_transfer_matching.py

Creates a throwaway database (dropped at the end), imports a generated ledger CSV over 30 days (two accounts;
each withdrawal's deposit arrives 1-5 minutes later, 0.1 % less; 50 amounts), builds the canonical layer once
for the 30 days and times the transfer matching inside it. Checks that every deposit matched its own
withdrawal. Target: a few seconds (no quadratic plan).
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=10_000)
    args = parser.parse_args()

    from _database import bench_database  # benchmarks/_database.py: the script's folder is on sys.path

    with bench_database(set_env=False, announce=None) as url:
        import transforms.canonical as canonical
        from ingestion.csv_files import CsvFile, import_csv
        from tests.integration.recon_ledgers import Row, ledger_csv
        from warehouse.entities import get_or_create_entity
        from warehouse.numbers import D

        engine = sa.create_engine(url)
        start = datetime(2026, 1, 1, tzinfo=timezone.utc)
        stamp = lambda t: t.strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: E731
        rows = [Row("F", stamp(start), "BUY", "BTC", "1000000", "Kraken", unit_price_usd="1")]
        step = timedelta(days=30) / args.pairs
        for n in range(args.pairs):
            out_at = start + timedelta(hours=1) + step * n
            quantity = D(100 + 5 * (n % 50)) / 100  # 50 amounts 1.4 %+ apart: look-alikes recur every 50 pairs
            rows.append(Row(f"W{n}", stamp(out_at), "TRANSFER_OUT", "BTC", str(quantity), "Kraken"))
            rows.append(Row(f"D{n}", stamp(out_at + timedelta(minutes=1 + n % 5)), "TRANSFER_IN", "BTC",
                            str(quantity * D("0.999")), "Cold", "wallet"))
        with engine.begin() as conn:
            entity = get_or_create_entity(conn, "bench")
            import_csv(conn, entity.id, "ledger", CsvFile("ledger.csv", ledger_csv(rows)))
        timings: dict[str, float] = {}
        original = canonical._build_transfers

        def timed(*a, **k):
            began = time.monotonic()
            try:
                return original(*a, **k)
            finally:
                timings["transfers"] = time.monotonic() - began

        canonical._build_transfers = timed
        began = time.monotonic()
        with engine.begin() as conn:
            stats = canonical.build_canonical(conn, entity, date(2026, 1, 1), date(2026, 1, 31))
        total = time.monotonic() - began
        with engine.connect() as conn:
            own = conn.execute(sa.text(
                """SELECT count(*) FROM transfers x JOIN transactions o ON o.id = x.out_leg_id
                   JOIN transactions i ON i.id = x.in_leg_id JOIN raw_records ro ON ro.id = o.raw_record_id
                   JOIN raw_records ri ON ri.id = i.raw_record_id
                   WHERE x.matched_by = 'amount_time' AND substr(ro.source_raw_id, 2) = substr(ri.source_raw_id, 2)""")).scalar()
        print(f"{2 * args.pairs:,} transfer legs: {stats.transfers_matched:,} matched ({own:,} to their own counterpart), "
              f"{stats.transfers_unmatched:,} unmatched; transfer matching {timings['transfers']:.2f}s "
              f"(canonical build {total:.2f}s)")
        engine.dispose()
        return 0 if own == args.pairs else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""The cost-basis step of a daily close against PostgreSQL: one new day, incremental vs from the first leg.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres .venv/bin/python benchmarks/bench_cost_basis_db.py

Creates a throwaway database on the server, migrates it, stages the bundled sample fund, builds the
canonical ledger, books [first day, last day - 1] (three books: FIFO universal, FIFO per account,
the configured book set to HIFO per account from the middle), then books the last day twice:
restarting from the stored state of the day before (what the daily close does), and from the first
leg (``incremental=False``), and checks both store the same rows. Drops the database at the end.
"""

from __future__ import annotations

import os
import sys
import time
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ROWS = {
    "pnl_disposals": "method, pool, date, leg_id, quantity, proceeds, cost_basis, realized_gain",
    "pnl_daily": "method, pool, date, pool_account_id, asset_id, quantity, cost_basis, realized_gain",
    "pnl_open_lots": "method, pool, date, seq, lot_leg_id, quantity, cost_basis",
}


def main() -> None:
    if not os.environ.get("DATABASE_URL"):
        raise SystemExit("set DATABASE_URL to a PostgreSQL server (a throwaway database is created on it)")
    from _database import bench_database  # benchmarks/_database.py: the script's folder is on sys.path

    with bench_database(announce=None) as url:
        run(url)


def run(url: str) -> None:
    from ingestion.csv_files import CsvFile, import_csv
    from transforms.canonical import build_canonical
    from transforms.pnl import build_pnl, write_book_period
    from warehouse.db import get_engine
    from warehouse.entities import get_or_create_entity

    engine = get_engine(url)
    sample = ROOT / "samples" / "fund"
    with engine.begin() as conn:
        entity = get_or_create_entity(conn, "northwind")
        first_file = import_csv(conn, entity.id, "ledger", CsvFile.from_path(sample / "ledger.csv"))
        import_csv(conn, entity.id, "balances", CsvFile.from_path(sample / "balances.csv"))
        first, last = first_file.first_day.date(), first_file.last_day.date()
        build_canonical(conn, entity, first, last)
        legs = conn.execute(sa.text("SELECT count(*) FROM transactions")).scalar_one()
        write_book_period(conn, entity.id, "hifo", "account", first + (last - first) / 2)
    started = time.perf_counter()
    with engine.begin() as conn:
        build_pnl(conn, entity, first, last - timedelta(days=1))
    print(f"{legs:,} legs, {first} .. {last}: booked {first} .. {last - timedelta(days=1)} (3 books) in "
          f"{time.perf_counter() - started:.2f}s", flush=True)
    results = {}
    for incremental in (True, False):
        started = time.perf_counter()
        with engine.begin() as conn:
            stats = build_pnl(conn, entity, last, last, incremental=incremental)
            rows = {t: conn.execute(sa.text(f"SELECT {c} FROM {t} WHERE date = :d ORDER BY {c}"), dict(d=last)).all()
                    for t, c in ROWS.items()}
        seconds = time.perf_counter() - started
        results[incremental] = rows
        restarted = sorted({str(d) for d in stats.restarted_from.values()})
        print(f"new day {last}, {'incremental' if incremental else 'from the first leg'}: {seconds:.2f}s "
              f"(restarted from {', '.join(restarted)})", flush=True)
    same = results[True] == results[False]
    print(f"same rows: {same}")
    if not same:
        raise SystemExit("incremental and full recompute differ")


if __name__ == "__main__":
    main()

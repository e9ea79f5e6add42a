"""Benchmark of the daily close (issue: the spine).

Targets on this 2-core machine:
  * closing five years (1,826 days) of a 10,000-row ledger with daily balances for 3 accounts,
    as one run over the range: under 5 minutes;
  * closing one more day afterwards: under 5 seconds.

What it does, in a database of its own (on DATABASE_URL's server, else the embedded one):
  1. generates the dataset (samples/generate.py bench), imports it through the CSV importer;
  2. closes 2021-01-01 .. 2025-12-31 with the same in-process Dagster run the CLI uses, on the CLI's own Dagster
     instance (PostgreSQL storage in <database>_dagster, pooled connections, DAGSTER_EVENT_BATCH_SIZE=1000 unless
     set otherwise; orchestration/instance.py); `--instance sqlite` for Dagster's SQLite files, `--instance
     ephemeral` for the in-memory one, `--unpooled` for dagster-postgres's connection per write;
  3. imports the next day's rows and closes 2026-01-01 in the same (warm) process;
  4. closes that day again through the real CLI in a new process (cold: imports included).

Run:  make bench    or    .venv/bin/python benchmarks/bench_close.py [--years 5 --rows 10000 --accounts 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "samples"))
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")


def _add_years(start: date, years: int) -> date:
    return start.replace(year=start.year + years)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--years", type=int, default=5)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--accounts", type=int, default=3)
    parser.add_argument("--start", default="2021-01-01")
    parser.add_argument("--instance", choices=("postgres", "sqlite", "ephemeral"), default="postgres",
                        help="postgres: the CLI's own (orchestration/instance.py); sqlite: Dagster's file storage")
    parser.add_argument("--unpooled", action="store_true",
                        help="postgres without the CLI's pooled storage connections (dagster-postgres's default)")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database")
    args = parser.parse_args()

    import sqlalchemy as sa

    from _database import bench_database  # benchmarks/_database.py: the script's folder is on sys.path
    from generate import generate_bench  # samples/generate.py

    start = date.fromisoformat(args.start)
    end = _add_years(start, args.years) - timedelta(days=1)
    extra_day = end + timedelta(days=1)
    work = Path(tempfile.mkdtemp(prefix="coinfrs-bench-"))
    figures: dict[str, object] = {"years": args.years, "days": (end - start).days + 1, "ledger_rows": args.rows,
                                  "accounts": args.accounts, "dagster_instance": args.instance}

    t = time.perf_counter()
    generate_bench(work, years=args.years, rows=args.rows, accounts=args.accounts, start=start, extra_day=True)
    figures["generate_s"] = round(time.perf_counter() - t, 2)

    with bench_database(keep=args.keep, announce=f"benchmark database {{url}}; data in {work}") as url:
        import dagster as dg

        from ingestion.csv_files import CsvFile, import_csv
        from orchestration.close_runner import cli_instance, close_days, dagster_home
        from warehouse.db import get_engine
        from warehouse.entities import get_or_create_entity

        engine = get_engine(url)
        t = time.perf_counter()
        with engine.begin() as conn:
            entity = get_or_create_entity(conn, "bench")
            ledger = import_csv(conn, entity.id, "ledger", CsvFile.from_path(work / "ledger.csv"))
            balances = import_csv(conn, entity.id, "balances", CsvFile.from_path(work / "balances.csv"))
        figures["import_s"] = round(time.perf_counter() - t, 2)
        figures["balance_rows"] = balances.rows
        print(f"imported {ledger.rows} ledger rows, {balances.rows} balance rows in {figures['import_s']}s", flush=True)

        home = work / "dagster_home"
        os.environ["DAGSTER_HOME"] = str(home)
        if args.instance == "ephemeral":
            instance = dg.DagsterInstance.ephemeral()
        elif args.instance == "sqlite":  # a dagster.yaml of one's own is kept: no storage named, so SQLite files
            home.mkdir(parents=True)
            (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n", encoding="utf-8")
            instance = cli_instance()
        elif args.unpooled:
            from dagster._core.instance.ref import InstanceRef

            instance = dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(dagster_home())))
        else:
            instance = cli_instance()
        figures["dagster_event_batch_size"] = os.environ.get("DAGSTER_EVENT_BATCH_SIZE")
        figures["pooled"] = args.instance == "postgres" and not args.unpooled
        figures["load_average_before"] = os.getloadavg()

        t = time.perf_counter()
        run = close_days(["bench"], start, end, instance=instance)
        figures["close_range_s"] = round(time.perf_counter() - t, 1)
        figures["load_average_after_range"] = os.getloadavg()
        assert run.success, run.error
        with engine.connect() as conn:
            counts = conn.execute(sa.text(
                "SELECT (SELECT count(*) FROM transactions), (SELECT count(*) FROM positions),"
                " (SELECT count(*) FROM breaks), (SELECT count(*) FROM pnl_disposals),"
                " (SELECT count(*) FROM closes WHERE status = 'closed')")).one()
        figures.update(legs=counts[0], positions=counts[1], breaks=counts[2], disposals=counts[3], days_closed=counts[4])
        print(f"closed {start} .. {end} in {figures['close_range_s']}s: {counts[0]} legs, {counts[1]} positions, "
              f"{counts[2]} breaks, {counts[3]} disposals", flush=True)

        with engine.begin() as conn:
            import_csv(conn, entity.id, "ledger", CsvFile.from_path(work / "ledger_extra_day.csv"))
            import_csv(conn, entity.id, "balances", CsvFile.from_path(work / "balances_extra_day.csv"))
        t = time.perf_counter()
        run = close_days(["bench"], extra_day, extra_day, instance=instance)
        figures["one_more_day_warm_s"] = round(time.perf_counter() - t, 2)
        assert run.success, run.error
        print(f"closed one more day ({extra_day}) in the same process in {figures['one_more_day_warm_s']}s", flush=True)

        t = time.perf_counter()
        cli = subprocess.run([str(ROOT / ".venv" / "bin" / "coinfrs"), "close", "--entity", "bench", "--date",
                              extra_day.isoformat()], env=dict(os.environ, COINFRS_RESIDENT="0"), capture_output=True,
                             text=True)
        figures["one_more_day_cli_cold_s"] = round(time.perf_counter() - t, 2)
        assert cli.returncode == 0, cli.stderr[-2000:]
        print(f"closed it again through the CLI in a new process in {figures['one_more_day_cli_cold_s']}s "
              "(Python, Dagster and Great Expectations imports included)", flush=True)
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

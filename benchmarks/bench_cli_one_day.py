"""Benchmark: one more day closed through the CLI in a NEW process (cold: Python, Dagster and Great Expectations
imports included). Target on this 2-core machine: under 5 seconds.

What it does, in a database of its own (on DATABASE_URL's server, else the embedded one), with the CLI's own Dagster
instance (PostgreSQL storage in ``<database>_dagster``, orchestration/instance.py) under a temporary DAGSTER_HOME:
  1. generates the benchmark dataset (samples/generate.py bench; default 1 year x 2,000 rows x 3 accounts, enough
     history for the day's cost basis and reconciliation) and imports it;
  2. closes its whole range in this process (set-up, not measured);
  3. imports the next day's rows and runs ``coinfrs close --entity bench --from D --to D`` in a new process,
     ``--repeat`` times (the first closes the new day, the others close it again), and reports each wall time;
     the new process finds its Dagster instance itself (a DAGSTER_HOME of its own, the checkout's dagster.yaml);
  4. with ``--importtime``, one more run under ``python -X importtime`` names the costliest imports;
  5. with ``--resident``, the runs go through `coinfrs resident start`'s process (orchestration/resident.py): still a
     new `coinfrs` process per close, forked from one that has Dagster and Great Expectations imported.

``--root DIR`` runs the CLI from another checkout of the code (e.g. ``git archive <commit>`` of an older version)
with this venv, for before/after figures.

Run:  .venv/bin/python benchmarks/bench_cli_one_day.py [--years 1 --rows 2000 --repeat 3 --importtime] [--resident]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
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


def _cli(root: Path, *args: str, python_flags: tuple[str, ...] = ()) -> list[str]:
    """The `coinfrs` command of the checkout at ``root`` (its console script's entry point), run by this venv's
    Python in a new process."""
    entry = "orchestration.resident" if (root / "orchestration" / "resident.py").exists() else "orchestration.cli"
    return [sys.executable, *python_flags, "-c",
            f"import sys; sys.path.insert(0, {str(root)!r}); from {entry} import main; main()", *args]


def _top_imports(stderr: str, n: int = 12) -> list[tuple[str, float]]:
    """The ``n`` costliest top-level imports (cumulative seconds) from ``python -X importtime`` output."""
    rows = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = (part.strip() for part in line[len("import time:"):].split("|"))
        if cumulative.isdigit() and not name.startswith(" ") and "." not in name.strip():
            rows.append((name.strip(), int(cumulative) / 1e6))
    return sorted(rows, key=lambda r: -r[1])[:n]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--years", type=int, default=1)
    parser.add_argument("--rows", type=int, default=2_000)
    parser.add_argument("--accounts", type=int, default=3)
    parser.add_argument("--start", default="2021-01-01")
    parser.add_argument("--repeat", type=int, default=3, help="cold CLI runs (new processes)")
    parser.add_argument("--importtime", action="store_true", help="one more run under python -X importtime")
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout whose CLI is run (default: this one)")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database (and its Dagster database)")
    parser.add_argument("--resident", action="store_true",
                        help="with `coinfrs resident start` running (orchestration/resident.py); this checkout only")
    args = parser.parse_args()

    from _database import bench_database  # benchmarks/_database.py: the script's folder is on sys.path
    from generate import generate_bench  # samples/generate.py

    start = date.fromisoformat(args.start)
    end = start.replace(year=start.year + args.years) - timedelta(days=1)
    day = (end + timedelta(days=1)).isoformat()
    work = Path(tempfile.mkdtemp(prefix="coinfrs-bench-cli-"))
    generate_bench(work, years=args.years, rows=args.rows, accounts=args.accounts, start=start, extra_day=True)
    figures: dict[str, object] = {"years": args.years, "ledger_rows": args.rows, "accounts": args.accounts, "day": day,
                                  "root": str(args.root), "load_average_before": os.getloadavg()}

    with bench_database("cli", keep=args.keep, announce=f"benchmark database {{url}}; data in {work}") as url:
        from ingestion.csv_files import CsvFile, import_csv
        from orchestration.close_runner import close_days
        from warehouse.db import DAGSTER_STORAGE_ENV, get_engine
        from warehouse.entities import get_or_create_entity

        os.environ["DAGSTER_HOME"] = str(work / "dagster_home")
        engine = get_engine(url)
        with engine.begin() as conn:
            entity = get_or_create_entity(conn, "bench")
            import_csv(conn, entity.id, "ledger", CsvFile.from_path(work / "ledger.csv"))
            import_csv(conn, entity.id, "balances", CsvFile.from_path(work / "balances.csv"))
        t = time.perf_counter()
        run = close_days(["bench"], start, end)
        assert run.success, run.error
        figures["setup_close_s"] = round(time.perf_counter() - t, 1)
        print(f"set-up: closed {start} .. {end} in {figures['setup_close_s']}s", flush=True)
        with engine.begin() as conn:
            import_csv(conn, entity.id, "ledger", CsvFile.from_path(work / "ledger_extra_day.csv"))
            import_csv(conn, entity.id, "balances", CsvFile.from_path(work / "balances_extra_day.csv"))

        command = ("close", "--entity", "bench", "--from", day, "--to", day)
        # the new process finds its Dagster instance itself: a home of its own (the checkout's default dagster.yaml)
        env = {k: v for k, v in os.environ.items() if k != DAGSTER_STORAGE_ENV}
        env["DAGSTER_HOME"] = str(work / "cli_dagster_home")
        if args.resident:
            t = time.perf_counter()
            started = subprocess.run(_cli(ROOT, "resident", "start", "--json"), env=env, capture_output=True, text=True)
            assert started.returncode == 0, started.stderr[-2000:]
            figures["resident_start_s"] = round(time.perf_counter() - t, 1)
            print(f"resident close process ready in {figures['resident_start_s']}s", flush=True)
        times = []
        for i in range(args.repeat):
            t = time.perf_counter()
            done = subprocess.run(_cli(args.root, *command), env=env, capture_output=True, text=True, cwd=args.root)
            times.append(round(time.perf_counter() - t, 2))
            assert done.returncode == 0, done.stderr[-2000:]
            print(f"cold CLI close of {day} #{i + 1}: {times[-1]}s (load {os.getloadavg()[0]:.2f})", flush=True)
        figures.update(cold_cli_s=times, cold_cli_median_s=statistics.median(times), resident=args.resident)
        if args.resident:
            subprocess.run(_cli(ROOT, "resident", "stop"), env=env, capture_output=True, text=True)
        if args.importtime:
            done = subprocess.run(_cli(args.root, *command, python_flags=("-X", "importtime")), env=env,
                                  capture_output=True, text=True, cwd=args.root)
            assert done.returncode == 0, done.stderr[-2000:]
            figures["costliest_imports_s"] = {name: round(s, 2) for name, s in _top_imports(done.stderr)}
    figures["load_average_after"] = os.getloadavg()
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

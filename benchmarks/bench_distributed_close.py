"""Benchmark of the distributed close (issue 17, item 4): N entities x D days on Celery workers, 1 and 2 workers.

What it does, in a database of its own (on DATABASE_URL's server, else the embedded one), for each worker count:
  1. generates one ledger and its daily balances (samples/generate.py bench) and imports it for N entities;
  2. starts W real workers (`coinfrs worker start`) on the configured broker (COINFRS_CELERY_BROKER_URL, default
     the local Redis) and closes the N entities over D days as one run per entity, submitted together
     (orchestration.distributed.run_entity_closes), on a persistent Dagster instance of its own;
  3. prints the wall time and the projection to more workers.

The issue's full size is 50 entities x 1 year (`--entities 50 --days 365`): about 50 x 50 s of close work,
which on a 2-core machine is the better part of an hour per worker count. Smaller sizes project the same way:
per-entity work is independent, so W workers divide it until the broker, the Dagster instance or the warehouse
server saturates.

Run:  .venv/bin/python benchmarks/bench_distributed_close.py [--entities 8 --days 60 --rows 2000 --workers 1,2]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
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


def _start_workers(count: int, env: dict[str, str]) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-m", "orchestration.cli", "worker", "start", "--name", f"bench{i}"],
                             cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True) for i in range(count)]


def _wait_for_workers(broker: str, count: int, timeout: float = 120) -> None:
    from celery import Celery

    app = Celery(broker=broker)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        replies = app.control.ping(timeout=1.0) or []
        if len({host for reply in replies for host in reply if host.startswith("bench")}) >= count:
            return
    raise SystemExit(f"{count} worker(s) did not answer within {timeout} s")


def _stop(workers: list[subprocess.Popen]) -> None:
    for worker in workers:
        os.killpg(worker.pid, signal.SIGTERM)
    for worker in workers:
        worker.wait(timeout=120)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entities", type=int, default=8)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--rows", type=int, default=2000, help="ledger rows per entity over one year")
    parser.add_argument("--accounts", type=int, default=3)
    parser.add_argument("--workers", default="1,2", help="worker counts to time, comma-separated")
    parser.add_argument("--start", default="2025-01-01")
    args = parser.parse_args()

    from _database import bench_database  # benchmarks/_database.py
    from generate import generate_bench  # samples/generate.py

    start = date.fromisoformat(args.start)
    end = start + timedelta(days=args.days - 1)
    work = Path(tempfile.mkdtemp(prefix="coinfrs-bench-distributed-"))
    generate_bench(work, years=1, rows=args.rows, accounts=args.accounts, start=start)
    figures: dict[str, object] = {"entities": args.entities, "days": args.days, "rows_per_entity_year": args.rows,
                                  "accounts": args.accounts, "load_average_before": os.getloadavg()[0]}
    server_url = os.environ.get("DATABASE_URL")  # bench_database points DATABASE_URL at its database: put it back
    for workers in (int(w) for w in args.workers.split(",")):
        if server_url is None:
            os.environ.pop("DATABASE_URL", None)
        else:
            os.environ["DATABASE_URL"] = server_url
        from warehouse.settings import get_settings

        get_settings.cache_clear()
        with bench_database(f"dist{workers}", announce=f"{workers} worker(s): database {{url}}") as url:
            import dagster as dg

            from ingestion.csv_files import CsvFile, import_csv
            from orchestration.distributed import run_entity_closes
            from warehouse.db import get_engine
            from warehouse.entities import get_or_create_entity
            from warehouse.settings import get_settings

            engine = get_engine(url)
            entities = []
            with engine.begin() as conn:
                for n in range(args.entities):
                    entity = get_or_create_entity(conn, f"bench{n:03d}")
                    import_csv(conn, entity.id, "ledger", CsvFile.from_path(work / "ledger.csv"))
                    import_csv(conn, entity.id, "balances", CsvFile.from_path(work / "balances.csv"))
                    entities.append((entity.id, entity.name))
            env = {**os.environ, "DATABASE_URL": url, "PYTHONPATH": str(ROOT)}
            pool = _start_workers(workers, env)
            try:
                _wait_for_workers(get_settings().celery_broker_url, workers)
                home = work / f"dagster{workers}"
                home.mkdir()
                with dg.DagsterInstance.local_temp(str(home)) as instance:
                    t = time.perf_counter()
                    runs = run_entity_closes(entities, start, end, instance=instance)
                    elapsed = time.perf_counter() - t
            finally:
                _stop(pool)
            failed = [r for r in runs if not r.success]
            if failed:
                raise SystemExit(f"{len(failed)} run(s) failed, first: {failed[0].entity}: {failed[0].error}")
            figures[f"wall_s_{workers}_workers"] = round(elapsed, 1)
            print(f"{workers} worker(s): {args.entities} entities x {args.days} days in {elapsed:.1f} s", flush=True)
    figures["load_average_after"] = os.getloadavg()[0]
    one = figures.get("wall_s_1_workers")
    if isinstance(one, float):
        figures["projection_s"] = {w: round(one / w, 1) for w in (4, 8, 16)}  # ideal division; see docs/distributed.md
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

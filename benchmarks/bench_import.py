"""Benchmark of the CSV import: rows/s and peak memory of `coinfrs import-csv` on a large ledger CSV, end to end.

What it does, in a database of its own (on DATABASE_URL's server, else the embedded one):
  1. generates a seeded ledger CSV (v1) of about --mb megabytes (buys, sells with fees and quotes, transfers,
     income; ~86 bytes a row, so 50 MB is ~580,000 rows);
  2. runs `coinfrs import-csv FILE --entity bench` in a child process (the real CLI: decoding, validation, COPY
     straight into raw_records, one transaction) and measures its wall time and peak RSS (getrusage of the child);
  3. imports the same file again (every row already staged: the idempotent path, through a temporary table);
  4. prints rows/s, peak RSS and the RSS of a child that only loads the CLI (the interpreter and its imports).

Run:  .venv/bin/python benchmarks/bench_import.py [--mb 50] [--keep]
Targets (issue 18): at least 50,000 rows/s end to end and under 200 MB peak for a 50 MB file.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

HEADER = ("id,timestamp,action,asset,quantity,unit_price_usd,fee_asset,fee_amount,quote_asset,quote_quantity,account,"
          "tx_hash,external_id,notes\n")


def generate(path: Path, megabytes: float, seed: int = 18) -> int:
    """A ledger CSV of about ``megabytes``; returns its data rows."""
    rng = random.Random(seed)
    target = int(megabytes * 1_000_000)
    written, rows = 0, 0
    assets = ("BTC", "ETH", "SOL", "USDC", "DOT")
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write(HEADER)
        written += len(HEADER)
        start = 1_704_067_200  # 2024-01-01
        while written < target:
            rows += 1
            t = start + rows * 37
            ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
            asset = assets[rows % len(assets)]
            qty = f"{Decimal(rng.randint(1, 10**8)).scaleb(-8):f}"
            kind = rows % 4
            if kind == 0:
                line = f"r{rows},{ts},BUY,{asset},{qty},{rng.randint(1, 60000)}.25,USD,1.5,,,main,,,\n"
            elif kind == 1:
                line = f"r{rows},{ts},SELL,{asset},{qty},,USD,0.75,USD,{rng.randint(1, 90000)}.5,main,,,note {rows}\n"
            elif kind == 2:
                line = f"r{rows},{ts},TRANSFER_IN,{asset},{qty},,,,,,cold,0x{rng.getrandbits(128):032x},,\n"
            else:
                line = f"r{rows},{ts},INCOME,{asset},{qty},{rng.randint(1, 500)}.125,,,,,main,,,staking\n"
            out.write(line)
            written += len(line)
    return rows


def run_child(args: list[str]) -> tuple[float, int, subprocess.CompletedProcess, float]:
    """Wall seconds, peak RSS (bytes) and CPU seconds (user + system) of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return elapsed, max(after.ru_maxrss, before.ru_maxrss) * 1024, done, cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=float, default=50.0, help="size of the generated ledger CSV")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database")
    args = parser.parse_args()

    import sqlalchemy as sa

    from _database import bench_database  # benchmarks/_database.py: the script's folder is on sys.path

    cli = [sys.executable, "-c", "from orchestration.cli import main; main()"]
    with tempfile.TemporaryDirectory() as tmp, bench_database("import", keep=args.keep) as url:
        path = Path(tmp) / "ledger.csv"
        rows = generate(path, args.mb)
        size = path.stat().st_size
        print(f"file: {size / 1e6:.1f} MB, {rows:,} rows", flush=True)
        # the interpreter and the CLI's imports alone (ru_maxrss of children is a running maximum: measure it first)
        _, idle, _, _ = run_child([*cli, "--help"])
        seconds, peak, done, cpu = run_child([*cli, "import-csv", str(path), "--entity", "bench", "--create"])
        if done.returncode != 0:
            print(done.stdout, done.stderr, sep="\n")
            return 1
        engine = sa.create_engine(url)
        with engine.connect() as conn:
            staged = conn.execute(sa.text("SELECT count(*) FROM raw_records")).scalar()
        engine.dispose()
        again, _, done_again, cpu_again = run_child([*cli, "import-csv", str(path), "--entity", "bench", "--create"])
        # the CPU of the CLI process alone (PostgreSQL's is not counted): on a shared machine, what it cost itself
        print(f"first import:  {seconds:6.2f} s  {rows / seconds:9,.0f} rows/s  {size / 1e6 / seconds:5.1f} MB/s  "
              f"{staged:,} rows staged; CLI process CPU {cpu:.2f} s", flush=True)
        print(f"second import: {again:6.2f} s  {rows / again:9,.0f} rows/s  (nothing new; exit {done_again.returncode}); "
              f"CLI process CPU {cpu_again:.2f} s")
        print(f"peak RSS: {peak / 1e6:,.0f} MB for the import ({peak / size:.1f}x the file); "
              f"{idle / 1e6:,.0f} MB for the CLI alone (--help)")
        assert staged == rows, (staged, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())

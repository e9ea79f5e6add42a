"""Benchmark: the completeness check over 10,000 (account, asset) pairs x 365 days (3.65 M positions).

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres .venv/bin/python benchmarks/bench_completeness.py

Creates a throwaway database on the server (dropped at the end), seeds it in SQL (2,000 accounts,
half exchange spot / half wallets, x 5 assets; a leg every 7th day per pair; a balance snapshot at
every cutoff; 10 planted breaks that persist), ANALYZEs after the bulk load, then times
``check_completeness`` (one set-based statement storing the year's differences and the per-day counts,
then the Great Expectations ``UnexpectedRowsExpectation`` over the stored differences) and checks that
it finds exactly the planted breaks. Target: under 10 s. Run it with ``nice`` and note ``uptime``.

Seeding disables foreign-key triggers for the session (``session_replication_role = replica``): the
legs have no staged raw records here; lineage is not what is measured.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import date
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

SEED = """
SET session_replication_role = replica;
INSERT INTO accounts (id, entity_id, source, name, account_type, sub_account, label)
OVERRIDING SYSTEM VALUE
SELECT a, :e, CASE WHEN a % 2 = 0 THEN 'exchange' ELSE 'chain' END, 'acct-' || a,
       CASE WHEN a % 2 = 0 THEN 'spot' ELSE 'wallet' END, '', 'acct-' || a
FROM generate_series(1, :accounts) a;
CREATE TEMP TABLE bench_days AS
SELECT (DATE '__START__' + i) AS day, i FROM generate_series(0, :days - 1) i;
CREATE TEMP TABLE bench_pairs AS
SELECT a.id AS account_id, s.id AS asset_id, row_number() OVER (ORDER BY a.id, s.id) AS n
FROM accounts a CROSS JOIN (SELECT id FROM assets WHERE symbol IN ('BTC', 'ETH', 'SOL', 'USDC', 'USD')) s;
INSERT INTO transactions (id, entity_id, account_id, asset_id, ts, close_date, quantity, kind, group_id, leg_index,
                          raw_record_id, is_adjustment)
SELECT p.n * 1000 + d.i, :e, p.account_id, p.asset_id, (d.day::timestamp + interval '12 hours') AT TIME ZONE 'UTC', d.day,
       ((p.n * 31 + d.i * 13) % 1000 + 1)::numeric / 100, 'deposit', 'bench:' || p.n || ':' || d.i, 0, p.n * 1000 + d.i, false
FROM bench_pairs p JOIN bench_days d ON (p.n + d.i) % 7 = 0;
CREATE TEMP TABLE bench_cum AS
SELECT p.account_id, p.asset_id, p.n, d.day,
       sum(CASE WHEN (p.n + d.i) % 7 = 0 THEN ((p.n * 31 + d.i * 13) % 1000 + 1)::numeric / 100 ELSE 0 END)
           OVER (PARTITION BY p.n ORDER BY d.day) AS q
FROM bench_pairs p CROSS JOIN bench_days d;
-- planted: 10 pairs whose source balance is off by 0.5 from day 100 on (one break each, on day 100)
INSERT INTO balance_observations (entity_id, account_id, asset_id, observed_at, quantity, raw_snapshot_id)
SELECT :e, c.account_id, c.asset_id, ((c.day + 1)::timestamp AT TIME ZONE 'UTC'),
       c.q + CASE WHEN c.n % 1000 = 7 AND c.day >= DATE '__START__' + 99 THEN 0.5 ELSE 0 END, 1
FROM bench_cum c;
INSERT INTO positions (entity_id, account_id, asset_id, date, computed_quantity, reported_quantity, reported_at)
SELECT :e, c.account_id, c.asset_id, c.day, c.q,
       c.q + CASE WHEN c.n % 1000 = 7 AND c.day >= DATE '__START__' + 99 THEN 0.5 ELSE 0 END,
       ((c.day + 1)::timestamp AT TIME ZONE 'UTC')
FROM bench_cum c;
SET session_replication_role = DEFAULT;
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=2000, help="accounts (x 5 assets = pairs)")
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database")
    args = parser.parse_args()

    from _database import bench_database  # benchmarks/_database.py: the script's folder is on sys.path

    with bench_database(keep=args.keep, announce=None) as url:
        from reconciliation.completeness import check_completeness
        from warehouse.numbers import D
        from transforms.asset_registry import ensure_assets
        from warehouse.entities import get_or_create_entity

        engine = sa.create_engine(url)
        start = date(2025, 1, 1)
        end = date.fromordinal(start.toordinal() + args.days - 1)
        began = time.monotonic()
        with engine.begin() as conn:
            entity = get_or_create_entity(conn, "bench")
            ensure_assets(conn, ["BTC", "ETH", "SOL", "USDC", "USD"])
            for statement in SEED.replace("__START__", start.isoformat()).split(";"):
                if statement.strip():
                    conn.execute(sa.text(statement), dict(e=entity.id, accounts=args.accounts, days=args.days))
        with engine.begin() as conn:
            conn.execute(sa.text("ANALYZE"))
        with engine.connect() as conn:
            counts = conn.execute(sa.text(
                "SELECT (SELECT count(*) FROM positions), (SELECT count(*) FROM transactions),"
                " (SELECT count(DISTINCT (account_id, asset_id)) FROM positions)")).one()
        print(f"seeded {counts[2]:,} (account, asset) pairs x {args.days} days: {counts[0]:,} positions, "
              f"{counts[1]:,} legs in {time.monotonic() - began:.1f}s", flush=True)

        from reconciliation.completeness import validate_completeness  # noqa: F401  (GX import outside the timing)
        import great_expectations  # noqa: F401

        began = time.monotonic()
        result = check_completeness(url, entity, start, end)
        elapsed = time.monotonic() - began
        checked = sum(result.checked_per_day.values())
        planted = args.accounts * 5 // 1000
        print(f"checked {checked:,} (account, asset, day) in {elapsed:.2f}s (one statement + Great Expectations over the differences): "
              f"{len(result.breaks)} break(s), planted {planted}")
        ok = len(result.breaks) == planted and all(D(b.difference) == D("0.5") and b.date.toordinal() - start.toordinal() == 99
                                                  for b in result.breaks)
        print(("PASS" if ok and elapsed < 10 else "FAIL") + f": {elapsed:.2f}s (target < 10 s), breaks as planted: {ok}")
        engine.dispose()
        return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

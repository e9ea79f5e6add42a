"""Load benchmark of the read API (issue 5): p50/p95/p99 and requests per second at 50 concurrent clients.

Target on this 2-core machine: p95 under 100 ms for positions at a date, a transactions page and a PnL summary.

What it does:
  1. creates a database of its own on DATABASE_URL's server (``coinfrs_bench_api_<random>``), migrates it and
     bulk-generates with COPY a ledger of ``--legs`` legs (default 1,000,000) over three years: 20 accounts,
     30 assets, one staging record per two legs, matched transfers, daily prices, daily positions and
     disposals; then VACUUM ANALYZE (what autovacuum does to a warehouse after its loads: the statistics, and the
     visibility map that index-only scans need);
  2. starts the API as ``coinfrs serve`` does (``api.server``: uvicorn, one SO_REUSEPORT socket per worker) on
     127.0.0.1, with a key of the entity, rate limit off;
  3. for each scenario, runs ``--clients`` concurrent aiohttp clients in a closed loop for ``--seconds``
     (after a short warm-up), each request with random parameters; counts non-200 answers as errors;
  4. prints one line per scenario (with the CPU per request of the uvicorn workers, their PostgreSQL backends and
     the client, and the load average) and a JSON summary; stops uvicorn and drops the database (``--keep`` keeps
     it).

Run:  DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres .venv/bin/python benchmarks/bench_api.py
      [--legs 1000000 --clients 50 --seconds 15 --workers 2] [--keep | --reuse coinfrs_bench_api_XXXXXXXX]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

START = date(2023, 1, 1)
DAYS = 3 * 365
ACCOUNTS = 20
ASSETS = 30
ASSETS_PER_ACCOUNT = 5


def _copy_text(conn, table: str, columns: list[str], lines) -> int:
    """COPY tab-separated ``lines`` (already escaped, ``\\N`` for null) into ``table`` in 4 MB writes."""
    count = 0
    with conn.connection.driver_connection.cursor() as cursor:
        with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            buffer = io.StringIO()
            for line in lines:
                buffer.write(line)
                count += 1
                if buffer.tell() > 4_000_000:
                    copy.write(buffer.getvalue())
                    buffer = io.StringIO()
            copy.write(buffer.getvalue())
    return count


def generate(url: str, legs: int) -> tuple[str, dict[str, float]]:
    """The dataset, through COPY; returns an API key of the entity and the time of each step."""
    import sqlalchemy as sa

    from api.security import create_api_key
    from warehouse.db import get_owner_engine

    timings: dict[str, float] = {}
    engine = get_owner_engine(url)  # the schema owner: the application role may not set sequences (0026)
    t0 = time.perf_counter()
    base = datetime.combine(START, datetime.min.time(), tzinfo=timezone.utc)
    span = DAYS * 86400
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO entities (id, name) OVERRIDING SYSTEM VALUE VALUES (1, 'bench-fund'), "
                             "(2, 'other-fund')"))
        conn.execute(sa.text("INSERT INTO ingestion_runs (id, entity_id, source, stream, status) VALUES "
                             "('00000000-0000-0000-0000-000000000001', 1, 'csv', 'ledger', 'finished')"))
        _copy_text(conn, "assets", ["id", "symbol", "decimals", "is_fiat"],
                   [f"{i + 1}\tA{i:02d}\t18\tf\n" for i in range(ASSETS)] + [f"{ASSETS + 1}\tUSD\t2\tt\n"])
        _copy_text(conn, "accounts", ["id", "entity_id", "source", "name", "account_type"],
                   [f"{i + 1}\t1\tbinance\tacct-{i:02d}\tspot\n" for i in range(ACCOUNTS)]
                   + [f"{ACCOUNTS + 1}\t2\tkraken\tother\tspot\n"])
        for table in ("assets", "accounts", "entities"):
            conn.execute(sa.text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                 f"(SELECT max(id) FROM {table}))"))
        raws = (legs + 1) // 2
        _copy_text(conn, "raw_records", ["id", "entity_id", "source", "account", "stream", "source_raw_id",
                                         "payload", "payload_hash", "occurred_at", "ingestion_run_id"],
                   (f"{r + 1}\t1\tcsv\tacct-{r % ACCOUNTS:02d}\tledger\tr{r + 1}\t{{\"row\": {r + 1}, "
                    f"\"amount\": \"0.{r % 97:02d}1\"}}\th{r + 1}\t{base + timedelta(seconds=span * r // raws)}\t"
                    f"00000000-0000-0000-0000-000000000001\n" for r in range(raws)))
        timings["raw_records_s"] = round(time.perf_counter() - t0, 1)

        def leg_lines():
            for i in range(legs):
                r = i // 2
                ts = base + timedelta(seconds=span * r // raws)
                account = r % ACCOUNTS + 1
                asset = (account * 7 + (r // ACCOUNTS) % ASSETS_PER_ACCOUNT) % ASSETS + 1
                sign = "" if i % 2 == 0 else "-"
                kind = ("buy" if i % 2 == 0 else "sell") if r % 10 else ("transfer_in" if i % 2 == 0 else "transfer_out")
                qty = f"{sign}{(r % 1000) + 1}.{r % 1_000_000:06d}000000000001"
                yield (f"{(r + 1) * 10 + i % 2}\t1\t{account}\t{asset}\t{ts}\t{ts.date()}\t{qty}\t{kind}\tg{r + 1}\t"
                       f"{i % 2}\t{(r % 500) + 1}.25\t{(r % 9000) + 10}.5\t{r + 1}\n")

        t1 = time.perf_counter()
        _copy_text(conn, "transactions", ["id", "entity_id", "account_id", "asset_id", "ts", "close_date", "quantity",
                                          "kind", "group_id", "leg_index", "unit_price_usd", "usd_value",
                                          "raw_record_id"], leg_lines())
        timings["legs_s"] = round(time.perf_counter() - t1, 1)
        t2 = time.perf_counter()
        # every tenth event is a transfer: out leg (index 1) matched to the in leg (index 0)
        _copy_text(conn, "transfers", ["id", "entity_id", "out_leg_id", "in_leg_id", "asset_id", "status",
                                       "close_date"],
                   (f"{(r + 1) * 10 + 1}\t1\t{(r + 1) * 10 + 1}\t{(r + 1) * 10}\t{(r % ACCOUNTS * 7) % ASSETS + 1}\t"
                    f"matched\t{(base + timedelta(seconds=span * r // raws)).date()}\n"
                    for r in range(0, raws, 10) if (r + 1) * 10 + 1 < legs * 10))
        days = [START + timedelta(days=d) for d in range(DAYS)]
        _copy_text(conn, "prices", ["entity_id", "asset_id", "ts", "price_usd", "source", "resolution"],
                   (f"1\t{a + 1}\t{datetime.combine(d, datetime.min.time(), tzinfo=timezone.utc) + timedelta(hours=23)}"
                    f"\t{(a + 1) * 100 + n % 50}.123456789\tbench-provider\tday\n"
                    for n, d in enumerate(days) for a in range(ASSETS)))
        _copy_text(conn, "positions", ["entity_id", "account_id", "asset_id", "date", "computed_quantity",
                                       "reported_quantity", "reported_at", "close_price_usd", "price_at"],
                   (f"1\t{acc + 1}\t{((acc + 1) * 7 + k) % ASSETS + 1}\t{d}\t{n + k}.000000000000000001\t"
                    f"{n + k}.000000000000000001\t{d}T23:59:00+00\t{(((acc + 1) * 7 + k) % ASSETS + 1) * 100 + n % 50}"
                    f".123456789\t{d}T23:00:00+00\n"
                    for n, d in enumerate(days) for acc in range(ACCOUNTS) for k in range(ASSETS_PER_ACCOUNT)))
        disposals = legs // 4
        _copy_text(conn, "pnl_disposals", ["entity_id", "method", "pool", "date", "ts", "leg_id", "account_id",
                                           "asset_id", "kind", "quantity", "proceeds", "cost_basis", "realized_gain",
                                           "short_term_gain", "long_term_gain", "shortfall_quantity"],
                   (f"1\tfifo\tuniversal\t{(base + timedelta(seconds=span * j // disposals)).date()}\t"
                    f"{base + timedelta(seconds=span * j // disposals)}\t{(2 * j + 1) * 10 + 1}\t{j % ACCOUNTS + 1}\t"
                    f"{j % ASSETS + 1}\t{'fee' if j % 20 == 0 else 'sale'}\t0.5\t{j % 900 + 100}.000000000000000001\t"
                    f"{j % 700 + 100}\t{(j % 900) - (j % 700)}.000000000000000001\t{(j % 900) - (j % 700)}"
                    f".000000000000000001\t0\t0\n" for j in range(disposals)))
        timings["other_tables_s"] = round(time.perf_counter() - t2, 1)
        key = create_api_key(conn, 1, label="bench")
    t3 = time.perf_counter()
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(sa.text("VACUUM ANALYZE"))
    timings["analyze_s"] = round(time.perf_counter() - t3, 1)
    timings["total_s"] = round(time.perf_counter() - t0, 1)
    engine.dispose()
    return key, timings


_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds used so far by these processes (read from /proc; a gone process counts 0)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / _TICKS


def _server_pids(master: int) -> list[int]:
    """uvicorn's master and its worker processes."""
    pids = [master]
    for task in Path(f"/proc/{master}/task").glob("*"):
        children = (task / "children")
        if children.exists():
            pids += [int(p) for p in children.read_text().split()]
    return pids


def _backend_pids(url: str) -> list[int]:
    """The PostgreSQL backends connected to the benchmark database (the API's pools), if the server is local."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(sa.text("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                                             "AND pid <> pg_backend_pid()")).scalars())
    finally:
        engine.dispose()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SCENARIOS = {
    "positions_at_a_date": lambda rnd: ("/api/v1/positions", {
        "as_of": (START + timedelta(days=rnd.randrange(DAYS))).isoformat()}),
    "transactions_page": lambda rnd: ("/api/v1/transactions", {
        **(lambda d: {"from": d.isoformat(), "to": (d + timedelta(days=30)).isoformat()})(
            START + timedelta(days=rnd.randrange(DAYS - 31))), "limit": "100"}),
    "pnl_summary": lambda rnd: ("/api/v1/pnl/realized", {
        **(lambda d: {"from": d.isoformat(), "to": (d + timedelta(days=30)).isoformat()})(
            START + timedelta(days=rnd.randrange(DAYS - 31)))}),
}


async def run_scenario(base_url: str, key: str, name: str, clients: int, seconds: float) -> dict[str, float]:
    """``clients`` concurrent clients in a closed loop (each sends its next request when the answer arrives).

    The client is aiohttp (one keep-alive connection per client): it costs a fraction of httpx's CPU per request,
    and on a 2-core machine the load generator's CPU is taken from the server's."""
    import aiohttp

    make = SCENARIOS[name]
    latencies: list[float] = []
    by_cache: dict[str, list[float]] = {"hit": [], "miss": []}
    errors = 0
    warmup = 0
    connector = aiohttp.TCPConnector(limit=clients, limit_per_host=clients)
    timeout = aiohttp.ClientTimeout(total=30.0)
    async with aiohttp.ClientSession(base_url=base_url, headers={"X-API-Key": key}, connector=connector,
                                     timeout=timeout) as session:
        async def worker(seed: int, until: float, record: bool) -> None:
            nonlocal errors, warmup
            rnd = random.Random(seed)
            while time.perf_counter() < until:
                path, params = make(rnd)
                started = time.perf_counter()
                try:
                    async with session.get(path, params=params) as resp:
                        await resp.read()
                        ok = resp.status == 200
                        cached = resp.headers.get("X-Cache")
                except (aiohttp.ClientError, asyncio.TimeoutError):  # counted, not fatal: the run goes on
                    ok, cached = False, None
                elapsed = time.perf_counter() - started
                if record:
                    latencies.append(elapsed)
                    if cached in by_cache:
                        by_cache[cached].append(elapsed)
                    if not ok:
                        errors += 1
                else:
                    warmup += 1
        warm = time.perf_counter() + 2.0
        await asyncio.gather(*(worker(1000 + i, warm, False) for i in range(clients)))
        started = time.perf_counter()
        await asyncio.gather(*(worker(i, started + seconds, True) for i in range(clients)))
        wall = time.perf_counter() - started
    def pct(values: list[float], p: float) -> float | None:
        values = sorted(values)
        return round(values[min(len(values) - 1, int(p * len(values)))] * 1000, 1) if values else None

    return {"requests": len(latencies), "warmup_requests": warmup, "errors": errors, "rps": round(len(latencies) / wall, 1),
            "p50_ms": pct(latencies, 0.50), "p95_ms": pct(latencies, 0.95), "p99_ms": pct(latencies, 0.99),
            "mean_ms": round(statistics.fmean(latencies) * 1000, 1),
            # the response cache's share (X-Cache header) and the latency of each kind of answer
            "cache_hits": len(by_cache["hit"]), "cache_misses": len(by_cache["miss"]),
            "hit_p50_ms": pct(by_cache["hit"], 0.50), "hit_p95_ms": pct(by_cache["hit"], 0.95),
            "miss_p50_ms": pct(by_cache["miss"], 0.50), "miss_p95_ms": pct(by_cache["miss"], 0.95)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--legs", type=int, default=1_000_000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--workers", type=int, default=2, help="API worker processes (one per core; each has its "
                                                               "own response cache)")
    parser.add_argument("--cache-mb", type=int, default=None,
                        help="the API's response cache per process (COINFRS_API_CACHE_MB; default: the setting, "
                             "64). 0 measures every request computed")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database")
    parser.add_argument("--only", choices=sorted(SCENARIOS), action="append",
                        help="measure only this scenario (repeatable; default: all)")
    parser.add_argument("--reuse", metavar="DATABASE", help="measure a database kept by an earlier --keep run "
                                                           "(no generation; kept afterwards)")
    args = parser.parse_args()

    from _database import bench_database  # benchmarks/_database.py: the script's folder is on sys.path

    with bench_database("api", keep=args.keep, reuse=args.reuse, set_env=False) as url:
        return _run(args, url)


def _run(args: argparse.Namespace, url: str) -> int:
    """Generate (unless reusing), start the API, measure each scenario; stop the API."""
    import sqlalchemy as sa

    server_proc = None
    try:
        if args.reuse:
            from api.security import create_api_key
            from warehouse.db import get_engine

            with get_engine(url).begin() as conn:
                key = create_api_key(conn, 1, label="bench")
                legs = conn.execute(sa.text("SELECT count(*) FROM transactions")).scalar()
            timings: dict[str, float] = {}
            print(f"reusing {legs:,} legs", flush=True)
        else:
            key, timings = generate(url, args.legs)
            legs = args.legs
            print(f"generated {legs:,} legs with COPY: {timings}", flush=True)
        port = _free_port()
        env = {**os.environ, "DATABASE_URL": url, "COINFRS_API_RATE_LIMIT_PER_MINUTE": "0"}
        if args.cache_mb is not None:
            env["COINFRS_API_CACHE_MB"] = str(args.cache_mb)
        server_proc = subprocess.Popen(
            [sys.executable, "-m", "api.server", "--host", "127.0.0.1", "--port", str(port),
             "--workers", str(args.workers), "--log-level", "warning", "--no-access-log"],
            cwd=ROOT, env=env, start_new_session=True)
        import httpx

        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        else:
            raise RuntimeError("uvicorn did not come up")
        results = {}
        print(f"load before: {os.getloadavg()[0]:.2f} (1-min load average, {os.cpu_count()} CPUs)", flush=True)
        for scenario in args.only or SCENARIOS:
            servers = _server_pids(server_proc.pid)
            api_before, db_before = _cpu_seconds(servers), _cpu_seconds(_backend_pids(url))
            client_before = time.process_time()
            result = asyncio.run(run_scenario(f"http://127.0.0.1:{port}", key, scenario, args.clients,
                                              args.seconds))
            # CPU per request, server side (uvicorn workers + their PostgreSQL backends) and client side:
            # the figures that do not depend on what else the machine runs (warm-up requests included)
            backends = _backend_pids(url)
            served = result["requests"] + result["warmup_requests"]
            result["api_cpu_ms_per_request"] = round((_cpu_seconds(servers) - api_before) * 1000 / max(1, served), 2)
            result["db_cpu_ms_per_request"] = round((_cpu_seconds(backends) - db_before) * 1000 / max(1, served), 2)
            result["client_cpu_ms_per_request"] = round(
                (time.process_time() - client_before) * 1000 / max(1, served), 2)
            result["load_1min"] = round(os.getloadavg()[0], 2)
            results[scenario] = result
            print(f"{scenario:22s} {args.clients} clients: p50 {result['p50_ms']} ms  p95 {result['p95_ms']} ms  "
                  f"p99 {result['p99_ms']} ms  {result['rps']} req/s  ({result['requests']} requests, "
                  f"{result['errors']} errors; cache {result['cache_hits']} hits p95 {result['hit_p95_ms']} ms, "
                  f"{result['cache_misses']} misses p95 {result['miss_p95_ms']} ms)  CPU/request: API {result['api_cpu_ms_per_request']} ms, "
                  f"PostgreSQL {result['db_cpu_ms_per_request']} ms, client {result['client_cpu_ms_per_request']} ms  load {result['load_1min']}", flush=True)
        print(json.dumps({"legs": legs, "clients": args.clients, "seconds": args.seconds,
                          "workers": args.workers, "cache_mb": args.cache_mb, "generation": timings, "results": results}))
        return 0
    finally:
        if server_proc is not None:
            os.killpg(server_proc.pid, signal.SIGTERM)
            try:
                server_proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(server_proc.pid, signal.SIGKILL)


if __name__ == "__main__":
    sys.exit(main())

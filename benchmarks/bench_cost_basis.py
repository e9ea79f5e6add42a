"""Cost-basis engine benchmark: a generated ledger, one book, full recompute and one new day.

    .venv/bin/python benchmarks/bench_cost_basis.py                      # 1,000,000 legs, fifo:universal
    .venv/bin/python benchmarks/bench_cost_basis.py --legs 200000 --book hifo:account

Generated (seeded): ~1,000,000 legs over 5 years, 50 accounts, 100 assets; buys and sells against
USD with a USD fee (3 legs), internal transfers between accounts (2 legs, matched), income (1 leg).
Sells and transfers never exceed what the account holds. Measured:
1. full recompute of the book over all legs (pool states and the roll-forward for the last day);
2. the state at the end of the second-to-last day, then the last day alone from that state
   (what the daily close does: restart from the stored open-lot state, re-book only the new day),
   checked to give the same disposals and end state as the full run.
Wall and CPU seconds (the machine may be shared: CPU time is what the engine itself costs) and the
peak RSS of the process (ru_maxrss) are reported. Targets: full < 60 s and < 2 GB; new day < 2 s.
"""

from __future__ import annotations

import argparse
import random
import resource
import sys
import time
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from transforms.cost_basis import PnlLeg, compute_book, parse_book  # noqa: E402
from transforms.fair_value import FairValues, map_ledger_prices  # noqa: E402

USD = 0
START = date(2021, 1, 1)
DAYS = 5 * 365


def generate(n_legs: int, accounts: int, assets: int, seed: int = 7) -> list[PnlLeg]:
    rng = random.Random(seed)
    prices = {a: Decimal(rng.randint(100, 5_000_000)) / 100 for a in range(1, assets + 1)}
    held: dict[tuple[int, int], int] = {}  # in 1e-4 units
    legs: list[PnlLeg] = []
    event = 0
    per_day = n_legs / DAYS
    while len(legs) < n_legs:
        event += 1
        day_index = min(int(len(legs) / per_day), DAYS - 1)
        day = START + timedelta(days=day_index)
        ts = datetime(day.year, day.month, day.day, tzinfo=timezone.utc) + timedelta(seconds=rng.randint(0, 86_399))
        account, asset = rng.randint(1, accounts), rng.randint(1, assets)
        if rng.random() < 0.02:
            prices[asset] = max(Decimal("0.01"), (prices[asset] * Decimal(rng.randint(90, 111)) / 100).quantize(Decimal("0.01")))
        price = prices[asset]
        group = f"e{event}"
        roll = rng.random()
        have = held.get((account, asset), 0)
        base = event * 10

        def leg(i: int, acct: int, a: int, qty: Decimal, kind: str, unit: Decimal | None, value: Decimal | None,
                status: str | None = None, peer: int | None = None) -> PnlLeg:
            return PnlLeg(base + i, ts, day, acct, a, a == USD, qty, kind, group, i, unit, value, status, peer)

        if roll < 0.45 or have == 0:  # buy
            units = rng.randint(1, 50_000)
            qty = Decimal(units) / 10_000
            value = qty * price
            legs += [leg(0, account, asset, qty, "buy", price, value), leg(1, account, USD, -value, "sell", Decimal(1), value),
                     leg(2, account, USD, Decimal("-1.5"), "fee", Decimal(1), Decimal("1.5"))]
            held[(account, asset)] = have + units
        elif roll < 0.80:  # sell
            units = rng.randint(1, have)
            qty = Decimal(units) / 10_000
            value = qty * price
            legs += [leg(0, account, asset, -qty, "sell", price, value), leg(1, account, USD, value, "buy", Decimal(1), value),
                     leg(2, account, USD, Decimal("-1.5"), "fee", Decimal(1), Decimal("1.5"))]
            held[(account, asset)] = have - units
        elif roll < 0.95:  # internal transfer, matched
            units = rng.randint(1, have)
            qty = Decimal(units) / 10_000
            target = account % accounts + 1
            legs.append(leg(0, account, asset, -qty, "transfer_out", None, None, "matched", target))
            legs.append(PnlLeg(base + 5, ts, day, target, asset, False, qty, "transfer_in", group + "i", 0, None, None,
                               "matched", None))
            held[(account, asset)] = have - units
            held[(target, asset)] = held.get((target, asset), 0) + units
        else:  # staking income at the day's price
            units = rng.randint(1, 1_000)
            qty = Decimal(units) / 10_000
            legs.append(leg(0, account, asset, qty, "staking_reward", price, qty * price))
            held[(account, asset)] = have + units
    return legs


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--legs", type=int, default=1_000_000)
    parser.add_argument("--accounts", type=int, default=50)
    parser.add_argument("--assets", type=int, default=100)
    parser.add_argument("--book", default="fifo:universal", help="method:pool")
    args = parser.parse_args()
    book = parse_book(args.book)

    started = time.perf_counter()
    legs = generate(args.legs, args.accounts, args.assets)
    last_day = max(leg.close_date for leg in legs)
    print(f"generated {len(legs):,} legs, {args.accounts} accounts, {args.assets} assets, "
          f"{START} .. {last_day} in {time.perf_counter() - started:.1f}s (RSS {rss_mb():,.0f} MB)", flush=True)

    started, cpu = time.perf_counter(), time.process_time()
    prices = FairValues(map_ledger_prices(legs))
    full = compute_book(legs, method=book.method, pool=book.pool, fair_values=prices,
                        report_from=last_day - timedelta(days=1), report_to=last_day, keep_states=True)
    full_seconds, full_cpu = time.perf_counter() - started, time.process_time() - cpu
    print(f"full recompute {book.label}: {full_seconds:.1f}s wall, {full_cpu:.1f}s CPU (incl. building the price lookup), "
          f"{len(full.disposals):,} disposals, "
          f"{len(full.states[-1].lots):,} open lots, {len(full.rollforward):,} pools tie out, "
          f"{len(full.shortfalls)} shortfalls; peak RSS {rss_mb():,.0f} MB", flush=True)

    state = full.states[0]  # end of the second-to-last day
    new_day = [leg for leg in legs if leg.close_date == last_day]
    started, cpu = time.perf_counter(), time.process_time()
    day_prices = FairValues(map_ledger_prices(new_day))  # the daily close loads only the new day's prices too
    incremental = compute_book(new_day, method=book.method, pool=book.pool, fair_values=day_prices, start_state=state,
                               report_from=last_day, report_to=last_day, keep_states=True)
    inc_seconds, inc_cpu = time.perf_counter() - started, time.process_time() - cpu
    same = (incremental.disposals == [d for d in full.disposals if d.date == last_day]
            and incremental.states[-1] == full.states[-1])
    print(f"one new day ({last_day}, {len(new_day):,} legs) from the stored state of {state.as_of} "
          f"({len(state.lots):,} open lots): {inc_seconds:.2f}s wall, {inc_cpu:.2f}s CPU; same result as the full run: {same}", flush=True)
    print(f"peak RSS {rss_mb():,.0f} MB")
    if not same:
        raise SystemExit("incremental result differs from the full recompute")


if __name__ == "__main__":
    main()

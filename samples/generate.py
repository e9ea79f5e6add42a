#!/usr/bin/env python3
"""Deterministic generator of Coinfrs sample data (ledger CSV + balances CSV).

Two datasets:

* ``sample``: the bundled fictitious fund "Northwind Digital Fund" (entity ``northwind``),
  60 days, 4 accounts, about 2,000 ledger rows and exactly 2 deliberate breaks
  (see ``samples/fund/README.md``, which this script also writes)::

      python samples/generate.py sample --out samples/fund

* ``bench``: a larger dataset without breaks, for benchmarks::

      python samples/generate.py bench --out DIR --years 5 --rows 10000 --accounts 3 --start 2021-01-01
      python samples/generate.py bench --out DIR ... --extra-day   # also *_extra_day.csv

Everything is seeded (``random.Random`` with a string seed), uses only the standard library,
and every number is a ``decimal.Decimal`` built from ints or strings (no floats anywhere), so
the output is byte-for-byte reproducible.

Conventions of the generated data (the same as the file formats'):

* Ledger timestamps are whole seconds in UTC; no leg is ever generated at exactly 00:00:00Z.
* A balance row at ``D+1T00:00:00Z`` is the end-of-day balance of day ``D``: the exact sum of
  all legs of that account and asset with ``timestamp <= cutoff``. Balance rows for an
  (account, asset) start on the first day that account has a leg in that asset and then
  appear every day (``0`` when the holding is empty).
* BUY/SELL with an empty quote are against USD for exactly ``quantity * unit_price_usd``;
  the generator picks quantity/price precisions so that this product always has at most
  2 decimals. With an explicit quote (USD or USDC), ``quote_quantity`` is
  ``quantity * unit_price_usd / usd_price(quote)`` rounded half-even to the quote asset's
  decimals (exact ties are never generated, so any half-rounding mode agrees). The USDC/USD
  price used is written in the row's notes.
"""

from __future__ import annotations

import argparse
import csv
import heapq
import random
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any, Callable

LEDGER_COLUMNS = (
    "id",
    "timestamp",
    "action",
    "asset",
    "quantity",
    "unit_price_usd",
    "fee_asset",
    "fee_amount",
    "quote_asset",
    "quote_quantity",
    "account",
    "tx_hash",
    "external_id",
    "notes",
)
BALANCE_COLUMNS = ("timestamp", "account", "account_type", "sub_account", "asset", "quantity")

ACTIONS = ("BUY", "SELL", "TRANSFER_IN", "TRANSFER_OUT", "FEE", "INCOME", "STAKING_REWARD", "AIRDROP")
IN_ACTIONS = ("TRANSFER_IN", "INCOME", "STAKING_REWARD", "AIRDROP")
OUT_ACTIONS = ("TRANSFER_OUT", "FEE")
PRICED_ACTIONS = ("BUY", "SELL", "INCOME", "STAKING_REWARD", "AIRDROP")

DECIMALS = {"BTC": 8, "ETH": 18, "SOL": 9, "USDC": 6, "USD": 2}
ASSET_ORDER = ("BTC", "ETH", "SOL", "USDC", "USD")
CRYPTO = ("BTC", "ETH", "SOL")
# Lot size (fractional digits) of traded quantities; ETH is capped at 8 on purpose.
LOT_DP = {"BTC": 8, "ETH": 8, "SOL": 6, "USDC": 2}
# Fractional digits of transferred quantities (round-ish amounts, like a human would send).
TRANSFER_DP = {"BTC": 4, "ETH": 3, "SOL": 2, "USDC": 2}

SAMPLE_SEED = "northwind-2026"
BENCH_SEED = "coinfrs-bench"
SAMPLE_START = date(2026, 1, 1)
SAMPLE_DAYS = 60  # 2026-01-01 .. 2026-03-01 inclusive
SAMPLE_BREAK_FEE_DAY = date(2026, 1, 20)  # Kraken USD: fee charged by the source, absent from the ledger
SAMPLE_BREAK_REWARD_DAY = date(2026, 2, 14)  # Solana Staking SOL: reward received, absent from the ledger

SECONDS_PER_DAY = 86400
FIRST_SECOND = 60  # earliest generated second of a day (never exactly midnight)
LAST_SECOND = SECONDS_PER_DAY - 60
CENT = Decimal("0.01")
UTC = timezone.utc


# --------------------------------------------------------------------------- numbers & text


def unit(dp: int) -> Decimal:
    """10**-dp as a Decimal (used as a quantize exponent)."""
    return Decimal(1).scaleb(-dp)


def fmt_dec(value: Decimal | None) -> str:
    """Plain decimal text: no exponent, trailing zeros stripped, zero as ``0``."""
    if value is None:
        return ""
    if value == 0:
        return "0"
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def fmt_ts(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def round_no_tie(value: Decimal, dp: int) -> Decimal | None:
    """Round half-even to ``dp`` digits, or None when ``value`` is exactly halfway."""
    scaled = value.scaleb(dp)
    frac = abs(scaled - scaled.to_integral_value(rounding=ROUND_DOWN))
    if frac == Decimal("0.5"):
        return None
    return value.quantize(unit(dp), rounding=ROUND_HALF_EVEN)


def row_legs(row: dict[str, Any]) -> list[tuple[str, Decimal]]:
    """Signed balance changes (asset, delta) of ``row['account']`` for one ledger row."""
    action = row["action"]
    asset = row["asset"]
    qty: Decimal = row["quantity"]
    legs: list[tuple[str, Decimal]] = []
    if action in ("BUY", "SELL"):
        sign = 1 if action == "BUY" else -1
        legs.append((asset, sign * qty))
        if row["quote_asset"]:
            legs.append((row["quote_asset"], -sign * row["quote_quantity"]))
        else:
            legs.append(("USD", -sign * qty * row["unit_price_usd"]))
    elif action in IN_ACTIONS:
        legs.append((asset, qty))
    elif action in OUT_ACTIONS:
        legs.append((asset, -qty))
    else:  # pragma: no cover - guarded by ACTIONS
        raise ValueError(f"unknown action {action!r}")
    if row["fee_amount"] is not None:
        legs.append((row["fee_asset"], -row["fee_amount"]))
    return legs


def weighted_choice(rng: random.Random, options: tuple[tuple[str, int], ...]) -> str:
    total = sum(w for _, w in options)
    pick = rng.randint(1, total)
    for value, weight in options:
        pick -= weight
        if pick <= 0:
            return value
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------- model


@dataclass(frozen=True)
class Account:
    name: str
    type: str  # spot, margin, futures, funding, wallet, vault
    style: str  # prime (USD only), kraken (USD + USDC), cold, staking


@dataclass(frozen=True)
class Adjustment:
    """A balance change the source reports but the ledger does not contain (a deliberate break)."""

    timestamp: datetime
    account: str
    asset: str
    delta: Decimal


class Prices:
    """Daily random walks (2-dp USD prices); intraday price interpolates open->close plus noise."""

    def __init__(self, rng: random.Random, ndays: int, spec: dict[str, tuple[Decimal, int]]):
        self.open: dict[str, list[Decimal]] = {}
        self.close: dict[str, list[Decimal]] = {}
        for asset, (start, vol_bps) in spec.items():
            opens: list[Decimal] = []
            closes: list[Decimal] = []
            price = start
            for _ in range(ndays):
                # sum of 3 uniforms: bell-shaped daily return with std ~= vol_bps basis points
                ret = sum(rng.randint(-vol_bps, vol_bps) for _ in range(3))
                if price > start * 3:  # keep long walks in a plausible band
                    ret -= vol_bps
                elif price * 3 < start:
                    ret += vol_bps
                close = (price * (10000 + ret) / 10000).quantize(CENT)
                close = max(close, Decimal("0.10"))
                opens.append(price)
                closes.append(close)
                price = close
            self.open[asset] = opens
            self.close[asset] = closes
        self.usdc: list[Decimal] = []
        for _ in range(ndays):
            if rng.randint(1, 100) <= 55:
                self.usdc.append(Decimal(1))
            else:
                self.usdc.append(Decimal(10000 + rng.choice((-2, -1, 1, 2))) / 10000)

    def at(self, asset: str, day: int, secs: int, rng: random.Random) -> Decimal:
        if asset == "USD":
            return Decimal(1)
        if asset == "USDC":
            return self.usdc[day]
        opening = self.open[asset][day]
        closing = self.close[asset][day]
        base = opening + (closing - opening) * secs / SECONDS_PER_DAY
        noise = rng.randint(-12, 12)
        return (base * (10000 + noise) / 10000).quantize(CENT)

    def mark(self, asset: str, day: int) -> Decimal:
        if asset == "USD":
            return Decimal(1)
        if asset == "USDC":
            return self.usdc[day]
        return self.close[asset][day]


PRIME_MIX = (("BTC", 45), ("ETH", 40), ("SOL", 15))
KRAKEN_MIX = (("BTC", 30), ("ETH", 35), ("SOL", 20), ("USDC", 15))
TRADE_NOTES = ("market order", "limit order", "TWAP slice", "RFQ fill", "rebalance")


class Simulator:
    """Generates ledger rows in time order, keeping every account's true (source) balances.

    Every row is checked before it is emitted: no account may go negative in any asset.
    """

    def __init__(self, rng: random.Random, prices: Prices, accounts: list[Account], start: date):
        self.rng = rng
        self.prices = prices
        self.accounts = accounts
        self.by_name = {a.name: a for a in accounts}
        self.start = start
        self.bal: defaultdict[tuple[str, str], Decimal] = defaultdict(Decimal)
        self.rows: list[dict[str, Any]] = []
        self.adjustments: list[Adjustment] = []
        self.day = 0
        self.transfers = 0
        self.omitted_reward: dict[str, Any] | None = None
        self._heap: list[tuple[int, int, Callable[..., Any], tuple[Any, ...]]] = []
        self._seq = 0

    # ---- scheduling

    def timestamp(self, secs: int) -> datetime:
        return datetime.combine(self.start, time(0, 0), tzinfo=UTC) + timedelta(days=self.day, seconds=secs)

    def schedule(self, secs: int, fn: Callable[..., Any], *args: Any) -> None:
        assert 0 < secs < SECONDS_PER_DAY, secs
        heapq.heappush(self._heap, (secs, self._seq, fn, args))
        self._seq += 1

    def run_day(self, day: int) -> None:
        self.day = day
        while self._heap:
            secs, _, fn, args = heapq.heappop(self._heap)
            fn(secs, *args)

    # ---- rows

    def new_row(
        self,
        secs: int,
        account: str,
        action: str,
        asset: str,
        quantity: Decimal,
        *,
        price: Decimal | None = None,
        fee_asset: str | None = None,
        fee: Decimal | None = None,
        quote_asset: str | None = None,
        quote_quantity: Decimal | None = None,
        tx_hash: str = "",
        external_id: str = "",
        notes: str = "",
    ) -> dict[str, Any]:
        return {
            "id": "",
            "timestamp": self.timestamp(secs),
            "action": action,
            "asset": asset,
            "quantity": quantity,
            "unit_price_usd": price,
            "fee_asset": fee_asset if fee is not None else None,
            "fee_amount": fee,
            "quote_asset": quote_asset,
            "quote_quantity": quote_quantity,
            "account": account,
            "tx_hash": tx_hash,
            "external_id": external_id,
            "notes": notes,
        }

    def emit(self, row: dict[str, Any]) -> bool:
        """Append ``row`` if no balance of its account would go negative; apply its legs."""
        assert row["quantity"] > 0
        assert row["fee_amount"] is None or row["fee_amount"] > 0
        assert row["quote_quantity"] is None or row["quote_quantity"] > 0
        assert row["timestamp"].time() != time(0, 0)
        account = row["account"]
        net: defaultdict[str, Decimal] = defaultdict(Decimal)
        for asset, delta in row_legs(row):
            net[asset] += delta
        for asset, delta in net.items():
            if self.bal[(account, asset)] + delta < 0:
                return False
        for asset, delta in net.items():
            self.bal[(account, asset)] += delta
        self.rows.append(row)
        return True

    # ---- ids / hashes

    def hex_id(self, nbits: int) -> str:
        return format(self.rng.getrandbits(nbits), f"0{nbits // 4}x")

    def tx_hash(self) -> str:
        return "0x" + self.hex_id(256)

    def order_id(self, account: Account) -> str:
        if account.style == "prime":
            h = self.hex_id(128)
            return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
        alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
        chars = "".join(self.rng.choice(alphabet) for _ in range(16))
        return f"O{chars[:5]}-{chars[5:10]}-{chars[10:]}"

    # ---- trades

    def _notional(self) -> Decimal:
        roll = self.rng.randint(1, 100)
        if roll <= 60:
            cents = self.rng.randint(5_000_00, 50_000_00)
        elif roll <= 90:
            cents = self.rng.randint(50_000_00, 250_000_00)
        else:
            cents = self.rng.randint(250_000_00, 1_000_000_00)
        return Decimal(cents) / 100

    def _side(self, account: str, asset: str) -> str:
        bal = self.bal
        if asset == "USDC":
            usd, usdc = bal[(account, "USD")], bal[(account, "USDC")]
            share = usdc / (usd + usdc) if usd + usdc > 0 else Decimal(0)
            p_sell = 65 if share > Decimal("0.35") else 25
        else:
            crypto = sum((bal[(account, a)] * self.prices.mark(a, self.day) for a in CRYPTO), Decimal(0))
            cash = bal[(account, "USD")] + bal[(account, "USDC")]
            share = crypto / (crypto + cash) if crypto + cash > 0 else Decimal(0)
            if share > Decimal("0.6"):
                p_sell = 72
            elif share < Decimal("0.3"):
                p_sell = 22
            else:
                p_sell = 47
        return "SELL" if self.rng.randint(1, 100) <= p_sell else "BUY"

    def build_trade(
        self,
        secs: int,
        account: Account,
        *,
        asset: str | None = None,
        side: str | None = None,
        quote: str | None = None,
        notional: Decimal | None = None,
        flip: bool = False,
    ) -> dict[str, Any] | None:
        rng = self.rng
        name = account.name
        if asset is None:
            asset = weighted_choice(rng, PRIME_MIX if account.style == "prime" else KRAKEN_MIX)
        if quote is None:
            if asset == "USDC":
                quote = "USD"
            elif account.style == "prime":
                quote = "implicit"
            elif asset == "ETH" and rng.randint(1, 100) <= 50:
                quote = "USDC"
            else:
                quote = rng.choice(("implicit", "USD"))
        if side is None:
            side = self._side(name, asset)
            if flip:
                side = "SELL" if side == "BUY" else "BUY"
        price = self.prices.at(asset, self.day, secs, rng)
        usdc_px = self.prices.usdc[self.day]
        if notional is None:
            notional = self._notional()
        if side == "BUY":
            if quote == "USDC":
                cash = self.bal[(name, "USDC")] * usdc_px
            else:
                cash = self.bal[(name, "USD")]
            notional = min(notional, cash / 4)
        else:
            notional = min(notional, self.bal[(name, asset)] * price * 6 / 10)
        if notional < 500:
            return None

        quote_asset: str | None = None
        quote_qty: Decimal | None = None
        if quote == "implicit":
            # quantity with k decimals and price with 2-k decimals: the USD leg has <= 2 decimals
            ks = [k for k in (0, 1, 2) if price >= Decimal(10) ** k and notional / price >= 5 * unit(k)]
            if ks:
                k = rng.choice(ks)
                price = price.quantize(unit(2 - k))
                qty = (notional / price).quantize(unit(k), rounding=ROUND_DOWN)
            else:
                quote = "USD"
        if quote != "implicit":
            quote_asset = quote
            quote_px = usdc_px if quote == "USDC" else Decimal(1)
            lot = unit(LOT_DP[asset])
            qty = (notional / price).quantize(lot, rounding=ROUND_DOWN)
            for _ in range(3):
                quote_qty = round_no_tie(qty * price / quote_px, DECIMALS[quote])
                if quote_qty is not None:
                    break
                qty -= lot
            if quote_qty is None or quote_qty <= 0:
                return None
        if qty <= 0:
            return None
        usd_value = qty * price

        # fees
        fee_asset: str | None
        if account.style == "prime":
            fee_asset, bps = "USD", rng.randint(5, 25)
        elif asset == "USDC":
            fee_asset, bps = ("USD", rng.randint(1, 4)) if rng.randint(1, 100) <= 50 else (None, 0)
        elif quote == "USDC":
            fee_asset, bps = ("USDC" if rng.randint(1, 100) <= 80 else "USD"), rng.randint(10, 26)
        else:
            fee_asset, bps = ("USD", rng.randint(10, 26)) if rng.randint(1, 100) <= 95 else (None, 0)
        fee: Decimal | None = None
        if fee_asset == "USDC":
            assert quote_qty is not None
            fee = max((quote_qty * bps / 10000).quantize(unit(6)), unit(6))
        elif fee_asset == "USD":
            fee = max((usd_value * bps / 10000).quantize(CENT), CENT)

        note = rng.choice(TRADE_NOTES)
        if quote_asset == "USDC":
            note = f"{note}; {asset}/USDC; USDC/USD {fmt_dec(usdc_px)}"
        return self.new_row(
            secs,
            name,
            side,
            asset,
            qty,
            price=price,
            fee_asset=fee_asset,
            fee=fee,
            quote_asset=quote_asset,
            quote_quantity=quote_qty,
            external_id=self.order_id(account),
            notes=note,
        )

    def trade(self, secs: int, name: str, must: bool = False) -> bool:
        account = self.by_name[name]
        for attempt in range(6):
            row = self.build_trade(secs, account, flip=attempt >= 3)
            if row is not None and self.emit(row):
                return True
        if must:  # keeps an exact row count (bench): an extra capital contribution
            self.income(secs, name, "USD", Decimal(1_000_000), "additional capital contribution")
            return True
        return False

    def forced_trade(self, secs: int, name: str, asset: str, side: str, notional: Decimal) -> None:
        row = self.build_trade(secs, self.by_name[name], asset=asset, side=side, quote="USD", notional=notional)
        assert row is not None and self.emit(row), "forced trade failed"

    # ---- transfers

    def network_fee(self, asset: str) -> Decimal:
        if asset == "BTC":
            return Decimal(self.rng.randint(500, 5000)) * unit(8)
        if asset == "ETH":
            return Decimal(self.rng.randint(20_000, 200_000)) * unit(8)
        if asset == "SOL":
            return Decimal(self.rng.randint(5_000, 15_000)) * unit(9)
        return Decimal(self.rng.randint(100, 300)) / 100  # USDC

    def transfer(self, secs: int, src: str, dst: str, assets: tuple[str, ...], pct: tuple[int, int]) -> bool:
        """Internal transfer src -> dst of the first asset in ``assets`` that src can send."""
        for asset in assets:
            held = self.bal[(src, asset)]
            fee = self.network_fee(asset)
            frac = Decimal(self.rng.randint(*pct)) / 100
            qty = ((held - fee) * frac).quantize(unit(TRANSFER_DP[asset]), rounding=ROUND_DOWN)
            if qty <= 0 or qty * self.prices.mark(asset, self.day) < 1000:
                continue
            txh = self.tx_hash()
            src_acct, dst_acct = self.by_name[src], self.by_name[dst]
            ext = self.order_id(src_acct) if src_acct.style in ("prime", "kraken") else ""
            out = self.new_row(
                secs, src, "TRANSFER_OUT", asset, qty, fee_asset=asset, fee=fee, tx_hash=txh,
                external_id=ext, notes=f"withdrawal to {dst}",
            )
            if not self.emit(out):
                continue
            delay = self.rng.randint(120, 2400)
            ext_in = self.order_id(dst_acct) if dst_acct.style in ("prime", "kraken") else ""
            self.schedule(secs + delay, self._transfer_in, dst, asset, qty, txh, ext_in, src)
            self.transfers += 1
            return True
        return False

    def _transfer_in(self, secs: int, dst: str, asset: str, qty: Decimal, txh: str, ext: str, src: str) -> None:
        row = self.new_row(secs, dst, "TRANSFER_IN", asset, qty, tx_hash=txh, external_id=ext, notes=f"deposit from {src}")
        assert self.emit(row)

    # ---- other events

    def income(self, secs: int, name: str, asset: str, qty: Decimal, note: str) -> None:
        price = self.prices.at(asset, self.day, secs, self.rng)
        assert self.emit(self.new_row(secs, name, "INCOME", asset, qty, price=price, notes=note))

    def fee(self, secs: int, name: str, asset: str, qty: Decimal, note: str) -> None:
        assert self.emit(self.new_row(secs, name, "FEE", asset, qty, notes=note)), note

    def airdrop(self, secs: int, name: str, asset: str, qty: Decimal, note: str) -> None:
        price = self.prices.at(asset, self.day, secs, self.rng)
        assert self.emit(self.new_row(secs, name, "AIRDROP", asset, qty, price=price, notes=note))

    def staking_reward(self, secs: int, name: str, omit_from_ledger: bool = False) -> None:
        staked = self.bal[(name, "SOL")]
        rate = Decimal(7) / 100 / 365 * Decimal(self.rng.randint(95, 105)) / 100
        qty = (staked * rate).quantize(unit(9), rounding=ROUND_DOWN)
        if qty <= 0:
            return
        price = self.prices.at("SOL", self.day, secs, self.rng)
        epoch = 900 + self.day // 2
        row = self.new_row(
            secs, name, "STAKING_REWARD", "SOL", qty, price=price, external_id=f"epoch-{epoch}",
            notes="validator reward (inflation)",
        )
        assert self.emit(row)
        if omit_from_ledger:
            self.rows.pop()
            self.adjustments.append(Adjustment(row["timestamp"], name, "SOL", qty))
            self.omitted_reward = row


# --------------------------------------------------------------------------- output


def assign_ids(rows: list[dict[str, Any]], first: int = 1, width: int = 6) -> None:
    for i, row in enumerate(rows, start=first):
        row["id"] = f"L{i:0{width}d}"


def ledger_lines(rows: list[dict[str, Any]]) -> list[list[str]]:
    out = []
    for r in rows:
        out.append(
            [
                r["id"],
                fmt_ts(r["timestamp"]),
                r["action"],
                r["asset"],
                fmt_dec(r["quantity"]),
                fmt_dec(r["unit_price_usd"]),
                r["fee_asset"] or "",
                fmt_dec(r["fee_amount"]),
                r["quote_asset"] or "",
                fmt_dec(r["quote_quantity"]),
                r["account"],
                r["tx_hash"],
                r["external_id"],
                r["notes"],
            ]
        )
    return out


def compute_balances(
    rows: list[dict[str, Any]],
    adjustments: list[Adjustment],
    accounts: list[Account],
    start: date,
    ndays: int,
) -> list[list[str]]:
    """End-of-day balance rows (as CSV cells) for days 0..ndays-1, ledger legs + adjustments."""
    order = {a.name: i for i, a in enumerate(accounts)}
    types = {a.name: a.type for a in accounts}
    per_day: defaultdict[tuple[str, str], defaultdict[int, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    first: dict[tuple[str, str], int] = {}

    def add(ts: datetime, account: str, asset: str, delta: Decimal) -> None:
        assert ts.time() != time(0, 0)
        day = (ts.date() - start).days
        key = (account, asset)
        per_day[key][day] += delta
        first[key] = min(first.get(key, day), day)

    for r in rows:
        for asset, delta in row_legs(r):
            add(r["timestamp"], r["account"], asset, delta)
    for adj in adjustments:
        add(adj.timestamp, adj.account, adj.asset, adj.delta)

    keys = sorted(per_day, key=lambda k: (order[k[0]], ASSET_ORDER.index(k[1])))
    running = {k: Decimal(0) for k in keys}
    out: list[list[str]] = []
    for day in range(ndays):
        cutoff = datetime.combine(start + timedelta(days=day + 1), time(0, 0), tzinfo=UTC)
        for key in keys:
            running[key] += per_day[key].get(day, Decimal(0))
            if day >= first[key]:
                out.append([fmt_ts(cutoff), key[0], types[key[0]], "", key[1], fmt_dec(running[key])])
    return out


def write_csv(path: Path, header: tuple[str, ...], lines: list[list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(lines)


def check_final(sim: Simulator, balances_last: dict[tuple[str, str], Decimal]) -> None:
    """Self-check: reported end balances equal the simulator's true balances."""
    for key, value in sim.bal.items():
        if value != 0 or key in balances_last:
            assert balances_last.get(key, Decimal(0)) == value, (key, balances_last.get(key), value)


def last_balances(balance_lines: list[list[str]]) -> dict[tuple[str, str], Decimal]:
    last: dict[tuple[str, str], Decimal] = {}
    for ts, account, _type, _sub, asset, qty in balance_lines:
        last[(account, asset)] = Decimal(qty)
    return last


# --------------------------------------------------------------------------- the bundled sample

SAMPLE_ACCOUNTS = [
    Account("Coinbase Prime", "spot", "prime"),
    Account("Kraken", "spot", "kraken"),
    Account("Ledger Cold", "wallet", "cold"),
    Account("Solana Staking", "wallet", "staking"),
]
SAMPLE_PRICES = {
    "BTC": (Decimal("90000"), 250),
    "ETH": (Decimal("3000"), 350),
    "SOL": (Decimal("150"), 450),
}
# (source, destination, assets in order of preference, percent range of holdings, count, earliest day)
SAMPLE_TRANSFERS = (
    ("Coinbase Prime", "Ledger Cold", ("BTC", "ETH"), (30, 60), 10, 2),
    ("Coinbase Prime", "Ledger Cold", ("ETH", "BTC"), (30, 60), 6, 2),
    ("Kraken", "Ledger Cold", ("BTC", "ETH"), (30, 60), 4, 2),
    ("Kraken", "Ledger Cold", ("ETH", "BTC"), (30, 60), 4, 2),
    ("Ledger Cold", "Coinbase Prime", ("BTC", "ETH"), (10, 25), 2, 25),
    ("Ledger Cold", "Coinbase Prime", ("ETH", "BTC"), (10, 25), 1, 25),
    ("Ledger Cold", "Kraken", ("ETH", "BTC"), (10, 25), 2, 25),
    ("Ledger Cold", "Kraken", ("BTC", "ETH"), (10, 25), 1, 25),
    ("Kraken", "Solana Staking", ("SOL",), (40, 80), 9, 3),
)


def generate_sample(out_dir: str | Path, seed: str = SAMPLE_SEED) -> dict[str, Any]:
    """Write ledger.csv, balances.csv and README.md of the Northwind sample into ``out_dir``.

    Returns a summary (row counts and the details of the 2 deliberate breaks).
    """
    out = Path(out_dir)
    start, ndays = SAMPLE_START, SAMPLE_DAYS
    rng = random.Random(f"{seed}/events")
    prices = Prices(random.Random(f"{seed}/prices"), ndays, SAMPLE_PRICES)
    sim = Simulator(rng, prices, SAMPLE_ACCOUNTS, start)
    fee_day = (SAMPLE_BREAK_FEE_DAY - start).days
    reward_day = (SAMPLE_BREAK_REWARD_DAY - start).days

    plan: defaultdict[int, list[tuple[str, str, tuple[str, ...], tuple[int, int]]]] = defaultdict(list)
    for src, dst, assets, pct, count, earliest in SAMPLE_TRANSFERS:
        days = [d for d in range(earliest, ndays) if d not in (fee_day, reward_day)]
        for d in sorted(rng.sample(days, count)):
            plan[d].append((src, dst, assets, pct))

    cold_fee_day = 39  # 2026-02-09
    special: dict[int, list[tuple[Any, ...]]] = {
        30: [("fee", "Coinbase Prime", "USD", Decimal(rng.randint(150_000, 450_000)) / 100, "January custody fee")],
        31: [("fee", "Kraken", "USD", Decimal(250), "monthly account fee (institutional tier)")],
        33: [("income_usdc", "Kraken", "USDC rewards program payout")],
        35: [("fee", "Kraken", "USDC", Decimal("4.5"), "USDC withdrawal fee (withdrawal cancelled)")],
        cold_fee_day: [("fee", "Ledger Cold", "ETH", Decimal(rng.randint(80_000, 250_000)) * unit(8), "gas: token approval revoke")],
        47: [("airdrop", "Solana Staking", "SOL", Decimal(rng.randint(1_000, 5_000)) / 100, "ecosystem airdrop claim")],
        50: [("fee", "Solana Staking", "SOL", Decimal("0.00228288"), "stake account rent (new stake account)")],
        58: [("fee", "Coinbase Prime", "USD", Decimal(rng.randint(150_000, 450_000)) / 100, "February custody fee")],
    }

    break_fee: dict[str, Any] = {}
    for d in range(ndays):
        lo = 400 if d == 0 else FIRST_SECOND
        if d == 0:
            sim.schedule(rng.randint(60, 300), sim.income, "Coinbase Prime", "USD", Decimal(40_000_000),
                         "capital contribution (wire from fund administrator)")
            sim.schedule(rng.randint(60, 300), sim.income, "Kraken", "USD", Decimal(25_000_000),
                         "capital contribution (wire from fund administrator)")
            sim.schedule(rng.randint(900, 1800), sim.forced_trade, "Kraken", "SOL", "BUY", Decimal(3_000_000))
            sim.schedule(rng.randint(3600, 7200), sim.transfer, "Kraken", "Solana Staking", ("SOL",), (85, 95))
        for _ in range(rng.randint(10, 18)):
            sim.schedule(rng.randint(lo, LAST_SECOND), sim.trade, "Coinbase Prime")
        for _ in range(rng.randint(12, 22)):
            sim.schedule(rng.randint(lo, LAST_SECOND), sim.trade, "Kraken")
        for src, dst, assets, pct in plan.get(d, []):
            sim.schedule(rng.randint(FIRST_SECOND, SECONDS_PER_DAY - 3000), sim.transfer, src, dst, assets, pct)
        if d >= 1 and (d == reward_day or rng.randint(1, 100) <= 85):
            sim.schedule(rng.randint(FIRST_SECOND, LAST_SECOND), sim.staking_reward, "Solana Staking", d == reward_day)
        for item in special.get(d, []):
            secs = rng.randint(FIRST_SECOND, LAST_SECOND)
            if item[0] == "fee":
                sim.schedule(secs, sim.fee, *item[1:])
            elif item[0] == "airdrop":
                sim.schedule(secs, sim.airdrop, *item[1:])
            elif item[0] == "income_usdc":
                held = sim.bal[(item[1], "USDC")]
                qty = (held * 4 / 10000).quantize(unit(6)) if held >= 1000 else Decimal("125.5")
                sim.schedule(secs, sim.income, item[1], "USDC", qty, item[2])
        sim.run_day(d)

        if d == fee_day:
            # Break 1: the source charged this trade's USD fee; the ledger row loses it.
            candidates = [
                r for r in sim.rows
                if r["account"] == "Kraken" and r["action"] in ("BUY", "SELL") and r["fee_asset"] == "USD"
                and (r["timestamp"].date() - start).days == d
            ]
            victim = rng.choice(candidates)
            amount = victim["fee_amount"]
            victim["fee_asset"] = None
            victim["fee_amount"] = None
            sim.adjustments.append(Adjustment(victim["timestamp"], "Kraken", "USD", -amount))
            break_fee = {"row": victim, "amount": amount}

    assign_ids(sim.rows)
    balances = compute_balances(sim.rows, sim.adjustments, SAMPLE_ACCOUNTS, start, ndays)
    check_final(sim, last_balances(balances))
    write_csv(out / "ledger.csv", LEDGER_COLUMNS, ledger_lines(sim.rows))
    write_csv(out / "balances.csv", BALANCE_COLUMNS, balances)

    reward_row = sim.omitted_reward
    breaks = [
        _break_detail(sim.rows, balances, SAMPLE_BREAK_FEE_DAY, "Kraken", "USD", -break_fee["amount"]),
        _break_detail(sim.rows, balances, SAMPLE_BREAK_REWARD_DAY, "Solana Staking", "SOL", reward_row["quantity"]),
    ]
    breaks[0].update(
        kind="missing_fee",
        ledger_row_id=break_fee["row"]["id"],
        ledger_row_timestamp=fmt_ts(break_fee["row"]["timestamp"]),
        ledger_row_action=break_fee["row"]["action"],
        ledger_row_asset=break_fee["row"]["asset"],
        ledger_row_external_id=break_fee["row"]["external_id"],
    )
    breaks[1].update(
        kind="missing_staking_reward",
        reward_timestamp=fmt_ts(reward_row["timestamp"]),
        reward_unit_price_usd=reward_row["unit_price_usd"],
        reward_external_id=reward_row["external_id"],
    )
    summary = {
        "entity": "northwind",
        "ledger_rows": len(sim.rows),
        "balance_rows": len(balances),
        "transfers": sim.transfers,
        "actions": Counter(r["action"] for r in sim.rows),
        "accounts": Counter(r["account"] for r in sim.rows),
        "breaks": breaks,
    }
    (out / "README.md").write_text(_sample_readme(summary), encoding="utf-8")
    return summary


def _break_detail(
    rows: list[dict[str, Any]], balances: list[list[str]], day: date, account: str, asset: str, diff: Decimal
) -> dict[str, Any]:
    prev_cutoff = fmt_ts(datetime.combine(day, time(0, 0), tzinfo=UTC))
    cutoff = fmt_ts(datetime.combine(day + timedelta(days=1), time(0, 0), tzinfo=UTC))
    reported = {b[0]: Decimal(b[5]) for b in balances if b[1] == account and b[4] == asset}
    day_legs = sum(
        (delta for r in rows if r["account"] == account and r["timestamp"].date() == day
         for a, delta in row_legs(r) if a == asset),
        Decimal(0),
    )
    expected = reported[prev_cutoff] + day_legs
    assert reported[cutoff] - expected == diff
    return {
        "date": day.isoformat(),
        "account": account,
        "asset": asset,
        "cutoff": cutoff,
        "previous_reported": reported[prev_cutoff],
        "ledger_day_change": day_legs,
        "expected": expected,
        "reported": reported[cutoff],
        "difference": diff,
    }


def _sample_readme(s: dict[str, Any]) -> str:
    b1, b2 = s["breaks"]
    actions = ", ".join(f"{a} {s['actions'][a]}" for a in ACTIONS if s["actions"][a])
    per_account = ", ".join(f"{a.name} {s['accounts'][a.name]}" for a in SAMPLE_ACCOUNTS)
    return f"""# Northwind Digital Fund — bundled sample

A small fictitious fund, entity name **`northwind`**, generated by `samples/generate.py`
(deterministic, seeded). Regenerate byte for byte with:

```
python samples/generate.py sample --out samples/fund
```

Period: **2026-01-01 to 2026-03-01** (60 days, UTC). Last balance cutoff: `2026-03-02T00:00:00Z`.

| file | rows (without header) |
|---|---|
| `ledger.csv` | {s['ledger_rows']} |
| `balances.csv` | {s['balance_rows']} |

- Ledger rows by action: {actions}.
- Ledger rows by account: {per_account}.
- Internal transfers: {s['transfers']}, each one TRANSFER_OUT row plus one TRANSFER_IN row sharing a
  `0x…` tx_hash, with the same quantity; the network fee is on the TRANSFER_OUT row.

## Accounts

| account | account_type | role |
|---|---|---|
| Coinbase Prime | spot | fiat on-ramp: BUY/SELL BTC, ETH, SOL against USD (quote columns empty = USD for `quantity × unit_price_usd`), fees in USD |
| Kraken | spot | BUY/SELL BTC, ETH, SOL, USDC against USD (quote empty or explicit `USD`) and ETH against USDC (explicit `USDC` quote); fees in the quote asset or USD |
| Ledger Cold | wallet | cold storage: receives BTC/ETH from both exchanges by internal transfers, sends some back |
| Solana Staking | wallet | SOL transferred in from Kraken; near-daily STAKING_REWARD rows |

Assets: BTC (8 decimals), ETH (18; generated quantities use at most 8), SOL (9), USDC (6), USD (2).
Both exchange accounts start on 2026-01-01 with an INCOME row "capital contribution" in USD at
`unit_price_usd` 1 (Coinbase Prime 40,000,000 USD, Kraken 25,000,000 USD). There are also one
USDC INCOME (rewards program), one AIRDROP (SOL) and a few standalone FEE rows (custody,
account, gas, stake-account rent).

Prices are random walks (BTC ~90,000, ETH ~3,000, SOL ~150 USD, at most 2 decimals; USDC 1 or
0.9998–1.0002). For USDC-quoted trades, `quote_quantity = quantity × unit_price_usd / USDC price`
rounded to 6 decimals; the USDC/USD price used is written in the row's `notes`.

## Balances

`balances.csv` has one row per account and per asset the account has held, every day from the
first day the account has a leg in that asset, at the day's cutoff `YYYY-MM-(DD+1)T00:00:00Z`
(the end of day DD in UTC). No account ever goes negative in any asset. No ledger leg is at exactly
midnight. Apart from the two breaks below, for every (account, asset, day):
`reported(day) = reported(previous day) + sum of that day's ledger legs` (first day:
`reported = sum of legs up to the cutoff`).

## The 2 deliberate breaks

Each break is on exactly one (account, asset, day). The source's later balances keep the
difference (the source really has it), so when each day is checked against the previous day's
reported balance, only the break day fails.

### 1. Missing fee — {b1['date']}, `Kraken`, USD

The ledger row **{b1['ledger_row_id']}** ({b1['ledger_row_action']} {b1['ledger_row_asset']} at {b1['ledger_row_timestamp']},
external_id `{b1['ledger_row_external_id']}`) has no fee, but Kraken charged a fee of **{fmt_dec(-b1['difference'])} USD** on that trade; the balances include it.

- reported at {b1['date']}T00:00:00Z (end of previous day): {fmt_dec(b1['previous_reported'])} USD
- ledger legs on {b1['date']}: {fmt_dec(b1['ledger_day_change'])} USD
- expected at {b1['cutoff']}: **{fmt_dec(b1['expected'])}** USD
- reported at {b1['cutoff']}: **{fmt_dec(b1['reported'])}** USD
- difference reported − expected: **{fmt_dec(b1['difference'])} USD**

All later Kraken USD balances are also lower by {fmt_dec(-b1['difference'])} USD than the cumulative ledger.

### 2. Missing staking reward — {b2['date']}, `Solana Staking`, SOL

A STAKING_REWARD of **{fmt_dec(b2['difference'])} SOL** received at {b2['reward_timestamp']}
(`{b2['reward_external_id']}`, {fmt_dec(b2['reward_unit_price_usd'])} USD/SOL) is absent from the ledger;
the balances include it.

- reported at {b2['date']}T00:00:00Z (end of previous day): {fmt_dec(b2['previous_reported'])} SOL
- ledger legs on {b2['date']}: {fmt_dec(b2['ledger_day_change'])} SOL
- expected at {b2['cutoff']}: **{fmt_dec(b2['expected'])}** SOL
- reported at {b2['cutoff']}: **{fmt_dec(b2['reported'])}** SOL
- difference reported − expected: **+{fmt_dec(b2['difference'])} SOL**

All later Solana Staking SOL balances are also higher by {fmt_dec(b2['difference'])} SOL than the
cumulative ledger.
"""


# --------------------------------------------------------------------------- benchmark dataset

BENCH_PRICES = {
    "BTC": (Decimal("30000"), 300),
    "ETH": (Decimal("1000"), 400),
    "SOL": (Decimal("20"), 500),
}
EXCHANGE_NAMES = ("Coinbase Prime", "Kraken", "Binance", "Bitstamp", "Gemini", "OKX", "Bybit", "Bitfinex")
WALLET_NAMES = (("Ledger Cold", "wallet"), ("Fireblocks Vault", "vault"), ("Safe Multisig", "wallet"))


def bench_accounts(n: int) -> list[Account]:
    if n < 1:
        raise ValueError("accounts must be >= 1")
    n_wallets = 0 if n == 1 else max(1, n // 3)
    n_exchanges = n - n_wallets
    out = []
    for i in range(n_exchanges):
        name = EXCHANGE_NAMES[i] if i < len(EXCHANGE_NAMES) else f"Exchange {i + 1}"
        out.append(Account(name, "spot", "prime" if i == 0 else "kraken"))
    for i in range(n_wallets):
        name, kind = WALLET_NAMES[i] if i < len(WALLET_NAMES) else (f"Wallet {i + 1}", "wallet")
        out.append(Account(name, kind, "cold"))
    return out


def _add_years(start: date, years: int) -> date:
    try:
        return start.replace(year=start.year + years)
    except ValueError:  # 29 February
        return start.replace(year=start.year + years, day=28) + timedelta(days=1)


def generate_bench(
    out_dir: str | Path,
    years: int = 5,
    rows: int = 10000,
    accounts: int = 3,
    start: str | date = "2021-01-01",
    extra_day: bool = False,
    seed: str = BENCH_SEED,
) -> dict[str, Any]:
    """Write DIR/ledger.csv and DIR/balances.csv: exactly ``rows`` ledger rows over ``years``
    years from ``start``, ``accounts`` accounts, daily balances, no breaks.

    With ``extra_day``, also DIR/ledger_extra_day.csv and DIR/balances_extra_day.csv: the ledger
    rows and balances of the day after the last day (ids continue; main files are unchanged).
    """
    out = Path(out_dir)
    start_date = date.fromisoformat(start) if isinstance(start, str) else start
    ndays = (_add_years(start_date, years) - start_date).days
    accts = bench_accounts(accounts)
    exchanges = [a.name for a in accts if a.style in ("prime", "kraken")]
    wallets = [a.name for a in accts if a.style == "cold"]
    if rows < len(exchanges):
        raise ValueError(f"rows must be >= {len(exchanges)}")

    rng = random.Random(f"{seed}/events/{start_date}/{years}/{rows}/{accounts}")
    prices = Prices(random.Random(f"{seed}/prices/{start_date}/{years}"), ndays + 1, BENCH_PRICES)
    sim = Simulator(rng, prices, accts, start_date)

    remaining = rows - len(exchanges)
    n_transfers = remaining // 50 if wallets else 0
    n_trades = remaining - 2 * n_transfers
    by_day: defaultdict[int, list[str]] = defaultdict(list)
    for kind in ["trade"] * n_trades + ["transfer"] * n_transfers:
        by_day[rng.randrange(ndays)].append(kind)

    def transfer_or_trades(secs: int) -> None:
        ex = rng.choice(exchanges)
        wallet = rng.choice(wallets)
        assets = list(CRYPTO)
        rng.shuffle(assets)
        if rng.randint(1, 100) <= 75:
            ok = sim.transfer(secs, ex, wallet, tuple(assets), (20, 60))
        else:
            ok = sim.transfer(secs, wallet, ex, tuple(assets), (10, 40))
        if not ok:  # nothing to send: two trades instead keep the row count exact
            sim.trade(secs + 1, rng.choice(exchanges), True)
            sim.trade(secs + 2, rng.choice(exchanges), True)

    for d in range(ndays):
        if d == 0:
            for name in exchanges:
                sim.schedule(rng.randint(10, 59), sim.income, name, "USD", Decimal(10_000_000),
                             "capital contribution")
        for kind in by_day.get(d, []):
            if kind == "trade":
                sim.schedule(rng.randint(FIRST_SECOND, LAST_SECOND), sim.trade, rng.choice(exchanges), True)
            else:
                sim.schedule(rng.randint(FIRST_SECOND, SECONDS_PER_DAY - 3000), transfer_or_trades)
        sim.run_day(d)
    assert len(sim.rows) == rows, (len(sim.rows), rows)

    width = max(6, len(str(rows + 100)))
    assign_ids(sim.rows, width=width)
    balances = compute_balances(sim.rows, [], accts, start_date, ndays)
    check_final(sim, last_balances(balances))
    write_csv(out / "ledger.csv", LEDGER_COLUMNS, ledger_lines(sim.rows))
    write_csv(out / "balances.csv", BALANCE_COLUMNS, balances)
    summary: dict[str, Any] = {
        "days": ndays,
        "ledger_rows": len(sim.rows),
        "balance_rows": len(balances),
        "accounts": [a.name for a in accts],
        "transfers": sim.transfers,
    }

    if extra_day:
        main_count = len(sim.rows)
        for _ in range(rng.randint(5, 12)):
            sim.schedule(rng.randint(FIRST_SECOND, LAST_SECOND), sim.trade, rng.choice(exchanges), True)
        sim.run_day(ndays)
        extra_rows = sim.rows[main_count:]
        assign_ids(extra_rows, first=main_count + 1, width=width)
        all_balances = compute_balances(sim.rows, [], accts, start_date, ndays + 1)
        check_final(sim, last_balances(all_balances))
        extra_cutoff = fmt_ts(datetime.combine(start_date + timedelta(days=ndays + 1), time(0, 0), tzinfo=UTC))
        extra_balances = [b for b in all_balances if b[0] == extra_cutoff]
        write_csv(out / "ledger_extra_day.csv", LEDGER_COLUMNS, ledger_lines(extra_rows))
        write_csv(out / "balances_extra_day.csv", BALANCE_COLUMNS, extra_balances)
        summary.update(extra_ledger_rows=len(extra_rows), extra_balance_rows=len(extra_balances))
    return summary


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command")
    p_sample = sub.add_parser("sample", help="regenerate the bundled Northwind sample")
    p_sample.add_argument("--out", default=str(Path(__file__).resolve().parent / "fund"))
    p_bench = sub.add_parser("bench", help="generate a benchmark dataset (no breaks)")
    p_bench.add_argument("--out", required=True)
    p_bench.add_argument("--years", type=int, default=5)
    p_bench.add_argument("--rows", type=int, default=10000)
    p_bench.add_argument("--accounts", type=int, default=3)
    p_bench.add_argument("--start", default="2021-01-01")
    p_bench.add_argument("--extra-day", action="store_true", help="also write *_extra_day.csv")
    p_bench.add_argument("--seed", default=BENCH_SEED)
    args = parser.parse_args(argv)
    if args.command in (None, "sample"):
        out = getattr(args, "out", None) or str(Path(__file__).resolve().parent / "fund")
        summary = generate_sample(out)
        print(f"wrote {out}: {summary['ledger_rows']} ledger rows, {summary['balance_rows']} balance rows")
        for b in summary["breaks"]:
            print(f"  break {b['date']} {b['account']} {b['asset']}: {fmt_dec(b['difference'])}")
    else:
        summary = generate_bench(args.out, args.years, args.rows, args.accounts, args.start, args.extra_day, args.seed)
        print(
            f"wrote {args.out}: {summary['ledger_rows']} ledger rows over {summary['days']} days, "
            f"{summary['balance_rows']} balance rows"
            + (f"; extra day {summary['extra_ledger_rows']} rows" if args.extra_day else "")
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

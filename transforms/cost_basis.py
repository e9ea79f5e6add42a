"""The cost-basis engine (pure): lots, disposals matched to lots, realized and unrealized PnL.

One engine for every lot-ordering method; a method is only the order in which a pool's lots
are consumed (FIFO: oldest first, ties by acquisition leg id). Pools are universal (one per
asset across the entity) or per account ("per wallet").

Semantics (docs/cost-basis.md has worked examples):
- An acquisition (buy, income, staking reward, airdrop, the quote received on a sale) is a lot at
  its USD value; a BUY's fee is added to that lot's basis.
- A disposal (sell, fee, the quote paid on a buy) is matched against the pool's lots; proceeds
  are its USD value, less the fee of a SELL. A fee paid in a crypto asset is itself a disposal
  of that asset at fair value.
- Fair value missing from the ledger: the last trade price of that asset seen so far.
- A matched internal transfer moves lots (basis and acquisition time) between per-account
  pools and is invisible to the universal pool. An unmatched outgoing transfer removes lots at
  basis (no gain); an unmatched incoming one is an acquisition at fair value (zero if unknown).
- A disposal larger than the pool never crashes: the excess is a shortfall with zero basis.
- Fiat is the unit of account: it has no lots.
All arithmetic is exact decimal (float trap on); a partial lot's basis is apportioned to
18 decimals and the remainder stays with the lot, so the roll-forward ties out exactly.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from itertools import groupby
from typing import Literal

from warehouse.numbers import ZERO, exact_context, quantize

Method = Literal["fifo"]
Pool = Literal["universal", "account"]
METHODS: tuple[str, ...] = ("fifo",)
POOLS: tuple[str, ...] = ("universal", "account")
LONG_TERM_AFTER = timedelta(days=365)
UNIVERSAL_ACCOUNT = 0


@dataclass(frozen=True)
class PnlLeg:
    id: int
    ts: datetime
    close_date: date
    account_id: int
    asset_id: int
    is_fiat: bool
    quantity: Decimal
    kind: str
    group_id: str
    leg_index: int
    unit_price_usd: Decimal | None = None
    usd_value: Decimal | None = None
    transfer_status: str | None = None  # matched | unmatched_out | unmatched_in
    transfer_peer_account_id: int | None = None  # for a matched transfer_out: the receiving account


@dataclass
class Lot:
    leg_id: int
    acquired_at: datetime
    quantity: Decimal
    cost_basis: Decimal
    flagged: bool = False


@dataclass(frozen=True)
class LotMatch:
    lot_leg_id: int
    acquired_at: datetime
    quantity: Decimal
    cost_basis: Decimal
    proceeds: Decimal
    term: str  # short | long


@dataclass(frozen=True)
class Disposal:
    leg_id: int
    ts: datetime
    date: date
    account_id: int
    asset_id: int
    kind: str  # sale | fee
    quantity: Decimal
    proceeds: Decimal
    cost_basis: Decimal
    realized_gain: Decimal
    short_term_gain: Decimal
    long_term_gain: Decimal
    shortfall_quantity: Decimal
    lots: tuple[LotMatch, ...]


@dataclass(frozen=True)
class PoolDay:
    date: date
    pool_account_id: int
    asset_id: int
    quantity: Decimal
    cost_basis: Decimal
    close_price_usd: Decimal | None
    market_value: Decimal | None
    unrealized_gain: Decimal | None
    realized_gain: Decimal


@dataclass
class BookResult:
    method: str
    pool: str
    disposals: list[Disposal] = field(default_factory=list)
    days: list[PoolDay] = field(default_factory=list)
    issues: list[str] = field(default_factory=list)


def lot_order(method: str) -> Callable[[Lot], tuple]:
    """The priority in which a pool's lots are consumed; ties broken by acquisition time, then leg id."""
    if method == "fifo":
        return lambda lot: (lot.acquired_at, lot.leg_id)
    raise ValueError(f"unknown cost-basis method {method!r} (available: {', '.join(METHODS)})")


class _Book:
    def __init__(self, method: str, pool: str) -> None:
        if pool not in POOLS:
            raise ValueError(f"unknown pool {pool!r} (available: {', '.join(POOLS)})")
        self.method, self.pool = method, pool
        self.order = lot_order(method)
        self.lots: dict[tuple[int, int], list[Lot]] = defaultdict(list)
        self.last_price: dict[int, Decimal] = {}
        self.realized_today: dict[tuple[int, int], Decimal] = defaultdict(Decimal)
        self.result = BookResult(method, pool)

    def key(self, account_id: int, asset_id: int) -> tuple[int, int]:
        return (UNIVERSAL_ACCOUNT if self.pool == "universal" else account_id, asset_id)

    def fair_value(self, leg: PnlLeg) -> Decimal | None:
        if leg.usd_value is not None:
            return abs(leg.usd_value)
        price = self.last_price.get(leg.asset_id)
        return abs(leg.quantity) * price if price is not None else None

    # -- lots
    def take(self, key: tuple[int, int], quantity: Decimal) -> tuple[list[tuple[Lot, Decimal, Decimal]], Decimal]:
        """Consume ``quantity`` from the pool in method order: [(lot, qty taken, basis taken)], shortfall."""
        pool = self.lots[key]
        pool.sort(key=self.order)
        taken: list[tuple[Lot, Decimal, Decimal]] = []
        remaining = quantity
        while remaining > 0 and pool:
            lot = pool[0]
            if lot.quantity <= remaining:
                taken.append((lot, lot.quantity, lot.cost_basis))
                remaining -= lot.quantity
                pool.pop(0)
            else:
                basis = quantize(lot.cost_basis * remaining / lot.quantity)
                taken.append((lot, remaining, basis))
                lot.quantity -= remaining
                lot.cost_basis -= basis
                remaining = ZERO
        return taken, remaining

    def acquire(self, key: tuple[int, int], leg: PnlLeg, quantity: Decimal, basis: Decimal, flagged: bool = False) -> None:
        self.lots[key].append(Lot(leg.id, leg.ts, quantity, basis, flagged))

    def dispose(self, leg: PnlLeg, kind: str, proceeds: Decimal) -> None:
        quantity = -leg.quantity
        key = self.key(leg.account_id, leg.asset_id)
        taken, shortfall = self.take(key, quantity)
        matches: list[LotMatch] = []
        allocated = ZERO
        for i, (lot, qty, basis) in enumerate(taken):
            last = i == len(taken) - 1 and shortfall == 0
            share = proceeds - allocated if last else quantize(proceeds * qty / quantity)
            allocated += share
            term = "long" if leg.ts - lot.acquired_at > LONG_TERM_AFTER else "short"
            matches.append(LotMatch(lot.leg_id, lot.acquired_at, qty, basis, share, term))
        shortfall_proceeds = proceeds - allocated
        cost = sum((m.cost_basis for m in matches), ZERO)
        long_gain = sum((m.proceeds - m.cost_basis for m in matches if m.term == "long"), ZERO)
        short_gain = sum((m.proceeds - m.cost_basis for m in matches if m.term == "short"), ZERO) + shortfall_proceeds
        if shortfall > 0:
            self.result.issues.append(
                f"leg {leg.id}: disposes {quantity} but the {self.pool} pool held {quantity - shortfall};"
                f" {shortfall} has no acquisition (zero basis, flagged)")
        gain = proceeds - cost
        self.result.disposals.append(Disposal(
            leg.id, leg.ts, leg.close_date, leg.account_id, leg.asset_id, kind, quantity, proceeds, cost, gain,
            short_gain, long_gain, shortfall, tuple(matches)))
        self.realized_today[key] += gain

    # -- events
    def process_group(self, legs: Sequence[PnlLeg]) -> None:
        for leg in legs:
            if leg.unit_price_usd is not None and leg.unit_price_usd > 0 and not leg.is_fiat:
                self.last_price[leg.asset_id] = leg.unit_price_usd
        fee_value = ZERO
        for leg in legs:
            if leg.kind == "fee" and leg.leg_index > 0:
                value = self.fair_value(leg)
                if value is None:
                    self.result.issues.append(f"leg {leg.id}: no price for the fee asset; fee valued at zero")
                    value = ZERO
                fee_value += value
        main_kind = legs[0].kind if legs and legs[0].leg_index == 0 else None
        for leg in legs:
            if leg.is_fiat:
                continue
            key = self.key(leg.account_id, leg.asset_id)
            attached_fee = fee_value if leg.leg_index == 0 and main_kind in ("buy", "sell") else ZERO
            if leg.kind == "transfer_out" and leg.transfer_status == "matched":
                if self.pool == "account" and leg.transfer_peer_account_id is not None:
                    self.move(leg, key, self.key(leg.transfer_peer_account_id, leg.asset_id))
                continue
            if leg.kind == "transfer_in" and leg.transfer_status == "matched":
                continue
            if leg.kind == "transfer_out":  # unmatched: the lots leave at basis, no gain
                self.take(key, -leg.quantity)
                self.result.issues.append(f"leg {leg.id}: unmatched outgoing transfer removed lots at basis")
                continue
            value = self.fair_value(leg)
            if leg.quantity > 0:
                if value is None:
                    self.result.issues.append(f"leg {leg.id}: acquisition without a price; zero basis, flagged")
                basis = (value or ZERO) + attached_fee
                self.acquire(key, leg, leg.quantity, basis, flagged=value is None)
            elif leg.quantity < 0:
                if value is None:
                    self.result.issues.append(f"leg {leg.id}: disposal without a price; zero proceeds")
                proceeds = (value or ZERO) - attached_fee
                self.dispose(leg, "fee" if leg.kind == "fee" else "sale", proceeds)

    def move(self, leg: PnlLeg, source: tuple[int, int], target: tuple[int, int]) -> None:
        taken, shortfall = self.take(source, -leg.quantity)
        for lot, qty, basis in taken:
            self.lots[target].append(Lot(lot.leg_id, lot.acquired_at, qty, basis, lot.flagged))
        if shortfall > 0:
            self.result.issues.append(f"leg {leg.id}: transfers {shortfall} more than the account held; zero basis, flagged")
            self.lots[target].append(Lot(leg.id, leg.ts, shortfall, ZERO, True))

    def snapshot(self, day: date) -> None:
        keys = {k for k, lots in self.lots.items() if lots} | set(self.realized_today)
        for key in sorted(keys):
            lots = self.lots.get(key, [])
            quantity = sum((lot.quantity for lot in lots), ZERO)
            basis = sum((lot.cost_basis for lot in lots), ZERO)
            price = self.last_price.get(key[1])
            value = quantity * price if price is not None else None
            self.result.days.append(PoolDay(
                day, key[0], key[1], quantity, basis, price, value,
                value - basis if value is not None else None, self.realized_today.get(key, ZERO)))
        self.realized_today.clear()


def compute_book(legs: Iterable[PnlLeg], *, method: str, pool: str,
                 report_from: date | None = None, report_to: date | None = None) -> BookResult:
    """Run one book over legs (any order; sorted here by booking day, time, event, leg).

    Disposals are returned for every day; daily pool states only for [report_from, report_to].
    """
    book = _Book(method, pool)
    ordered = sorted(legs, key=lambda l: (l.close_date, l.ts, l.group_id, l.leg_index))
    with exact_context():
        by_day = groupby(ordered, key=lambda l: l.close_date)
        pending_day: date | None = None
        for day, day_legs in by_day:
            if report_from is not None and pending_day is not None:
                _snapshot_until(book, pending_day, day, report_from, report_to)
            for _, group in groupby(day_legs, key=lambda l: (l.ts, l.group_id)):
                book.process_group(sorted(group, key=lambda l: l.leg_index))
            pending_day = day
        if report_from is not None and pending_day is not None and report_to is not None:
            _snapshot_until(book, pending_day, report_to + timedelta(days=1), report_from, report_to)
    return book.result


def _snapshot_until(book: _Book, from_day: date, next_day: date, report_from: date, report_to: date | None) -> None:
    """Emit the pool state for ``from_day`` and for the quiet days before ``next_day`` inside the report range."""
    day = from_day
    while day < next_day:
        if day >= report_from and (report_to is None or day <= report_to):
            book.snapshot(day)
        else:
            book.realized_today.clear()
        day += timedelta(days=1)

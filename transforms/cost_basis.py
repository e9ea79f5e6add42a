"""The cost-basis engine (pure): lots, disposals matched to lots, realized and unrealized PnL.

One engine for every method. FIFO, LIFO, HIFO and LOFO differ only in the priority in which a
pool's lots are consumed (``lot_key``); ties are broken by acquisition time, then acquisition leg
id. HIFO/LOFO rank lots by unit cost including acquisition fees. ``average`` is the moving
weighted average cost of the pool: a disposal takes ``basis x quantity / pool quantity``; its lots
are still consumed oldest first, for holding periods only. Pools are universal (one per asset
across the entity, ``pool_account_id`` 0) or per account ("per wallet").

The method and pool may change at a date (``BookPeriod``): the open lots carry over with their
basis and acquisition dates. Universal -> per account allocates the lots, in the previous method's order,
to the accounts that hold the asset at that moment (by account id); per account -> universal
merges them.

Semantics (docs/cost-basis.md has a worked example for each): a leg is booked by its kind's treatment
(``transforms/events.py``, the table "Leg kinds and their treatment"), never by the sign of its quantity.
- A trade (its ``buy`` and ``sell`` legs) carries one value (``value_trade``: a fiat side, else a stablecoin
  side, else the received asset's price, else the given asset's): what is received is a lot at that value,
  what is given is a disposal with that value as proceeds. The trade's fees are added to the basis of its
  main leg (the first crypto leg) when that leg is received, or taken off its proceeds when it is given.
  A fee paid in a crypto asset is itself a disposal of that asset at fair value (kind ``fee``).
- Income (income, staking reward, airdrop, interest earned, rebate, mining) is a lot at fair value; a
  spend, fee or interest expense a disposal at fair value. A loan draw is a lot at fair value (not income),
  a repayment leaves at basis; a liability account never holds lots. ``unclassified`` and ``spam`` legs
  are never booked.
- Fair value missing from the ledger comes from the ``FairValues`` lookup (transforms/fair_value.py). A figure that
  needs one and has none is never a silent zero: it is listed in ``BookResult.missing_prices``.
- Holding period: ``HoldingPeriod`` (default ``us``: long-term when the disposal's day is after the anniversary of
  the acquisition's day, in the entity's timezone).
- A matched internal transfer moves lots (basis and acquisition time) between per-account pools
  and is invisible to the universal pool. An unmatched outgoing transfer or an external withdrawal removes
  lots at basis (no gain); an unmatched incoming one or an external deposit is a lot at fair value (zero and
  flagged if unknown).
- A disposal larger than the pool never crashes: the excess is a shortfall (zero basis, flagged,
  listed in ``BookResult.shortfalls``); it disappears when the missing acquisition arrives and
  the book is recomputed forward.
- Fiat is the unit of account: it has no lots.
- Legs of an unverified asset (not in the registry, e.g. a spam token airdropped to a wallet)
  are left out of the book until the asset is approved; ``BookResult.excluded`` counts them.
- The engine is currency-agnostic: ``usd_value`` and prices may be translated into a reporting
  currency first (transforms/fx.py); every figure is then in that currency.
All arithmetic is exact decimal (float trap on); a partial lot's basis is apportioned to
18 decimals and the remainder stays with the lot, so the roll-forward ties out exactly.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from decimal import Decimal
from itertools import groupby
from typing import Literal

from transforms.events import (TRADE_TREATMENTS, EventType, TradeSide, Treatment, Valuation, spec, split_value,
                               treatment_of, value_trade)
from transforms.fair_value import FairValues, PriceLookup, map_ledger_prices, ts_key
from warehouse.calendar import close_date_of
from warehouse.numbers import SCALE, ZERO, exact_context

Method = Literal["fifo", "lifo", "hifo", "lofo", "average"]
Pool = Literal["universal", "account"]
METHODS: tuple[str, ...] = ("fifo", "lifo", "hifo", "lofo", "average")
LOT_METHODS: tuple[str, ...] = ("fifo", "lifo", "hifo", "lofo")
POOLS: tuple[str, ...] = ("universal", "account")
LONG_TERM_AFTER = timedelta(days=365)  # the ``elapsed`` holding rule
HOLDING_RULES: tuple[str, ...] = ("us", "elapsed")
UNIVERSAL_ACCOUNT = 0
# roll-forward columns (quantity, basis pairs), in the order of the identity
RF_FIELDS: tuple[str, ...] = ("acquired", "disposed", "transferred_in", "transferred_out")


class TieOutError(RuntimeError):
    """The roll-forward of a pool does not tie out: a bug, never a warning."""


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
    unverified: bool = False  # an asset not in the registry (spam until approved): left out of the book
    stablecoin: bool = False  # a USD stablecoin: a trade against it is valued from its side (transforms/events.py)


@dataclass(frozen=True)
class BookPeriod:
    """From ``effective_from`` (None: from the beginning) the book uses ``method`` and ``pool``."""

    effective_from: date | None
    method: str
    pool: str

    @property
    def label(self) -> str:
        return f"{self.method}:{self.pool}"


def validate_book(method: str, pool: str) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown cost-basis method {method!r} (available: {', '.join(METHODS)})")
    if pool not in POOLS:
        raise ValueError(f"unknown pool {pool!r} (available: {', '.join(POOLS)})")


def parse_book(text: str) -> BookPeriod:
    """``"hifo:account"`` -> a constant book."""
    method, _, pool = text.strip().lower().partition(":")
    validate_book(method, pool or "universal")
    return BookPeriod(None, method, pool or "universal")


def anniversary(day: date) -> date:
    """The same calendar date one year later; a Feb 29 acquisition's anniversary is Feb 28 (long-term from Mar 1)."""
    try:
        return day.replace(year=day.year + 1)
    except ValueError:  # Feb 29
        return date(day.year + 1, 2, 28)


@dataclass(frozen=True)
class HoldingPeriod:
    """When a matched lot is long-term (docs/cost-basis.md, "Holding period").

    ``us`` (the default): the disposal's close day, in ``tz`` (the entity's timezone), is after the anniversary of
    the acquisition's close day. ``elapsed``: more than 365 x 24 hours passed (the rule before migration 0018)."""

    rule: str = "us"
    tz: tzinfo = timezone.utc

    def __post_init__(self) -> None:
        validate_holding_rule(self.rule)

    def term(self, acquired_at: datetime, disposed_at: datetime) -> str:
        if self.rule == "elapsed":
            return "long" if disposed_at - acquired_at > LONG_TERM_AFTER else "short"
        # close days (warehouse.calendar: a moment exactly at local midnight ends the day before)
        disposed, acquired = close_date_of(disposed_at, self.tz), close_date_of(acquired_at, self.tz)
        return "long" if disposed > anniversary(acquired) else "short"


def validate_holding_rule(rule: str) -> str:
    if rule not in HOLDING_RULES:
        raise ValueError(f"unknown holding-period rule {rule!r} (available: {', '.join(HOLDING_RULES)})")
    return rule


class Lot:
    __slots__ = ("leg_id", "acquired_at", "quantity", "cost_basis", "flagged", "account_id", "seq")

    def __init__(self, leg_id: int, acquired_at: datetime, quantity: Decimal, cost_basis: Decimal,
                 flagged: bool = False, account_id: int = 0, seq: int = 0) -> None:
        self.leg_id, self.acquired_at, self.quantity, self.cost_basis = leg_id, acquired_at, quantity, cost_basis
        self.flagged, self.account_id, self.seq = flagged, account_id, seq

    def __repr__(self) -> str:
        return f"Lot(leg {self.leg_id}, {self.acquired_at:%Y-%m-%d}, {self.quantity} @ basis {self.cost_basis})"


@dataclass(slots=True)
class OpenLot:
    """A lot open at a close (for ``average`` pools, basis is the pool's average times the quantity)."""

    date: date
    pool_account_id: int
    asset_id: int
    lot_leg_id: int
    acquired_at: datetime
    quantity: Decimal
    cost_basis: Decimal
    flagged: bool
    account_id: int
    seq: int


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
    method: str = "fifo"
    pool_account_id: int = 0


@dataclass(frozen=True)
class Shortfall:
    """Quantity that left a pool without an acquisition behind it: zero basis, flagged."""

    leg_id: int
    date: date
    account_id: int
    asset_id: int
    pool_account_id: int
    quantity: Decimal
    kind: str  # disposal | transfer


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
    movements: tuple[Decimal, ...] = (ZERO,) * 8  # the day's acquired, disposed, in, out: (quantity, basis) each
    shortfall_quantity: Decimal = ZERO


@dataclass(frozen=True)
class RollForward:
    """One pool's roll-forward over a period; ``closing = opening + acquired - disposed + in - out``."""

    pool_account_id: int
    asset_id: int
    opening_quantity: Decimal
    opening_basis: Decimal
    acquired_quantity: Decimal
    acquired_basis: Decimal
    disposed_quantity: Decimal
    disposed_basis: Decimal
    transferred_in_quantity: Decimal
    transferred_in_basis: Decimal
    transferred_out_quantity: Decimal
    transferred_out_basis: Decimal
    closing_quantity: Decimal
    closing_basis: Decimal
    shortfall_quantity: Decimal


@dataclass
class BookState:
    """Everything the engine needs to continue a book after ``as_of`` (persisted at each close)."""

    as_of: date
    method: str
    pool: str
    lots: list[OpenLot]
    pool_basis: dict[tuple[int, int], Decimal]  # average pools: the authoritative basis
    holdings: dict[tuple[int, int], Decimal]  # (account, asset) -> quantity from legs
    next_seq: int = 0  # the book's lot counter: a restart numbers new lots exactly as the full run does


@dataclass(frozen=True)
class MissingPrice:
    """A figure that needs a fair value and has none (docs/cost-basis.md, "No silent zero").

    ``what``: ``acquisition`` (its lot has zero basis, flagged), ``disposal`` (zero proceeds), ``fee`` (a fee in a
    third asset added to a trade at zero) or ``position`` (an open position at the close: no market value, no
    unrealized PnL). ``at`` is the instant the price is needed at: the leg's time, or the day's cutoff."""

    date: date
    asset_id: int
    account_id: int  # the leg's account; for a position, the pool's (0: the universal pool)
    what: str  # acquisition | disposal | fee | position
    at: datetime
    quantity: Decimal  # unsigned
    leg_id: int | None = None  # None for a position
    pool_account_id: int = 0


@dataclass
class BookResult:
    method: str
    pool: str
    disposals: list[Disposal] = field(default_factory=list)
    days: list[PoolDay] = field(default_factory=list)
    issues: list[str] = field(default_factory=list)
    shortfalls: list[Shortfall] = field(default_factory=list)
    open_lots: list[OpenLot] = field(default_factory=list)
    rollforward: list[RollForward] = field(default_factory=list)
    states: list[BookState] = field(default_factory=list)
    schedule: tuple[BookPeriod, ...] = ()
    excluded: dict[int, int] = field(default_factory=dict)  # unverified asset id -> legs left out of the book
    missing_prices: list[MissingPrice] = field(default_factory=list)  # every figure valued without a price
    valuations: dict[str, Valuation] = field(default_factory=dict)  # a trade's group id -> its one value and rule

    @property
    def label(self) -> str:
        return " -> ".join(f"{p.label} from {p.effective_from}" if p.effective_from else p.label
                           for p in self.schedule) or f"{self.method}:{self.pool}"


def lot_key(method: str) -> Callable[[Lot], tuple]:
    """The priority in which a pool's lots are consumed (smallest first); ties: acquisition time, leg id."""
    if method in ("fifo", "average"):
        return lambda lot: (lot.acquired_at, lot.leg_id, lot.seq)
    if method == "lifo":
        return lambda lot: (-ts_key(lot.acquired_at), -lot.leg_id, -lot.seq)
    if method == "hifo":
        return lambda lot: (-(lot.cost_basis / lot.quantity), ts_key(lot.acquired_at), lot.leg_id, lot.seq)
    if method == "lofo":
        return lambda lot: (lot.cost_basis / lot.quantity, ts_key(lot.acquired_at), lot.leg_id, lot.seq)
    raise ValueError(f"unknown cost-basis method {method!r} (available: {', '.join(METHODS)})")


lot_order = lot_key  # the spine's name


class _Pool:
    """A heap of (priority, lot) plus running totals; ``basis`` is authoritative for average pools."""

    __slots__ = ("heap", "quantity", "basis")

    def __init__(self) -> None:
        self.heap: list[tuple[tuple, Lot]] = []
        self.quantity = ZERO
        self.basis = ZERO


class _Book:
    def __init__(self, period: BookPeriod, fair_values: PriceLookup, cutoff: Callable[[date], datetime],
                 holding: HoldingPeriod | None = None) -> None:
        validate_book(period.method, period.pool)
        self.holding = holding or HoldingPeriod()
        self.method, self.pool = period.method, period.pool
        self.average = period.method == "average"
        self.order = lot_key(period.method)
        self.pools: dict[tuple[int, int], _Pool] = {}
        self.holdings: dict[tuple[int, int], Decimal] = defaultdict(Decimal)
        self.fair_values = fair_values
        self.cutoff = cutoff
        self.seq = 0
        self.realized_today: dict[tuple[int, int], Decimal] = defaultdict(Decimal)
        self.recording = False
        self.moves: dict[tuple[int, int], list[Decimal]] = {}
        self.day_moves: dict[tuple[int, int], list[Decimal]] = {}
        self.shortfall_qty: dict[tuple[int, int], Decimal] = defaultdict(Decimal)
        self.day_shortfall: dict[tuple[int, int], Decimal] = defaultdict(Decimal)
        self.result = BookResult(period.method, period.pool)

    def key(self, account_id: int, asset_id: int) -> tuple[int, int]:
        return (UNIVERSAL_ACCOUNT if self.pool == "universal" else account_id, asset_id)

    def pool_of(self, key: tuple[int, int]) -> _Pool:
        pool = self.pools.get(key)
        if pool is None:
            pool = self.pools[key] = _Pool()
        return pool

    def record(self, key: tuple[int, int], column: int, quantity: Decimal, basis: Decimal) -> None:
        if not self.recording:
            return
        for moves in (self.moves, self.day_moves):
            row = moves.get(key)
            if row is None:
                row = moves[key] = [ZERO] * 8
            row[2 * column] += quantity
            row[2 * column + 1] += basis

    def fair_value(self, leg: PnlLeg) -> Decimal | None:
        if leg.usd_value is not None:
            return abs(leg.usd_value)
        price = self.fair_values.price_at(leg.asset_id, leg.ts)
        return abs(leg.quantity) * price if price is not None else None

    # -- lots
    def push(self, key: tuple[int, int], lot: Lot, basis: Decimal, keep_seq: bool = False) -> None:
        if keep_seq:
            self.seq = max(self.seq, lot.seq)
        else:
            self.seq += 1
            lot.seq = self.seq
        pool = self.pool_of(key)
        heapq.heappush(pool.heap, (self.order(lot), lot))
        pool.quantity += lot.quantity
        pool.basis += basis

    def take(self, key: tuple[int, int], quantity: Decimal) -> tuple[list[tuple[Lot, Decimal, Decimal]], Decimal]:
        """Consume ``quantity`` in method order: [(lot, quantity taken, basis taken)], shortfall."""
        pool = self.pools.get(key)
        if pool is None or not pool.heap:
            return [], quantity
        heap = pool.heap
        taken: list[tuple[Lot, Decimal, Decimal]] = []
        remaining = quantity
        if self.average:
            matched = quantity if quantity < pool.quantity else pool.quantity
            total = pool.basis if matched == pool.quantity else (pool.basis * matched / pool.quantity).quantize(SCALE)
            allocated = done = ZERO
            while done < matched:
                lot = heap[0][1]
                qty = lot.quantity if lot.quantity <= matched - done else matched - done
                basis = total - allocated if done + qty == matched else (total * qty / matched).quantize(SCALE)
                allocated += basis
                done += qty
                taken.append((lot, qty, basis))
                if qty == lot.quantity:
                    heapq.heappop(heap)
                else:
                    lot.quantity -= qty
            pool.quantity -= matched
            pool.basis -= total
            return taken, quantity - matched
        while remaining > 0 and heap:
            lot = heap[0][1]
            if lot.quantity <= remaining:
                heapq.heappop(heap)
                taken.append((lot, lot.quantity, lot.cost_basis))
                remaining -= lot.quantity
                pool.quantity -= lot.quantity
                pool.basis -= lot.cost_basis
            else:
                basis = (lot.cost_basis * remaining / lot.quantity).quantize(SCALE)
                taken.append((lot, remaining, basis))
                lot.quantity -= remaining
                lot.cost_basis -= basis
                pool.quantity -= remaining
                pool.basis -= basis
                remaining = ZERO
        return taken, remaining

    def acquire(self, key: tuple[int, int], leg: PnlLeg, quantity: Decimal, basis: Decimal, flagged: bool,
                column: int) -> None:
        self.push(key, Lot(leg.id, leg.ts, quantity, basis, flagged, leg.account_id), basis)
        self.record(key, column, quantity, basis)

    def dispose(self, leg: PnlLeg, kind: str, proceeds: Decimal) -> None:
        quantity = -leg.quantity
        key = self.key(leg.account_id, leg.asset_id)
        taken, shortfall = self.take(key, quantity)
        matches: list[LotMatch] = []
        allocated = ZERO
        cost = ZERO
        long_gain = short_gain = ZERO
        n = len(taken)
        for i, (lot, qty, basis) in enumerate(taken):
            share = proceeds - allocated if i == n - 1 and shortfall == 0 else (proceeds * qty / quantity).quantize(SCALE)
            allocated += share
            cost += basis
            if self.holding.term(lot.acquired_at, leg.ts) == "long":
                matches.append(LotMatch(lot.leg_id, lot.acquired_at, qty, basis, share, "long"))
                long_gain += share - basis
            else:
                matches.append(LotMatch(lot.leg_id, lot.acquired_at, qty, basis, share, "short"))
                short_gain += share - basis
        short_gain += proceeds - allocated  # the shortfall part: zero basis
        self.record(key, 1, quantity - shortfall, cost)
        if shortfall > 0:
            self.add_shortfall(leg, key, shortfall, "disposal",
                               f"leg {leg.id}: disposes {quantity} but the {self.pool} pool held {quantity - shortfall};"
                               f" {shortfall} has no acquisition (zero basis, flagged)")
        gain = proceeds - cost
        self.result.disposals.append(Disposal(
            leg.id, leg.ts, leg.close_date, leg.account_id, leg.asset_id, kind, quantity, proceeds, cost, gain,
            short_gain, long_gain, shortfall, tuple(matches), self.method, key[0]))
        self.realized_today[key] += gain

    def add_shortfall(self, leg: PnlLeg, key: tuple[int, int], quantity: Decimal, kind: str, message: str) -> None:
        self.result.issues.append(message)
        self.result.shortfalls.append(Shortfall(leg.id, leg.close_date, leg.account_id, leg.asset_id, key[0], quantity, kind))
        if self.recording:
            self.shortfall_qty[key] += quantity
            self.day_shortfall[key] += quantity

    def missing_price(self, leg: PnlLeg, what: str, text: str) -> None:
        """A leg that needs a fair value the lookup does not have: an issue and a ``MissingPrice`` item."""
        self.result.issues.append(f"leg {leg.id}: {text}")
        self.result.missing_prices.append(MissingPrice(leg.close_date, leg.asset_id, leg.account_id, what, leg.ts,
                                                       abs(leg.quantity), leg.id, self.key(leg.account_id, leg.asset_id)[0]))

    # -- events
    def process_group(self, legs: Sequence[PnlLeg]) -> None:
        """Book one event by its legs' treatments (transforms/events.py), never by the sign of a quantity."""
        booked: list[tuple[PnlLeg, Treatment]] = []
        for leg in legs:
            if not leg.is_fiat:
                self.holdings[(leg.account_id, leg.asset_id)] += leg.quantity
            kind = spec(leg.kind)
            treatment = kind.treatment
            if kind.direction != "either" and leg.quantity != 0 and (leg.quantity > 0) != (kind.direction == "in"):
                self.result.issues.append(f"leg {leg.id}: kind {leg.kind} contradicts its quantity {leg.quantity}; "
                                          "not booked")
                continue
            booked.append((leg, treatment))
        trade = [leg for leg, t in booked if t in TRADE_TREATMENTS and spec(leg.kind).event is EventType.TRADE]
        fee_value = ZERO
        shares: dict[int, Decimal | None] = {}
        main: PnlLeg | None = None
        if trade:
            for leg, treatment in booked:
                if treatment is Treatment.EXPENSE and leg.kind == "fee":
                    value = self.fair_value(leg)
                    if value is None:
                        self.missing_price(leg, "fee", "no price for the fee asset; fee valued at zero")
                        value = ZERO
                    fee_value += value
            shares = self.value_event(trade)
            main = min((l for l in trade if not l.is_fiat), key=lambda l: (l.leg_index, l.id), default=None)
        for leg, treatment in booked:
            if leg.is_fiat or treatment in (Treatment.LIABILITY, Treatment.NONE):
                continue
            key = self.key(leg.account_id, leg.asset_id)
            attached_fee = fee_value if leg is main else ZERO
            if (treatment in (Treatment.INTERNAL_TRANSFER, Treatment.EXTERNAL_OUT, Treatment.EXTERNAL_IN)
                    and leg.transfer_status == "matched"):  # between owned accounts (a deposit matched by tx hash)
                if leg.quantity < 0 and self.pool == "account" and leg.transfer_peer_account_id is not None:
                    self.move(leg, key, self.key(leg.transfer_peer_account_id, leg.asset_id))
                continue
            outgoing = leg.quantity < 0  # for the treatments whose direction is ``either`` or ``out``
            if (treatment in (Treatment.EXTERNAL_OUT, Treatment.LOAN_REPAYMENT)
                    or (treatment in (Treatment.INTERNAL_TRANSFER, Treatment.ADJUSTMENT) and outgoing)):
                self.remove_at_basis(leg, key, treatment)
                continue
            if treatment is Treatment.ACQUISITION:
                value = shares.get(leg.id)
            elif treatment is Treatment.DISPOSAL and leg.id in shares:
                value = shares[leg.id]
            else:
                value = self.fair_value(leg)
            if treatment in (Treatment.ACQUISITION, Treatment.INCOME, Treatment.EXTERNAL_IN, Treatment.LOAN_DRAW,
                             Treatment.INTERNAL_TRANSFER, Treatment.ADJUSTMENT) or (
                    treatment is Treatment.SETTLEMENT and not outgoing):
                if value is None:
                    self.missing_price(leg, "acquisition", "acquisition without a price; zero basis, flagged")
                basis = (value or ZERO) + attached_fee
                column = 2 if treatment in (Treatment.INTERNAL_TRANSFER, Treatment.EXTERNAL_IN, Treatment.LOAN_DRAW,
                                            Treatment.ADJUSTMENT) else 0
                self.acquire(key, leg, leg.quantity, basis, value is None, column)
            else:  # DISPOSAL, EXPENSE, a SETTLEMENT paid
                if value is None:
                    self.missing_price(leg, "disposal", "disposal without a price; zero proceeds")
                proceeds = (value or ZERO) - attached_fee
                self.dispose(leg, "fee" if treatment is Treatment.EXPENSE else "sale", proceeds)

    def value_event(self, trade: Sequence[PnlLeg]) -> dict[int, Decimal | None]:
        """The trade's one value shared among its legs (``transforms.events.value_trade``), by leg id."""
        if len(trade) == 2:  # the common case, one leg each way: the same rule without the general machinery
            a, b = trade
            received, given = (a, b) if treatment_of(a.kind) is Treatment.ACQUISITION else (b, a)
            if received is not given and treatment_of(given.kind) is Treatment.DISPOSAL:
                return self._value_pair(received, given)
        sides = [TradeSide(leg, leg.asset_id, abs(leg.quantity),
                           "fiat" if leg.is_fiat else "stablecoin" if leg.stablecoin else "crypto",
                           treatment_of(leg.kind) is Treatment.ACQUISITION) for leg in trade]
        valuation = value_trade(sides, self.fair_value)
        self.result.valuations[trade[0].group_id] = valuation
        shares: dict[int, Decimal | None] = {}
        if valuation.value is None:
            return {leg.id: None for leg in trade}
        for received in (True, False):
            side = [s for s in sides if s.received == received]
            if not side:
                continue
            if len({s.asset_id for s in side}) == 1:
                weights = [s.quantity for s in side]
            else:  # several assets on one side: shared by their own fair values when all are known, else by quantity
                own = [self.fair_value(s.leg) for s in side]
                weights = own if all(v is not None for v in own) else [s.quantity for s in side]
            for s, share in zip(side, split_value(valuation.value, weights)):
                shares[s.leg.id] = share
        return shares

    def _value_pair(self, received: PnlLeg, given: PnlLeg) -> dict[int, Decimal | None]:
        order = ([(l, "fiat") for l in (given, received) if l.is_fiat]
                 + [(l, "stablecoin") for l in (given, received) if l.stablecoin and not l.is_fiat]
                 + [(received, "received_price"), (given, "given_price")])
        tried: set[int] = set()
        for leg, rule in order:
            if leg.id in tried:
                continue
            tried.add(leg.id)
            value = self.fair_value(leg)
            if value is not None:
                unit = (value / abs(leg.quantity)).quantize(SCALE) if leg.quantity else None
                self.result.valuations[received.group_id] = Valuation(value, rule, leg.asset_id, unit)
                return {received.id: value, given.id: value}
        self.result.valuations[received.group_id] = Valuation(None, "none", None, None)
        return {received.id: None, given.id: None}

    def remove_at_basis(self, leg: PnlLeg, key: tuple[int, int], treatment: Treatment) -> None:
        """Lots leave at basis, no gain (an external or unmatched transfer out, a loan repayment, an adjustment)."""
        taken, shortfall = self.take(key, -leg.quantity)
        self.record(key, 3, -leg.quantity - shortfall, sum((b for _, _, b in taken), ZERO))
        what = {Treatment.INTERNAL_TRANSFER: "unmatched outgoing transfer", Treatment.EXTERNAL_OUT: "external withdrawal",
                Treatment.LOAN_REPAYMENT: "loan repayment", Treatment.ADJUSTMENT: "outgoing adjustment"}[treatment]
        self.result.issues.append(f"leg {leg.id}: {what} removed lots at basis")
        if shortfall > 0:
            self.add_shortfall(leg, key, shortfall, "transfer",
                               f"leg {leg.id}: transfers out {shortfall} more than the pool held")

    def move(self, leg: PnlLeg, source: tuple[int, int], target: tuple[int, int]) -> None:
        taken, shortfall = self.take(source, -leg.quantity)
        moved_qty = moved_basis = ZERO
        for lot, qty, basis in taken:
            self.push(target, Lot(lot.leg_id, lot.acquired_at, qty, basis, lot.flagged, target[0]), basis)
            moved_qty += qty
            moved_basis += basis
        self.record(source, 3, moved_qty, moved_basis)
        if shortfall > 0:
            self.add_shortfall(leg, source, shortfall, "transfer",
                               f"leg {leg.id}: transfers {shortfall} more than the account held; zero basis, flagged")
            self.push(target, Lot(leg.id, leg.ts, shortfall, ZERO, True, target[0]), ZERO)
        self.record(target, 2, moved_qty + shortfall, moved_basis)

    # -- state
    def lots_of(self, key: tuple[int, int], day: date, ordered: bool = True) -> list[OpenLot]:
        """The open lots of a pool in method order, else in book order (``seq``); average: basis apportioned by quantity."""
        pool = self.pools[key]
        entries = sorted(pool.heap, key=lambda entry: entry[0] if ordered else entry[1].seq)
        result = []
        allocated = ZERO
        for i, (_, lot) in enumerate(entries):
            if self.average:
                basis = pool.basis - allocated if i == len(entries) - 1 else (
                    (pool.basis * lot.quantity / pool.quantity).quantize(SCALE))
                allocated += basis
            else:
                basis = lot.cost_basis
            result.append(OpenLot(day, key[0], key[1], lot.leg_id, lot.acquired_at, lot.quantity, basis, lot.flagged,
                                  lot.account_id, lot.seq))
        return result

    def state(self, day: date) -> BookState:
        lots = [lot for key in sorted(self.pools) if self.pools[key].heap for lot in self.lots_of(key, day, ordered=False)]
        basis = {key: pool.basis for key, pool in self.pools.items() if pool.heap} if self.average else {}
        return BookState(day, self.method, self.pool, lots, basis, {k: v for k, v in self.holdings.items() if v},
                         self.seq)

    def restore(self, state: BookState) -> None:
        if (state.method, state.pool) != (self.method, self.pool):
            raise ValueError(f"state of book {state.method}:{state.pool} cannot continue book {self.method}:{self.pool}")
        for lot in state.lots:  # heapified once per pool below: O(lots)
            pool = self.pool_of((lot.pool_account_id, lot.asset_id))
            entry = Lot(lot.lot_leg_id, lot.acquired_at, lot.quantity, lot.cost_basis, lot.flagged, lot.account_id, lot.seq)
            pool.heap.append((self.order(entry), entry))
            pool.quantity += lot.quantity
            pool.basis += lot.cost_basis
            if lot.seq > self.seq:
                self.seq = lot.seq
        self.seq = max(self.seq, state.next_seq)
        for pool in self.pools.values():
            heapq.heapify(pool.heap)
        for key, basis in state.pool_basis.items():
            self.pool_of(key).basis = basis
        self.holdings.update(state.holdings)

    def switch(self, period: BookPeriod) -> None:
        """Continue with another method and/or pool: open lots carry over with basis and dates."""
        validate_book(period.method, period.pool)
        day = date.min
        lots = [lot for key in sorted(self.pools) if self.pools[key].heap for lot in self.lots_of(key, day)]
        old_pool = self.pool
        if old_pool != period.pool:  # the roll-forward shows the regrouping as transfers between pools
            for key, (quantity, basis) in self.totals().items():
                self.record(key, 3, quantity, basis)
            try:
                self._regroup(period, lots, old_pool)
            finally:
                for key, (quantity, basis) in self.totals().items():
                    self.record(key, 2, quantity, basis)
        else:
            self._regroup(period, lots, old_pool)

    def _regroup(self, period: BookPeriod, lots: list[OpenLot], old_pool: str) -> None:
        self.method, self.pool = period.method, period.pool
        self.average = period.method == "average"
        self.order = lot_key(period.method)
        self.pools = {}
        if self.pool == "universal" or old_pool == self.pool:
            for lot in lots:
                target = self.key(lot.pool_account_id if old_pool == "account" else lot.account_id, lot.asset_id)
                self.push(target, Lot(lot.lot_leg_id, lot.acquired_at, lot.quantity, lot.cost_basis, lot.flagged,
                                      lot.account_id), lot.cost_basis)
            return
        # universal -> per account: the accounts holding the asset (by id) take the lots in the old method's order
        by_asset: dict[int, list[OpenLot]] = defaultdict(list)
        for lot in lots:
            by_asset[lot.asset_id].append(lot)
        for asset_id, asset_lots in by_asset.items():
            wants = sorted((acct, qty) for (acct, asset), qty in self.holdings.items() if asset == asset_id and qty > 0)
            queue = list(asset_lots)
            for account_id, wanted in wants:
                while wanted > 0 and queue:
                    lot = queue[0]
                    if lot.quantity <= wanted:
                        queue.pop(0)
                        qty, basis = lot.quantity, lot.cost_basis
                    else:
                        qty = wanted
                        basis = (lot.cost_basis * qty / lot.quantity).quantize(SCALE)
                        queue[0] = OpenLot(lot.date, lot.pool_account_id, asset_id, lot.lot_leg_id, lot.acquired_at,
                                           lot.quantity - qty, lot.cost_basis - basis, lot.flagged, lot.account_id, lot.seq)
                    self.push((account_id, asset_id), Lot(lot.lot_leg_id, lot.acquired_at, qty, basis, lot.flagged,
                                                          account_id), basis)
                    wanted -= qty
            for lot in queue:  # more lots than holdings: they stay with the account that acquired them
                self.push((lot.account_id, asset_id), Lot(lot.lot_leg_id, lot.acquired_at, lot.quantity, lot.cost_basis,
                                                          lot.flagged, lot.account_id), lot.cost_basis)

    # -- reporting
    def snapshot(self, day: date, keep_lots: bool) -> None:
        keys = {k for k, pool in self.pools.items() if pool.heap} | set(self.realized_today) | set(self.day_moves)
        at = self.cutoff(day)
        prices: dict[int, Decimal | None] = {}
        for key in sorted(keys):
            pool = self.pools.get(key)
            quantity = pool.quantity if pool is not None and pool.heap else ZERO
            basis = pool.basis if pool is not None and pool.heap else ZERO
            if key[1] not in prices:
                prices[key[1]] = self.fair_values.price_at(key[1], at)
            price = prices[key[1]]
            value = quantity * price if price is not None else None
            if price is None and quantity > 0:
                self.result.missing_prices.append(MissingPrice(day, key[1], key[0], "position", at, quantity, None, key[0]))
            self.result.days.append(PoolDay(
                day, key[0], key[1], quantity, basis, price, value,
                value - basis if value is not None else None, self.realized_today.get(key, ZERO),
                tuple(self.day_moves.get(key, (ZERO,) * 8)), self.day_shortfall.get(key, ZERO)))
            if keep_lots and quantity > 0:
                self.result.open_lots.extend(self.lots_of(key, day))
        self.realized_today.clear()
        self.day_moves.clear()
        self.day_shortfall.clear()

    def totals(self) -> dict[tuple[int, int], tuple[Decimal, Decimal]]:
        return {key: (pool.quantity, pool.basis) for key, pool in self.pools.items() if pool.heap}

    def rollforward(self, opening: dict[tuple[int, int], tuple[Decimal, Decimal]]) -> list[RollForward]:
        closing = self.totals()
        rows = []
        for key in sorted(set(opening) | set(closing) | set(self.moves) | set(self.shortfall_qty)):
            oq, ob = opening.get(key, (ZERO, ZERO))
            cq, cb = closing.get(key, (ZERO, ZERO))
            m = self.moves.get(key, [ZERO] * 8)
            if oq + m[0] - m[2] + m[4] - m[6] != cq or ob + m[1] - m[3] + m[5] - m[7] != cb:
                raise TieOutError(
                    f"{self.method}:{self.pool} pool {key}: opening {oq}/{ob} + acquired {m[0]}/{m[1]} - disposed "
                    f"{m[2]}/{m[3]} + in {m[4]}/{m[5]} - out {m[6]}/{m[7]} != closing {cq}/{cb} (quantity/basis)")
            rows.append(RollForward(key[0], key[1], oq, ob, *m, cq, cb, self.shortfall_qty.get(key, ZERO)))
        return rows


def _utc_cutoff(day: date) -> datetime:
    return datetime.combine(day + timedelta(days=1), time.min, tzinfo=timezone.utc)


def compute_book(legs: Iterable[PnlLeg], *, method: str = "fifo", pool: str = "universal",
                 schedule: Sequence[BookPeriod] | None = None,
                 report_from: date | None = None, report_to: date | None = None,
                 fair_values: PriceLookup | None = None, cutoff: Callable[[date], datetime] = _utc_cutoff,
                 start_state: BookState | None = None, keep_open_lots: bool = False,
                 keep_states: bool = False, holding: HoldingPeriod | None = None) -> BookResult:
    """Run one book over legs (any order; sorted here by booking day, time, event, leg).

    ``schedule`` (else the constant ``method``/``pool``) says which method and pool apply from which
    day. ``fair_values`` defaults to the legs' own trade prices. ``start_state`` continues a book
    saved at the end of ``start_state.as_of``: only legs booked after that day are processed.
    Disposals are returned for every processed day; daily pool states, open lots
    (``keep_open_lots``), end-of-day states (``keep_states``) and the roll-forward only for
    [report_from, report_to]. A roll-forward that does not tie out raises ``TieOutError``. ``holding`` is the
    holding-period rule and the timezone of its calendar dates (default: ``us`` in UTC).
    """
    periods = sorted(schedule or [BookPeriod(None, method, pool)], key=lambda p: p.effective_from or date.min)
    legs = list(legs)
    excluded: dict[int, int] = {}
    if any(leg.unverified for leg in legs):
        for leg in legs:
            if leg.unverified:
                excluded[leg.asset_id] = excluded.get(leg.asset_id, 0) + 1
        legs = [leg for leg in legs if not leg.unverified]
    if fair_values is None:
        fair_values = FairValues(map_ledger_prices(legs))
    if start_state is not None:
        legs = [leg for leg in legs if leg.close_date > start_state.as_of]
    ordered = sorted(legs, key=lambda l: (l.close_date, l.ts, l.group_id, l.leg_index, l.id))
    first_day = start_state.as_of + timedelta(days=1) if start_state is not None else (
        ordered[0].close_date if ordered else report_from)
    current = _period_at(periods, start_state.as_of if start_state else (first_day or date.min))
    book = _Book(current, fair_values, cutoff, holding)
    book.result.schedule = tuple(periods)
    book.result.excluded = excluded
    if start_state is not None:
        book.restore(start_state)
    opening: dict[tuple[int, int], tuple[Decimal, Decimal]] | None = None
    with exact_context():
        by_day = {day: list(group) for day, group in groupby(ordered, key=lambda l: l.close_date)}
        visit = set(by_day)
        if report_from is not None:
            report_end = report_to or max(by_day, default=report_from)
            visit.update(_days(max(report_from, first_day or report_from), report_end))
        for day in sorted(d for d in visit if first_day is None or d >= first_day):
            period = _period_at(periods, day)
            if (period.method, period.pool) != (book.method, book.pool):
                book.switch(period)
            in_report = report_from is not None and report_from <= day <= report_end
            if in_report and opening is None:
                opening = book.totals()
                book.recording = True
            if report_from is not None and day > report_end:
                book.recording = False
            for _, group in groupby(by_day.get(day, ()), key=lambda l: (l.ts, l.group_id)):
                book.process_group(list(group))  # already in leg order
            if in_report:
                book.snapshot(day, keep_open_lots)
                if keep_states:
                    book.result.states.append(book.state(day))
            else:
                book.realized_today.clear()
        if opening is not None:
            book.result.rollforward = book.rollforward(opening)
        book.result.method, book.result.pool = book.method, book.pool
    return book.result


def _days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def _period_at(periods: Sequence[BookPeriod], day: date) -> BookPeriod:
    current = periods[0]
    for period in periods:
        if period.effective_from is None or period.effective_from <= day:
            current = period
    return current

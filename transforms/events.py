"""The event layer's closed vocabulary: leg kinds, event types and the accounting treatment of each (pure).

Every canonical leg (``transactions.kind``, enforced by a CHECK constraint) is one of ``LegKind``; every group
of legs (``group_id``: the source's own id of the event) is one ``EventType``. The cost-basis engine acts on a
leg's ``Treatment`` only, never on the sign of its quantity; the table in docs/cost-basis.md ("Leg kinds and
their treatment") is generated from ``KINDS`` (``treatment_table``) and a test checks they agree.

A kind has a direction (``in``: the leg must add to the account, ``out``: it must take away, ``either``: the
treatment says what each direction means). A leg whose sign contradicts its kind's direction is not booked
(the engine lists it in its issues, and the canonical suite fails at error severity).

``value_trade`` is the one value of a trade: the proceeds of what is given equal the cost of what is received,
valued from (in order) a fiat side, a stablecoin side, the price of the received asset, the price of the given
asset. The engine uses it for the database close and for ``coinfrs pnl compute --ledger``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from warehouse.numbers import SCALE, ZERO


class Treatment(StrEnum):
    ACQUISITION = "acquisition"
    INCOME = "income"
    DISPOSAL = "disposal"
    EXPENSE = "expense"
    INTERNAL_TRANSFER = "internal_transfer"
    EXTERNAL_IN = "external_in"
    EXTERNAL_OUT = "external_out"
    LOAN_DRAW = "loan_draw"
    LOAN_REPAYMENT = "loan_repayment"
    LIABILITY = "liability"
    SETTLEMENT = "settlement"
    ADJUSTMENT = "adjustment"
    NONE = "none"


TREATMENT_TEXT: dict[Treatment, str] = {
    Treatment.ACQUISITION: "a lot at the trade's one value (+ the trade's fee when it is the main leg)",
    Treatment.INCOME: "a lot at fair value; the value is income",
    Treatment.DISPOSAL: "matched to lots; proceeds = the trade's one value (- the trade's fee when it is the main leg)",
    Treatment.EXPENSE: "a disposal at fair value (reported as kind `fee`); attached to a trade, it adds to the cost "
                       "of what is received or reduces the proceeds of what is given",
    Treatment.INTERNAL_TRANSFER: "matched: lots move with basis and dates (per-account pools), no PnL; unmatched: "
                                 "out at basis, in at fair value, no gain",
    Treatment.EXTERNAL_IN: "a lot at fair value, not income, flagged for review",
    Treatment.EXTERNAL_OUT: "lots leave at basis, no gain or loss",
    Treatment.LOAN_DRAW: "a lot at fair value, not income (the liability leg carries the debt)",
    Treatment.LOAN_REPAYMENT: "lots leave at basis, no gain or loss",
    Treatment.LIABILITY: "no lots: the movement of a liability (loan) account",
    Treatment.SETTLEMENT: "received: a lot at fair value; paid: a disposal at fair value",
    Treatment.ADJUSTMENT: "in: a lot at fair value (flagged); out: lots leave at basis, no gain",
    Treatment.NONE: "never booked (no lots, no disposal); `unclassified` blocks PnL from its day",
}


class LegKind(StrEnum):
    BUY = "buy"
    SELL = "sell"
    FEE = "fee"
    INCOME = "income"
    STAKING_REWARD = "staking_reward"
    AIRDROP = "airdrop"
    INTEREST = "interest"
    REBATE = "rebate"
    MINING = "mining"
    SPEND = "spend"
    DEPOSIT = "deposit"
    WITHDRAWAL = "withdrawal"
    TRANSFER_IN = "transfer_in"
    TRANSFER_OUT = "transfer_out"
    BORROW = "borrow"
    REPAY = "repay"
    LIABILITY = "liability"
    INTEREST_EXPENSE = "interest_expense"
    REALIZED_PNL = "realized_pnl"
    FUNDING = "funding"
    OPENING_BALANCE = "opening_balance"
    ADJUSTMENT = "adjustment"
    SPAM = "spam"
    UNCLASSIFIED = "unclassified"


class EventType(StrEnum):
    TRADE = "trade"
    FEE = "fee"
    INCOME = "income"
    SPEND = "spend"
    EXTERNAL_DEPOSIT = "external_deposit"
    EXTERNAL_WITHDRAWAL = "external_withdrawal"
    INTERNAL_TRANSFER = "internal_transfer"
    INTERNAL_MOVE = "internal_move"
    LOAN_DRAW = "loan_draw"
    LOAN_REPAYMENT = "loan_repayment"
    INTEREST_EXPENSE = "interest_expense"
    DERIVATIVES_SETTLEMENT = "derivatives_settlement"
    OPENING_BALANCE = "opening_balance"
    ADJUSTMENT = "adjustment"
    SPAM = "spam"
    UNCLASSIFIED = "unclassified"


@dataclass(frozen=True)
class KindSpec:
    kind: LegKind
    treatment: Treatment
    direction: str  # in | out | either
    event: EventType  # the event a leg of this kind makes when alone (a trade's legs: trade)
    meaning: str


KINDS: dict[LegKind, KindSpec] = {spec.kind: spec for spec in (
    KindSpec(LegKind.BUY, Treatment.ACQUISITION, "in", EventType.TRADE, "what a trade receives"),
    KindSpec(LegKind.SELL, Treatment.DISPOSAL, "out", EventType.TRADE, "what a trade gives"),
    KindSpec(LegKind.FEE, Treatment.EXPENSE, "out", EventType.FEE, "a fee paid (trade, network, withdrawal)"),
    KindSpec(LegKind.INCOME, Treatment.INCOME, "in", EventType.INCOME, "income (commission, referral, other)"),
    KindSpec(LegKind.STAKING_REWARD, Treatment.INCOME, "in", EventType.INCOME, "a staking or earn reward"),
    KindSpec(LegKind.AIRDROP, Treatment.INCOME, "in", EventType.INCOME, "an airdrop or distribution"),
    KindSpec(LegKind.INTEREST, Treatment.INCOME, "in", EventType.INCOME, "interest earned (savings, lending)"),
    KindSpec(LegKind.REBATE, Treatment.INCOME, "in", EventType.INCOME, "a fee rebate or cashback"),
    KindSpec(LegKind.MINING, Treatment.INCOME, "in", EventType.INCOME, "a mining reward"),
    KindSpec(LegKind.SPEND, Treatment.DISPOSAL, "out", EventType.SPEND, "crypto spent on goods or services (at fair value)"),
    KindSpec(LegKind.DEPOSIT, Treatment.EXTERNAL_IN, "in", EventType.EXTERNAL_DEPOSIT, "a deposit from outside the entity"),
    KindSpec(LegKind.WITHDRAWAL, Treatment.EXTERNAL_OUT, "out", EventType.EXTERNAL_WITHDRAWAL,
             "a withdrawal to outside the entity (or not matched yet)"),
    KindSpec(LegKind.TRANSFER_IN, Treatment.INTERNAL_TRANSFER, "in", EventType.INTERNAL_TRANSFER,
             "the receiving side of a move between owned accounts"),
    KindSpec(LegKind.TRANSFER_OUT, Treatment.INTERNAL_TRANSFER, "out", EventType.INTERNAL_TRANSFER,
             "the sending side of a move between owned accounts"),
    KindSpec(LegKind.BORROW, Treatment.LOAN_DRAW, "in", EventType.LOAN_DRAW, "the asset received from a loan"),
    KindSpec(LegKind.REPAY, Treatment.LOAN_REPAYMENT, "out", EventType.LOAN_REPAYMENT, "the principal paid back"),
    KindSpec(LegKind.LIABILITY, Treatment.LIABILITY, "either", EventType.LOAN_DRAW,
             "the loan account's side of a draw, repayment or accrued interest"),
    KindSpec(LegKind.INTEREST_EXPENSE, Treatment.EXPENSE, "out", EventType.INTEREST_EXPENSE, "interest paid on a loan"),
    KindSpec(LegKind.REALIZED_PNL, Treatment.SETTLEMENT, "either", EventType.DERIVATIVES_SETTLEMENT,
             "a derivatives position's realized profit or loss"),
    KindSpec(LegKind.FUNDING, Treatment.SETTLEMENT, "either", EventType.DERIVATIVES_SETTLEMENT,
             "a perpetual futures funding payment"),
    KindSpec(LegKind.OPENING_BALANCE, Treatment.EXTERNAL_IN, "in", EventType.OPENING_BALANCE,
             "a balance held before the first record"),
    KindSpec(LegKind.ADJUSTMENT, Treatment.ADJUSTMENT, "either", EventType.ADJUSTMENT,
             "a manual correction (who, when, why) or a reorg reversal"),
    KindSpec(LegKind.SPAM, Treatment.NONE, "either", EventType.SPAM, "a spam token movement"),
    KindSpec(LegKind.UNCLASSIFIED, Treatment.NONE, "either", EventType.UNCLASSIFIED,
             "an operation no mapper understands (blocks PnL from its day)"),
)}
KIND_VALUES: tuple[str, ...] = tuple(k.value for k in LegKind)
EVENT_VALUES: tuple[str, ...] = tuple(e.value for e in EventType)
TRADE_TREATMENTS = (Treatment.ACQUISITION, Treatment.DISPOSAL)
# USD stablecoins: a trade against one is valued from its side (at its own price) before the crypto side's price
STABLECOINS: tuple[str, ...] = ("USDT", "USDC", "DAI", "BUSD", "FDUSD", "TUSD", "USDP", "PYUSD", "GUSD")


_SPECS: dict[str, KindSpec] = {k.value: v for k, v in KINDS.items()}
_UNCLASSIFIED = KINDS[LegKind.UNCLASSIFIED]


def spec(kind: str) -> KindSpec:
    """The vocabulary entry of ``kind``; an unknown string is ``unclassified`` (never booked)."""
    return _SPECS.get(kind, _UNCLASSIFIED)


def treatment_of(kind: str) -> Treatment:
    return _SPECS.get(kind, _UNCLASSIFIED).treatment


def direction_ok(kind: str, quantity: Decimal) -> bool:
    """Whether a leg's sign agrees with its kind's direction (zero agrees with anything)."""
    direction = _SPECS.get(kind, _UNCLASSIFIED).direction
    return direction == "either" or quantity == 0 or (quantity > 0) == (direction == "in")


def directed(kind: str, quantity: Decimal) -> str:
    """``kind`` when the quantity's sign agrees with it, else ``unclassified`` (a mapper's guess the source contradicts
    is never booked: the day's expectation names the record until a rule or a person classifies it)."""
    return kind if direction_ok(kind, quantity) else LegKind.UNCLASSIFIED.value


def trade_side(quantity: Decimal) -> str:
    """A trade row's kind from the source's own direction: what comes in is bought, what goes out is sold."""
    return LegKind.BUY.value if quantity > 0 else LegKind.SELL.value


def check_kind(kind: str, where: str) -> str:
    """``kind`` if it is in the vocabulary, else a ValueError naming ``where`` (a mapper's bug)."""
    if kind not in KIND_VALUES:
        raise ValueError(f"{where}: kind {kind!r} is not in the vocabulary (transforms/events.py)")
    return kind


def event_type(kinds: Iterable[str], same_source_accounts: bool = False) -> EventType:
    """The event a group of legs makes, from its leg kinds (``same_source_accounts``: its transfer legs are
    account types of one source account, an internal move)."""
    specs = [spec(k) for k in kinds]
    if not specs:
        return EventType.UNCLASSIFIED
    present = {s.kind for s in specs}
    if LegKind.UNCLASSIFIED in present:
        return EventType.UNCLASSIFIED
    if present & {LegKind.BUY, LegKind.SELL}:
        return EventType.TRADE
    for kind, event in ((LegKind.BORROW, EventType.LOAN_DRAW), (LegKind.REPAY, EventType.LOAN_REPAYMENT),
                        (LegKind.INTEREST_EXPENSE, EventType.INTEREST_EXPENSE)):
        if kind in present:
            return event
    if present & {LegKind.TRANSFER_IN, LegKind.TRANSFER_OUT}:
        return EventType.INTERNAL_MOVE if same_source_accounts else EventType.INTERNAL_TRANSFER
    main = [s for s in specs if s.kind != LegKind.FEE] or specs
    return main[0].event


# ------------------------------------------------------------------------------ one value per trade

ValueOf = Callable[[object], "Decimal | None"]  # a leg's fair value (its own usd_value, else a price), or None


@dataclass(frozen=True)
class Valuation:
    value: Decimal | None  # the event's one value (None: nothing to value it from)
    rule: str  # fiat | stablecoin | received_price | given_price | none
    asset_id: int | None  # the asset whose value was used
    unit_price: Decimal | None  # that asset's unit value used (value / quantity)

    @property
    def valued_by(self) -> str:
        return self.rule if self.unit_price is None else f"{self.rule}:{self.asset_id}@{self.unit_price}"


@dataclass(frozen=True)
class TradeSide:
    """What ``value_trade`` needs of a trade leg."""

    leg: object
    asset_id: int
    quantity: Decimal  # absolute
    asset_class: str  # fiat | stablecoin | crypto
    received: bool


def value_trade(sides: Sequence[TradeSide], value_of: Callable[[object], Decimal | None]) -> Valuation:
    """The one value of a trade (the given side's proceeds = the received side's cost).

    From, in order: a fiat side; a stablecoin side; the received asset's price; the given asset's price. A side
    is valued only when every leg of it has a value (a leg's own ``usd_value`` first, else its price)."""
    received = [s for s in sides if s.received]
    given = [s for s in sides if not s.received]
    candidates: list[tuple[str, list[TradeSide]]] = []
    for cls, rule in (("fiat", "fiat"), ("stablecoin", "stablecoin")):
        for side in (given, received):
            if side and all(s.asset_class == cls for s in side):
                candidates.append((rule, side))
    candidates += [("received_price", received), ("given_price", given)]
    for rule, side in candidates:
        if not side:
            continue
        values = [value_of(s.leg) for s in side]
        if any(v is None for v in values):
            continue
        total = sum((v for v in values if v is not None), ZERO)
        quantity = sum((s.quantity for s in side), ZERO)
        assets = {s.asset_id for s in side}
        unit = (total / quantity).quantize(SCALE) if quantity and len(assets) == 1 else None
        return Valuation(total, rule, side[0].asset_id if len(assets) == 1 else None, unit)
    return Valuation(None, "none", None, None)


def split_value(value: Decimal, quantities: Sequence[Decimal]) -> list[Decimal]:
    """``value`` shared by quantity (18 decimals; the last share takes the remainder, so the shares add up)."""
    total = sum(quantities, ZERO)
    if len(quantities) == 1 or total == 0:
        return [value] + [ZERO] * (len(quantities) - 1)
    shares = [(value * q / total).quantize(SCALE) for q in quantities[:-1]]
    return shares + [value - sum(shares, ZERO)]


# ------------------------------------------------------------------------------ the documented table

TABLE_HEADER = ("| kind | treatment | direction | event | meaning |", "| --- | --- | --- | --- | --- |")


def treatment_table() -> str:
    """The markdown table of docs/cost-basis.md ("Leg kinds and their treatment"), one row per kind."""
    rows = [f"| `{s.kind.value}` | {s.treatment.value} | {s.direction} | {s.event.value} | {s.meaning} |"
            for s in KINDS.values()]
    return "\n".join((*TABLE_HEADER, *rows))


def treatments_legend() -> str:
    return "\n".join(f"- **{t.value}**: {text}" for t, text in TREATMENT_TEXT.items())

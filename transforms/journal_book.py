"""Journal entries from a cost-basis book (pure): the general ledger that ties to the subledger.

The book (transforms/cost_basis.py) is the subledger: per pool and day it records what was acquired,
disposed of and moved in and out at cost (``PoolDay.movements``), every disposal with its proceeds and
cost (``Disposal``), and the open lots at each close. The journal is written from those figures, never
re-valued from the legs, so the digital-asset balance of the general ledger equals the cost basis of the
open lots by construction; ``tieout`` checks it at every close.

Entries: one per close day and event type (``EVENT_ORDER``), in the book's currency. Lines:

| event | digital assets (per asset; per account in a per-account book) | offset |
| --- | --- | --- |
| disposal (sale, fee, repayment, ...) | credit: the cost basis taken | debit the treatment's outflow role for the proceeds; realized gain/loss for proceeds - cost |
| acquisition (buy, income, borrow, ...) | debit: the basis the book gave the lot | credit the treatment's inflow role |
| transfer between pools (matched transfer, pool change) | credit the source, debit the target at basis | none: nets to zero |
| unmatched transfer in / out | debit / credit at basis | external transfers |
| cash (fiat legs: no lots) | cash per currency and account, at its value | the treatment's role |
| opening balance / restatement | the change of the book's basis not explained by the day's movements | opening equity / suspense |

A fee attached to a buy or a sell (the engine adds its value to the lot's basis or takes it off the
proceeds) is part of the trade: its disposal's offset is clearing, not fee expense. Every treatment is
one row of ``EVENT_TREATMENTS`` (the vocabulary's event type -> journal event, inflow role, outflow role;
transforms/events.py), refined by kind only for income (``INCOME_TREATMENTS``); ``TREATMENTS`` (kind ->
treatment) is derived from them.

Rounding to cents (documented in docs/journal.md):
- digital-asset lines use cumulative rounding per (asset[, account]): each line is the change of the
  half-even-rounded running balance, so the GL balance at every close is the subledger's basis rounded
  half-even to the cent, whatever the number of lines;
- every other line is rounded half-even on its own;
- whatever the entry is then out of balance by (a few cents at most) is one ``rounding`` line.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal
from itertools import groupby

from transforms import events
from transforms.cost_basis import BookPeriod, BookResult, Disposal, PnlLeg, PoolDay, compute_book
from transforms.fair_value import PriceLookup
from warehouse.numbers import ZERO, exact_context

CENT = Decimal("0.01")
INVENTORY = "inventory"
ROUNDING = "rounding"

Key = tuple[int, int]  # (pool account id, 0 for the universal pool; asset id)


class JournalError(ValueError):
    """The book's figures do not explain each other (a stale or inconsistent book): never booked silently."""


@dataclass(frozen=True)
class Treatment:
    event: str
    inflow: str  # offset role when the asset comes in (digital assets or cash debited)
    outflow: str  # offset role when it goes out (digital assets credited at cost, the proceeds debited here)


TRADE = Treatment("trade", "clearing", "clearing")
EXTERNAL = Treatment("external", "external_transfers", "external_transfers")
TRANSFER = Treatment("transfer", "external_transfers", "external_transfers")
UNCLASSIFIED = Treatment("unclassified", "suspense", "suspense")
OPENING = Treatment("opening_balance", "opening_equity", "opening_equity")
RESTATEMENT = Treatment("restatement", "suspense", "suspense")

INCOME = Treatment("income", "income", "income")
INTEREST = Treatment("interest", "interest_income", "interest_expense")
LOAN = Treatment("loan", "loan_liability", "loan_liability")
# The journal's treatment of each event type of the vocabulary (transforms/events.py): a leg's treatment is its kind's
# event's, so a new kind of the vocabulary is journaled by its event type without a second table of kinds.
EVENT_TREATMENTS: dict[events.EventType, Treatment] = {
    events.EventType.TRADE: TRADE,
    events.EventType.FEE: Treatment("fee", "fee_expense", "fee_expense"),
    events.EventType.INCOME: INCOME,
    events.EventType.SPEND: Treatment("spend", "spend_expense", "spend_expense"),
    events.EventType.EXTERNAL_DEPOSIT: EXTERNAL,
    events.EventType.EXTERNAL_WITHDRAWAL: EXTERNAL,
    events.EventType.INTERNAL_TRANSFER: EXTERNAL,  # valued by the engine: matched ones are the book's transfers
    events.EventType.INTERNAL_MOVE: EXTERNAL,
    events.EventType.LOAN_DRAW: LOAN,
    events.EventType.LOAN_REPAYMENT: LOAN,
    events.EventType.INTEREST_EXPENSE: INTEREST,
    events.EventType.DERIVATIVES_SETTLEMENT: Treatment("derivatives", "derivatives_pnl", "derivatives_pnl"),
    events.EventType.OPENING_BALANCE: OPENING,
    events.EventType.ADJUSTMENT: Treatment("adjustment", "suspense", "suspense"),
    events.EventType.SPAM: UNCLASSIFIED,
    events.EventType.UNCLASSIFIED: UNCLASSIFIED,
}
# Income has one GL account per kind of income (the event type is the same): the only refinement by kind.
INCOME_TREATMENTS: dict[events.LegKind, Treatment] = {
    events.LegKind.STAKING_REWARD: Treatment("staking", "staking_income", "staking_income"),
    events.LegKind.AIRDROP: Treatment("airdrop", "airdrop_income", "airdrop_income"),
    events.LegKind.INTEREST: INTEREST,
}
# the engine books no lots for them (transforms/events.py: no treatment, or a liability account's movement)
NOT_BOOKED_KINDS: tuple[str, ...] = tuple(
    k.value for k, s in events.KINDS.items() if s.treatment in (events.Treatment.NONE, events.Treatment.LIABILITY))
# kind -> treatment, derived from the vocabulary (the journal, its docs and its tests read it)
TREATMENTS: dict[str, Treatment] = {
    k.value: INCOME_TREATMENTS.get(k, EVENT_TREATMENTS[s.event])
    for k, s in events.KINDS.items() if k.value not in NOT_BOOKED_KINDS
}
TRADE_KINDS = ("buy", "sell")  # a fee leg in a group led by one of these is part of the trade (engine rule)

EVENT_ORDER: tuple[str, ...] = (
    "opening_balance", "restatement", "transfer", "external", "trade", "fee", "income", "staking", "airdrop",
    "interest", "spend", "derivatives", "loan", "adjustment", "unclassified", "fair_value",
)

# Fair value at each period end (month end): the GL account that rolls, and its offset through net income.
FAIR_VALUE_POLICIES: dict[str, tuple[str, str]] = {
    "asu_2023_08": ("fair_value_adjustment", "unrealized_gain"),  # remeasure to fair value (US GAAP ASU 2023-08)
    "ifrs_cost_impairment": ("accumulated_impairment", "impairment_loss"),  # cost less impairment (IAS 38 / IAS 36)
}
CUMULATIVE_ROLES = (INVENTORY, "fair_value_adjustment", "accumulated_impairment")


def treatment_of(kind: str, *, attached_fee: bool = False) -> Treatment:
    """The treatment of a leg of ``kind``; a fee attached to a buy or sell is part of the trade."""
    if attached_fee:
        return TRADE
    return TREATMENTS.get(kind, UNCLASSIFIED)


def cents(value: Decimal) -> Decimal:
    """Half-even to the cent."""
    with exact_context():
        return value.quantize(CENT, rounding=ROUND_HALF_EVEN)


@dataclass
class BookView:
    """What the journal reads from a book over [first, last]: the subledger's own figures.

    ``days``: the pool rows of the days (movements and closing basis); ``disposals`` with their pool;
    ``opening``: the exact basis per pool at the end of the day before ``first``; ``legs``: the legs of the
    days (kinds, groups, fiat legs for cash); ``fair_values``: the lookup the book used (to split a pool's
    acquisitions between treatments); ``pool_of``: the pool type in force on a day; ``fiat``: fiat asset id
    -> symbol; ``currency``: the book's currency."""

    first: date
    last: date
    days: Sequence[PoolDay]
    disposals: Sequence[Disposal]
    opening: Mapping[Key, Decimal]
    legs: Sequence[PnlLeg]
    fair_values: PriceLookup
    pool_of: Callable[[date], str]
    fiat: Mapping[int, str]
    currency: str = "USD"
    had_opening: Mapping[Key, bool] = field(default_factory=dict)  # the key had a stored row before ``first``
    fair_value: FairValueInputs | None = None


@dataclass
class FairValueInputs:
    """The GL balance the fair-value account must have at each period end, per pool (``fair_value_required``),
    and at the last period end before the journal's first day."""

    policy: str
    opening: Mapping[Key, Decimal]
    period_ends: Mapping[date, Mapping[Key, Decimal | None]]


def fair_value_required(policy: str, rows: Iterable[PoolDay], lots: Iterable["OpenLotLike"]) -> dict[Key, Decimal | None]:
    """The balance of the fair-value account per pool at a period end (debit +); None where the asset has no price
    (the account keeps its previous balance).

    - ``asu_2023_08``: fair value - cost of the pool (the adjustment account is debit when above cost).
    - ``ifrs_cost_impairment``: minus the accumulated impairment, per lot ``max(0, cost - quantity x price)``; a
      lot is never written up above its cost, and a recovery reverses the impairment up to its cost."""
    required: dict[Key, Decimal | None] = {}
    with exact_context():
        rows = list(rows)
        if policy == "asu_2023_08":
            for row in rows:
                key = (row.pool_account_id, row.asset_id)
                if not row.quantity:
                    required[key] = ZERO
                else:
                    required[key] = row.market_value - row.cost_basis if row.market_value is not None else None
            return required
        if policy != "ifrs_cost_impairment":
            raise ValueError(f"unknown fair-value policy {policy!r}; allowed: none, {', '.join(FAIR_VALUE_POLICIES)}")
        prices = {(row.pool_account_id, row.asset_id): row.close_price_usd for row in rows}
        for key in prices:
            required[key] = ZERO
        for lot in lots:
            key = (lot.pool_account_id, lot.asset_id)
            price = prices.get(key)
            if price is None:
                required[key] = None
                continue
            if required.get(key) is None and key in required:
                continue
            shortfall = lot.cost_basis - lot.quantity * price
            if shortfall > 0:
                required[key] = required.get(key, ZERO) - shortfall
    return required


class OpenLotLike:  # pragma: no cover - typing only: OpenLot and the stored rows have these fields
    pool_account_id: int
    asset_id: int
    quantity: Decimal
    cost_basis: Decimal


@dataclass
class Line:
    role: str
    asset_id: int | None
    account_id: int | None  # the ledger account (per-account books, cash); None for universal pools
    amount: Decimal  # signed: debit +, credit -

    @property
    def debit(self) -> Decimal:
        return self.amount if self.amount > 0 else ZERO

    @property
    def credit(self) -> Decimal:
        return -self.amount if self.amount < 0 else ZERO


@dataclass
class Entry:
    date: date
    event: str
    lines: list[Line]
    exact: dict[tuple[str, int | None, int | None], Decimal] = field(default_factory=dict)
    unvalued_cash_legs: int = 0

    @property
    def total_debit(self) -> Decimal:
        return sum((l.debit for l in self.lines), ZERO)

    @property
    def total_credit(self) -> Decimal:
        return sum((l.credit for l in self.lines), ZERO)


@dataclass
class Journal:
    entries: list[Entry]
    opening_gl: dict[Key, Decimal]  # the rounded GL digital-asset balance before ``first``
    gl_by_day: dict[date, dict[Key, Decimal]]  # the GL digital-asset balance at each close with activity


def _group_key(leg: PnlLeg) -> tuple[date, object, str]:
    return (leg.close_date, leg.ts, leg.group_id)


def _attached_fee_legs(legs: Iterable[PnlLeg]) -> set[int]:
    """Fee legs the engine attaches to a buy or sell (added to the basis / taken off the proceeds)."""
    attached: set[int] = set()
    ordered = sorted(legs, key=lambda l: (l.close_date, l.ts, l.group_id, l.leg_index))
    for _, group in groupby(ordered, key=_group_key):
        group = list(group)
        main = group[0].kind if group[0].leg_index == 0 else None
        if main in TRADE_KINDS:
            attached.update(l.id for l in group if l.kind == "fee" and l.leg_index > 0)
    return attached


def _acquisition_values(day_legs: Sequence[PnlLeg], acquirers: set[int], fair_values: PriceLookup,
                        treatments: Mapping[int, Treatment]) -> dict[tuple[int, int, str], Decimal]:
    """The engine's basis of each acquisition, per (account, asset, event): the groups run alone through the
    engine (an acquisition's basis depends on its own group only: its value plus an attached fee)."""
    groups = {_group_key(l) for l in day_legs if l.id in acquirers}
    legs = [l for l in day_legs if _group_key(l) in groups]
    pseudo: dict[tuple, int] = {}
    origin: dict[int, tuple[int, str]] = {}
    isolated = []
    for leg in legs:
        tag = treatments[leg.id].event if leg.id in acquirers else "-"
        slot = (_group_key(leg), leg.account_id, tag)
        if slot not in pseudo:
            pseudo[slot] = len(pseudo) + 1
            origin[pseudo[slot]] = (leg.account_id, tag)
        isolated.append(replace(leg, account_id=pseudo[slot], transfer_status=None, transfer_peer_account_id=None))
    values: dict[tuple[int, int, str], Decimal] = defaultdict(Decimal)
    if not isolated:
        return values
    day = legs[0].close_date
    book = compute_book(isolated, method="fifo", pool="account", fair_values=fair_values, report_from=day, report_to=day)
    for row in book.days:
        acquired = row.movements[1]
        if acquired and row.pool_account_id in origin:
            account_id, tag = origin[row.pool_account_id]
            if tag != "-":
                values[(account_id, row.asset_id, tag)] += acquired
    return values


def build_journal(view: BookView) -> Journal:
    """Journal entries of the book's days [first, last], balanced in cents (see the module docs)."""
    with exact_context():
        return _build(view)


def _build(view: BookView) -> Journal:
    legs_by_id = {l.id: l for l in view.legs}
    attached = _attached_fee_legs(view.legs)
    treatments = {l.id: treatment_of(l.kind, attached_fee=l.id in attached) for l in view.legs}
    legs_by_day: dict[date, list[PnlLeg]] = defaultdict(list)
    for leg in view.legs:
        legs_by_day[leg.close_date].append(leg)
    rows_by_day: dict[date, list[PoolDay]] = defaultdict(list)
    for row in view.days:
        rows_by_day[row.date].append(row)
    disposals_by_day: dict[date, list[Disposal]] = defaultdict(list)
    for d in view.disposals:
        disposals_by_day[d.date].append(d)

    # exact amounts per (day, event) -> (role, asset, account)
    drafts: dict[tuple[date, str], dict[tuple[str, int | None, int | None], Decimal]] = defaultdict(
        lambda: defaultdict(Decimal))
    unvalued: dict[tuple[date, str], int] = defaultdict(int)
    running: dict[Key, Decimal] = dict(view.opening)
    seen = {k for k, had in view.had_opening.items() if had} | set(view.opening)

    def da_key(key: Key) -> tuple[str, int | None, int | None]:
        return (INVENTORY, key[1], key[0] or None)

    def post(day: date, event: str, role: str, asset: int | None, account: int | None, amount: Decimal) -> None:
        if amount:
            drafts[(day, event)][(role, asset, account)] += amount

    for day in sorted(set(rows_by_day) | set(disposals_by_day) | set(legs_by_day)):
        if not view.first <= day <= view.last:
            continue
        pool_type = view.pool_of(day)
        day_legs = legs_by_day.get(day, [])
        rows = {(r.pool_account_id, r.asset_id): r for r in rows_by_day.get(day, [])}

        # disposals: cost off the pool, proceeds to the treatment's role, the difference realized
        disposed: dict[Key, Decimal] = defaultdict(Decimal)
        for d in disposals_by_day.get(day, []):
            leg = legs_by_id.get(d.leg_id)
            if leg is None:
                raise JournalError(f"{day}: disposal of leg {d.leg_id} has no leg in the ledger (stale book)")
            t = TREATMENTS["fee"] if d.kind == "fee" and leg.kind == "fee" and leg.id not in attached else treatments[leg.id]
            key = (d.pool_account_id, d.asset_id)
            disposed[key] += d.cost_basis
            post(day, t.event, INVENTORY, d.asset_id, key[0] or None, -d.cost_basis)
            post(day, t.event, t.outflow, None, None, d.proceeds)
            post(day, t.event, "realized_gain", None, None, -(d.proceeds - d.cost_basis))
        for key, row in rows.items():
            if disposed.get(key, ZERO) != row.movements[3]:
                raise JournalError(f"{day} pool {key}: disposals cost {disposed.get(key, ZERO)} but the book's "
                                   f"disposed basis is {row.movements[3]} (stale book: close the day again)")
        for key, cost in disposed.items():
            if key not in rows and cost:
                raise JournalError(f"{day} pool {key}: disposals cost {cost} but the book has no row for the pool")

        # acquisitions: the book's acquired basis per pool, split between treatments
        acquirers: dict[Key, list[PnlLeg]] = defaultdict(list)
        for leg in day_legs:
            if (leg.is_fiat or leg.unverified or leg.quantity <= 0 or leg.kind in ("transfer_in", *NOT_BOOKED_KINDS)
                    or leg.transfer_status == "matched"):
                continue
            acquirers[(leg.account_id if pool_type == "account" else 0, leg.asset_id)].append(leg)
        mixed_values: dict[tuple[int, int, str], Decimal] | None = None
        for key, row in sorted(rows.items()):
            acquired = row.movements[1]
            found = acquirers.get(key, [])
            events = {treatments[l.id].event: treatments[l.id] for l in found}
            if not found:
                if acquired:
                    raise JournalError(f"{day} pool {key}: acquired basis {acquired} without an acquisition leg")
                continue
            if len(events) == 1:
                (t,) = events.values()
                post(day, t.event, INVENTORY, key[1], key[0] or None, acquired)
                post(day, t.event, t.inflow, None, None, -acquired)
                continue
            if mixed_values is None:
                ids = {l.id for ls in acquirers.values() for l in ls}
                mixed_values = _acquisition_values(day_legs, ids, view.fair_values, treatments)
            split = defaultdict(Decimal)
            for (account_id, asset_id, event), value in mixed_values.items():
                if asset_id == key[1] and (key[0] == 0 or key[0] == account_id):
                    split[event] += value
            if sum(split.values(), ZERO) != acquired:
                raise JournalError(f"{day} pool {key}: acquisitions valued {sum(split.values(), ZERO)} by the engine "
                                   f"but the book's acquired basis is {acquired} (stale book: close the day again)")
            for event, value in sorted(split.items()):
                t = events[event]
                post(day, event, INVENTORY, key[1], key[0] or None, value)
                post(day, event, t.inflow, None, None, -value)

        # transfers between pools and unmatched transfers (at basis): the net per asset is external; a pool whose
        # moves in (out) of the day are all loan draws (repayments) moves against the loan liability instead (the
        # engine books a draw at fair value and a repayment at basis, neither a gain: transforms/events.py)
        net_transfer: dict[int, Decimal] = defaultdict(Decimal)
        loan = TREATMENTS["borrow"]
        for key, row in rows.items():
            pool_legs = [l for l in day_legs if not l.is_fiat and l.asset_id == key[1]
                         and (key[0] == 0 or l.account_id == key[0])]
            for movement, kind, sign in ((row.movements[5], "borrow", 1), (row.movements[7], "repay", -1)):
                if not movement:
                    continue
                movers = {l.kind for l in pool_legs if (l.quantity > 0) == (sign > 0)}
                if movers == {kind}:
                    post(day, loan.event, INVENTORY, key[1], key[0] or None, sign * movement)
                    post(day, loan.event, loan.inflow, None, None, -sign * movement)
                    continue
                post(day, "transfer", INVENTORY, key[1], key[0] or None, sign * movement)
                net_transfer[key[1]] += sign * movement
        for asset_id, net in net_transfer.items():
            post(day, "transfer", TRANSFER.inflow, None, None, -net)

        # the book's basis not explained by the day's movements: an opening balance or a restatement
        for key, row in sorted(rows.items()):
            m = row.movements
            implied_opening = row.cost_basis - (m[1] - m[3] + m[5] - m[7])
            before = running.get(key, ZERO)
            if implied_opening != before:
                t = RESTATEMENT if key in seen else OPENING
                post(day, t.event, INVENTORY, key[1], key[0] or None, implied_opening - before)
                post(day, t.event, t.inflow, None, None, -(implied_opening - before))
            running[key] = row.cost_basis
            seen.add(key)

        # cash: fiat legs at their value in the book's currency
        for leg in day_legs:
            if not leg.is_fiat or leg.unverified or not leg.quantity:
                continue
            t = treatments[leg.id]
            value = _cash_value(leg, view)
            if value is None:
                unvalued[(day, t.event)] += 1
                continue
            signed = value if leg.quantity > 0 else -value
            post(day, t.event, "cash", leg.asset_id, leg.account_id, signed)
            post(day, t.event, t.inflow if leg.quantity > 0 else t.outflow, None, None, -signed)

    fv_opening: dict[tuple[str, int, int], Decimal] = {}
    if view.fair_value is not None and view.fair_value.policy in FAIR_VALUE_POLICIES:
        account_role, offset_role = FAIR_VALUE_POLICIES[view.fair_value.policy]
        previous = dict(view.fair_value.opening)
        fv_opening = {(account_role, *key): value for key, value in previous.items()}
        for day in sorted(view.fair_value.period_ends):
            if not view.first <= day <= view.last:
                continue
            required = view.fair_value.period_ends[day]
            for key in sorted(set(required) | set(previous)):
                target = required.get(key, ZERO)
                if target is None:
                    continue  # unpriced: the account keeps its balance
                delta = target - previous.get(key, ZERO)
                post(day, "fair_value", account_role, key[1], key[0] or None, delta)
                post(day, "fair_value", offset_role, None, None, -delta)
                previous[key] = target
    return _round(view, drafts, unvalued, fv_opening)


def _cash_value(leg: PnlLeg, view: BookView) -> Decimal | None:
    if view.fiat.get(leg.asset_id) == view.currency:
        return abs(leg.quantity)
    if leg.usd_value is not None:
        return abs(leg.usd_value)
    price = view.fair_values.price_at(leg.asset_id, leg.ts)
    return abs(leg.quantity) * price if price is not None else None


def _event_rank(event: str) -> int:
    return EVENT_ORDER.index(event) if event in EVENT_ORDER else len(EVENT_ORDER)


def _round(view: BookView, drafts: Mapping[tuple[date, str], Mapping[tuple[str, int | None, int | None], Decimal]],
           unvalued: Mapping[tuple[date, str], int], fv_opening: Mapping[tuple[str, int, int], Decimal]) -> Journal:
    exact_running: dict[Key, Decimal] = dict(view.opening)
    other_running: dict[tuple[str, int, int], Decimal] = dict(fv_opening)
    opening_gl = {k: cents(v) for k, v in view.opening.items()}
    gl: dict[Key, Decimal] = dict(opening_gl)
    gl_by_day: dict[date, dict[Key, Decimal]] = {}
    entries: list[Entry] = []
    keys = sorted(set(drafts) | set(unvalued), key=lambda k: (k[0], _event_rank(k[1]), k[1]))
    for day, event in keys:
        amounts = drafts.get((day, event), {})
        lines: list[Line] = []
        for (role, asset_id, account_id), amount in sorted(amounts.items(), key=_line_order):
            if role == INVENTORY:
                key = (account_id or 0, asset_id or 0)
                before = exact_running.get(key, ZERO)
                exact_running[key] = before + amount
                rounded = cents(exact_running[key]) - cents(before)
                gl[key] = gl.get(key, ZERO) + rounded
            elif role in CUMULATIVE_ROLES:
                slot = (role, account_id or 0, asset_id or 0)
                before = other_running.get(slot, ZERO)
                other_running[slot] = before + amount
                rounded = cents(other_running[slot]) - cents(before)
            else:
                rounded = cents(amount)
            if rounded:
                lines.append(Line(role, asset_id, account_id, rounded))
        difference = sum((l.amount for l in lines), ZERO)
        if difference:
            lines.append(Line(ROUNDING, None, None, -difference))
        entry = Entry(day, event, lines, dict(amounts), unvalued.get((day, event), 0))
        if entry.total_debit != entry.total_credit:  # pragma: no cover - the rounding line makes it so
            raise JournalError(f"unbalanced entry {day} {event}")
        if lines or entry.unvalued_cash_legs:
            entries.append(entry)
        gl_by_day[day] = dict(gl)
    return Journal(entries, opening_gl, gl_by_day)


def _line_order(item: tuple[tuple[str, int | None, int | None], Decimal]) -> tuple:
    (role, asset_id, account_id), _ = item
    return (role != INVENTORY, role != "cash", role, asset_id or 0, account_id or 0)


def gl_balance_at(journal: Journal, day: date) -> dict[Key, Decimal]:
    """The GL digital-asset balance per pool key at the close of ``day``."""
    earlier = [d for d in journal.gl_by_day if d <= day]
    return dict(journal.gl_by_day[max(earlier)]) if earlier else dict(journal.opening_gl)


@dataclass(frozen=True)
class TieoutRow:
    pool_account_id: int
    asset_id: int
    gl: Decimal
    subledger: Decimal  # the open lots' basis, half-even to the cent
    difference: Decimal  # gl - subledger

    @property
    def ties(self) -> bool:
        return self.difference == 0


def tieout(gl: Mapping[Key, Decimal], open_lots_basis: Mapping[Key, Decimal]) -> list[TieoutRow]:
    """GL digital assets against the subledger per (pool account, asset): the open lots' basis rounded half-even
    to the cent. A row per key on either side; a non-zero ``difference`` is an error on the close."""
    rows = []
    with exact_context():
        for key in sorted(set(gl) | set(open_lots_basis)):
            g = gl.get(key, ZERO)
            s = cents(open_lots_basis.get(key, ZERO))
            if g == 0 and s == 0:
                continue
            rows.append(TieoutRow(key[0], key[1], g, s, g - s))
    return rows


def pool_in_force(periods: Sequence[BookPeriod], day: date) -> str:
    """The pool type (universal or account) a book's schedule has in force on ``day``."""
    ordered = sorted(periods, key=lambda p: p.effective_from or date.min)
    current = ordered[0]
    for period in ordered:
        if period.effective_from is None or period.effective_from <= day:
            current = period
    return current.pool


def view_of_book(book: BookResult, legs: Sequence[PnlLeg], fair_values: PriceLookup, first: date, last: date, *,
                 fiat: Mapping[int, str], currency: str = "USD") -> BookView:
    """A ``BookView`` of an in-memory book (run with ``report_from`` on or before ``first``)."""
    periods = list(book.schedule) or [BookPeriod(None, book.method, book.pool)]
    pool_of = lambda day: pool_in_force(periods, day)  # noqa: E731
    opening: dict[Key, Decimal] = {}
    for row in book.days:
        if row.date < first:
            opening[(row.pool_account_id, row.asset_id)] = row.cost_basis
    return BookView(first, last, [r for r in book.days if first <= r.date <= last],
                    [d for d in book.disposals if first <= d.date <= last], opening,
                    [l for l in legs if first <= l.close_date <= last], fair_values, pool_of, fiat, currency,
                    {k: True for k in opening})


@dataclass(frozen=True)
class RollForwardRow:
    """One pool's roll-forward over a period: ``opening + in - out - fees = closing``, in quantity and cost.

    ``in``: acquisitions and lots moved or transferred in; ``out``: sales (and other disposals) and lots moved or
    transferred out; ``fees``: fee disposals. Fair value: at the opening and closing close prices (None when
    unpriced); flows at their own value (``in`` at cost, which is the acquisition's fair value plus fees;
    ``out_proceeds`` and ``fees_value`` what the disposals realized); ``fair_value_change`` is the rest (realized
    and unrealized holding gains)."""

    pool_account_id: int
    asset_id: int
    opening_quantity: Decimal
    opening_cost: Decimal
    opening_fair_value: Decimal | None
    in_quantity: Decimal
    in_cost: Decimal
    out_quantity: Decimal
    out_cost: Decimal
    out_proceeds: Decimal
    fees_quantity: Decimal
    fees_cost: Decimal
    fees_value: Decimal
    closing_quantity: Decimal
    closing_cost: Decimal
    closing_fair_value: Decimal | None
    fair_value_change: Decimal | None


Snapshot = tuple[Decimal, Decimal, Decimal | None]  # quantity, cost, fair value at a close


def asset_rollforward(days: Sequence[PoolDay], disposals: Sequence[Disposal], opening: Mapping[Key, Snapshot],
                      closing: Mapping[Key, Snapshot]) -> list[RollForwardRow]:
    """The roll-forward per pool of the book's rows and disposals of a period; a pool whose figures do not roll
    (opening + in - out - fees != closing) is a ``JournalError``."""
    with exact_context():
        moves: dict[Key, list[Decimal]] = defaultdict(lambda: [ZERO] * 8)
        for row in days:
            acc = moves[(row.pool_account_id, row.asset_id)]
            for i, value in enumerate(row.movements):
                acc[i] += value
        fees: dict[Key, list[Decimal]] = defaultdict(lambda: [ZERO] * 3)
        proceeds: dict[Key, Decimal] = defaultdict(Decimal)
        for d in disposals:
            key = (d.pool_account_id, d.asset_id)
            if d.kind == "fee":
                f = fees[key]
                f[0] += d.quantity - d.shortfall_quantity
                f[1] += d.cost_basis
                f[2] += d.proceeds
            else:
                proceeds[key] += d.proceeds
        rows = []
        empty: Snapshot = (ZERO, ZERO, ZERO)
        for key in sorted(set(moves) | set(opening) | set(closing) | set(fees) | set(proceeds)):
            m = moves.get(key, [ZERO] * 8)
            oq, oc, ofv = opening.get(key, empty)
            cq, cc, cfv = closing.get(key, empty)
            fq, fc, fv = fees.get(key, [ZERO] * 3)
            in_q, in_c = m[0] + m[4], m[1] + m[5]
            out_q, out_c = m[2] - fq + m[6], m[3] - fc + m[7]
            if oq + in_q - out_q - fq != cq or oc + in_c - out_c - fc != cc:
                raise JournalError(f"pool {key}: opening {oq}/{oc} + in {in_q}/{in_c} - out {out_q}/{out_c} - fees "
                                   f"{fq}/{fc} != closing {cq}/{cc} (quantity/cost): stale book, close again")
            if not any((oq, oc, in_q, in_c, out_q, out_c, fq, fc, cq, cc, proceeds.get(key, ZERO))):
                continue
            change = (cfv - ofv - in_c + proceeds.get(key, ZERO) + fv) if cfv is not None and ofv is not None else None
            rows.append(RollForwardRow(key[0], key[1], oq, oc, ofv, in_q, in_c, out_q, out_c, proceeds.get(key, ZERO),
                                       fq, fc, fv, cq, cc, cfv, change))
    return rows

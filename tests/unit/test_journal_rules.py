"""Journal entries from the book, per event type (the worked example of docs/journal.md), and properties over
random ledgers: every entry balances in cents and the GL equals the subledger per asset at every close."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.ledger_dsl import ASSETS, Ledger
from transforms.cost_basis import BookPeriod
from tests.unit.test_cost_basis_properties import BOOKS, START, build, event
from transforms.journal_book import (
    EVENT_ORDER,
    TREATMENTS,
    UNCLASSIFIED,
    build_journal,
    cents,
    gl_balance_at,
    tieout,
    treatment_of,
    view_of_book,
)

NAMES = {v: k for k, v in ASSETS.items()}
FIAT = {ASSETS["USD"]: "USD"}


def worked_ledger() -> Ledger:
    """docs/journal.md, "Worked example": one event type per day, accounts A and B."""
    L = Ledger()
    L.buy("2024-01-01", "A", "BTC", "2", price="100", fee=("USD", "4"))
    L.buy("2024-01-01", "A", "BNB", "1", price="300")
    L.sell("2024-01-02", "A", "BTC", "1", price="150", fee=("USD", "3"))
    L.price("2024-01-03", "BNB", "400")
    L.buy("2024-01-03", "A", "ETH", "10", price="200", quote="BTC", quote_qty="0.5", fee=("BNB", "0.01"))
    L.income("2024-01-04", "A", "ETH", "0.5", price="2000", kind="staking_reward")
    L.income("2024-01-04", "A", "ETH", "1", price="1000", kind="airdrop")
    L.income("2024-01-04", "A", "ETH", "0.1", price="2000", kind="interest")
    L.price("2024-01-05", "ETH", "2500")
    L.transfer("2024-01-05", "A", "B", "ETH", "1", fee="0.01")
    L.income("2024-01-06", "A", "ETH", "-0.1", price="2500", kind="interest_expense")
    L.income("2024-01-07", "A", "BTC", "0.1", price="40000", kind="borrow")
    L.income("2024-01-08", "A", "BTC", "-0.1", price="42000", kind="repay")
    L.price("2024-01-09", "ETH", "2600")
    L.transfer("2024-01-09", "A", "B", "ETH", "0.5", matched=False)
    L.income("2024-01-10", "A", "BNB", "0.003", price="1.5", kind="staking_reward")
    L.income("2024-01-10", "A", "BNB", "0.003", price="1.5", kind="airdrop")
    return L


def journal_of(L: Ledger, pool: str, first: str = "2024-01-01", last: str = "2024-01-10", method: str = "fifo"):
    book = L.book(method, pool, report_from="2024-01-01", report_to=last, keep_open_lots=True)
    view = view_of_book(book, L.legs, L.fair_values(), date.fromisoformat(first), date.fromisoformat(last), fiat=FIAT)
    return build_journal(view), book


def table(journal) -> dict[tuple[str, str], list[tuple]]:
    return {(e.date.isoformat(), e.event): [(l.role, NAMES.get(l.asset_id), l.account_id, str(l.amount))
                                            for l in e.lines] for e in journal.entries}


def test_worked_example_universal_pool() -> None:
    journal, book = journal_of(worked_ledger(), "universal")
    assert table(journal) == {
        # buy 2 BTC at 100 + 4 USD fee (basis 204), 1 BNB at 300; clearing nets to zero, so only cash remains
        ("2024-01-01", "trade"): [("inventory", "BTC", None, "204.00"), ("inventory", "BNB", None, "300.00"),
                                  ("cash", "USD", 1, "-504.00")],
        # sell 1 BTC at 150 less a 3 USD fee: proceeds 147, basis 102, gain 45
        ("2024-01-02", "trade"): [("inventory", "BTC", None, "-102.00"), ("cash", "USD", 1, "147.00"),
                                  ("realized_gain", None, None, "-45.00")],
        # 10 ETH worth 2000 for 0.5 BTC (basis 51, gain 1949) + a 0.01 BNB fee (worth 4, basis 3, gain 1) added to
        # the ETH basis (2004): the fee is part of the trade, its offset is clearing, which nets to zero
        ("2024-01-03", "trade"): [("inventory", "BTC", None, "-51.00"), ("inventory", "ETH", None, "2004.00"),
                                  ("inventory", "BNB", None, "-3.00"), ("realized_gain", None, None, "-1950.00")],
        # income by type, the same day and pool: the book's acquired basis (2200) split by the engine's valuation
        ("2024-01-04", "staking"): [("inventory", "ETH", None, "1000.00"), ("staking_income", None, None, "-1000.00")],
        ("2024-01-04", "airdrop"): [("inventory", "ETH", None, "1000.00"), ("airdrop_income", None, None, "-1000.00")],
        ("2024-01-04", "interest"): [("inventory", "ETH", None, "200.00"), ("interest_income", None, None, "-200.00")],
        # an internal transfer is invisible to the universal pool; its 0.01 ETH network fee is an expense at fair
        # value (25) against a basis of 2.004: gain 22.996
        ("2024-01-05", "fee"): [("inventory", "ETH", None, "-2.00"), ("fee_expense", None, None, "25.00"),
                                ("realized_gain", None, None, "-23.00")],
        # interest paid in 0.1 ETH (250): interest expense, the ETH disposed of at basis 20.04
        ("2024-01-06", "interest"): [("inventory", "ETH", None, "-20.04"), ("interest_expense", None, None, "250.00"),
                                     ("realized_gain", None, None, "-229.96")],
        ("2024-01-07", "loan"): [("inventory", "BTC", None, "4000.00"), ("loan_liability", None, None, "-4000.00")],
        # repaying 0.1 BTC: the lots leave at basis, no gain or loss (issue 12: a loan is never a taxable event);
        # FIFO takes 0.1 of the Jan 1 lot (10.20), which lowers the liability by the same amount
        ("2024-01-08", "loan"): [("inventory", "BTC", None, "-10.20"), ("loan_liability", None, None, "10.20")],
        # 0.5 ETH sent to an address the entity does not own (unmatched): lots leave at basis, no gain
        ("2024-01-09", "transfer"): [("inventory", "ETH", None, "-100.20"), ("external_transfers", None, None, "100.20")],
        # two 0.0045 BNB rewards: the staking entry rounds to nothing; the airdrop moves the rounded running BNB
        # balance from 297.00 to 297.01 while its income rounds to 0.00: one rounding line
        ("2024-01-10", "airdrop"): [("inventory", "BNB", None, "0.01"), ("rounding", None, None, "-0.01")],
    }
    lots: dict[tuple[int, int], Decimal] = defaultdict(Decimal)
    for lot in book.open_lots:
        if lot.date == date(2024, 1, 10):
            lots[(lot.pool_account_id, lot.asset_id)] += lot.cost_basis
    rows = tieout(gl_balance_at(journal, date(2024, 1, 10)), lots)
    assert [(NAMES[r.asset_id], str(r.gl), str(r.subledger), str(r.difference)) for r in rows] == [
        ("BTC", "4040.80", "4040.80", "0.00"), ("ETH", "4081.76", "4081.76", "0.00"), ("BNB", "297.01", "297.01", "0.00")]


def test_worked_example_per_account_pool_moves_lots_between_accounts() -> None:
    journal, _ = journal_of(worked_ledger(), "account")
    entries = table(journal)
    # the matched transfer moves FIFO's oldest ETH (1 of the 10 @ 2004) from A to B at basis: no offset
    assert entries[("2024-01-05", "transfer")] == [("inventory", "ETH", 1, "-200.40"), ("inventory", "ETH", 2, "200.40")]
    assert entries[("2024-01-05", "fee")] == [("inventory", "ETH", 1, "-2.00"), ("fee_expense", None, None, "25.00"),
                                              ("realized_gain", None, None, "-23.00")]
    assert gl_balance_at(journal, date(2024, 1, 10))[(2, ASSETS["ETH"])] == Decimal("200.40")


def test_tieout_reports_a_difference_in_cents() -> None:
    rows = tieout({(0, 1): Decimal("10.00"), (0, 2): Decimal("5.00")},
                  {(0, 1): Decimal("10.004"), (0, 2): Decimal("5.015"), (0, 3): Decimal("0.001")})
    assert [(r.asset_id, str(r.subledger), str(r.difference), r.ties) for r in rows] == [
        (1, "10.00", "0.00", True), (2, "5.02", "-0.02", False)]  # half-even; a basis under half a cent is no row


def test_treatment_table_is_closed_and_switchable() -> None:
    assert treatment_of("buy").event == "trade" and treatment_of("fee").outflow == "fee_expense"
    assert treatment_of("fee", attached_fee=True).outflow == "clearing"
    assert treatment_of("something new") is UNCLASSIFIED
    assert {t.event for t in TREATMENTS.values()} <= set(EVENT_ORDER)
    assert cents(Decimal("0.005")) == Decimal("0.00") and cents(Decimal("0.015")) == Decimal("0.02")


def test_the_treatments_are_derived_from_the_vocabulary() -> None:
    from transforms import events
    from transforms.journal_book import EVENT_TREATMENTS, INCOME_TREATMENTS, NOT_BOOKED_KINDS

    assert set(TREATMENTS) | set(NOT_BOOKED_KINDS) == set(events.KIND_VALUES)  # every kind, once
    assert not set(TREATMENTS) & set(NOT_BOOKED_KINDS)
    assert set(EVENT_TREATMENTS) == set(events.EventType)  # every event type has its journal treatment
    for kind, spec in events.KINDS.items():
        if kind.value in TREATMENTS:
            expected = INCOME_TREATMENTS.get(kind, EVENT_TREATMENTS[spec.event])
            assert TREATMENTS[kind.value] == expected, kind
    assert set(NOT_BOOKED_KINDS) == {"liability", "spam", "unclassified"}
    assert treatment_of("mining") == treatment_of("income") and treatment_of("spend").outflow == "spend_expense"


def test_a_book_the_legs_do_not_explain_is_an_error() -> None:
    from dataclasses import replace

    from transforms.journal_book import JournalError

    L = worked_ledger()
    book = L.book("fifo", "universal", report_from="2024-01-01", report_to="2024-01-10")
    book.disposals[0] = replace(book.disposals[0], cost_basis=book.disposals[0].cost_basis + 1)
    with pytest.raises(JournalError, match="disposed basis"):
        build_journal(view_of_book(book, L.legs, L.fair_values(), date(2024, 1, 1), date(2024, 1, 10), fiat=FIAT))


PROPS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPS
@given(st.lists(event, max_size=14), st.booleans())
def test_every_entry_balances_in_cents_and_gl_equals_subledger_at_every_close(events: list[tuple], shortfalls: bool) -> None:
    L, end = build(events, allow_shortfalls=shortfalls)
    switch = [BookPeriod(None, "fifo", "universal"), BookPeriod(START + (end - START) // 2, "average", "account")]
    for method, pool in [*BOOKS, ("schedule", "schedule")]:
        book = L.book(method if method != "schedule" else "fifo", pool if pool != "schedule" else "universal",
                      schedule=switch if method == "schedule" else None, report_from=START.isoformat(),
                      report_to=end.isoformat(), keep_open_lots=True)
        journal = build_journal(view_of_book(book, L.legs, L.fair_values(), START, end, fiat=FIAT))
        for entry in journal.entries:
            assert entry.total_debit == entry.total_credit, (method, pool, entry)
            assert all(l.amount == cents(l.amount) and l.amount != 0 for l in entry.lines)
        lots: dict[date, dict[tuple[int, int], Decimal]] = defaultdict(lambda: defaultdict(Decimal))
        for lot in book.open_lots:
            lots[lot.date][(lot.pool_account_id, lot.asset_id)] += lot.cost_basis
        day = START
        while day <= end:
            rows = tieout(gl_balance_at(journal, day), lots.get(day, {}))
            assert all(r.ties for r in rows), (method, pool, day, rows)
            day += timedelta(days=1)


@PROPS
@given(st.lists(event, min_size=2, max_size=12))
def test_a_period_journal_is_the_full_journal_of_its_days(events: list[tuple]) -> None:
    """Entries of [mid, end] written with the opening of the day before mid equal the full journal's entries of
    those days: cumulative rounding does not depend on where the journal starts."""
    L, end = build(events, allow_shortfalls=False)
    mid = START + (end - START) // 2
    for method, pool in (("fifo", "universal"), ("average", "account")):
        book = L.book(method, pool, report_from=START.isoformat(), report_to=end.isoformat())
        full = build_journal(view_of_book(book, L.legs, L.fair_values(), START, end, fiat=FIAT))
        part = build_journal(view_of_book(book, L.legs, L.fair_values(), mid, end, fiat=FIAT))
        shape = lambda entries: [(e.date, e.event, [(l.role, l.asset_id, l.account_id, l.amount) for l in e.lines])  # noqa: E731
                                 for e in entries if e.date >= mid]
        assert shape(part.entries) == shape(full.entries)


def fair_value_ledger() -> Ledger:
    """docs/journal.md, "Fair value": 1 BTC bought at 100 (Jan 10) and 1 at 300 (Jan 20); BTC 250 on Jan 31; the
    100 lot sold at 260 on Feb 10; BTC 200 on Feb 29 and 350 on Mar 31."""
    L = Ledger()
    L.buy("2024-01-10", "A", "BTC", "1", price="100")
    L.buy("2024-01-20", "A", "BTC", "1", price="300")
    L.price("2024-01-31", "BTC", "250")
    L.sell("2024-02-10", "A", "BTC", "1", price="260")
    L.price("2024-02-29", "BTC", "200")
    L.price("2024-03-31", "BTC", "350")
    return L


def fair_value_journal(policy: str, first: str = "2024-01-01"):
    from transforms.journal_book import FairValueInputs, fair_value_required

    L = fair_value_ledger()
    book = L.book("fifo", "universal", report_from="2024-01-01", report_to="2024-03-31", keep_open_lots=True)
    start = date.fromisoformat(first)
    ends = [date(2024, 1, 31), date(2024, 2, 29), date(2024, 3, 31)]
    required = {d: fair_value_required(policy, [r for r in book.days if r.date == d],
                                       [l for l in book.open_lots if l.date == d]) for d in ends}
    before = [d for d in ends if d < start]
    view = view_of_book(book, L.legs, L.fair_values(), start, date(2024, 3, 31), fiat=FIAT)
    view.fair_value = FairValueInputs(policy, {k: v for k, v in required[before[-1]].items() if v is not None}
                                      if before else {}, {d: v for d, v in required.items() if d >= start})
    journal = build_journal(view)
    return {k: v for k, v in table(journal).items() if k[1] == "fair_value"}, journal


def test_asu_2023_08_remeasures_to_fair_value_and_the_adjustment_rolls() -> None:
    entries, journal = fair_value_journal("asu_2023_08")
    assert entries == {
        # fair value 2 x 250 = 500, cost 400: the adjustment account goes to +100 through net income
        ("2024-01-31", "fair_value"): [("fair_value_adjustment", "BTC", None, "100.00"),
                                       ("unrealized_gain", None, None, "-100.00")],
        # 1 BTC left (cost 300) at 200: the account must be -100, a change of -200 (the sold lot's +150 released)
        ("2024-02-29", "fair_value"): [("fair_value_adjustment", "BTC", None, "-200.00"),
                                       ("unrealized_gain", None, None, "200.00")],
        ("2024-03-31", "fair_value"): [("fair_value_adjustment", "BTC", None, "150.00"),
                                       ("unrealized_gain", None, None, "-150.00")],
    }
    # digital assets stay at cost: the tie-out is unchanged
    assert gl_balance_at(journal, date(2024, 3, 31)) == {(0, ASSETS["BTC"]): Decimal("300.00")}
    # a journal that starts after a period end opens from that period end's balance
    later, _ = fair_value_journal("asu_2023_08", first="2024-02-01")
    assert later == {k: v for k, v in entries.items() if k[0] >= "2024-02-01"}


def test_ifrs_impairs_per_lot_and_never_writes_up_above_cost() -> None:
    entries, _ = fair_value_journal("ifrs_cost_impairment")
    assert entries == {
        # per lot: the 100 lot is above cost (no write-up); the 300 lot is impaired by 50
        ("2024-01-31", "fair_value"): [("accumulated_impairment", "BTC", None, "-50.00"),
                                       ("impairment_loss", None, None, "50.00")],
        ("2024-02-29", "fair_value"): [("accumulated_impairment", "BTC", None, "-50.00"),
                                       ("impairment_loss", None, None, "50.00")],
        # 350 is above the lot's cost: the impairment is reversed up to cost, never beyond
        ("2024-03-31", "fair_value"): [("accumulated_impairment", "BTC", None, "100.00"),
                                       ("impairment_loss", None, None, "-100.00")],
    }

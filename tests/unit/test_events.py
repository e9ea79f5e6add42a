"""The event layer (transforms/events.py): the documented vocabulary, one value per trade, loans, and that the
engine books every kind by its treatment, never by the sign of its quantity.

The per-kind test is parametrized from the table in docs/cost-basis.md (parsed here): the doc's treatment of
each kind decides what the engine must do with a leg of that kind."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingestion.csv_files import CsvFile
from transforms.cost_basis import PnlLeg, compute_book
from transforms.events import (EVENT_VALUES, KIND_VALUES, KINDS, EventType, LegKind, TradeSide, event_type,
                               treatment_table, value_trade)
from transforms.fair_value import FairValues, PriceRow
from transforms.ledger_books import map_ledger_files
from warehouse.schema import EVENT_TYPES, LEG_KINDS

DOC = Path(__file__).resolve().parents[2] / "docs" / "cost-basis.md"
MIGRATION = Path(__file__).resolve().parents[2] / "warehouse" / "migrations" / "versions" / "0017_event_vocabulary.py"
UTC = timezone.utc
BTC, ETH, USD, USDT, SOL = 1, 2, 9, 4, 5


def doc_rows() -> list[tuple[str, str, str]]:
    text = DOC.read_text(encoding="utf-8")
    table = text.split("<!-- kinds:begin -->")[1].split("<!-- kinds:end -->")[0]
    rows = []
    for line in table.strip().splitlines()[2:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        rows.append((cells[0].strip("`"), cells[1], cells[2]))
    return rows


def test_the_documented_table_is_the_module_and_the_database_agrees() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert treatment_table() in text
    assert [r[0] for r in doc_rows()] == list(KIND_VALUES)
    assert LEG_KINDS == KIND_VALUES and EVENT_TYPES == EVENT_VALUES  # the CHECK constraints of warehouse/schema.py
    migration = MIGRATION.read_text(encoding="utf-8")
    frozen = re.search(r"KINDS = \((.*?)\)\n", migration, re.S).group(1)
    assert tuple(re.findall(r'"(\w+)"', frozen)) == KIND_VALUES


# ------------------------------------------------------------------------------ per kind, from the doc table

T0 = datetime(2024, 1, 1, 12, tzinfo=UTC)
T1 = datetime(2024, 1, 2, 12, tzinfo=UTC)


def leg(id_: int, at: datetime, asset: int, qty: str, kind: str, group: str, *, index: int = 0, account: int = 1,
        value: str | None = None, status: str | None = None) -> PnlLeg:
    return PnlLeg(id_, at, at.date(), account, asset, asset == USD, Decimal(qty), kind, group, index, None,
                  Decimal(value) if value is not None else None, status, None, stablecoin=asset == USDT)


def lot_then(kind: str, qty: str) -> tuple:
    """1 BTC bought for 100 USD on Jan 1; then one leg of ``kind`` of ``qty`` BTC on Jan 2, BTC at 300."""
    legs = [leg(10, T0, BTC, "1", "buy", "g1"), leg(11, T0, USD, "-100", "sell", "g1", index=1, value="100"),
            leg(20, T1, BTC, qty, kind, "g2",
                status=("unmatched_in" if Decimal(qty) > 0 else "unmatched_out") if kind.startswith("transfer") else None)]
    prices = FairValues([PriceRow(BTC, T1 - timedelta(hours=1), Decimal(300), "manual", "day")])
    return compute_book(legs, fair_values=prices, report_from=T0.date(), report_to=T1.date(), keep_open_lots=True)


CASES = [(kind, treatment, qty) for kind, treatment, direction in doc_rows()
         for qty in ({"in": ("0.5",), "out": ("-0.5",), "either": ("0.5", "-0.5")}[direction])]


@pytest.mark.parametrize(("kind", "treatment", "qty"), CASES, ids=[f"{k}{q}" for k, _, q in CASES])
def test_each_kind_is_booked_by_its_documented_treatment(kind: str, treatment: str, qty: str) -> None:
    book = lot_then(kind, qty)
    day2 = {p.asset_id: p for p in book.days if p.date == T1.date()}[BTC]
    acquired, disposed, moved_in, moved_out = (day2.movements[i] for i in (0, 2, 4, 6))
    incoming = Decimal(qty) > 0
    if treatment in ("acquisition", "income") or (treatment == "settlement" and incoming):
        assert (acquired, book.disposals, day2.quantity, day2.cost_basis) == (Decimal("0.5"), [], Decimal("1.5"), 250)
    elif treatment in ("external_in", "loan_draw") or (treatment in ("internal_transfer", "adjustment") and incoming):
        assert (moved_in, book.disposals, day2.quantity, day2.cost_basis) == (Decimal("0.5"), [], Decimal("1.5"), 250)
    elif treatment in ("disposal", "expense") or treatment == "settlement":
        [d] = book.disposals
        assert (d.proceeds, d.cost_basis, d.realized_gain) == (150, 50, 100)
        assert d.kind == ("fee" if treatment == "expense" else "sale")
    elif treatment in ("external_out", "loan_repayment", "internal_transfer", "adjustment"):
        assert (moved_out, book.disposals, day2.quantity, day2.cost_basis) == (Decimal("0.5"), [], Decimal("0.5"), 50)
    else:
        assert treatment in ("liability", "none")
        assert (book.disposals, day2.quantity, day2.cost_basis, acquired, moved_in, moved_out) == ([], 1, 100, 0, 0, 0)


def test_a_sign_that_contradicts_the_kind_is_never_booked() -> None:
    book = lot_then("buy", "-0.5")  # a "buy" that takes away: not a disposal, not an acquisition
    assert book.disposals == [] and any("contradicts" in issue for issue in book.issues)
    book = lot_then("withdrawal", "0.5")
    assert [p.quantity for p in book.days if p.date == T1.date()] == [1]


def test_event_types_from_kinds() -> None:
    assert event_type(["buy", "sell", "fee"]) is EventType.TRADE
    assert event_type(["withdrawal", "fee"]) is EventType.EXTERNAL_WITHDRAWAL
    assert event_type(["transfer_out", "transfer_in"], same_source_accounts=True) is EventType.INTERNAL_MOVE
    assert event_type(["transfer_out", "transfer_in"]) is EventType.INTERNAL_TRANSFER
    assert event_type(["borrow", "liability"]) is EventType.LOAN_DRAW
    assert event_type(["repay", "liability", "interest_expense"]) is EventType.LOAN_REPAYMENT
    assert event_type(["buy", "unclassified"]) is EventType.UNCLASSIFIED
    assert event_type(["fee"]) is EventType.FEE
    assert all(KINDS[LegKind(k)].event.value in EVENT_VALUES for k in KIND_VALUES)


# ------------------------------------------------------------------------------ one value per trade

def sides(*items: tuple[int, str, str, bool, str | None]) -> list[TradeSide]:
    return [TradeSide(value, asset, Decimal(qty), cls, received) for asset, qty, cls, received, value in items]


@pytest.mark.parametrize(("items", "rule", "value"), [
    # fiat first, even when both crypto prices are known
    ([(BTC, "1", "crypto", True, "5000"), (USD, "4206.72", "fiat", False, "4206.72")], "fiat", "4206.72"),
    # then a stablecoin side
    ([(ETH, "1", "crypto", True, "2500"), (USDT, "2000", "stablecoin", False, "2000")], "stablecoin", "2000"),
    # then the received asset's price, then the given asset's
    ([(ETH, "10", "crypto", True, "2000"), (BTC, "0.5", "crypto", False, "2500")], "received_price", "2000"),
    ([(ETH, "10", "crypto", True, None), (BTC, "0.5", "crypto", False, "2500")], "given_price", "2500"),
    ([(ETH, "10", "crypto", True, None), (BTC, "0.5", "crypto", False, None)], "none", None),
])
def test_value_trade_rule_order(items, rule, value) -> None:
    valuation = value_trade(sides(*items), lambda v: Decimal(v) if v is not None else None)
    assert valuation.rule == rule
    assert valuation.value == (Decimal(value) if value is not None else None)


LEDGER_HEADER = "timestamp,action,asset,quantity,unit_price_usd,fee_asset,fee_amount,quote_asset,quote_quantity,account\n"


def file_book(rows: str, prices: list[PriceRow] | None = None, **kwargs):
    mapped = map_ledger_files([CsvFile("ledger.csv", LEDGER_HEADER + rows)])
    ids = {symbol: i for i, symbol in mapped.assets.items()}
    fair = FairValues([PriceRow(ids[p.asset_id], p.ts, p.price_usd, p.source, p.resolution) for p in prices]) \
        if prices is not None else None
    return compute_book(mapped.legs, fair_values=fair, **kwargs), ids, mapped


def test_crypto_to_crypto_has_one_value() -> None:
    """docs/cost-basis.md: lot 1 BTC for 1,000; 0.5 BTC -> 10 ETH, no price on the row; ETH 200, BTC 5,000."""
    at = datetime(2024, 3, 2, 9, tzinfo=UTC)
    book, ids, _ = file_book(
        "2024-03-01T09:00:00Z,BUY,BTC,1,1000,,,,,A\n"
        "2024-03-02T10:00:00Z,BUY,ETH,10,,,,BTC,0.5,A\n",
        [PriceRow("ETH", at, Decimal(200), "manual", "day"), PriceRow("BTC", at, Decimal(5000), "manual", "day")],
        report_from=date(2024, 3, 1), report_to=date(2024, 3, 2), keep_open_lots=True)
    [sale] = book.disposals
    assert (sale.asset_id, sale.proceeds, sale.cost_basis, sale.realized_gain) == (ids["BTC"], 2000, 500, 1500)
    eth = [lot for lot in book.open_lots if lot.asset_id == ids["ETH"] and lot.date == date(2024, 3, 2)]
    assert [(lot.quantity, lot.cost_basis) for lot in eth] == [(10, 2000)]
    [valuation] = [v for v in book.valuations.values() if v.rule != "fiat"]
    assert (valuation.rule, valuation.asset_id, valuation.unit_price) == ("received_price", ids["ETH"], 200)


def test_a_fee_on_the_fiat_side_reaches_the_cost() -> None:
    """Kraken-style: 1 BTC bought for 4,206.72 USD + a 10.94 USD fee, BTC's last close 4,000 -> basis 4,217.66."""
    book, ids, _ = file_book(
        "2024-03-02T10:00:00Z,BUY,BTC,1,,USD,10.94,USD,4206.72,A\n"
        "2024-03-03T10:00:00Z,SELL,BTC,1,5000,,,,,A\n",
        [PriceRow("BTC", datetime(2024, 3, 1, tzinfo=UTC), Decimal(4000), "manual", "day")])
    [sale] = book.disposals
    assert (sale.cost_basis, sale.proceeds, sale.realized_gain) == (Decimal("4217.66"), 5000, Decimal("782.34"))


def test_a_loan_is_never_taxable() -> None:
    """docs/cost-basis.md: borrow 1,000 USDT, repay 1,000 + 5 interest; the loan account never holds lots."""
    book, ids, mapped = file_book(
        "2024-03-01T09:00:00Z,BUY,USDT,100,1,,,,,A\n"
        "2024-03-02T09:00:00Z,BORROW,USDT,1000,1,,,,,A\n"
        "2024-03-05T09:00:00Z,REPAY,USDT,1000,1.02,,,,,A\n"
        "2024-03-05T09:00:00Z,INTEREST_EXPENSE,USDT,5,1.02,,,,,A\n",
        pool="account", report_from=date(2024, 3, 1), report_to=date(2024, 3, 5), keep_open_lots=True)
    [interest] = book.disposals  # the repayment is not a disposal even though USDT moved to 1.02
    assert (interest.kind, interest.quantity, interest.proceeds, interest.cost_basis) == ("fee", 5, Decimal("5.10"), 5)
    loan = [a for a, name in mapped.accounts.items() if "(loan)" in name]
    assert loan and not [lot for lot in book.open_lots if lot.pool_account_id in loan]
    end = [lot for lot in book.open_lots if lot.date == date(2024, 3, 5)]
    assert [(lot.quantity, lot.cost_basis) for lot in end] == [(95, 95)]
    assert sum(l.quantity for l in mapped.legs if l.account_id in loan) == 0


def test_an_external_withdrawal_is_not_a_sale_and_a_deposit_not_income() -> None:
    book, ids, _ = file_book(
        "2024-03-01T09:00:00Z,BUY,BTC,1,100,,,,,A\n"
        "2024-03-02T09:00:00Z,WITHDRAWAL,BTC,1,150,,,,,A\n"
        "2024-03-03T09:00:00Z,DEPOSIT,ETH,1,2000,,,,,A\n"
        "2024-03-04T09:00:00Z,SPEND,ETH,0.5,2100,,,,,A\n",
        report_from=date(2024, 3, 1), report_to=date(2024, 3, 4))
    [spend] = book.disposals
    assert (spend.asset_id, spend.proceeds, spend.cost_basis, spend.realized_gain) == (ids["ETH"], 1050, 1000, 50)
    [out] = [r for r in book.rollforward if r.asset_id == ids["BTC"]]
    assert (out.transferred_out_quantity, out.transferred_out_basis, out.closing_quantity) == (1, 100, 0)


# ------------------------------------------------------------------------------ property: one value per trade

ASSET = {"BTC": (BTC, "crypto"), "ETH": (ETH, "crypto"), "SOL": (SOL, "crypto"), "USDT": (USDT, "stablecoin")}
price = st.decimals(min_value=Decimal("0.5"), max_value=Decimal("90000"), places=2)
qty = st.decimals(min_value=Decimal("0.001"), max_value=Decimal("5"), places=3)
trade = st.tuples(st.sampled_from(list(ASSET)), st.sampled_from(list(ASSET)), qty, qty, st.booleans(), price, price)


@settings(max_examples=60, deadline=None)
@given(st.lists(trade, min_size=1, max_size=12))
def test_every_trades_given_side_proceeds_equal_its_received_side_basis(trades) -> None:
    """One trade per day between two assets (received, given), each possibly carrying its own USD value; the day's
    acquired basis equals the day's disposal proceeds and the trade's one value."""
    start = datetime(2024, 1, 1, 12, tzinfo=UTC)
    legs = [leg(1 + 10 * i, start, aid, "1000", "buy", f"seed{i}", value="1") for i, (aid, _) in
            enumerate(ASSET.values())]
    prices: list[PriceRow] = []
    expected = {}
    for n, (got, gave, q_in, q_out, own_value, p_in, p_out) in enumerate(trades, start=1):
        if got == gave:
            continue
        at = start + timedelta(days=n)
        group = f"t{n}"
        (aid_in, _), (aid_out, _) = ASSET[got], ASSET[gave]
        prices += [PriceRow(aid_in, at, p_in, "manual", "day"), PriceRow(aid_out, at, p_out, "manual", "day")]
        value_in = str(q_in * p_in) if own_value else None
        legs += [leg(1000 + 10 * n, at, aid_in, str(q_in), "buy", group, value=value_in),
                 leg(1001 + 10 * n, at, aid_out, str(-q_out), "sell", group, index=1)]
        expected[at.date()] = group
    book = compute_book(legs, fair_values=FairValues(prices), report_from=start.date(),
                        report_to=start.date() + timedelta(days=len(trades)))
    for day, group in expected.items():
        acquired = sum((p.movements[1] for p in book.days if p.date == day), Decimal(0))
        proceeds = sum((d.proceeds for d in book.disposals if d.date == day), Decimal(0))
        assert acquired == proceeds == book.valuations[group].value

"""One small ledger per rule of docs/cost-basis.md: lots before, the event, lots after."""

from __future__ import annotations

from datetime import date

import pytest

from transforms.cost_basis import BookPeriod, compute_book
from warehouse.numbers import to_text

from tests.unit.ledger_dsl import ASSETS, D, Ledger, lots

T = to_text


def three_lots() -> Ledger:
    L = Ledger()
    L.buy("2024-01-01", "A", "BTC", "1", price="100")
    L.buy("2024-01-02", "A", "BTC", "1", price="300")
    L.buy("2024-01-03", "A", "BTC", "1", price="200")
    return L


@pytest.mark.parametrize("method, basis, left", [
    ("fifo", "100", [("2024-01-02", "1", "300"), ("2024-01-03", "1", "200")]),
    ("lifo", "200", [("2024-01-01", "1", "100"), ("2024-01-02", "1", "300")]),
    ("hifo", "300", [("2024-01-01", "1", "100"), ("2024-01-03", "1", "200")]),
    ("lofo", "100", [("2024-01-02", "1", "300"), ("2024-01-03", "1", "200")]),
    ("average", "200", [("2024-01-01", "0.5", "100"), ("2024-01-02", "1", "200"), ("2024-01-03", "1", "200")]),
])
def test_methods_differ_only_in_lot_order(method: str, basis: str, left: list) -> None:
    # lots before: 1 BTC @100 (Jan 1), 1 @300 (Jan 2), 1 @200 (Jan 3); event: sell 1 BTC at 400
    L = three_lots()
    L.sell("2024-01-04", "A", "BTC", "1", price="400")
    if method == "average":  # average: sell 0.5 so the dates visibly move oldest first
        L = three_lots()
        L.sell("2024-01-04", "A", "BTC", "0.5", price="400")
    book = L.book(method, report_from="2024-01-04", report_to="2024-01-04", keep_open_lots=True)
    (sale,) = book.disposals
    if method == "average":
        assert (T(sale.cost_basis), T(sale.proceeds)) == ("100", "200")  # 0.5 x average 200
    else:
        assert (T(sale.cost_basis), T(sale.realized_gain)) == (basis, T(D(400) - D(basis)))
    assert [(d, q, b) for _, d, q, b in lots(book)] == left


def test_ties_break_by_acquisition_time_then_leg_id() -> None:
    L = Ledger()
    first = L.buy("2024-01-01", "A", "BTC", "1", price="100", hour=9)
    second = L.buy("2024-01-01", "A", "BTC", "1", price="100", hour=9)  # same instant, same unit cost
    L.buy("2024-01-01", "A", "BTC", "1", price="100", hour=8)  # same unit cost, earlier
    for method in ("fifo", "hifo", "lofo"):
        book = L.book(method)
        L2 = Ledger()
        L2.legs = list(L.legs)
        L2.sell("2024-01-05", "A", "BTC", "2", price="150")
        (sale,) = L2.book(method).disposals
        assert [m.acquired_at.hour for m in sale.lots] == [8, 9], method
        assert sale.lots[1].lot_leg_id == first < second, method
        assert book.disposals == []
    L.sell("2024-01-05", "A", "BTC", "1", price="150")
    (sale,) = L.book("lifo").disposals
    assert sale.lots[0].lot_leg_id == second  # latest first; same instant: the higher leg id


def test_hifo_ranks_by_unit_cost_including_the_acquisition_fee() -> None:
    L = Ledger()
    L.buy("2024-01-01", "A", "BTC", "1", price="100", fee=("USD", "60"))  # unit cost 160
    L.buy("2024-01-02", "A", "BTC", "1", price="150")  # unit cost 150
    L.sell("2024-01-03", "A", "BTC", "1", price="200")
    (sale,) = L.book("hifo").disposals
    assert (T(sale.cost_basis), sale.lots[0].acquired_at.date()) == ("160", date(2024, 1, 1))
    (sale,) = L.book("lofo").disposals
    assert T(sale.cost_basis) == "150"


def test_buy_fee_goes_into_basis_and_sell_fee_reduces_proceeds() -> None:
    L = Ledger()
    L.buy("2024-01-01", "A", "BTC", "2", price="100", fee=("USD", "4"))
    L.sell("2024-01-02", "A", "BTC", "1", price="150", fee=("USD", "3"))
    book = L.book(report_from="2024-01-02", report_to="2024-01-02", keep_open_lots=True)
    (sale,) = book.disposals
    assert (T(sale.proceeds), T(sale.cost_basis), T(sale.realized_gain)) == ("147", "102", "45")
    assert lots(book) == [(0, "2024-01-01", "1", "102")]


def test_crypto_to_crypto_trade_disposes_the_quote_at_fair_value() -> None:
    L = Ledger()
    L.buy("2024-01-01", "A", "BTC", "1", price="1000")
    # buy 10 ETH worth 2000 USD, paid with 0.5 BTC: BTC disposed for 2000, ETH acquired at 2000
    L.buy("2024-01-02", "A", "ETH", "10", price="200", quote="BTC", quote_qty="0.5")
    book = L.book(report_from="2024-01-02", report_to="2024-01-02", keep_open_lots=True)
    (sale,) = book.disposals
    assert (sale.asset_id, T(sale.quantity), T(sale.proceeds), T(sale.cost_basis), T(sale.realized_gain)) == (
        ASSETS["BTC"], "0.5", "2000", "500", "1500")
    assert sorted(lots(book)) == [(0, "2024-01-01", "0.5", "500"), (0, "2024-01-02", "10", "2000")]


def test_fee_in_a_third_asset_is_a_disposal_of_that_asset_at_fair_value() -> None:
    L = Ledger()
    L.buy("2024-01-01", "A", "BNB", "1", price="300")
    L.price("2024-01-02", "BNB", "400")  # the price service's fair value, before the trade
    L.buy("2024-01-02", "A", "BTC", "1", price="100", fee=("BNB", "0.01"))
    book = L.book()
    fee = [d for d in book.disposals if d.kind == "fee"]
    assert [(d.asset_id, T(d.proceeds), T(d.cost_basis), T(d.realized_gain)) for d in fee] == [
        (ASSETS["BNB"], "4", "3", "1")]
    btc_lot = [d for d in book.disposals if d.asset_id == ASSETS["BTC"]]
    assert btc_lot == []  # the BTC lot's basis includes the fee's fair value (100 + 4)
    L.sell("2024-01-03", "A", "BTC", "1", price="104")
    assert T(L.book().disposals[-1].realized_gain) == "0"


@pytest.mark.parametrize("kind", ["income", "staking_reward", "airdrop"])
def test_income_is_an_acquisition_at_fair_value(kind: str) -> None:
    L = Ledger()
    L.price("2024-01-01", "ETH", "2000")
    L.income("2024-01-01", "A", "ETH", "0.5", price=None, kind=kind)  # no price in the ledger: fair value
    L.income("2024-01-02", "A", "ETH", "0.5", price="2100", kind=kind)
    book = L.book(report_from="2024-01-02", report_to="2024-01-02", keep_open_lots=True)
    assert lots(book) == [(0, "2024-01-01", "0.5", "1000"), (0, "2024-01-02", "0.5", "1050")]
    assert book.rollforward[0].acquired_basis == D(1050)


def test_income_without_any_price_is_a_flagged_zero_basis_lot() -> None:
    L = Ledger()
    L.income("2024-01-01", "A", "ETH", "1", price=None)
    book = L.book(report_from="2024-01-01", report_to="2024-01-01", keep_open_lots=True)
    assert [(T(l.cost_basis), l.flagged) for l in book.open_lots] == [("0", True)]
    assert any("without a price" in issue for issue in book.issues)


def test_internal_transfer_moves_lots_with_dates_and_the_network_fee_is_a_fee_disposal() -> None:
    L = Ledger()
    L.buy("2024-01-01", "A", "ETH", "1", price="1000")
    L.buy("2024-02-01", "A", "ETH", "1", price="3000")
    L.price("2024-03-01", "ETH", "2500")
    L.transfer("2024-03-01", "A", "B", "ETH", "1", fee="0.01")  # 1 ETH to B (the oldest lot), then a 0.01 ETH fee
    book = L.book("fifo", "account", report_from="2024-03-01", report_to="2024-03-01", keep_open_lots=True)
    (fee,) = book.disposals
    assert (fee.kind, T(fee.quantity), T(fee.proceeds), T(fee.cost_basis)) == ("fee", "0.01", "25", "30")
    assert lots(book) == [(1, "2024-02-01", "0.99", "2970"), (2, "2024-01-01", "1", "1000")]
    universal = L.book("fifo", "universal", report_from="2024-03-01", report_to="2024-03-01", keep_open_lots=True)
    assert lots(universal) == [(0, "2024-01-01", "0.99", "990"), (0, "2024-02-01", "1", "3000")]
    rf = {r.pool_account_id: r for r in book.rollforward}
    assert (rf[1].transferred_out_basis, rf[2].transferred_in_basis) == (D(1000), D(1000))


def test_holding_period_is_long_after_more_than_365_days() -> None:
    L = Ledger()
    L.buy("2023-01-01", "A", "BTC", "1", price="100")
    L.buy("2023-06-01", "A", "BTC", "1", price="200")
    L.sell("2024-01-01", "A", "BTC", "2", price="300")  # Jan 1 lot: exactly 365 days -> short
    (sale,) = L.book().disposals
    assert [m.term for m in sale.lots] == ["short", "short"]
    L2 = Ledger()
    L2.buy("2023-01-01", "A", "BTC", "1", price="100")
    L2.buy("2023-06-01", "A", "BTC", "1", price="200")
    L2.sell("2024-01-02", "A", "BTC", "2", price="300")  # 366 days -> long; the June lot short
    (sale,) = L2.book().disposals
    assert [m.term for m in sale.lots] == ["long", "short"]
    assert (T(sale.long_term_gain), T(sale.short_term_gain)) == ("200", "100")


def test_a_shortfall_is_recorded_flagged_and_clears_when_the_acquisition_arrives() -> None:
    L = Ledger()
    L.buy("2024-01-01", "A", "BTC", "1", price="100")
    L.sell("2024-01-03", "A", "BTC", "1.5", price="200")
    book = L.book()
    (sale,) = book.disposals
    assert (T(sale.shortfall_quantity), T(sale.cost_basis), T(sale.proceeds), T(sale.realized_gain)) == (
        "0.5", "100", "300", "200")
    assert [(s.leg_id, T(s.quantity), s.kind) for s in book.shortfalls] == [(sale.leg_id, "0.5", "disposal")]
    L.buy("2024-01-02", "A", "BTC", "0.5", price="120")  # the missing acquisition arrives late
    book = L.book()
    (sale,) = book.disposals
    assert (T(sale.shortfall_quantity), T(sale.cost_basis), book.shortfalls) == ("0", "160", [])


def test_roll_forward_ties_out_per_pool() -> None:
    L = Ledger()
    L.buy("2024-01-01", "A", "BTC", "2", price="100")
    L.buy("2024-01-05", "A", "BTC", "1", price="400")
    L.transfer("2024-01-06", "A", "B", "BTC", "1")
    L.sell("2024-01-07", "B", "BTC", "0.5", price="500")
    L.transfer("2024-01-08", "A", "C", "BTC", "0.25", matched=False)
    book = L.book("fifo", "account", report_from="2024-01-05", report_to="2024-01-08")
    rf = {r.pool_account_id: r for r in book.rollforward}
    a, b = rf[1], rf[2]
    assert (a.opening_quantity, a.opening_basis, a.acquired_quantity, a.acquired_basis) == (D(2), D(200), D(1), D(400))
    assert (a.transferred_out_quantity, a.transferred_out_basis, a.closing_quantity, a.closing_basis) == (
        D("1.25"), D(125), D("1.75"), D(475))
    assert (b.transferred_in_basis, b.disposed_quantity, b.disposed_basis, b.closing_basis) == (D(100), D("0.5"), D(50), D(50))


def test_method_and_pool_change_at_a_date_carry_open_lots_over() -> None:
    L = Ledger()
    L.buy("2024-06-01", "A", "BTC", "1", price="100")
    L.buy("2024-07-01", "B", "BTC", "1", price="300")
    L.buy("2024-08-01", "A", "BTC", "1", price="200")
    L.sell("2025-01-10", "B", "BTC", "1", price="400")
    schedule = [BookPeriod(None, "fifo", "universal"), BookPeriod(date(2025, 1, 1), "hifo", "account")]
    book = L.book(schedule=schedule, report_from="2024-12-31", report_to="2025-01-10", keep_open_lots=True)
    # at 2025-01-01 the universal FIFO lots go, oldest first, to the accounts holding BTC (A: 2, B: 1)
    assert lots(book, "2025-01-01") == [(1, "2024-06-01", "1", "100"), (1, "2024-07-01", "1", "300"),
                                        (2, "2024-08-01", "1", "200")]
    (sale,) = book.disposals
    assert (sale.method, T(sale.cost_basis), sale.lots[0].acquired_at.date()) == ("hifo", "200", date(2024, 8, 1))
    assert book.label == "fifo:universal -> hifo:account from 2025-01-01"
    assert sum(r.closing_basis for r in book.rollforward) == D(400)


def test_restarting_from_a_saved_state_gives_the_same_book() -> None:
    L = Ledger()
    L.buy("2024-01-01", "A", "BTC", "1", price="100")
    L.buy("2024-01-02", "A", "BTC", "2", price="130")
    L.transfer("2024-01-03", "A", "B", "BTC", "1.5")
    L.sell("2024-01-04", "B", "BTC", "1", price="200")
    L.sell("2024-01-05", "A", "BTC", "1", price="90")
    for method in ("fifo", "hifo", "average"):
        full = L.book(method, "account", report_from="2024-01-01", report_to="2024-01-05", keep_states=True)
        state = full.states[2]  # end of 2024-01-03
        rest = compute_book(L.legs, method=method, pool="account", fair_values=L.fair_values(), start_state=state,
                            report_from=date(2024, 1, 4), report_to=date(2024, 1, 5), keep_states=True)
        assert rest.disposals == [d for d in full.disposals if d.date > date(2024, 1, 3)], method
        assert rest.states[-1] == full.states[-1], method


def test_fair_value_precedence_freshness_and_no_look_ahead() -> None:
    from datetime import datetime, timezone

    from transforms.fair_value import FairValues, PriceRow

    def at(day: str, hour: int = 0) -> datetime:
        return datetime.fromisoformat(day).replace(hour=hour, tzinfo=timezone.utc)

    fv = FairValues([
        PriceRow(1, at("2024-01-01"), D(100), "ledger", "trade"),
        PriceRow(1, at("2024-01-01", 6), D(101), "exchange", "hour"),
        PriceRow(1, at("2024-01-01", 3), D(102), "coingecko", "day"),
        PriceRow(1, at("2024-01-01", 1), D(150), "manual", "day"),
        PriceRow(1, at("2024-01-10"), D(200), "ledger", "trade"),
        PriceRow(1, at("2024-01-20"), D(0), "coingecko", "day"),  # zero: ignored
    ])
    assert fv.price_at(1, at("2023-12-31")) is None  # nothing at or before: no look-ahead
    assert fv.price_at(1, at("2024-01-01", 2)) == D(150)  # manual wins among fresh prices
    assert fv.lookup(1, at("2024-01-01", 12)).source == "manual"
    assert fv.price_at(1, at("2024-01-05")) == D(101)  # all stale: the latest of any source
    assert fv.price_at(1, at("2024-01-10", 5)) == D(200)  # only the ledger is fresh
    assert fv.price_at(2, at("2024-01-10")) is None


def test_ledger_files_map_to_legs_with_matched_transfers() -> None:
    from ingestion.csv_files import CsvFile
    from transforms.ledger_books import map_ledger_files

    text = """timestamp,action,asset,quantity,unit_price_usd,account,tx_hash,fee_asset,fee_amount
2024-01-01T10:00:00Z,BUY,ETH,2,1000,Binance,,USD,5
2024-01-02T10:00:00Z,TRANSFER_OUT,ETH,1,,Binance,0xabc,ETH,0.01
2024-01-02T10:05:00Z,TRANSFER_IN,ETH,1,,Ledger,0xabc,,
2024-01-03T10:00:00Z,TRANSFER_OUT,ETH,0.5,,Binance,0xdef,,
"""
    mapped = map_ledger_files([CsvFile("l.csv", text)])
    status = [(mapped.accounts[l.account_id], l.kind, l.transfer_status) for l in mapped.legs if l.kind.startswith("transfer")]
    assert status == [("Binance", "transfer_out", "matched"), ("Ledger", "transfer_in", "matched"),
                      ("Binance", "transfer_out", "unmatched_out")]
    book = compute_book(mapped.legs, method="fifo", pool="account", report_from=date(2024, 1, 3),
                        report_to=date(2024, 1, 3), keep_open_lots=True)
    assert sorted((mapped.accounts[l.pool_account_id], T(l.quantity), T(l.cost_basis)) for l in book.open_lots) == [
        ("Binance", "0.49", "491.225"), ("Ledger", "1", "1002.5")]  # 2005 - 1002.5 - 10.025 - 501.25

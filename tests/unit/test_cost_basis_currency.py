"""Books kept in a reporting currency (EUR), and unverified (spam) assets left out: small ledgers an
accountant can check by hand. Rates read "1 EUR = r USD"; a USD amount becomes EUR by dividing by r."""

from __future__ import annotations

from datetime import date

import pytest

from transforms.cost_basis import compute_book
from transforms.fx import FxRate, FxRateMissing, FxRates, TranslatedFairValues, translate_legs
from warehouse.numbers import to_text

from tests.unit.ledger_dsl import ASSETS, D, Ledger, lots, ts

T = to_text


def eur(*rates: tuple[str, str], source: str = "manual") -> FxRates:
    """EUR rates at 00:00 UTC of each day: ("2024-01-10", "1.25") means 1 EUR = 1.25 USD that day."""
    return FxRates("EUR", [FxRate(ts(day, 0), D(rate), source, "EUR/USD", "day", None, None) for day, rate in rates])


def eur_book(L: Ledger, fx: FxRates, method: str = "fifo", **kw: object):
    return compute_book(translate_legs(L.legs, fx), method=method, fair_values=TranslatedFairValues(L.fair_values(), fx),
                        **kw)  # type: ignore[arg-type]


def test_a_sale_in_eur_uses_the_rate_of_the_purchase_for_basis_and_of_the_sale_for_proceeds() -> None:
    # Jan 10: buy 1 BTC at 40,000 USD + 100 USD fee; 1 EUR = 1.25 USD  -> lot basis 40,100 / 1.25 = 32,080 EUR
    # Jun 10: sell 0.5 BTC at 60,000 USD;           1 EUR = 1.20 USD  -> proceeds 30,000 / 1.20 = 25,000 EUR
    #         basis taken: half the lot = 16,040 EUR                   -> gain 8,960 EUR (short term)
    L = Ledger()
    L.buy("2024-01-10", "A", "BTC", "1", price="40000", fee=("USD", "100"))
    L.sell("2024-06-10", "A", "BTC", "0.5", price="60000")
    fx = eur(("2024-01-10", "1.25"), ("2024-06-10", "1.20"))
    (sale,) = eur_book(L, fx).disposals
    assert (T(sale.proceeds), T(sale.cost_basis), T(sale.realized_gain)) == ("25000", "16040", "8960")
    assert (T(sale.short_term_gain), T(sale.long_term_gain)) == ("8960", "0")
    # the same sale in USD: 30,000 - 20,050 = 9,950 USD; 9,950 / 1.20 = 8,291.67 would ignore the EUR's move
    (usd_sale,) = L.book().disposals
    assert T(usd_sale.realized_gain) == "9950"
    # both rates used, each with its provenance
    assert [(r["ts"][:10], r["rate_usd"], r["source"]) for r in fx.provenance()["rates"]] == [
        ("2024-01-10", "1.25", "manual"), ("2024-06-10", "1.2", "manual")]


def test_unrealized_in_eur_values_the_close_at_the_cutoff_rate() -> None:
    # lot: 0.5 BTC, basis 16,040 EUR (as above); close of Jun 30: BTC 50,000 USD, 1 EUR = 1.25 USD at the cutoff
    # -> price 40,000 EUR, market value 20,000 EUR, unrealized 3,960 EUR
    L = Ledger()
    L.buy("2024-01-10", "A", "BTC", "1", price="40000", fee=("USD", "100"))
    L.sell("2024-06-10", "A", "BTC", "0.5", price="60000")
    L.price("2024-07-01", "BTC", "50000", source="manual")  # 00:00 UTC on Jul 1 = the cutoff of Jun 30
    fx = eur(("2024-01-10", "1.25"), ("2024-06-10", "1.20"), ("2024-07-01", "1.25"))
    book = eur_book(L, fx, report_from=date(2024, 6, 30), report_to=date(2024, 6, 30))
    (day,) = [p for p in book.days if p.asset_id == ASSETS["BTC"]]
    assert (T(day.quantity), T(day.cost_basis), T(day.close_price_usd), T(day.market_value), T(day.unrealized_gain)) \
        == ("0.5", "16040", "40000", "20000", "3960")


def test_income_in_eur_is_recognized_at_the_rate_of_the_day() -> None:
    # Mar 1: staking reward 0.1 ETH at 3,000 USD = 300 USD; 1 EUR = 1.20 USD -> lot basis 250 EUR
    L = Ledger()
    L.income("2024-03-01", "A", "ETH", "0.1", price="3000", kind="staking_reward")
    book = eur_book(L, eur(("2024-03-01", "1.20")), report_from=date(2024, 3, 1), report_to=date(2024, 3, 1),
                    keep_open_lots=True)
    assert lots(book) == [(0, "2024-03-01", "0.1", "250")]


def test_hifo_ranks_lots_by_their_cost_in_the_reporting_currency() -> None:
    # lot 1: 1 BTC for 100 USD when 1 EUR = 1.25 USD -> 80 EUR;  lot 2: 1 BTC for 95 USD when 1 EUR = 1 USD -> 95 EUR
    # HIFO in USD takes lot 1 (100 USD); HIFO in EUR takes lot 2 (95 EUR)
    L = Ledger()
    L.buy("2024-01-01", "A", "BTC", "1", price="100")
    L.buy("2024-01-02", "A", "BTC", "1", price="95")
    L.sell("2024-01-03", "A", "BTC", "1", price="120")
    fx = eur(("2024-01-01", "1.25"), ("2024-01-02", "1"), ("2024-01-03", "1.2"))
    (usd_sale,) = L.book("hifo").disposals
    (eur_sale,) = eur_book(L, fx, "hifo").disposals
    assert (T(usd_sale.cost_basis), usd_sale.lots[0].acquired_at.day) == ("100", 1)
    assert (T(eur_sale.cost_basis), eur_sale.lots[0].acquired_at.day, T(eur_sale.proceeds)) == ("95", 2, "100")


def test_a_missing_rate_names_the_day_and_the_pair_and_is_never_one() -> None:
    L = Ledger()
    L.buy("2024-01-10", "A", "BTC", "1", price="40000")
    L.sell("2024-06-10", "A", "BTC", "1", price="60000")
    fx = eur(("2024-01-10", "1.25"), ("2024-06-01", "1.2"))  # nothing within 4 days before Jun 10
    with pytest.raises(FxRateMissing) as caught:
        eur_book(L, fx)
    assert "no EUR/USD rate for 2024-06-10" in str(caught.value) and caught.value.field == "currency"


def test_the_best_source_wins_within_the_window_and_a_weekend_uses_friday() -> None:
    fx = FxRates("EUR", [
        FxRate(ts("2024-06-07", 0), D("1.08"), "manual", "EUR/USD", "day", None, "ECB Friday"),
        FxRate(ts("2024-06-08", 0), D("1.09"), "coingecko", "EUR/USD", "day", None, None),
    ])
    assert fx.rate_at(ts("2024-06-09", 15), "test").note == "ECB Friday"  # manual beats coingecko in the window
    assert fx.rate_at(ts("2024-06-10", 15), "test").source == "manual"  # Friday's rate still counts on Monday
    with pytest.raises(FxRateMissing):
        fx.rate_at(ts("2024-06-12", 15), "test")  # more than 4 days: an error, not a stale guess


def test_legs_of_an_unverified_asset_are_left_out_until_approved() -> None:
    # an unverified token (BNB here stands for a spam token): airdropped 1,000 at 0.01, sold at 0.05
    from dataclasses import replace

    L = Ledger()
    L.buy("2024-01-10", "A", "BTC", "1", price="100")
    L.income("2024-02-01", "A", "BNB", "1000", price="0.01", kind="airdrop")
    L.sell("2024-03-01", "A", "BNB", "1000", price="0.05")
    L.sell("2024-03-01", "A", "BTC", "1", price="150")
    unverified = [replace(l, unverified=l.asset_id == ASSETS["BNB"]) for l in L.legs]
    book = compute_book(unverified, report_from=date(2024, 3, 1), report_to=date(2024, 3, 1))
    assert [(d.asset_id, T(d.realized_gain)) for d in book.disposals] == [(ASSETS["BTC"], "50")]
    assert book.excluded == {ASSETS["BNB"]: 2}
    assert not book.shortfalls  # the sale of the token is not a shortfall: the token is not in the book at all
    approved = compute_book(L.legs)
    assert sorted((d.asset_id, T(d.realized_gain)) for d in approved.disposals) == [
        (ASSETS["BTC"], "50"), (ASSETS["BNB"], "40")]

"""A trade the source made and the imported history lacks breaks two assets of one account the same day, the other
way round, for the same value: the ``missing_trade`` cause. Hand-worked: 0.5 ETH sold at 2,997 USDT less a 1.5 USDT
fee leaves the source 0.5 ETH short and 1,497 USDT long; at ETH 3,000 and USDT 1 the sides are worth 1,500 and 1,497
USD, 0.2 % apart (inside 0.5 %: score 0.9); the implied price is the net 2,994 USDT per ETH."""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal as D

from reconciliation.causes import TRADE_VALUE_GAP, BreakContext, SiblingBreak, compute_causes

AT = datetime(2026, 1, 15, 23, 59, tzinfo=timezone.utc)


def _ctx(asset: str, difference: str, price: str | None, siblings: list[tuple[str, str, str | None]],
         pair_rates: tuple[str, str] | None = None) -> BreakContext:
    rates = (D(pair_rates[0]), D(pair_rates[1])) if pair_rates else None
    return BreakContext(date(2026, 1, 15), 1, "OKX (spot)", "spot", "ccxt.okx", asset, False, D(difference),
                        D("0.00000001"), None, AT, price_usd=D(price) if price else None,
                        sibling_breaks=[SiblingBreak(a, D(d), D(p) if p else None, rates) for a, d, p in siblings])


def _trade_causes(ctx: BreakContext) -> list[dict]:
    return [c for c in compute_causes(ctx) if c["code"] == "missing_trade"]


def test_a_missing_sale_explains_both_of_its_breaks():
    eth = _trade_causes(_ctx("ETH", "-0.5", "3000", [("USDT", "1497", "1")]))
    assert len(eth) == 1 and eth[0]["score"] == 0.9 and eth[0]["rank"] == 1
    assert eth[0]["data"]["side"] == "sale" and eth[0]["data"]["implied_price"] == "2994"
    assert eth[0]["data"]["usd_value"] == "1500" and eth[0]["data"]["other_usd_value"] == "1497"
    assert "a trade giving 0.5 ETH for 1497 USDT" in eth[0]["evidence"]
    usdt = _trade_causes(_ctx("USDT", "1497", "1", [("ETH", "-0.5", "3000")]))
    assert len(usdt) == 1 and usdt[0]["data"]["side"] == "purchase"


def test_values_too_far_apart_or_the_same_direction_or_no_price_are_no_trade():
    assert _trade_causes(_ctx("ETH", "-0.5", "3000", [("USDT", "1000", "1")])) == []  # 33 % apart
    assert _trade_causes(_ctx("ETH", "-0.5", "3000", [("USDT", "-1500", "1")])) == []  # both short
    assert _trade_causes(_ctx("ETH", "-0.5", None, [("USDT", "1500", "1")])) == []
    assert _trade_causes(_ctx("ETH", "-0.5", "3000", [("USDT", "1500", None)])) == []


def test_the_value_gap_bound_is_inclusive_and_scored_lower_beyond_half_a_percent():
    edge = D(1500) * (1 - TRADE_VALUE_GAP)  # 1455 USD: exactly 3 % below
    assert [c["score"] for c in _trade_causes(_ctx("ETH", "-0.5", "3000", [("USD", str(edge), "1")]))] == [0.75]
    assert _trade_causes(_ctx("ETH", "-0.5", "3000", [("USD", str(edge - D("0.01")), "1")])) == []


def test_the_accounts_own_trades_of_the_pair_come_before_prices():
    """ETH/USDT traded at 2,950..3,050 that week: 2,994 is inside (0.9); 3,120 is within 3 % above (0.75); 3,200 is not,
    whatever the prices say; without trades of the pair the prices decide."""
    week = ("2950", "3050")
    assert [c["score"] for c in _trade_causes(_ctx("ETH", "-0.5", None, [("USDT", "1497", None)], week))] == [0.9]
    assert [c["score"] for c in _trade_causes(_ctx("ETH", "-0.5", None, [("USDT", "1560", None)], week))] == [0.75]
    assert _trade_causes(_ctx("ETH", "-0.5", "3200", [("USDT", "1600", "1")], week)) == []
    usdt = _trade_causes(_ctx("USDT", "1497", None, [("ETH", "-0.5", None)], ("0.000327868852", "0.000338983051")))
    assert usdt[0]["data"]["gave"] == "ETH" and usdt[0]["data"]["got"] == "USDT" and usdt[0]["score"] == 0.9

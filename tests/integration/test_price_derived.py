"""Derived prices on real PostgreSQL (docs/prices.md, "Derived prices"): a trade of an asset against a pegged
stablecoin implies its price (source `trade`), pegged stablecoins are 1 USD at each cutoff (source `peg`, flagged
when a market source disagrees), rewriting them is idempotent, and the books value with them."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import sqlalchemy as sa

from tests.integration.test_api import DAY, T0, Seed, seed  # noqa: F401 (fixture)
from transforms.pnl import build_pnl
from transforms.prices import write_derived_prices
from warehouse.calendar import cutoff_of
from warehouse.entities import resolve_entity

PEGS = ["USDT", "USDC"]


def _prices(conn, source: str) -> list[tuple]:
    return [tuple(r) for r in conn.execute(sa.text(
        "SELECT s.symbol, p.ts, p.price_usd, p.pair, p.leg_id, p.flagged, p.disagreement FROM prices p "
        "JOIN assets s ON s.id = p.asset_id WHERE p.source = :src ORDER BY p.ts, s.symbol"), dict(src=source))]


def _ledger(seed: Seed) -> dict[str, int]:
    with seed.engine.begin() as conn:
        legs = {
            "usdt_in": seed.leg(conn, seed.a, seed.spot, "USDT", "1000", "deposit", T0),
            # buy 0.01 BTC for 600 USDT (with a USDT fee: not a side of the trade)
            "btc": seed.leg(conn, seed.a, seed.spot, "BTC", "0.01", "buy", T0 + timedelta(hours=1), group="t1"),
        }
        raw = legs["btc"] // 10
        legs["usdt_out"] = seed.leg(conn, seed.a, seed.spot, "USDT", "-600", "sell", T0 + timedelta(hours=1),
                                    raw_id=raw, leg_index=1, group="t1")
        seed.leg(conn, seed.a, seed.spot, "USDT", "-0.6", "fee", T0 + timedelta(hours=1), raw_id=raw, leg_index=2,
                 group="t1")
        # crypto to crypto: ETH for BTC implies no USD price
        eth = seed.leg(conn, seed.a, seed.spot, "ETH", "0.1", "buy", T0 + timedelta(hours=2), group="t2")
        seed.leg(conn, seed.a, seed.spot, "BTC", "-0.005", "sell", T0 + timedelta(hours=2), raw_id=eth // 10,
                 leg_index=1, group="t2")
    return legs


def test_trade_implied_and_peg_prices_are_written_idempotently_and_value_the_book(seed: Seed) -> None:  # noqa: F811
    legs = _ledger(seed)
    with seed.engine.begin() as conn:
        entity = resolve_entity(conn, seed.a)
        first = write_derived_prices(conn, entity, DAY, DAY, pegs=PEGS, threshold=Decimal("0.02"))
        trade, peg = _prices(conn, "trade"), _prices(conn, "peg")
        again = write_derived_prices(conn, entity, DAY, DAY, pegs=PEGS, threshold=Decimal("0.02"))
        assert (_prices(conn, "trade"), _prices(conn, "peg")) == (trade, peg)
    assert (first.trade, first.peg) == (again.trade, again.peg) == (1, 2)
    # 600 USDT / 0.01 BTC, at the trade's instant, tied to the BTC leg; USDC has no leg: no peg
    assert trade == [("BTC", T0 + timedelta(hours=1), Decimal("60000"), "BTC/USDT", legs["btc"], False, None)]
    assert [(r[0], r[1], r[2], r[3]) for r in peg] == [
        ("USDT", cutoff_of(DAY - timedelta(days=1), entity.tz), Decimal("1"), "USDT/USD"),
        ("USDT", cutoff_of(DAY, entity.tz), Decimal("1"), "USDT/USD")]
    with seed.engine.begin() as conn:
        stats = build_pnl(conn, entity, DAY, DAY)
        missing = set(conn.execute(sa.text(
            "SELECT s.symbol, m.what FROM pnl_missing_prices m JOIN assets s ON s.id = m.asset_id")).all())
    book = stats.books[("fifo", "universal")]
    # the USDT deposit is valued by the peg, the BTC position at the close by the trade price; ETH bought with BTC
    # carries the trade's one value (the given BTC's price: transforms/events.py), so only the ETH position at the
    # close, with no ETH price of its own, stays unpriced
    assert missing == {("ETH", "position")}
    btc = next(d for d in book.days if d.asset_id == seed.asset["BTC"])
    assert btc.close_price_usd == Decimal("60000")


def test_a_market_price_that_breaks_the_peg_flags_it(seed: Seed) -> None:  # noqa: F811
    _ledger(seed)
    with seed.engine.begin() as conn:
        entity = resolve_entity(conn, seed.a)
        conn.execute(sa.text(
            "INSERT INTO prices (entity_id, asset_id, ts, price_usd, source, resolution, pair) "
            "VALUES (:e, :a, :ts, 0.95, 'coingecko', 'day', 'tether/usd')"),
            dict(e=seed.a, a=seed.asset["USDT"], ts=cutoff_of(DAY, entity.tz)))
        result = write_derived_prices(conn, entity, DAY, DAY, pegs=PEGS, threshold=Decimal("0.02"))
        peg = _prices(conn, "peg")
    assert result.flagged == 2  # the day's peg and CoinGecko rows
    assert [(r[1], r[5], r[6]) for r in peg] == [
        (cutoff_of(DAY - timedelta(days=1), entity.tz), False, None),
        (cutoff_of(DAY, entity.tz), True, Decimal("0.052631578947368421"))]

"""The price-source order is one setting (COINFRS_PRICE_SOURCE_ORDER, transforms/price_order.py): changing it changes
which source values a day, in the engine's fair values and in SQL."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import pytest
from pydantic import ValidationError

from ingestion.prices.settings import PriceSettings, get_price_settings
from transforms.fair_value import FairValues, PriceRow
from transforms.price_order import DEFAULT_ORDER, parse_order, precedence, rank_sql, source_rank

NOON = datetime(2026, 3, 2, 12, tzinfo=timezone.utc)
ROWS = [PriceRow(1, datetime(2026, 3, 2, 0, tzinfo=timezone.utc), Decimal("100"), "manual", "day"),
        PriceRow(1, datetime(2026, 3, 2, 0, tzinfo=timezone.utc), Decimal("101"), "coingecko", "day"),
        PriceRow(1, datetime(2026, 3, 2, 0, tzinfo=timezone.utc), Decimal("102"), "exchange:kraken", "day"),
        PriceRow(1, datetime(2026, 3, 2, 0, tzinfo=timezone.utc), Decimal("103"), "ledger", "trade")]


def test_the_order_parses_fills_in_the_rest_and_refuses_unknown_or_repeated_sources():
    assert parse_order("") == DEFAULT_ORDER == ("manual", "trade", "peg", "coingecko", "exchange")
    assert parse_order(" Exchange , coingecko") == ("exchange", "coingecko", "manual", "trade", "peg")
    with pytest.raises(ValueError, match="unknown source 'binance'"):
        parse_order("binance,manual")
    with pytest.raises(ValueError, match="'peg' is listed twice"):
        parse_order("peg,peg")
    assert precedence(("coingecko",)) == ("coingecko", "ledger")


def test_changing_the_order_changes_which_source_values_the_day():
    assert FairValues(ROWS, DEFAULT_ORDER).lookup(1, NOON).source == "manual"
    assert FairValues(ROWS, parse_order("coingecko")).lookup(1, NOON).price_usd == Decimal("101")
    assert FairValues(ROWS, parse_order("exchange")).lookup(1, NOON).price_usd == Decimal("102")
    assert sorted(["ledger", "exchange:kraken", "manual", "other"], key=lambda s: source_rank(s, parse_order("exchange"))
                  ) == ["exchange:kraken", "manual", "ledger", "other"]
    assert rank_sql(parse_order("exchange")).startswith("CASE WHEN p.source LIKE 'exchange:%' THEN 0 WHEN p.source = 'manual'")


def test_the_setting_is_read_from_the_environment_and_validated(monkeypatch):
    monkeypatch.setenv("COINFRS_PRICE_SOURCE_ORDER", "coingecko,manual")
    get_price_settings.cache_clear()
    try:
        assert FairValues(ROWS).lookup(1, NOON).source == "coingecko"  # None: the configured order
    finally:
        monkeypatch.delenv("COINFRS_PRICE_SOURCE_ORDER")
        get_price_settings.cache_clear()
    assert FairValues(ROWS).lookup(1, NOON).source == "manual"
    with pytest.raises(ValidationError, match="unknown source 'kraken'"):
        PriceSettings(price_source_order="kraken")

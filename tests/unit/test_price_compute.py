"""Pure parts of the price service: day closes per timezone, resolution, FX cross rates, settings."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from ingestion.prices.points import PricePoint, resolution_of
from ingestion.prices.settings import PriceSettings
from transforms.prices import compute_cross_rates, compute_day_closes, source_rank

UTC = timezone.utc
T0 = datetime(2026, 3, 1, tzinfo=UTC)


def hourly(hours: int, start: datetime = T0) -> list[PricePoint]:
    return [PricePoint(start + timedelta(hours=h), Decimal(100 + h)) for h in range(hours)]


def test_the_close_is_the_last_point_inside_the_day_and_a_point_at_midnight_closes_the_day_before() -> None:
    points = hourly(49)  # Mar 1 00:00 .. Mar 3 00:00
    closes = compute_day_closes(points, [date(2026, 2, 28), date(2026, 3, 1), date(2026, 3, 2)], UTC,
                                now=datetime(2026, 3, 5, tzinfo=UTC))
    assert closes[date(2026, 2, 28)] == PricePoint(T0, Decimal(100))
    assert closes[date(2026, 3, 1)] == PricePoint(T0 + timedelta(hours=24), Decimal(124))
    assert closes[date(2026, 3, 2)] == PricePoint(T0 + timedelta(hours=48), Decimal(148))


def test_day_closes_follow_the_entitys_timezone_and_skip_days_not_over() -> None:
    zurich = ZoneInfo("Europe/Zurich")  # UTC+1 in March: the day ends at 23:00 UTC
    closes = compute_day_closes(hourly(49), [date(2026, 3, 1), date(2026, 3, 2)], zurich,
                                now=datetime(2026, 3, 2, 12, tzinfo=UTC))
    assert closes == {date(2026, 3, 1): PricePoint(T0 + timedelta(hours=23), Decimal(123))}


def test_a_day_without_a_point_has_no_close() -> None:
    assert compute_day_closes([PricePoint(T0, Decimal(1))], [date(2026, 3, 5)], UTC,
                              now=datetime(2026, 4, 1, tzinfo=UTC)) == {}


@pytest.mark.parametrize("step, expected", [(timedelta(days=1), "day"), (timedelta(hours=1), "hour"),
                                            (timedelta(minutes=5), "minute")])
def test_resolution_from_spacing(step: timedelta, expected: str) -> None:
    assert resolution_of([PricePoint(T0 + i * step, Decimal(1)) for i in range(4)]) == expected


def test_cross_rates_need_the_same_instant_and_are_exact_to_18_digits() -> None:
    day = date(2026, 3, 1)
    usd = {day: PricePoint(T0, Decimal("90000")), date(2026, 3, 2): PricePoint(T0, Decimal("1"))}
    eur = {day: PricePoint(T0, Decimal("77000")), date(2026, 3, 2): PricePoint(T0 + timedelta(hours=1), Decimal("1"))}
    assert compute_cross_rates(usd, eur) == {day: PricePoint(T0, Decimal("1.168831168831168831"))}


def test_precedence_of_sources() -> None:
    assert sorted(["ledger", "exchange:kraken", "peg", "coingecko", "trade", "manual", "other"], key=source_rank) == [
        "manual", "trade", "peg", "coingecko", "exchange:kraken", "ledger", "other"]


def test_settings_default_offline_and_parse_overrides(monkeypatch) -> None:
    for name in ("COINFRS_COINGECKO_URL", "COINFRS_PRICE_EXCHANGE", "COINFRS_COINGECKO_IDS"):
        monkeypatch.delenv(name, raising=False)
    assert not PriceSettings().any_source
    monkeypatch.setenv("COINFRS_COINGECKO_IDS", "arb=arbitrum, LINK=chainlink")
    monkeypatch.setenv("COINFRS_PRICE_DISAGREEMENT_THRESHOLD", "0.05")
    monkeypatch.setenv("COINFRS_PRICE_CURRENCIES", "eur,usd,chf")
    settings = PriceSettings()
    assert settings.coingecko_id_overrides() == {"ARB": "arbitrum", "LINK": "chainlink"}
    assert settings.price_disagreement_threshold == Decimal("0.05")
    assert settings.currencies() == ["EUR", "CHF"]
    assert "secret" not in repr(PriceSettings(coingecko_api_key="secret"))
    with pytest.raises(ValueError, match="SYMBOL=coin-id"):
        PriceSettings(coingecko_ids="BTC").coingecko_id_overrides()

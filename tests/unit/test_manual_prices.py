"""The manual price CSV: every bad row and field is named, and nothing is read from a bad file."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import pytest

from ingestion.csv_files import CsvFile, CsvImportError
from ingestion.prices.manual import read_manual_prices


def read(text: str, tz: str = "UTC"):
    return read_manual_prices(CsvFile("prices.csv", text), timezone_name=tz)


def errors_of(text: str) -> list[str]:
    with pytest.raises(CsvImportError) as info:
        read(text)
    return [str(e) for e in info.value.errors]


def test_dates_are_day_closes_and_instants_are_points() -> None:
    rows = read("asset,timestamp,price_usd,source_note\nbtc,2026-01-31,101234.123456789012345678,board valuation\n"
                "ETH,2026-01-31T15:30:00+01:00,3100.5,\n")
    assert [(r.line, r.asset, r.ts, r.price_usd, r.resolution, r.note) for r in rows] == [
        (2, "BTC", datetime(2026, 2, 1, tzinfo=timezone.utc), Decimal("101234.123456789012345678"), "day", "board valuation"),
        (3, "ETH", datetime(2026, 1, 31, 14, 30, tzinfo=timezone.utc), Decimal("3100.5"), "point", None)]


def test_a_date_is_the_close_in_the_entitys_timezone() -> None:
    (row,) = read("asset,timestamp,price_usd\nBTC,2026-07-01,1\n", tz="Europe/Zurich")
    assert row.ts == datetime(2026, 7, 1, 22, tzinfo=timezone.utc)


def test_every_bad_row_and_field_is_reported() -> None:
    text = ("asset,timestamp,price_usd\n"
            "BTC,2026-01-01,abc\n"
            ",2026-01-01,5\n"
            "ETH,2026-13-01,5\n"
            "ETH,2026-01-01T10:00:00,5\n"
            "SOL,2026-01-01,-3\n"
            "SOL,2026-01-02,0\n"
            "BTC,2026-01-03,\n"
            "USDC,2026-01-01,1\n"
            "usdc,2026-01-01,1.0001\n"
            "BAD SYMBOL,2026-01-01,1\n")
    assert errors_of(text) == [
        "line 2, field 'price_usd': not a decimal number: 'abc' (digits 0-9 with an optional sign and '.'; no thousands "
        "separators, underscores, exponent or spaces)",
        "line 3, field 'asset': is required",
        "line 4, field 'timestamp': not a date (YYYY-MM-DD) or an ISO 8601 timestamp: '2026-13-01'",
        "line 5, field 'timestamp': timestamp '2026-01-01T10:00:00' has no UTC offset; add one or import with --timezone",
        "line 6, field 'price_usd': must be positive, got -3",
        "line 7, field 'price_usd': must be positive, got 0",
        "line 8, field 'price_usd': is required",
        "line 10, field 'timestamp': USDC at 2026-01-02T00:00:00+00:00 is already priced on line 9",
        "line 11, field 'asset': not an asset symbol: 'BAD SYMBOL'",
    ]


@pytest.mark.parametrize("text, message", [
    ("", "line 1: the file is empty: a header row is required"),
    ("asset,price_usd\nBTC,1\n", "line 1: header lacks column(s) timestamp"),
    ("asset,timestamp,price_usd,price_eur\nBTC,2026-01-01,1,1\n", "line 1: unknown column(s) price_eur"),
    ("asset,timestamp,price_usd\n", "line 1: the file has no price rows"),
    ("asset,timestamp,price_usd\nBTC,2026-01-01\n", "line 2, field 'price_usd': expected 3 values, found 2"),
])
def test_bad_files_are_refused_whole(text: str, message: str) -> None:
    assert errors_of(text) == [message]

"""Pure rules of the period close and of figures for people: periods named on the command line, day ranges in
refusals, money in cents with thousands separators, exact quantities with separators."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from reconciliation.periods import PeriodError, _day_ranges, parse_month, period_of
from warehouse.numbers import money_text, quantity_text


def test_periods_named_on_the_command_line() -> None:
    feb = parse_month("2028-02")  # a leap year
    assert (feb.first, feb.last, feb.label) == (date(2028, 2, 1), date(2028, 2, 29), "2028-02")
    assert period_of(through=date(2026, 1, 31)).label == "through 2026-01-31"
    assert period_of(through=date(2026, 1, 31)).first is None  # resolved against the entity's closes
    assert period_of(day=date(2026, 1, 5)).label == "2026-01-05"
    for bad in ("2026-1", "2026-00", "2026-13", "January", ""):
        with pytest.raises(PeriodError, match="is not a month"):
            parse_month(bad)
    with pytest.raises(PeriodError, match="got --month and --date"):
        period_of(month="2026-01", day=date(2026, 1, 1))
    with pytest.raises(PeriodError, match="name one period"):
        period_of()


def test_day_ranges_in_a_refusal() -> None:
    days = [date(2026, 1, d) for d in (9, 3, 4, 5, 12, 13)]
    assert _day_ranges(days) == "2026-01-03..2026-01-05, 2026-01-09, 2026-01-12..2026-01-13"
    assert _day_ranges([]) == ""


def test_money_in_cents_with_thousands_separators() -> None:
    assert money_text("1142641.916230306718374053") == "1,142,641.92"
    assert money_text(Decimal("-1234567.5")) == "-1,234,567.50"
    assert money_text("0.005") == "0.00" and money_text("0.015") == "0.02"  # half-even
    assert money_text("-0.004") == "0.00"  # never "-0.00"
    assert money_text(None) is None and money_text("") is None
    with pytest.raises(ValueError):
        money_text(1.5)  # type: ignore[arg-type]  # floats are refused


def test_quantities_keep_every_digit_with_separators() -> None:
    assert quantity_text("867410.0") == "867,410"
    assert quantity_text("-1234.000012") == "-1,234.000012"
    assert quantity_text("0.000000000000000001") == "0.000000000000000001"
    assert quantity_text("-0") == "0" and quantity_text(None) is None

"""Ledger rows to legs (transforms.ledger_mapping) and close days (warehouse.calendar). Pure, no database.

Each mapping test reads as a small table:  leg | asset | quantity | kind | unit price USD | USD value.
Leg 0 is the action's own movement, leg 1 the quote of a BUY/SELL, leg 2 the fee.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from transforms.ledger_mapping import LegDraft, leg_id, map_ledger_record
from warehouse.calendar import close_date_of, cutoff_of, days_between, first_open_day_after
from warehouse.numbers import to_text

UTC = timezone.utc
ZURICH = ZoneInfo("Europe/Zurich")


def record(**fields: str) -> dict[str, str]:
    base = dict(id="1", timestamp="2024-03-01T10:00:00Z", account="kraken")
    base.update(fields)
    return base


def table(legs: list[LegDraft]) -> list[tuple]:
    """The legs as an accountant reads them; numbers as plain decimal text (None when unknown)."""
    return [(l.leg_index, l.asset, to_text(l.quantity), l.kind, to_text(l.unit_price_usd), to_text(l.usd_value))
            for l in legs]


# ----------------------------------------------------------------------------- per action


def test_buy_with_usd_implied_quote():
    legs = map_ledger_record(record(action="BUY", asset="BTC", quantity="0.5", unit_price_usd="60000"))
    assert table(legs) == [
        # leg  asset   quantity   kind    unit     USD value
        (0,   "BTC",  "0.5",     "buy",  "60000", "30000"),
        (1,   "USD",  "-30000",  "sell", "1",     "30000"),
    ]


def test_buy_with_usdc_quote_and_fee_in_the_quote_asset():
    legs = map_ledger_record(record(action="BUY", asset="BTC", quantity="0.5", unit_price_usd="60000",
                                    quote_asset="USDC", quote_quantity="30010", fee_asset="USDC", fee_amount="10"))
    unit = Decimal("30000") / Decimal("30010")
    assert table(legs) == [
        # leg  asset   quantity   kind    unit                    USD value
        (0,   "BTC",  "0.5",     "buy",  "60000",                "30000"),
        (1,   "USDC", "-30010",  "sell", "0.999666777740753082", "30000"),
        (2,   "USDC", "-10",     "fee",  "0.999666777740753082", "9.99666777740753082"),
    ]
    assert legs[1].unit_price_usd == unit.quantize(Decimal("1e-18"))  # 18 decimals, half-even


def test_sell_with_fee_in_the_same_asset():
    legs = map_ledger_record(record(action="SELL", asset="ETH", quantity="1.5", unit_price_usd="2000",
                                    fee_asset="ETH", fee_amount="0.003"))
    assert table(legs) == [
        # leg  asset  quantity  kind    unit    USD value
        (0,   "ETH", "-1.5",   "sell", "2000", "3000"),
        (1,   "USD", "3000",   "buy",  "1",    "3000"),
        (2,   "ETH", "-0.003", "fee",  "2000", "6"),
    ]


def test_sell_with_usd_fee():
    legs = map_ledger_record(record(action="SELL", asset="ETH", quantity="1", unit_price_usd="2000",
                                    fee_asset="usd", fee_amount="2.5"))
    assert table(legs)[2] == (2, "USD", "-2.5", "fee", "1", "2.5")


def test_fee_in_a_third_asset_has_no_price_yet():
    legs = map_ledger_record(record(action="BUY", asset="BTC", quantity="0.1", unit_price_usd="60000",
                                    fee_asset="BNB", fee_amount="0.01"))
    assert table(legs) == [
        # leg  asset  quantity  kind    unit     USD value
        (0,   "BTC", "0.1",    "buy",  "60000", "6000"),
        (1,   "USD", "-6000",  "sell", "1",     "6000"),
        (2,   "BNB", "-0.01",  "fee",  None,    None),  # valued from price history at cost-basis time
    ]


def test_transfer_out_with_fee():
    legs = map_ledger_record(record(action="TRANSFER_OUT", asset="ETH", quantity="2", fee_asset="ETH",
                                    fee_amount="0.0021", tx_hash="0xabc"))
    assert table(legs) == [
        # leg  asset  quantity   kind            unit  USD value
        (0,   "ETH", "-2",      "transfer_out", None, None),
        (2,   "ETH", "-0.0021", "fee",          None, None),
    ]
    assert [l.tx_hash for l in legs] == ["0xabc", None]  # only the movement itself carries the hash


def test_transfer_in_keeps_tx_hash_and_sign():
    (leg,) = map_ledger_record(record(action="TRANSFER_IN", asset="ETH", quantity="2", tx_hash="0xabc",
                                      unit_price_usd="2000"))
    assert table([leg]) == [(0, "ETH", "2", "transfer_in", "2000", "4000")]
    assert leg.tx_hash == "0xabc"


def test_staking_reward():
    legs = map_ledger_record(record(action="STAKING_REWARD", asset="ETH", quantity="0.0012", unit_price_usd="3500"))
    assert table(legs) == [(0, "ETH", "0.0012", "staking_reward", "3500", "4.2")]


@pytest.mark.parametrize("action, kind, sign", [
    ("INCOME", "income", "+"), ("AIRDROP", "airdrop", "+"), ("FEE", "fee", "-"),
])
def test_other_single_leg_actions(action, kind, sign):
    price = "" if action == "FEE" else "2"
    (leg,) = map_ledger_record(record(action=action, asset="ARB", quantity="10", unit_price_usd=price))
    assert leg.kind == kind and leg.leg_index == 0
    assert leg.quantity == (Decimal(10) if sign == "+" else Decimal(-10))


def test_fee_amount_zero_makes_no_fee_leg():
    legs = map_ledger_record(record(action="BUY", asset="BTC", quantity="1", unit_price_usd="1",
                                    fee_asset="BTC", fee_amount="0"))
    assert [l.leg_index for l in legs] == [0, 1]


# ----------------------------------------------------------------------------- exactness


def test_decimals_are_exact():
    (leg, quote) = map_ledger_record(record(action="BUY", asset="XRP", quantity="3", unit_price_usd="0.1"))
    assert leg.usd_value == Decimal("0.3") and str(leg.usd_value) == "0.3"
    assert quote.quantity == Decimal("-0.3")
    (leg, _) = map_ledger_record(record(action="SELL", asset="XRP", quantity="0.1", unit_price_usd="0.2"))
    assert str(leg.usd_value) == "0.02"
    big = map_ledger_record(record(action="BUY", asset="ETH", quantity="123456789.123456789012345678",
                                   unit_price_usd="98765.4321"))[0]
    assert big.usd_value == Decimal("12193263123456.7900124828531222374638")
    assert big.quantity == Decimal("123456789.123456789012345678")


def test_all_numbers_are_decimals():
    legs = map_ledger_record(record(action="BUY", asset="BTC", quantity="0.5", unit_price_usd="60000",
                                    quote_asset="ETH", quote_quantity="10", fee_asset="ETH", fee_amount="0.01"))
    for l in legs:
        for value in (l.quantity, l.unit_price_usd, l.usd_value):
            assert isinstance(value, Decimal)
    assert legs[1].unit_price_usd == Decimal("3000")
    assert legs[2].usd_value == Decimal("30")


# ----------------------------------------------------------------------------- fields


def test_payload_keys_and_values_are_case_and_whitespace_insensitive():
    legs = map_ledger_record({"Action": " buy ", "ASSET": "btc", "Quantity": " 1 ", "Unit_Price_USD": "10",
                              "Account": " kraken ", "Quote_Asset": "usdc", "Quote_Quantity": "10"})
    assert table(legs) == [(0, "BTC", "1", "buy", "10", "10"), (1, "USDC", "-10", "sell", "1", "10")]
    assert {l.account for l in legs} == {"kraken"}


def test_account_type_and_sub_account():
    (leg,) = map_ledger_record(record(action="TRANSFER_IN", asset="BTC", quantity="1", account_type="Spot",
                                      sub_account="earn"))
    assert (leg.account_type, leg.sub_account) == ("spot", "earn")
    (leg,) = map_ledger_record(record(action="TRANSFER_IN", asset="BTC", quantity="1"))
    assert (leg.account_type, leg.sub_account) == (None, "")  # resolved later by the canonical build


def test_leg_id():
    assert [leg_id(42, i) for i in (0, 1, 2)] == [420, 421, 422]


# ----------------------------------------------------------------------------- calendar


@pytest.mark.parametrize("ts, day", [
    (datetime(2024, 1, 15, 23, 0, tzinfo=UTC), date(2024, 1, 15)),            # 00:00 CET on the 16th
    (datetime(2024, 1, 15, 23, 0, 0, 1, tzinfo=UTC), date(2024, 1, 16)),       # one microsecond later
    (datetime(2024, 1, 15, 22, 59, 59, tzinfo=UTC), date(2024, 1, 15)),
    (datetime(2024, 7, 15, 22, 0, tzinfo=UTC), date(2024, 7, 15)),            # 00:00 CEST on the 16th
    (datetime(2024, 7, 15, 22, 0, 1, tzinfo=UTC), date(2024, 7, 16)),
    (datetime(2024, 7, 15, 23, 0, tzinfo=UTC), date(2024, 7, 16)),            # 01:00 local
    (datetime(2024, 3, 31, 1, 30, tzinfo=UTC), date(2024, 3, 31)),            # 03:30 CEST, spring-forward day
    (datetime(2024, 12, 31, 23, 0, tzinfo=UTC), date(2024, 12, 31)),          # New Year midnight: last year
])
def test_close_date_of(ts, day):
    assert close_date_of(ts, ZURICH) == day


def test_close_date_of_midnight_given_in_local_time():
    assert close_date_of(datetime(2024, 5, 2, 0, 0, tzinfo=ZURICH), ZURICH) == date(2024, 5, 1)
    assert close_date_of(datetime(2024, 5, 2, 0, 0, tzinfo=UTC), ZoneInfo("UTC")) == date(2024, 5, 1)


@pytest.mark.parametrize("day, cutoff_utc", [
    (date(2024, 1, 15), datetime(2024, 1, 15, 23, 0, tzinfo=UTC)),
    (date(2024, 3, 30), datetime(2024, 3, 30, 23, 0, tzinfo=UTC)),   # ends at 00:00 CET on the 31st
    (date(2024, 3, 31), datetime(2024, 3, 31, 22, 0, tzinfo=UTC)),   # 23-hour day, ends at 00:00 CEST
    (date(2024, 10, 26), datetime(2024, 10, 26, 22, 0, tzinfo=UTC)),
    (date(2024, 10, 27), datetime(2024, 10, 27, 23, 0, tzinfo=UTC)),  # 25-hour day
])
def test_cutoff_of(day, cutoff_utc):
    cutoff = cutoff_of(day, ZURICH)
    assert cutoff == cutoff_utc
    assert close_date_of(cutoff, ZURICH) == day  # the cutoff belongs to the day it ends
    assert close_date_of(cutoff + timedelta(microseconds=1), ZURICH) == day + timedelta(days=1)


def test_day_lengths_across_dst():
    def length(d: date) -> timedelta:
        # same tzinfo on both sides would subtract wall times: compare instants in UTC
        return cutoff_of(d, ZURICH).astimezone(UTC) - cutoff_of(d - timedelta(days=1), ZURICH).astimezone(UTC)
    assert length(date(2024, 3, 31)) == timedelta(hours=23)
    assert length(date(2024, 10, 27)) == timedelta(hours=25)
    assert length(date(2024, 6, 1)) == timedelta(hours=24)


def test_first_open_day_after():
    d = date(2024, 1, 31)
    assert first_open_day_after(d, set()) == date(2024, 2, 1)
    assert first_open_day_after(d, {date(2024, 2, 1), date(2024, 2, 2)}) == date(2024, 2, 3)
    assert first_open_day_after(d, {d, date(2024, 2, 3)}) == date(2024, 2, 1)
    assert first_open_day_after(date(2024, 12, 31), {date(2025, 1, 1)}) == date(2025, 1, 2)


def test_days_between():
    assert list(days_between(date(2024, 2, 28), date(2024, 3, 1))) == [date(2024, 2, 28), date(2024, 2, 29),
                                                                         date(2024, 3, 1)]
    assert list(days_between(date(2024, 3, 2), date(2024, 3, 1))) == []

"""Ledger CSV (v1) and balances CSV (v1) parsing: pure, no database.

Every bad input must come back as a ``CsvImportError`` whose ``errors`` name the line and the
field, and a file's errors are reported all at once.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from ingestion.csv_files import (
    LEDGER_COLUMNS,
    CsvFile,
    CsvImportError,
    RowError,
    parse_timestamp,
    read_balances_csv,
    read_ledger_csv,
)

UTC = timezone.utc
HEADER = list(LEDGER_COLUMNS)
BALANCE_HEADER = ["timestamp", "account", "asset", "quantity"]


# ----------------------------------------------------------------------------- helpers


def make_csv(rows: list[dict[str, str]], header: list[str], name: str) -> CsvFile:
    """A CSV file; ``header`` holds the names as written, rows are keyed by the normalized name."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for r in rows:
        writer.writerow([r.get(h.strip().lower(), "") for h in header])
    return CsvFile(name, buf.getvalue())


def ledger(*rows: dict[str, str], header: list[str] = HEADER) -> CsvFile:
    return make_csv(list(rows), header, "ledger.csv")


def balances(*rows: dict[str, str], header: list[str] = BALANCE_HEADER) -> CsvFile:
    return make_csv(list(rows), header, "balances.csv")


def row(**overrides: str) -> dict[str, str]:
    base = dict(id="t1", timestamp="2024-03-01T10:00:00Z", action="BUY", asset="BTC", quantity="0.5",
                unit_price_usd="60000", account="kraken")
    base.update(overrides)
    return base


def bal(**overrides: str) -> dict[str, str]:
    base = dict(timestamp="2024-03-02T00:00:00Z", account="kraken", asset="BTC", quantity="1.25")
    base.update(overrides)
    return base


def ledger_errors(file: CsvFile, **kwargs) -> list[RowError]:
    with pytest.raises(CsvImportError) as exc:
        read_ledger_csv(file, **kwargs)
    assert exc.value.file_name == file.name
    assert exc.value.errors, "a CsvImportError must list its errors"
    return exc.value.errors


def balance_errors(file: CsvFile, **kwargs) -> list[RowError]:
    with pytest.raises(CsvImportError) as exc:
        read_balances_csv(file, **kwargs)
    assert exc.value.errors
    return exc.value.errors


def where(errors: list[RowError]) -> set[tuple[int, str | None]]:
    return {(e.line, e.field) for e in errors}


# ----------------------------------------------------------------------------- valid ledger


def test_valid_ledger_file_parses_every_action():
    file = ledger(
        row(id="b1", action="BUY", quote_asset="USDC", quote_quantity="30010", fee_asset="USDC", fee_amount="5",
            tx_hash="0xabc", notes="first buy"),
        row(id="s1", timestamp="2024-03-02T10:00:00+01:00", action="SELL", quantity="0.1", unit_price_usd="61000.5"),
        row(id="o1", action="TRANSFER_OUT", unit_price_usd="", quantity="0.2", fee_asset="BTC", fee_amount="0.0001",
            tx_hash="0xdef"),
        row(id="i1", action="TRANSFER_IN", unit_price_usd="", quantity="0.2", account="ledger-nano", tx_hash="0xdef"),
        row(id="f1", action="FEE", unit_price_usd="", quantity="0.00001"),
        row(id="r1", action="STAKING_REWARD", asset="ETH", quantity="0.001", unit_price_usd="3500"),
        row(id="n1", action="INCOME", asset="USDC", quantity="100", unit_price_usd="1"),
        row(id="a1", action="AIRDROP", asset="ARB", quantity="1000", unit_price_usd="0"),
    )
    staged = read_ledger_csv(file)
    assert [s.source_raw_id for s in staged] == ["b1", "s1", "o1", "i1", "f1", "r1", "n1", "a1"]
    assert [s.line for s in staged] == [2, 3, 4, 5, 6, 7, 8, 9]
    first = staged[0]
    assert first.account == "kraken"
    assert first.occurred_at == datetime(2024, 3, 1, 10, 0, tzinfo=UTC)
    assert first.occurred_at.utcoffset().total_seconds() == 0
    assert first.account_type == "wallet" and first.sub_account == ""
    assert first.payload["quote_quantity"] == "30010" and first.payload["notes"] == "first buy"
    assert staged[1].occurred_at == datetime(2024, 3, 2, 9, 0, tzinfo=UTC)  # +01:00 converted to UTC


def test_columns_are_case_insensitive_in_any_order_and_optional_columns_may_be_absent():
    header = ["Account", " QUANTITY ", "Asset", "Action", "TimeStamp"]
    file = ledger(row(), header=header)
    (staged,) = read_ledger_csv(ledger(dict(row(), action="TRANSFER_IN"), header=header))
    assert staged.account == "kraken" and staged.source_raw_id.startswith("sha256:")
    assert staged.payload == {"Account": "kraken", "QUANTITY": "0.5", "Asset": "BTC", "Action": "TRANSFER_IN",
                              "TimeStamp": "2024-03-01T10:00:00Z"}
    # BUY needs a price and the header has no unit_price_usd column: the row is reported, not crashed on
    assert where(ledger_errors(file)) == {(2, "unit_price_usd")}


def test_lowercase_action_and_account_type_are_accepted():
    file = ledger(row(action="buy", account_type="Spot", sub_account="earn"), header=HEADER + ["account_type", "sub_account"])
    (staged,) = read_ledger_csv(file)
    assert staged.account_type == "spot" and staged.sub_account == "earn"


def test_blank_lines_are_skipped_and_line_numbers_stay_physical():
    text = ",".join(HEADER) + "\n\n" + ",".join(row().get(c, "") for c in HEADER) + "\n\n"
    bad = text + ",".join(row(id="t2", quantity="abc").get(c, "") for c in HEADER) + "\n"
    (staged,) = read_ledger_csv(CsvFile("x.csv", text))
    assert staged.line == 3
    assert where(ledger_errors(CsvFile("x.csv", bad))) == {(5, "quantity")}


# ----------------------------------------------------------------------------- bad numbers


@pytest.mark.parametrize("text", ["1,5", "abc", "1e", "NaN", "nan", "Infinity", "-inf", "1.2.3", "--1"])
@pytest.mark.parametrize("field", ["quantity", "unit_price_usd", "fee_amount", "quote_quantity"])
def test_malformed_number_names_line_and_field(field, text):
    extra = {"fee_asset": "USD"} if field == "fee_amount" else {"quote_asset": "USDC"} if field == "quote_quantity" else {}
    file = ledger(row(id="ok"), row(id="bad", **extra, **{field: text}))
    errors = ledger_errors(file)
    assert where(errors) == {(3, field)}
    assert repr(text) in errors[0].message or text in errors[0].message


@pytest.mark.parametrize("quantity", ["0", "-1", "-0.00000001", "0.000"])
def test_quantity_must_be_positive(quantity):
    errors = ledger_errors(ledger(row(quantity=quantity)))
    assert where(errors) == {(2, "quantity")}
    assert "positive" in errors[0].message


def test_negative_price_and_fee_and_non_positive_quote_are_errors():
    file = ledger(row(id="p", unit_price_usd="-1"),
                  row(id="f", fee_asset="USD", fee_amount="-0.5"),
                  row(id="q", quote_asset="USDC", quote_quantity="0"))
    assert where(ledger_errors(file)) == {(2, "unit_price_usd"), (3, "fee_amount"), (4, "quote_quantity")}


def test_zero_price_and_zero_fee_are_allowed():
    (staged,) = read_ledger_csv(ledger(row(unit_price_usd="0", fee_asset="USD", fee_amount="0")))
    assert staged.payload["unit_price_usd"] == "0"


# ----------------------------------------------------------------------------- actions and prices


@pytest.mark.parametrize("action", ["SWAP", "LEND", "BUYY", "TRANSFER"])  # DEPOSIT is an action since the event layer
def test_unknown_action(action):
    errors = ledger_errors(ledger(row(action=action)))
    assert where(errors) == {(2, "action")}
    assert action in errors[0].message


def test_missing_action_is_required():
    assert where(ledger_errors(ledger(row(action="")))) == {(2, "action")}


@pytest.mark.parametrize("action", ["BUY", "SELL", "INCOME", "STAKING_REWARD", "AIRDROP"])
def test_priced_actions_require_unit_price(action):
    errors = ledger_errors(ledger(row(action=action, unit_price_usd="")))
    assert where(errors) == {(2, "unit_price_usd")}
    assert "required" in errors[0].message


@pytest.mark.parametrize("action", ["TRANSFER_IN", "TRANSFER_OUT", "FEE"])
def test_unpriced_actions_need_no_unit_price(action):
    (staged,) = read_ledger_csv(ledger(row(action=action, unit_price_usd="")))
    assert staged.source_raw_id == "t1"


@pytest.mark.parametrize("field", ["asset", "account", "quantity", "timestamp"])
def test_required_values(field):
    assert where(ledger_errors(ledger(row(**{field: ""})))) == {(2, field)}


# ----------------------------------------------------------------------------- timestamps


def test_naive_timestamp_without_timezone_is_an_error():
    errors = ledger_errors(ledger(row(timestamp="2024-03-01T10:00:00")))
    assert where(errors) == {(2, "timestamp")}
    assert "offset" in errors[0].message


@pytest.mark.parametrize("text", ["yesterday", "2024-13-01T00:00:00Z", "01/03/2024 10:00", "2024-03-01T25:00:00Z"])
def test_unparseable_timestamp(text):
    assert where(ledger_errors(ledger(row(timestamp=text)))) == {(2, "timestamp")}


@pytest.mark.parametrize("local, expected_utc", [
    ("2024-01-15T12:00:00", datetime(2024, 1, 15, 11, 0, tzinfo=UTC)),   # CET, +01:00
    ("2024-07-15T12:00:00", datetime(2024, 7, 15, 10, 0, tzinfo=UTC)),   # CEST, +02:00
    ("2024-03-31T01:59:59", datetime(2024, 3, 31, 0, 59, 59, tzinfo=UTC)),  # just before spring-forward
    ("2024-03-31T03:00:00", datetime(2024, 3, 31, 1, 0, tzinfo=UTC)),    # just after spring-forward
    ("2024-10-27T03:00:00", datetime(2024, 10, 27, 2, 0, tzinfo=UTC)),   # after fall-back
    ("2024-10-26T23:30:00", datetime(2024, 10, 26, 21, 30, tzinfo=UTC)),  # still summer time
    ("2024-12-31T00:00:00", datetime(2024, 12, 30, 23, 0, tzinfo=UTC)),  # local midnight
])
def test_naive_timestamp_with_timezone_is_converted_to_utc(local, expected_utc):
    (staged,) = read_ledger_csv(ledger(row(timestamp=local)), naive_timezone="Europe/Zurich")
    assert staged.occurred_at == expected_utc
    assert staged.occurred_at.tzinfo == UTC


def test_explicit_offset_wins_over_naive_timezone():
    file = ledger(row(id="a", timestamp="2024-07-15T12:00:00Z"), row(id="b", timestamp="2024-07-15T12:00:00-05:00"))
    a, b = read_ledger_csv(file, naive_timezone="Europe/Zurich")
    assert a.occurred_at == datetime(2024, 7, 15, 12, 0, tzinfo=UTC)
    assert b.occurred_at == datetime(2024, 7, 15, 17, 0, tzinfo=UTC)


def test_parse_timestamp_direct():
    assert parse_timestamp(" 2024-03-01T10:00:00Z ", None) == datetime(2024, 3, 1, 10, tzinfo=UTC)
    assert parse_timestamp("2024-03-01T10:00:00.123456+02:00", None) == datetime(2024, 3, 1, 8, 0, 0, 123456, tzinfo=UTC)
    assert parse_timestamp("2024-03-01T10:00:00z", None) == datetime(2024, 3, 1, 10, tzinfo=UTC)
    assert parse_timestamp("2024-07-01T00:00:00", "Europe/Zurich") == datetime(2024, 6, 30, 22, tzinfo=UTC)
    with pytest.raises(ValueError, match="offset"):
        parse_timestamp("2024-03-01T10:00:00", None)
    with pytest.raises(ValueError, match="required"):
        parse_timestamp("   ", "Europe/Zurich")
    with pytest.raises(ValueError, match="ISO 8601"):
        parse_timestamp("not a time", None)


# ----------------------------------------------------------------------------- duplicates


def test_duplicate_id_with_different_content_names_both_lines():
    file = ledger(row(id="dup", quantity="1"), row(id="other"), row(id="dup", quantity="2"))
    errors = ledger_errors(file)
    assert where(errors) == {(4, "id")}
    assert "line 2" in errors[0].message and "dup" in errors[0].message
    assert "line 4" in str(errors[0])


def test_duplicate_external_id_with_different_content_is_an_error():
    file = ledger(row(id="", external_id="kr-1", quantity="1"), row(id="", external_id="kr-1", quantity="2"))
    errors = ledger_errors(file)
    assert where(errors) == {(3, "id")}
    assert "line 2" in errors[0].message


def test_duplicate_identical_row_is_one_record():
    file = ledger(row(id="dup"), row(id="x"), row(id="dup"))
    staged = read_ledger_csv(file)
    assert [s.source_raw_id for s in staged] == ["dup", "x"]
    assert staged[0].line == 2


def test_identical_rows_without_any_id_are_one_record():
    file = ledger(row(id=""), row(id="", timestamp="2024-03-01T10:00:00Z"))
    (staged,) = read_ledger_csv(file)
    assert staged.source_raw_id.startswith("sha256:")


def test_duplicate_differing_only_in_surrounding_whitespace_is_identical():
    file = ledger(row(id="dup", asset="BTC"), row(id="dup", asset=" BTC "))
    assert len(read_ledger_csv(file)) == 1


# ----------------------------------------------------------------------------- fee and quote pairs


def test_fee_amount_without_fee_asset():
    errors = ledger_errors(ledger(row(fee_amount="0.1")))
    assert where(errors) == {(2, "fee_asset")}


def test_fee_asset_without_fee_amount():
    assert where(ledger_errors(ledger(row(fee_asset="BTC")))) == {(2, "fee_amount")}


def test_quote_asset_without_quote_quantity():
    errors = ledger_errors(ledger(row(quote_asset="USDC")))
    assert where(errors) == {(2, "quote_quantity")}


def test_quote_quantity_without_quote_asset():
    assert where(ledger_errors(ledger(row(quote_quantity="100")))) == {(2, "quote_asset")}


@pytest.mark.parametrize("action", ["TRANSFER_IN", "INCOME"])
def test_only_buy_and_sell_have_a_quote(action):
    assert where(ledger_errors(ledger(row(action=action, quote_asset="USDC", quote_quantity="1")))) == {(2, "quote_asset")}


# ----------------------------------------------------------------------------- header


def test_missing_required_header_columns():
    header = ["id", "timestamp", "asset", "quantity"]
    errors = ledger_errors(ledger(row(), header=header))
    assert [(e.line, e.field) for e in errors] == [(1, None)]
    assert "action" in errors[0].message and "account" in errors[0].message


def test_unknown_header_columns():
    errors = ledger_errors(ledger(row(), header=HEADER + ["price", "Memo"]))
    assert [(e.line, e.field) for e in errors] == [(1, None)]
    assert "price" in errors[0].message and "Memo" in errors[0].message


def test_missing_and_unknown_columns_reported_together():
    header = ["timestamp", "action", "asset", "qty", "account"]
    errors = ledger_errors(ledger(row(), header=header))
    messages = " | ".join(e.message for e in errors)
    assert all(e.line == 1 for e in errors) and len(errors) == 2
    assert "quantity" in messages and "qty" in messages


def test_duplicate_header_column():
    errors = ledger_errors(ledger(row(), header=HEADER + ["ID"]))
    assert [(e.line, e.field) for e in errors] == [(1, None)]
    assert "duplicate" in errors[0].message


def test_empty_file_and_file_without_header():
    assert [(e.line, e.field) for e in ledger_errors(CsvFile("empty.csv", ""))] == [(1, None)]
    headless = CsvFile("h.csv", "t1,2024-03-01T10:00:00Z,BUY,BTC,0.5,60000,,,,,kraken,,,\n")
    errors = ledger_errors(headless)
    assert all(e.line == 1 for e in errors)
    assert any("lacks" in e.message for e in errors)


def test_wrong_number_of_values_in_a_row():
    text = ",".join(HEADER) + "\n" + "t1,2024-03-01T10:00:00Z,BUY,BTC\n"
    errors = ledger_errors(CsvFile("short.csv", text))
    assert where(errors) == {(2, "quantity")}  # the first column the line lacks
    long = ",".join(HEADER) + "\n" + "t1,2024-03-01T10:00:00Z,BUY,BTC,1,5,,,,,kraken,,,note,extra\n"
    [error] = ledger_errors(CsvFile("long.csv", long))
    assert (error.line, error.field) == (2, "notes") and "beyond the last column" in error.message


# ----------------------------------------------------------------------------- all errors at once


def test_all_errors_of_a_file_are_reported_at_once():
    file = ledger(
        row(id="ok1"),
        row(id="e1", quantity="1,5"),
        row(id="ok2", action="SELL"),
        row(id="e2", action="SWAP", timestamp="2024-03-01T10:00:00"),
        row(id="e3", unit_price_usd="", fee_amount="1"),
        row(id="ok1", quantity="7"),
    )
    errors = ledger_errors(file)
    assert where(errors) == {(3, "quantity"), (5, "action"), (5, "timestamp"), (6, "unit_price_usd"),
                             (6, "fee_asset"), (7, "id")}
    assert errors == sorted(errors, key=lambda e: (e.line, e.field or ""))
    text = str(CsvImportError("ledger.csv", errors))
    assert "6 error(s)" in text and "line 5, field 'action'" in text


def test_a_bad_row_does_not_stop_later_rows_being_checked():
    rows = [row(id=f"r{i}", quantity="abc" if i % 2 else "1") for i in range(10)]
    errors = ledger_errors(ledger(*rows))
    assert [e.line for e in errors] == [3, 5, 7, 9, 11]


# ----------------------------------------------------------------------------- idempotency key


def test_idempotency_key_prefers_id_then_external_id_then_hash():
    file = ledger(row(id="my-id", external_id="ext-1"),
                  row(id="", external_id="ext-2", timestamp="2024-03-01T11:00:00Z"),
                  row(id="", external_id="", timestamp="2024-03-01T12:00:00Z"))
    a, b, c = read_ledger_csv(file)
    assert a.source_raw_id == "my-id"
    assert b.source_raw_id == "ext-2"
    assert c.source_raw_id == f"sha256:{c.payload_hash}"
    assert len(c.payload_hash) == 64 and int(c.payload_hash, 16) >= 0


def test_hash_is_stable_under_header_case_whitespace_and_column_order():
    content = row(id="", notes="hello")
    plain = read_ledger_csv(ledger(content))[0]
    shuffled_header = [" Notes", "ACCOUNT ", "Unit_Price_USD", "quantity", " Asset ", "Action", "TIMESTAMP"]
    other = read_ledger_csv(ledger(content, header=shuffled_header))[0]
    padded = read_ledger_csv(ledger({k: f"  {v} " for k, v in content.items()}))[0]
    assert plain.source_raw_id.startswith("sha256:")
    assert plain.source_raw_id == other.source_raw_id == padded.source_raw_id
    assert plain.payload_hash == other.payload_hash == padded.payload_hash


def test_hash_changes_with_content():
    a = read_ledger_csv(ledger(row(id="")))[0]
    b = read_ledger_csv(ledger(row(id="", quantity="0.50000001")))[0]
    c = read_ledger_csv(ledger(row(id="", notes="x")))[0]
    assert len({a.source_raw_id, b.source_raw_id, c.source_raw_id}) == 3


def test_same_file_read_twice_gives_same_keys():
    file = ledger(row(id=""), row(id="", timestamp="2024-03-01T10:00:01Z"))
    assert [s.source_raw_id for s in read_ledger_csv(file)] == [s.source_raw_id for s in read_ledger_csv(file)]
    assert file.file_hash == CsvFile("other-name.csv", file.text).file_hash


def test_bad_account_type_in_ledger():
    errors = ledger_errors(ledger(row(account_type="savings"), header=HEADER + ["account_type"]))
    assert where(errors) == {(2, "account_type")}


# ----------------------------------------------------------------------------- balances


def test_valid_balances_file_defaults_to_wallet():
    file = balances(bal(), bal(asset="ETH", quantity="0"), bal(account="ledger-nano", quantity="-3.5"))
    staged = read_balances_csv(file)
    assert [s.balances for s in staged] == [{"BTC": "1.25"}, {"ETH": "0"}, {"BTC": "-3.5"}]
    assert all(s.account_type == "wallet" and s.sub_account == "" for s in staged)
    assert staged[0].occurred_at == datetime(2024, 3, 2, tzinfo=UTC)
    assert staged[0].source_raw_id == f"sha256:{staged[0].payload_hash}"
    assert [s.line for s in staged] == [2, 3, 4]


def test_balances_with_account_type_and_sub_account_any_case_any_order():
    header = ["Sub_Account", "QUANTITY", "asset", "Account_Type", "account", "timestamp"]
    (staged,) = read_balances_csv(balances(bal(account_type="Spot", sub_account="earn"), header=header))
    assert staged.account_type == "spot" and staged.sub_account == "earn"


def test_balances_bad_account_type():
    errors = balance_errors(balances(bal(account_type="checking"), header=BALANCE_HEADER + ["account_type"]))
    assert where(errors) == {(2, "account_type")}
    assert "checking" in errors[0].message


def test_balances_conflicting_quantities_for_same_account_asset_time():
    file = balances(bal(quantity="1"), bal(asset="ETH"), bal(quantity="2"))
    errors = balance_errors(file)
    assert where(errors) == {(4, "quantity")}
    assert "line 2" in errors[0].message


def test_balances_same_quantity_twice_is_not_an_error_and_other_keys_do_not_conflict():
    header = BALANCE_HEADER + ["account_type"]
    file = balances(bal(), bal(), bal(account_type="spot", quantity="9"), bal(account="other", quantity="9"),
                    bal(timestamp="2024-03-03T00:00:00Z", quantity="9"), header=header)
    assert len(read_balances_csv(file)) == 5


def test_balances_same_quantity_spelled_differently_is_not_a_conflict():
    file = balances(bal(timestamp="2024-03-02T00:00:00Z", quantity="1.5"),
                    bal(timestamp="2024-03-02T01:00:00+01:00", quantity="1.5"),
                    bal(timestamp="2024-03-02T00:00:00Z", quantity="1.50"))
    read_balances_csv(file)


def test_balances_errors_name_line_and_field_all_at_once():
    file = balances(bal(quantity="abc"), bal(timestamp="2024-03-02T00:00:00"), bal(account="", asset=""),
                    bal(quantity="NaN", asset="ETH"))
    assert where(balance_errors(file)) == {(2, "quantity"), (3, "timestamp"), (4, "account"), (4, "asset"),
                                           (5, "quantity")}


def test_balances_missing_and_unknown_columns():
    errors = balance_errors(balances(bal(), header=["timestamp", "account", "quantity", "wallet"]))
    assert all(e.line == 1 and e.field is None for e in errors)
    messages = " ".join(e.message for e in errors)
    assert "asset" in messages and "wallet" in messages


def test_balances_naive_timestamp_with_timezone():
    (staged,) = read_balances_csv(balances(bal(timestamp="2024-07-01T00:00:00")), naive_timezone="Europe/Zurich")
    assert staged.occurred_at == datetime(2024, 6, 30, 22, 0, tzinfo=UTC)


def test_balance_quantity_text_is_normalized():
    (staged,) = read_balances_csv(balances(bal(quantity="1.2500")))
    assert staged.balances == {"BTC": "1.25"}
    assert Decimal(staged.balances["BTC"]) == Decimal("1.25")

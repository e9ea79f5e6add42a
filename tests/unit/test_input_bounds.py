"""Bounded input at the door (issue 18): numbers in the documented syntax only, times in a sane window, encodings
detected or refused, NUL and oversized fields refused; and 1,000 seeded mutations of a good ledger file that end
either in rows or in a CsvImportError naming line (and field), never in another exception."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest

from ingestion.csv_files import CsvFile, CsvImportError, read_balances_csv, read_ledger_csv
from warehouse.numbers import NotADecimal, parse_input_decimal

HEADER = ("id,timestamp,action,asset,quantity,unit_price_usd,fee_asset,fee_amount,quote_asset,quote_quantity,account,"
          "tx_hash,external_id,notes\n")
GOOD = HEADER + "".join([
    "a1,2026-01-02T10:00:00Z,BUY,BTC,0.5,40000,USD,20,USD,20000,Kraken,,,first buy\n",
    "a2,2026-01-03T11:00:00+01:00,SELL,BTC,0.25,42000,,,USD,10500,Kraken,,,Zürich desk\n",
    "a3,2026-01-04T12:00:00Z,INCOME,ETH,1.25,3000,,,,,Ledger Cold,,,staking\n",
])


@pytest.mark.parametrize("text, value", [("1", "1"), ("-2.50", "-2.50"), ("+.5", "0.5"), ("0.000000000000000001", "1E-18"),
                                         ("123456789012345678901234", "123456789012345678901234")])
def test_numbers_in_the_documented_syntax_are_exact(text: str, value: str) -> None:
    assert parse_input_decimal(text) == Decimal(value)


@pytest.mark.parametrize("text", ["1_5", "1E5", "1e-3", "١٢", "１２", "1,5", "1 000", "NaN", "Infinity", "0x10", "--1",
                                  "1." + "0" * 25, "1" * 25, "", "."])
def test_numbers_outside_the_syntax_or_range_are_refused(text: str) -> None:
    with pytest.raises(NotADecimal):
        parse_input_decimal(text)


@pytest.mark.parametrize("stamp", ["0001-01-01T00:00:00Z", "2008-12-31T23:59:59Z", "9999-12-31T00:00:00Z",
                                   "2999-01-01T00:00:00Z"])
def test_times_outside_the_window_are_refused_with_line_and_field(stamp: str) -> None:
    text = HEADER + f"x,{stamp},BUY,BTC,1,100,,,,,Kraken,,,\n"
    with pytest.raises(CsvImportError) as refused:
        read_ledger_csv(CsvFile("late.csv", text))
    [error] = refused.value.errors
    assert (error.line, error.field) == (2, "timestamp") and "outside 2009-01-03" in error.message


def test_encodings_bom_utf16_and_refusals(tmp_path) -> None:
    for name, data in (("utf8.csv", GOOD.encode("utf-8")), ("bom.csv", GOOD.encode("utf-8-sig")),
                       ("utf16.csv", GOOD.encode("utf-16"))):
        path = tmp_path / name
        path.write_bytes(data)
        assert len(read_ledger_csv(CsvFile.from_path(path))) == 3, name
    latin = tmp_path / "latin.csv"
    latin.write_bytes(GOOD.encode("cp1252"))
    with pytest.raises(CsvImportError) as refused:  # a file on disk is decoded as it is read
        read_ledger_csv(CsvFile.from_path(latin))
    assert "line 3, field 'notes'" in str(refused.value) and "save it as UTF-8" in str(refused.value)
    nul = tmp_path / "nul.csv"
    nul.write_bytes(GOOD.encode().replace(b"Kraken", b"Kra\x00ken", 1))
    with pytest.raises(CsvImportError, match="line 2, field 'account': contains a NUL byte"):
        read_ledger_csv(CsvFile.from_path(nul))


def test_an_oversized_field_is_refused_with_its_line() -> None:
    text = GOOD + "a4,2026-01-05T12:00:00Z,INCOME,ETH,1,3000,,,,,Kraken,,," + "n" * 200_000 + "\n"
    with pytest.raises(CsvImportError, match="line 5, field 'notes': unreadable CSV: field larger than field limit"):
        read_ledger_csv(CsvFile("big.csv", text))


def _mutate(rng: random.Random, data: bytes) -> bytes:
    kind = rng.randrange(9)
    if kind == 0:  # flip a byte
        i = rng.randrange(len(data))
        return data[:i] + bytes([rng.randrange(256)]) + data[i + 1:]
    if kind == 1:  # cut the file anywhere
        return data[:rng.randrange(len(data))]
    if kind == 2:  # another encoding
        return data.decode().encode(rng.choice(["cp1252", "latin-1", "utf-16-le", "utf-16"]), errors="replace")
    if kind == 3:  # a NUL byte
        i = rng.randrange(len(data))
        return data[:i] + b"\x00" + data[i:]
    text = data.decode()
    fields = [line.split(",") for line in text.splitlines()]
    line = rng.randrange(1, len(fields))
    column = rng.randrange(len(fields[line]))
    fields[line][column] = rng.choice([
        "1_5", "1E5", "1e400", "٣", "１", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "-0", "", "\"", "x" * 140_000,
        "NaN", "Infinity", "1" * 30, "SELL", "TRANSFER_OUT", "spot", "2026-02-30T00:00:00Z", "9" * 25 + ".5",
        "2026-01-01T00:00:00", "-5", "0", "=cmd|' /C calc'!A0", "\u202e", "BTC,ETH"])
    return ("\n".join(",".join(f) for f in fields) + "\n").encode("utf-8")


def test_one_thousand_mutated_files_end_in_rows_or_a_named_refusal(tmp_path) -> None:
    rng = random.Random(20261204)
    path = tmp_path / "mutant.csv"
    outcomes = {"rows": 0, "refused": 0}
    for _ in range(1000):
        path.write_bytes(_mutate(rng, GOOD.encode("utf-8")))
        reader = rng.choice([read_ledger_csv, read_balances_csv])
        try:
            reader(CsvFile.from_path(path))
            outcomes["rows"] += 1
        except CsvImportError as exc:
            assert exc.errors and all(e.line >= 1 and e.message for e in exc.errors), exc
            outcomes["refused"] += 1
    assert outcomes["rows"] > 0 and outcomes["refused"] > 500, outcomes


def test_the_fast_row_hash_is_byte_for_byte_the_canonical_json_hash() -> None:
    import hashlib
    import json

    from ingestion.csv_files import _normalized_hash

    rng = random.Random(7)
    alphabet = [chr(c) for c in range(0x20, 0x7f)] + ['"', "\\", "\t", "é", "語", "\u2028", " "]
    for _ in range(3000):
        row = {rng.choice(["id", "notes", "asset", "Quantity", "b\\c", 'q"t']): "".join(
            rng.choice(alphabet) for _ in range(rng.randrange(6))) for _ in range(rng.randrange(1, 6))}
        canonical = {k: v.strip() for k, v in sorted(row.items()) if v.strip() != ""}
        expected = hashlib.sha256(json.dumps(canonical, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
        assert _normalized_hash(row) == expected, row

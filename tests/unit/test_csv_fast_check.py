"""The fast check of plain ledger rows (``_fast_ledger_check``) against the full one (``_check_ledger_row``): on
thousands of seeded rows (good ones, and each field set to hostile or borderline text, one or two at a time, under
several headers and with or without --timezone), whatever the fast check accepts the full check accepts with the
same COPY fields: the fast path makes the import faster, never less strict. Pure, no database."""

from __future__ import annotations

import json
import random
from datetime import datetime

import pytest

from ingestion.csv_files import (FIELD_MAX_CHARS, LEDGER_COLUMNS, RowError, _check_ledger_row, _fast_ledger_check,
                                 _ledger_copy_fields)

GOOD_ROWS = [
    dict(id="r1", timestamp="2024-01-01T00:00:37Z", action="SELL", asset="ETH", quantity="0.24328959", fee_asset="USD",
         fee_amount="0.75", quote_asset="USD", quote_quantity="16098.5", account="main", notes="note 1"),
    dict(id="r2", timestamp="2024-01-01T00:01:14Z", action="TRANSFER_IN", asset="SOL", quantity="12",
         account="cold", tx_hash="0x9f2c"),
    dict(timestamp="2026-01-03T11:00:00+01:00", action="buy", asset="BTC", quantity="0.5", unit_price_usd="40000",
         account="Kraken", external_id="e-5"),
    dict(id="m6", timestamp="2026-01-07T00:00:00Z", action="STAKING_REWARD", asset="SOL", quantity=".125",
         unit_price_usd="101.", fee_asset="SOL", fee_amount="0", account=" Kraken ", notes="epoch 612"),
    dict(id="i1", timestamp=" 2025-06-30T23:59:59.123456-07:00 ", action="INCOME", asset="DOT", quantity="3",
         unit_price_usd="0", account="main", account_type="Staking", sub_account="validator 7"),
]
HOSTILE = ["", " ", "0", "-0", "0.0", "0.", ".0", ".", "00.5", "5.", "+5", "-5", "1" * 24, "1" * 25, "0" * 30 + "1",
           "0." + "1" * 24, "0." + "1" * 25, "1_5", "1E5", "1e400", "NaN", "١٢", "１２", "1,5", "1 000", "0x10",
           "2026-01-01T00:00:00z", "2026-01-01T00:00:00", "2026-01-01", "2026-01-01 00:00:00+00:00", "2009-01-02T23:59:59Z",
           "2009-01-03T00:00:00Z", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "2999-01-01T00:00:00Z",
           "2026-02-30T00:00:00Z", "2026-01-01T00:00:00+99:00", "1735689600", "yesterday", "BUY", " sell ", "FEE",
           "TRANSFER_OUT", "Withdrawal", "bogus", "spot", "Margin", "nonsense", "USD", "x" * 128, "x" * 129, "x" * 256,
           "x" * 257, "\t", "a\tb", "a\nb", "\r", '"', "'", "\\", "a\\tb", "%s", "%", "{}", '{"a":1}', "ünïcödé", "\u202e",
           "\x7f", "\x01", "\u00a0", "sha256:abc", "=cmd|' /C calc'!A0"]
HEADERS = [
    list(LEDGER_COLUMNS),
    list(LEDGER_COLUMNS) + ["account_type", "sub_account"],
    ["Account", "QUANTITY", "asset", "Action", "TimeStamp", "unit_price_usd", "id"],
    ["timestamp", "action", "asset", "quantity", "account", "fee_asset", "fee_amount", "quote_asset", "quote_quantity"],
    list(reversed(LEDGER_COLUMNS)) + ["sub_account"],
]


def _rows(rng: random.Random, header: list[str]) -> list[list[str]]:
    names = [h.lower() for h in header]
    rows = []
    for good in GOOD_ROWS:
        base = [good.get(name, "") for name in names]
        rows.append(base)
        for column in range(len(header)):
            for value in HOSTILE:
                rows.append([value if i == column else v for i, v in enumerate(base)])
        for _ in range(300):  # two fields at once: the rules across fields (fee, quote, price)
            mutated = list(base)
            for column in rng.sample(range(len(header)), 2):
                mutated[column] = rng.choice(HOSTILE + [good.get(names[column], "")])
            rows.append(mutated)
    return rows


@pytest.mark.parametrize("naive_timezone", [None, "Europe/Zurich"])
@pytest.mark.parametrize("header", HEADERS, ids=lambda h: ",".join(h)[:40])
def test_whatever_the_fast_check_accepts_the_full_check_accepts_with_the_same_fields(header, naive_timezone):
    rng = random.Random(f"{header}{naive_timezone}")
    fast = _fast_ledger_check(header, naive_timezone)
    accepted = deferred = 0
    for line, values in enumerate(_rows(rng, header), start=2):
        quick = fast(list(values), line)
        errors: list[RowError] = []
        full = _check_ledger_row(dict(zip(header, values)), line, naive_timezone, errors)
        if quick is None:
            deferred += 1
            continue
        accepted += 1
        assert full is not None, (values, errors)
        fields, at = quick
        expected = _ledger_copy_fields(full).split("\t")
        got = fields.split("\t")
        assert json.loads(got[2]) == json.loads(expected[2]) == full.payload
        assert got[:2] + got[3:] == expected[:2] + expected[3:], values
        assert at == full.occurred_at and isinstance(at, datetime)
    # the fast path does carry the plain rows, and leaves the rest to the full check
    assert accepted > 300 and deferred > 1000, (accepted, deferred)


def test_rows_beyond_the_fast_path_still_go_through_the_full_check():
    header = list(LEDGER_COLUMNS)
    fast = _fast_ledger_check(header, None)
    good = [GOOD_ROWS[0].get(h, "") for h in header]
    assert fast(list(good), 2) is not None
    for column, value in [("notes", "café"), ("notes", 'say "hi"'), ("account", "a\\b"), ("notes", "tab\there"),
                          ("id", "k" * (FIELD_MAX_CHARS["id"] + 1))]:
        row = [value if h == column else v for h, v in zip(header, good)]
        assert fast(row, 2) is None, column
    # a v1.1 header (asset_id, wallet, venue) always takes the full check
    v11 = ["id", "timestamp", "action", "asset_id", "quantity", "wallet"]
    assert _fast_ledger_check(v11, None)(["a", "2024-01-01T00:00:00Z", "BUY", "BTC", "1", "w"], 2) is None

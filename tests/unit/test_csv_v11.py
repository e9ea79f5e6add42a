"""The seed's CSV v1.1 column names (asset_id, wallet, venue) are read as v1's (docs/csv-formats.md)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from ingestion.csv_files import CsvFile, CsvImportError, read_balances_csv, read_ledger_csv
from transforms.ledger_mapping import map_ledger_record

LEDGER_V11 = """id,timestamp,action,asset_id,quantity,unit_price_usd,wallet,venue,account_type
L1,2026-01-03T10:00:00Z,BUY,BTC,0.5,42000,Trading,Coinbase Prime,spot
L2,2026-01-03T11:00:00Z,STAKING_REWARD,ETH,0.01,2500,,Kiln,earn
"""


def test_a_v11_ledger_is_read_and_mapped_like_v1():
    rows = read_ledger_csv(CsvFile("ledger.csv", LEDGER_V11))
    assert [(r.account, r.account_type) for r in rows] == [("Trading", "spot"), ("Kiln", "earn")]  # venue without wallet
    assert rows[0].payload["asset_id"] == "BTC"  # staged as written
    legs = [leg for r in rows for leg in map_ledger_record(r.payload)]
    assert [(l.account, l.asset, l.quantity, l.kind) for l in legs] == [
        ("Trading", "BTC", Decimal("0.5"), "buy"), ("Trading", "USD", Decimal("-21000.0"), "sell"),
        ("Kiln", "ETH", Decimal("0.01"), "staking_reward")]


def test_a_v11_balances_file_is_read_like_v1():
    rows = read_balances_csv(CsvFile("balances.csv", "timestamp,wallet,venue,asset_id,quantity\n"
                                                     "2026-01-03T23:59:59Z,Trading,Coinbase Prime,BTC,0.5\n"))
    assert [(r.account, r.balances) for r in rows] == [("Trading", {"BTC": "0.5"})]


def test_a_v1_column_and_its_v11_name_together_are_refused():
    with pytest.raises(CsvImportError, match="columns asset and asset_id are the same"):
        read_ledger_csv(CsvFile("ledger.csv", "timestamp,action,asset,asset_id,quantity,account\n"))
    with pytest.raises(CsvImportError, match="line 2, field 'asset': is required"):
        read_ledger_csv(CsvFile("ledger.csv", "timestamp,action,asset_id,quantity,wallet,unit_price_usd\n"
                                              "2026-01-03T10:00:00Z,BUY,,1,Trading,1\n"))

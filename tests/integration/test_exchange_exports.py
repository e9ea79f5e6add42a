"""Binance "Transaction History" CSV export: validated all or nothing, staged as exported, one leg per row."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import sqlalchemy as sa
from typer.testing import CliRunner

from orchestration.cli import app
from transforms.canonical import build_canonical
from warehouse.entities import resolve_entity

EXPORT = """User_ID,UTC_Time,Account,Operation,Coin,Change,Remark
37138112,2026-01-03 08:00:01,Spot,Deposit,USDT,5000.00000000,
37138112,2026-01-03 09:15:22,Spot,Transaction Related,USDT,-2131.25000000,
37138112,2026-01-03 09:15:22,Spot,Transaction Related,BTC,0.05000000,
37138112,2026-01-03 09:15:22,Spot,Fee,BTC,-0.00005000,
37138112,2026-01-03 09:15:22,Spot,Fee,BTC,-0.00005000,
37138112,2026-01-03 10:00:00,Spot,Transfer Between Spot Account and UM Futures Account,USDT,-1000,
37138112,2026-01-03 10:00:00,USDT-Futures,Transfer Between Spot Account and UM Futures Account,USDT,1000,
37138112,2026-01-03 16:00:00,USDT-Futures,Funding Fee,USDT,-0.41230000,
37138112,2026-01-04 01:02:03,USDT-Futures,Realize profit and loss,USDT,12.5,
37138112,2026-01-04 02:00:00,Spot,Small assets exchange BNB,DOGE,-12,
37138112,2026-01-04 02:00:00,Spot,Small assets exchange BNB,BNB,0.0031752,
37138112,2026-01-04 03:00:00,Spot,Some New Binance Operation,USDT,0.01,promo
"""


def _import(tmp_path, text: str, name: str = "binance-export.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return CliRunner().invoke(app, ["import-csv", str(path), "--entity", "acme", "--kind", "binance-export"])


def test_export_rows_become_legs_and_transfers_match(engine, tmp_path):
    result = _import(tmp_path, EXPORT)
    assert result.exit_code == 0, result.output
    assert "12 rows, 12 new" in " ".join(result.output.split())
    again = _import(tmp_path, EXPORT, "same-export-again.csv")
    assert "12 rows, 0 new" in " ".join(again.output.split())
    with engine.begin() as conn:
        entity = resolve_entity(conn, "acme")
        build_canonical(conn, entity, date(2026, 1, 3), date(2026, 1, 4))
        legs = conn.execute(sa.text(
            """SELECT a.name, a.account_type, s.symbol, l.quantity, l.kind FROM transactions l
               JOIN accounts a ON a.id = l.account_id JOIN assets s ON s.id = l.asset_id ORDER BY l.ts, l.id""")).all()
        transfers = dict(conn.execute(sa.text("SELECT status, count(*) FROM transfers GROUP BY 1")).all())
        payload = conn.execute(sa.text("SELECT payload FROM raw_records ORDER BY id LIMIT 1")).scalar()
    assert payload == {"User_ID": "37138112", "UTC_Time": "2026-01-03 08:00:01", "Account": "Spot",
                       "Operation": "Deposit", "Coin": "USDT", "Change": "5000.00000000", "Remark": ""}
    assert [(l.account_type, l.symbol, l.quantity, l.kind) for l in legs] == [
        ("spot", "USDT", Decimal("5000.00000000"), "deposit"),
        ("spot", "USDT", Decimal("-2131.25000000"), "sell"),
        ("spot", "BTC", Decimal("0.05000000"), "buy"),
        ("spot", "BTC", Decimal("-0.00005000"), "fee"),
        ("spot", "BTC", Decimal("-0.00005000"), "fee"),  # two identical rows stay two rows
        ("spot", "USDT", Decimal("-1000"), "transfer_out"),
        ("futures", "USDT", Decimal("1000"), "transfer_in"),
        ("futures", "USDT", Decimal("-0.41230000"), "funding"),
        ("futures", "USDT", Decimal("12.5"), "realized_pnl"),
        ("spot", "DOGE", Decimal("-12"), "sell"),
        ("spot", "BNB", Decimal("0.0031752"), "buy"),
        ("spot", "USDT", Decimal("0.01"), "other"),
    ]
    assert {l.name for l in legs} == {"Binance 37138112"}
    assert transfers == {"matched": 1}


def test_a_bad_export_names_each_row_and_field_and_stages_nothing(engine, tmp_path):
    bad = EXPORT + "37138112,2026-13-01 00:00:00,Spot,Deposit,BTC,1,\n37138112,2026-01-05 00:00:00,Spot,Deposit,,1.2.3,\n"
    result = _import(tmp_path, bad)
    assert result.exit_code == 1
    output = " ".join(result.output.split())
    assert "line 14, field 'utc_time'" in output
    assert "line 15, field 'change'" in output and "line 15, field 'coin': is required" in output
    assert "nothing was imported" in output
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM raw_records")).scalar() == 0

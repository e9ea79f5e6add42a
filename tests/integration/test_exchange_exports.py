"""Binance "Transaction History" CSV export: validated all or nothing, staged as exported, one leg per row."""

from __future__ import annotations

from datetime import date, datetime, timezone
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
    return CliRunner().invoke(app, ["import-csv", str(path), "--entity", "acme", "--create", "--kind", "binance-export"])


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
        events = [tuple(r) for r in conn.execute(sa.text(
            "SELECT event_type, legs FROM events")).all()]
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
        ("spot", "USDT", Decimal("0.01"), "unclassified"),  # an operation no rule knows: never booked, blocks PnL
    ]
    assert {l.name for l in legs} == {"Binance 37138112"}
    assert transfers == {"matched": 1, "unmatched_in": 1}  # the deposit: external, flagged for review
    # the rows of one trade are one event (same time, trade family), so the trade carries one value
    assert sorted(events) == [("derivatives_settlement", 1), ("derivatives_settlement", 1), ("external_deposit", 1),
                              ("internal_move", 2), ("trade", 2), ("trade", 4), ("unclassified", 1)]


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


KRAKEN = '''"txid","refid","time","type","subtype","aclass","asset","wallet","amount","fee","balance"
"L4UESK-KG3EQ-UFO4T5","QCC6PR7-EJ4PH-ZZP5QB","2026-01-03 10:01:02","deposit","","currency","ZUSD","spot / main",10000.0000,0.0000,10000.0000
"LZ2QPN-ADW5C-7JJAQU","TK3JGA-6OKCO-2XUVSD","2026-01-03 12:00:00","trade","","currency","ZUSD","spot / main",-4200.0000,6.7200,5793.2800
"L3NN4N-BLCUD-EFXV3H","TK3JGA-6OKCO-2XUVSD","2026-01-03 12:00:00","trade","","currency","XXBT","spot / main",0.1000000000,0.0000000000,0.1000000000
"LA4KQX-6WPHS-CHEPMT","RUS2M4L-7VPBF-IS2PNU","2026-01-04 08:30:00","withdrawal","","currency","XXBT","spot / main",-0.0400000000,0.0001500000,0.0598500000
"LSSMT2-UQL3W-NXHZTJ","STFBJ2Z-4GRNL-A4C7FX","2026-01-04 09:00:00","staking","","currency","DOT.S","earn / bonded",0.0123456789,0.0000000000,0.0123456789
'''


def test_kraken_ledgers_reconcile_against_their_own_balances(engine, tmp_path):
    path = tmp_path / "ledgers.csv"
    path.write_text(KRAKEN, encoding="utf-8")
    result = CliRunner().invoke(app, ["import-csv", str(path), "--entity", "acme", "--create", "--kind", "kraken-ledgers"])
    assert result.exit_code == 0, result.output
    with engine.begin() as conn:
        entity = resolve_entity(conn, "acme")
        build_canonical(conn, entity, date(2026, 1, 3), date(2026, 1, 4))
        positions = conn.execute(sa.text(
            """SELECT p.date, a.account_type, s.symbol, p.computed_quantity, p.reported_quantity FROM positions p
               JOIN accounts a ON a.id = p.account_id JOIN assets s ON s.id = p.asset_id ORDER BY 1, 2, 3""")).all()
        kinds = conn.execute(sa.text("SELECT kind, count(*) FROM transactions GROUP BY 1 ORDER BY 1")).all()
    assert [tuple(p) for p in positions] == [
        (date(2026, 1, 3), "spot", "BTC", Decimal("0.1000000000"), Decimal("0.1000000000")),
        (date(2026, 1, 3), "spot", "USD", Decimal("5793.2800"), Decimal("5793.2800")),
        (date(2026, 1, 4), "earn", "DOT", Decimal("0.0123456789"), Decimal("0.0123456789")),  # DOT.S: DOT held in earn
        (date(2026, 1, 4), "spot", "BTC", Decimal("0.0598500000"), Decimal("0.0598500000")),
        (date(2026, 1, 4), "spot", "USD", Decimal("5793.2800"), Decimal("5793.2800")),
    ]
    assert [tuple(k) for k in kinds] == [("buy", 1), ("deposit", 1), ("fee", 2), ("sell", 1), ("staking_reward", 1),
                                         ("withdrawal", 1)]


KRAKEN_OLD = '''"txid","refid","time","type","subtype","aclass","asset","amount","fee","balance"
"L1","R1","2026-01-03 10:00:00","deposit","","currency","ZUSD",10000.0000,0.0000,10000.0000
"L2","T1","2026-01-03 12:00:00","trade","","currency","ZUSD",-4206.7200,10.9400,5782.3400
"L3","T1","2026-01-03 12:00:00","trade","","currency","XXBT",0.1000000000,0.0000000000,0.1000000000
"L4","S1","2026-01-04 09:00:00","transfer","spottostaking","currency","XXBT",-0.0500000000,0.0000000000,0.0500000000
"L5","S2","2026-01-04 09:04:00","transfer","stakingfromspot","currency","XBT.M",0.0500000000,0.0000000000,0.0500000000
'''


def test_kraken_staking_wrappers_are_the_underlying_asset_and_moving_them_keeps_basis(engine, tmp_path):
    """XBT.M is BTC held in ``staking``: spot -> staking is an internal move (matched by amount and time), so the
    lot keeps its basis (4,206.72 + the 10.94 USD fee of the trade: one event by refid) and its date."""
    from transforms.pnl import build_pnl

    path = tmp_path / "ledgers.csv"
    path.write_text(KRAKEN_OLD, encoding="utf-8")
    result = CliRunner().invoke(app, ["import-csv", str(path), "--entity", "acme", "--create", "--kind", "kraken-ledgers"])
    assert result.exit_code == 0, result.output
    with engine.begin() as conn:
        entity = resolve_entity(conn, "acme")
        build_canonical(conn, entity, date(2026, 1, 3), date(2026, 1, 4))
        build_pnl(conn, entity, date(2026, 1, 3), date(2026, 1, 4))
        positions = conn.execute(sa.text(
            """SELECT a.account_type, s.symbol, p.computed_quantity, p.reported_quantity FROM positions p
               JOIN accounts a ON a.id = p.account_id JOIN assets s ON s.id = p.asset_id
               WHERE p.date = '2026-01-04' ORDER BY 1, 2""")).all()
        transfers = conn.execute(sa.text("SELECT status, matched_by FROM transfers ORDER BY status")).all()
        lots = conn.execute(sa.text(
            """SELECT a.account_type, l.quantity, l.cost_basis, l.acquired_at FROM pnl_open_lots l
               JOIN accounts a ON a.id = l.account_id WHERE l.method = 'fifo' AND l.pool = 'account'
               AND l.date = '2026-01-04' ORDER BY 1""")).all()
    assert [tuple(p) for p in positions] == [
        ("spot", "BTC", Decimal("0.0500000000"), Decimal("0.0500000000")),
        ("spot", "USD", Decimal("5782.3400"), Decimal("5782.3400")),
        ("staking", "BTC", Decimal("0.0500000000"), Decimal("0.0500000000")),
    ]
    assert [tuple(t) for t in transfers] == [("matched", "amount_time"), ("unmatched_in", None)]  # + the USD deposit
    bought = datetime(2026, 1, 3, 12, tzinfo=timezone.utc)
    assert [tuple(l) for l in lots] == [("spot", Decimal("0.05"), Decimal("2108.83"), bought),
                                        ("staking", Decimal("0.05"), Decimal("2108.83"), bought)]

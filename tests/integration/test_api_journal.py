"""The general ledger against the real PostgreSQL: entries from the stored book, balanced in cents, mapped per
entity (and asset / account type), trial balance, tie-out enforced at the close, ERP files, CSV and XLSX."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta
from decimal import Decimal

import sqlalchemy as sa
from fastapi.testclient import TestClient
from openpyxl import load_workbook
from typer.testing import CliRunner

from orchestration.cli import app as cli
from reconciliation.close import write_closes
from tests.integration.test_api import DAY, T0, Seed, assert_error, auth, client, floats_in, seed  # noqa: F401
from transforms.pnl import build_pnl
from warehouse.entities import resolve_entity
from warehouse.journal import enforce_tieout, journal_entries
from warehouse.journal_erp import ERP_FORMATS
from warehouse.schema import assets, prices

DAY2 = DAY + timedelta(days=1)
H = timedelta(hours=1)


def _ledger(seed: Seed) -> None:
    """Day 1: spot buys 1 ETH (3000.10) and 0.2 BTC (5000.5) for USD, sells 0.1 BTC for 6000.000000000000000001;
    the wallet gets a 0.01 ETH staking reward worth 30.001 and 5 ETH airdropped WITHOUT a value on the leg (the
    engine values them at the ETH price of 2000: 10000). Day 2: spot sells 1 ETH for 2000 (FIFO: the 3000.10 lot)."""
    with seed.engine.begin() as conn:
        seed.asset["USD"] = conn.execute(sa.insert(assets).values(symbol="USD", decimals=2, is_fiat=True)
                                         .returning(assets.c.id)).scalar_one()
        conn.execute(sa.insert(prices).values(entity_id=seed.a, asset_id=seed.asset["ETH"], ts=T0 - H,
                                              price_usd=Decimal("2000"), source="manual", resolution="day"))  # manual: above the trades' own prices

        def trade(ts: datetime, symbol: str, qty: str, kind: str, value: str) -> None:
            raw = seed.raw(conn, seed.a, {"trade": f"{symbol}{qty}"})
            seed.leg(conn, seed.a, seed.spot, symbol, qty, kind, ts, raw_id=raw, usd_value=value)
            usd = ("-" + value) if not qty.startswith("-") else value
            seed.leg(conn, seed.a, seed.spot, "USD", usd, "sell" if kind == "buy" else "buy", ts, raw_id=raw,
                     leg_index=1, group=f"g{raw}", usd_value=value)

        trade(T0, "ETH", "1", "buy", "3000.10")
        trade(T0 + H, "BTC", "0.2", "buy", "5000.5")
        trade(T0 + 2 * H, "BTC", "-0.1", "sell", "6000.000000000000000001")
        seed.leg(conn, seed.a, seed.wallet, "ETH", "0.01", "staking_reward", T0 + 3 * H, usd_value="30.001")
        seed.leg(conn, seed.a, seed.wallet, "ETH", "5", "airdrop", T0 + 4 * H)
        trade(T0 + timedelta(days=1), "ETH", "-1", "sell", "2000")
        entity = resolve_entity(conn, seed.a)
        build_pnl(conn, entity, DAY, DAY2)
        write_closes(conn, entity, DAY, DAY2, run_id="test")


def _lines(entry: dict) -> list[tuple]:
    return [(l["account"], l["asset"], l["debit"], l["credit"]) for l in entry["lines"]]


def test_entries_come_from_the_book_balance_in_cents_and_tie_out(client: TestClient, seed: Seed) -> None:
    _ledger(seed)
    resp = client.get("/api/v1/journal-entries", headers=auth(seed.key_a), params={"from": "2024-03-01", "to": "2024-03-02"})
    assert resp.status_code == 200, resp.text
    assert floats_in(resp.text) == []
    entries = {(e["date"], e["event"]): e for e in resp.json()["data"]}
    assert list(entries) == [("2024-03-01", "trade"), ("2024-03-01", "staking"), ("2024-03-01", "airdrop"),
                             ("2024-03-02", "trade")]
    for e in entries.values():
        assert e["currency"] == "USD" and e["book"] == "configured"
        assert all(len(l["debit"].split(".")[1]) == 2 and len(l["credit"].split(".")[1]) == 2 for l in e["lines"])
        assert sum(Decimal(l["debit"]) for l in e["lines"]) == sum(Decimal(l["credit"]) for l in e["lines"]) \
            == Decimal(e["total_debit"])
    # day 1 trade: ETH at 3000.10, BTC +5000.5 - 2500.25; cash -3000.10 - 5000.5 + 6000.000…001; clearing nets to 0
    assert _lines(entries[("2024-03-01", "trade")]) == [
        ("1400", "BTC", "2500.25", "0.00"), ("1400", "ETH", "3000.10", "0.00"), ("1010", "USD", "0.00", "2000.60"),
        ("4900", None, "0.00", "3499.75")]
    assert _lines(entries[("2024-03-01", "staking")]) == [("1400", "ETH", "30.00", "0.00"), ("4110", None, "0.00", "30.00")]
    # the airdrop had no value on the leg: booked at the engine's valuation (5 x 2000), not left out
    assert _lines(entries[("2024-03-01", "airdrop")]) == [("1400", "ETH", "10000.00", "0.00"),
                                                          ("4120", None, "0.00", "10000.00")]
    assert _lines(entries[("2024-03-02", "trade")]) == [("1400", "ETH", "0.00", "3000.10"), ("1010", "USD", "2000.00", "0.00"),
                                                        ("4900", None, "1000.10", "0.00")]
    # GL digital assets = subledger at both closes, to the cent
    for day in ("2024-03-01", "2024-03-02"):
        tie = client.get("/api/v1/journal/tieout", headers=auth(seed.key_a), params={"date": day})
        assert tie.status_code == 200, tie.text
        rows = tie.json()["data"]
        assert rows and all(r["difference"] == "0.00" and r["ties"] for r in rows), rows
        assert tie.json()["meta"]["ties"] is True
    assert {(r["asset"], r["gl"]) for r in client.get("/api/v1/journal/tieout", headers=auth(seed.key_a),
                                                      params={"date": "2024-03-02"}).json()["data"]} == {
        ("BTC", "2500.25"), ("ETH", "10030.00")}  # 0.01 @ 30.001 + 5 @ 10000 = 10030.001
    # trial balance: opening before day 2 = day 1's entries; the closings sum to zero
    tb = client.get("/api/v1/journal/trial-balance", headers=auth(seed.key_a), params={"from": "2024-03-02", "to": "2024-03-02"})
    assert tb.status_code == 200, tb.text
    rows = {r["account"]: r for r in tb.json()["data"]}
    assert rows["1400"]["opening"] == "15530.35" and rows["1400"]["credits"] == "3000.10" \
        and rows["1400"]["closing"] == "12530.25"
    assert sum(Decimal(r["closing"]) for r in rows.values()) == 0
    assert client.get("/api/v1/journal-entries", headers=auth(seed.key_b),
                      params={"from": "2024-03-01", "to": "2024-03-02"}).json()["data"] == []
    # asset roll-forward: opening + in - out - fees = closing in quantity and cost; fair value at the close price
    rf = client.get("/api/v1/journal/asset-rollforward", headers=auth(seed.key_a),
                    params={"from": "2024-03-01", "to": "2024-03-02"})
    assert rf.status_code == 200, rf.text
    by_asset = {r["asset"]: r for r in rf.json()["data"]}
    eth = by_asset["ETH"]
    assert (eth["opening_quantity"], eth["in_quantity"], eth["in_cost"], eth["out_quantity"], eth["out_cost"],
            eth["out_proceeds"], eth["closing_quantity"], eth["closing_cost"]) == (
        "0", "6.01", "13030.101", "1", "3000.1", "2000", "5.01", "10030.001")
    # 5.01 ETH at 2000 = 10020; the period's holding gain: 10020 - 0 - 13030.101 + 2000 = -1010.101
    assert (eth["closing_fair_value"], eth["fair_value_change"]) == ("10020", "-1010.101")
    btc = by_asset["BTC"]
    assert (btc["in_cost"], btc["out_cost"], btc["out_proceeds"], btc["closing_cost"], btc["closing_fair_value"]) == (
        "5000.5", "2500.25", "6000.000000000000000001", "2500.25", "6000.000000000000000001")
    # (0.1 BTC left at the price the entity's own sale implies, 60000.00000000000000001: the `trade` price source)


def test_tieout_difference_fails_the_close_with_its_lots(client: TestClient, seed: Seed) -> None:
    _ledger(seed)
    with seed.engine.begin() as conn:
        entity = resolve_entity(conn, seed.a)
        assert enforce_tieout(conn, entity, DAY, DAY2, run_id="t") == []
        conn.execute(sa.text("UPDATE pnl_open_lots SET cost_basis = cost_basis + 0.01 WHERE entity_id = :e AND "
                             "method = 'configured' AND date = :d AND asset_id = :a"), dict(e=seed.a, d=DAY2, a=seed.asset["BTC"]))
        failures = enforce_tieout(conn, entity, DAY, DAY2, run_id="t")
    assert [f.date for f in failures] == [DAY2]
    assert "BTC GL 2500.25 vs lots 2500.26" in failures[0].message
    closes = client.get("/api/v1/closes", headers=auth(seed.key_a), params={"from": "2024-03-01", "to": "2024-03-02"})
    statuses = {c["date"]: (c["status"], c["message"]) for c in closes.json()["data"]}
    assert statuses["2024-03-02"][0] == "failed" and "GL tie-out" in statuses["2024-03-02"][1]
    assert statuses["2024-03-01"][0] == "closed"
    rows = client.get("/api/v1/journal/tieout", headers=auth(seed.key_a), params={"date": "2024-03-02"}).json()["data"]
    btc = next(r for r in rows if r["asset"] == "BTC")
    assert (btc["gl"], btc["subledger"], btc["difference"], btc["ties"]) == ("2500.25", "2500.26", "-0.01", False)
    assert btc["lots"] and btc["lots"][0]["cost_basis"] == "2500.260000000000000000"
    runner = CliRunner()
    out = runner.invoke(cli, ["journal", "tieout", "--entity", "acme-fund", "--date", "2024-03-02", "--json"])
    assert out.exit_code == 1 and json.loads(out.output)[0]["difference"] == "-0.01"


def test_mapping_per_asset_and_account_type_cli_json_and_exports(client: TestClient, seed: Seed, tmp_path) -> None:
    _ledger(seed)
    runner = CliRunner()
    for args in (["--role", "inventory", "--code", "1410", "--name", "Crypto assets"],
                 ["--role", "inventory", "--code", "1411", "--name", "Bitcoin", "--asset", "btc"]):
        done = runner.invoke(cli, ["journal", "set-account", "--entity", "acme-fund", *args])
        assert done.exit_code == 0, done.output
    bad = runner.invoke(cli, ["journal", "set-account", "--entity", "acme-fund", "--role", "nope", "--code", "1", "--name", "x"])
    assert bad.exit_code == 1 and "unknown journal role" in bad.output
    bad = runner.invoke(cli, ["journal", "set-account", "--entity", "acme-fund", "--role", "cash", "--code", "1",
                              "--name", "x", "--account-type", "margin"])
    assert bad.exit_code == 1 and "no account of type 'margin'" in bad.output
    shown = runner.invoke(cli, ["journal", "accounts", "--entity", "acme-fund"])
    assert "1410" in shown.output and "1411" in shown.output
    mapped = json.loads(runner.invoke(cli, ["journal", "accounts", "--entity", "acme-fund", "--json"]).stdout)
    assert ("inventory", "BTC", "1411") in {(m["role"], m["asset"], m["code"]) for m in mapped}
    assert {"1410", "1411"} <= {m["code"] for m in mapped} and all(set(m) == {"role", "asset", "account_type", "code", "name"} for m in mapped)
    out = runner.invoke(cli, ["journal", "entries", "--entity", "acme-fund", "--from", "2024-03-01", "--to", "2024-03-02",
                              "--json"])
    assert out.exit_code == 0, out.output
    entries = json.loads(out.output)
    assert {(l["account"], l["asset"]) for e in entries for l in e["lines"] if l["role"] == "inventory"} == {
        ("1411", "BTC"), ("1410", "ETH")}
    assert all(set(e) >= {"date", "event", "lines"} and all(set(l) >= {"account", "debit", "credit"} for l in e["lines"])
               for e in entries)
    tb = runner.invoke(cli, ["journal", "trial-balance", "--entity", "acme-fund", "--from", "2024-03-01",
                             "--to", "2024-03-02", "--json"])
    assert tb.exit_code == 0 and {"account", "opening", "debits", "credits", "closing"} <= set(json.loads(tb.output)[0])
    rf = runner.invoke(cli, ["journal", "rollforward", "--entity", "acme-fund", "--from", "2024-03-01",
                             "--to", "2024-03-02", "--json"])
    assert rf.exit_code == 0 and {"asset", "opening_quantity", "in_cost", "out_cost", "fees_cost", "closing_cost",
                                  "closing_fair_value"} <= set(json.loads(rf.output)[0])
    tie = runner.invoke(cli, ["journal", "tieout", "--entity", "acme-fund", "--date", "2024-03-02", "--json"])
    assert tie.exit_code == 0 and {"asset", "gl", "subledger", "difference"} <= set(json.loads(tie.output)[0])
    human = runner.invoke(cli, ["journal", "trial-balance", "--entity", "acme-fund", "--from", "2024-03-01",
                                "--to", "2024-03-02"])
    assert "10,000.00" in human.output or "12,530.25" in human.output
    # ERP files: the documented columns, every entry balanced
    for fmt, columns in ERP_FORMATS.items():
        path = tmp_path / f"{fmt}.csv"
        done = runner.invoke(cli, ["journal", "entries", "--entity", "acme-fund", "--from", "2024-03-01",
                                   "--to", "2024-03-02", "--format", fmt, "--out", str(path)])
        assert done.exit_code == 0, done.output
        rows = list(csv.DictReader(io.StringIO(path.read_text())))
        assert list(rows[0]) == columns and len(rows) == sum(len(e["lines"]) for e in entries)
    # CSV and XLSX of the three routes; XLSX money and counts are numbers
    h = auth(seed.key_a)
    csv_rows = list(csv.DictReader(io.StringIO(client.get("/api/v1/journal-entries", headers=h, params={
        "from": "2024-03-01", "to": "2024-03-02", "format": "csv"}).text)))
    assert len(csv_rows) == sum(len(e["lines"]) for e in entries)
    assert sum(Decimal(r["debit"]) for r in csv_rows) == sum(Decimal(r["credit"]) for r in csv_rows)
    for path, params in (("/api/v1/journal-entries", {"from": "2024-03-01", "to": "2024-03-02"}),
                         ("/api/v1/journal/trial-balance", {"from": "2024-03-01", "to": "2024-03-02"}),
                         ("/api/v1/journal/tieout", {"date": "2024-03-02"}),
                         ("/api/v1/journal/asset-rollforward", {"from": "2024-03-01", "to": "2024-03-02"})):
        resp = client.get(path, headers=h, params={**params, "format": "xlsx"})
        assert resp.status_code == 200 and resp.content[:2] == b"PK", path
        sheet = load_workbook(io.BytesIO(resp.content)).active
        header = [c.value for c in sheet[1]]
        for name in ("debit", "credit", "opening", "closing", "gl", "difference", "in_cost", "closing_quantity"):
            if name in header:
                col = header.index(name)
                cells = [row[col] for row in sheet.iter_rows(min_row=2)]
                assert cells and all(c.data_type == "n" and not isinstance(c.value, str) for c in cells), (path, name)
                if name not in ("in_cost", "closing_quantity"):
                    assert all(c.number_format == "#,##0.00" for c in cells)
        if "line" in header:
            assert all(isinstance(row[header.index("line")].value, int) for row in sheet.iter_rows(min_row=2))
    resp = client.get("/api/v1/journal/trial-balance", headers=h, params={"from": "2024-03-01", "to": "2024-03-02",
                                                                          "format": "csv"})
    assert resp.headers["content-type"].startswith("text/csv")


def test_journal_parameters(client: TestClient, seed: Seed) -> None:
    h = auth(seed.key_a)
    assert assert_error(client.get("/api/v1/journal-entries", headers=h, params={"from": "2024-03-01"}),
                        400, "VALIDATION_ERROR")["error"]["details"][0]["field"] == "to"
    too_long = assert_error(client.get("/api/v1/journal-entries", headers=h,
                                       params={"from": "2022-01-01", "to": "2024-03-01"}), 422, "VALIDATION_ERROR")
    assert "366 days" in too_long["error"]["message"]
    bad_pool = assert_error(client.get("/api/v1/journal-entries", headers=h,
                                       params={"from": "2024-03-01", "to": "2024-03-01", "method": "fifo", "pool": "x"}),
                            400, "VALIDATION_ERROR")
    assert bad_pool["error"]["details"][0]["field"] == "pool"
    no_pool = assert_error(client.get("/api/v1/journal-entries", headers=h,
                                      params={"from": "2024-03-01", "to": "2024-03-01", "method": "fifo"}),
                           422, "VALIDATION_ERROR")  # fifo needs its pool: a rule across parameters
    assert no_pool["error"]["details"][0]["field"] == "pool"
    with seed.engine.connect() as conn:
        assert journal_entries(conn, resolve_entity(conn, seed.b), DAY, DAY) == []
    no_book = assert_error(client.get("/api/v1/journal/tieout", headers=h, params={"date": "2024-03-01"}),
                           409, "CONFLICT")
    assert no_book["error"]["details"][0]["field"] == "date" and "no stored book" in no_book["error"]["message"]


def test_fair_value_policy_books_month_end_remeasurement_from_the_stored_book(client: TestClient, seed: Seed) -> None:
    _ledger(seed)
    month_end = DAY.replace(day=31)
    with seed.engine.begin() as conn:
        entity = resolve_entity(conn, seed.a)
        build_pnl(conn, entity, DAY, month_end)
        write_closes(conn, entity, DAY, month_end, run_id="test")
    runner = CliRunner()
    assert runner.invoke(cli, ["journal", "set-policy", "--entity", "acme-fund", "--fair-value", "wrong"]).exit_code == 1
    done = runner.invoke(cli, ["journal", "set-policy", "--entity", "acme-fund", "--fair-value", "asu-2023-08"])
    assert done.exit_code == 0 and "asu_2023_08" in done.output, done.output
    resp = client.get("/api/v1/journal-entries", headers=auth(seed.key_a), params={"from": "2024-03-01", "to": "2024-03-31"})
    assert resp.status_code == 200, resp.text
    fair = [e for e in resp.json()["data"] if e["event"] == "fair_value"]
    # 5.01 ETH at 2000 = 10020 against a cost of 10030.001: ETH's adjustment goes to -10.00; 0.1 BTC at the price its
    # own sale implies (6000.00) against a cost of 2500.25: +3,499.75; unrealized gain 3,489.75 through net income
    assert [(e["date"], _lines(e)) for e in fair] == [
        ("2024-03-31", [("1401", "BTC", "3499.75", "0.00"), ("1401", "ETH", "0.00", "10.00"),
                        ("4910", None, "0.00", "3489.75")])]
    tb = {r["account"]: r["closing"] for r in client.get("/api/v1/journal/trial-balance", headers=auth(seed.key_a),
                                                          params={"from": "2024-03-01", "to": "2024-03-31"}).json()["data"]}
    assert tb["1401"] == "3489.75" and tb["1400"] == "12530.25" and sum(Decimal(v) for v in tb.values()) == 0
    with seed.engine.begin() as conn:  # digital assets at cost still tie out on every day
        assert enforce_tieout(conn, resolve_entity(conn, seed.a), DAY, month_end, run_id="t") == []


def test_an_entity_reporting_in_eur_gets_its_ledger_in_eur_and_it_ties(client: TestClient, seed: Seed) -> None:
    _ledger(seed)
    with seed.engine.begin() as conn:
        eur = conn.execute(sa.insert(assets).values(symbol="EUR", decimals=2, is_fiat=True).returning(assets.c.id)).scalar_one()
        conn.execute(sa.insert(prices).values(entity_id=seed.a, asset_id=eur, ts=T0 - 2 * H, price_usd=Decimal("1.25"),
                                              source="manual", resolution="day", pair="EUR/USD"))
        conn.execute(sa.text("UPDATE entities SET reporting_currency = 'EUR' WHERE id = :e"), dict(e=seed.a))
        entity = resolve_entity(conn, seed.a)
        assert enforce_tieout(conn, entity, DAY, DAY2, run_id="t") == []
    resp = client.get("/api/v1/journal-entries", headers=auth(seed.key_a), params={"from": "2024-03-01", "to": "2024-03-02"})
    assert resp.status_code == 200, resp.text
    trade = next(e for e in resp.json()["data"] if (e["date"], e["event"]) == ("2024-03-02", "trade"))
    # 1 ETH bought at 3000.10 USD = 2400.08 EUR, sold for 2000 USD = 1600 EUR: a loss of 800.08 EUR
    assert trade["currency"] == "EUR" and _lines(trade) == [
        ("1400", "ETH", "0.00", "2400.08"), ("1010", "USD", "1600.00", "0.00"), ("4900", None, "800.08", "0.00")]
    rows = client.get("/api/v1/journal/tieout", headers=auth(seed.key_a), params={"date": "2024-03-02"}).json()["data"]
    assert rows and all(r["ties"] and r["currency"] == "EUR" for r in rows)

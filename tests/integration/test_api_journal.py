"""Journal entries per day and account from stored disposals and legs: balanced, mapped per entity, exported."""

from __future__ import annotations

import csv
import io
from datetime import date, timedelta
from decimal import Decimal

import sqlalchemy as sa
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from orchestration.cli import app as cli
from tests.integration.test_api import DAY, T0, Seed, assert_error, auth, client, floats_in, seed  # noqa: F401
from warehouse.journal import compute_journal_entries
from warehouse.schema import assets, pnl_disposals


def _dispose(seed: Seed, conn: sa.Connection, leg: int, account: int, symbol: str, kind: str, proceeds: str,
             cost: str, day: date = DAY) -> None:
    p, c = Decimal(proceeds), Decimal(cost)
    conn.execute(sa.insert(pnl_disposals).values(
        entity_id=seed.a, method="fifo", pool="universal", date=day, ts=T0, leg_id=leg, account_id=account,
        asset_id=seed.asset[symbol], kind=kind, quantity=Decimal("1"), proceeds=p, cost_basis=c,
        realized_gain=p - c, short_term_gain=p - c, long_term_gain=Decimal(0), shortfall_quantity=Decimal(0)))


def _ledger(seed: Seed) -> None:
    with seed.engine.begin() as conn:
        usd = conn.execute(sa.insert(assets).values(symbol="USD", decimals=2, is_fiat=True)
                           .returning(assets.c.id)).scalar_one()
        seed.asset["USD"] = usd
        # day 1, spot: buy 1 ETH for 3000.10 USD (fiat leg not booked), sell 0.1 BTC at a gain, fee in USDT
        seed.leg(conn, seed.a, seed.spot, "ETH", "1", "buy", T0, usd_value="3000.10")
        seed.leg(conn, seed.a, seed.spot, "USD", "-3000.10", "sell", T0, usd_value="3000.10")
        sale = seed.leg(conn, seed.a, seed.spot, "BTC", "-0.1", "sell", T0)
        fee = seed.leg(conn, seed.a, seed.spot, "USDT", "-1.5", "fee", T0)
        _dispose(seed, conn, sale, seed.spot, "BTC", "sale", "6000.000000000000000001", "5000.5")
        _dispose(seed, conn, fee, seed.spot, "USDT", "fee", "1.5", "1.49")
        # day 1, wallet: staking reward valued, airdrop without a value, a loss on ETH
        seed.leg(conn, seed.a, seed.wallet, "ETH", "0.01", "staking_reward", T0, usd_value="30.001")
        seed.leg(conn, seed.a, seed.wallet, "ETH", "5", "airdrop", T0)
        loss = seed.leg(conn, seed.a, seed.wallet, "ETH", "-1", "sell", T0)
        _dispose(seed, conn, loss, seed.wallet, "ETH", "sale", "2000", "2500")
        # day 2, spot: a deposit only (no entry) and another sale
        seed.leg(conn, seed.a, seed.spot, "BTC", "1", "deposit", T0 + timedelta(1))
        sale2 = seed.leg(conn, seed.a, seed.spot, "BTC", "-1", "sell", T0 + timedelta(1))
        _dispose(seed, conn, sale2, seed.spot, "BTC", "sale", "100", "100", day=DAY + timedelta(1))


def test_journal_entries_balance_per_day_and_account(client: TestClient, seed: Seed) -> None:
    _ledger(seed)
    resp = client.get("/api/v1/journal-entries", headers=auth(seed.key_a),
                      params={"from": "2024-03-01", "to": "2024-03-02"})
    assert resp.status_code == 200, resp.text
    assert floats_in(resp.text) == []
    entries = resp.json()["data"]
    assert [(e["date"], e["account"]) for e in entries] == [
        ("2024-03-01", "binance"), ("2024-03-01", "ledger-wallet"), ("2024-03-02", "binance")]
    for e in entries:
        debit = sum(Decimal(l["debit"]) for l in e["lines"])
        credit = sum(Decimal(l["credit"]) for l in e["lines"])
        assert debit == credit == Decimal(e["total_debit"]) == Decimal(e["total_credit"])
    spot = {l["role"]: (l["gl_account"], l["debit"], l["credit"]) for l in entries[0]["lines"]}
    # clearing: +6000.000000000000000001 (sale proceeds) − 3000.10 (ETH bought)
    assert spot == {
        "inventory": ("1400", "0", "2001.89"),          # +3000.10 ETH − 5000.5 BTC − 1.49 USDT
        "clearing": ("1190", "2999.900000000000000001", "0"),
        "realized_gain": ("4900", "0", "999.510000000000000001"),  # 999.500…001 + 0.01
        "fee_expense": ("6150", "1.5", "0"),
    }
    wallet = {l["role"]: (l["debit"], l["credit"]) for l in entries[1]["lines"]}
    assert wallet == {"inventory": ("0", "2469.999"), "clearing": ("2000", "0"), "realized_gain": ("500", "0"),
                      "income": ("0", "30.001")}
    assert entries[1]["unvalued_legs"] == 1 and entries[0]["unvalued_legs"] == 0
    day2 = {l["role"]: (l["debit"], l["credit"]) for l in entries[2]["lines"]}
    assert day2 == {"inventory": ("0", "100"), "clearing": ("100", "0")}  # no gain: no gain line
    assert resp.json()["meta"]["accounts"]["inventory"] == {"code": "1400", "name": "Digital assets inventory"}
    only_wallet = client.get("/api/v1/journal-entries", headers=auth(seed.key_a),
                             params={"from": "2024-03-01", "to": "2024-03-02", "account": "ledger-wallet"})
    assert [e["account"] for e in only_wallet.json()["data"]] == ["ledger-wallet"]
    assert client.get("/api/v1/journal-entries", headers=auth(seed.key_b),
                      params={"from": "2024-03-01", "to": "2024-03-02"}).json()["data"] == []


def test_journal_mapping_is_per_entity_and_exports_one_row_per_line(client: TestClient, seed: Seed) -> None:
    _ledger(seed)
    runner = CliRunner()
    done = runner.invoke(cli, ["journal", "set-account", "--entity", "acme-fund", "--role", "inventory",
                               "--code", "1410", "--name", "Crypto assets"])
    assert done.exit_code == 0, done.output
    assert runner.invoke(cli, ["journal", "set-account", "--entity", "acme-fund", "--role", "cash",
                               "--code", "1", "--name", "x"]).exit_code == 1
    shown = runner.invoke(cli, ["journal", "accounts", "--entity", "acme-fund"])
    assert "1410" in shown.output and "Crypto assets" in shown.output
    with seed.engine.connect() as conn:
        entries = compute_journal_entries(conn, seed.a, DAY, DAY)
        other = compute_journal_entries(conn, seed.b, DAY, DAY)
    assert {l["gl_account"] for e in entries for l in e["lines"] if l["role"] == "inventory"} == {"1410"}
    assert other == []
    resp = client.get("/api/v1/journal-entries", headers=auth(seed.key_a),
                      params={"from": "2024-03-01", "to": "2024-03-01", "format": "csv"})
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(resp.text)))
    assert len(rows) == sum(len(e["lines"]) for e in entries) == 8
    assert sum(Decimal(r["debit"] or "0") for r in rows) == sum(Decimal(r["credit"] or "0") for r in rows)
    assert {r["gl_account"] for r in rows if r["role"] == "inventory"} == {"1410"}


def test_journal_parameters(client: TestClient, seed: Seed) -> None:
    h = auth(seed.key_a)
    assert assert_error(client.get("/api/v1/journal-entries", headers=h, params={"from": "2024-03-01"}),
                        400, "VALIDATION_ERROR")["error"]["details"][0]["field"] == "to"
    too_long = assert_error(client.get("/api/v1/journal-entries", headers=h,
                                       params={"from": "2022-01-01", "to": "2024-03-01"}), 400, "VALIDATION_ERROR")
    assert "366 days" in too_long["error"]["message"]
    bad_pool = assert_error(client.get("/api/v1/journal-entries", headers=h,
                                       params={"from": "2024-03-01", "to": "2024-03-01", "pool": "x"}),
                            400, "VALIDATION_ERROR")
    assert bad_pool["error"]["details"][0]["field"] == "pool"

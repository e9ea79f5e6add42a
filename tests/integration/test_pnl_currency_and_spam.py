"""PnL in the entity's reporting currency (EUR) and unverified (spam) tokens, end to end on real PostgreSQL:
ledger and manual prices imported, the canonical ledger and the books built as the close does, then read
through the CLI and the API. The EUR figures are computed by hand below.

    Jan 10  BUY 1 BTC at 40,000 USD + 100 USD fee       1 EUR = 1.25 USD   lot: 40,100 USD = 32,080 EUR
    Feb 1   AIRDROP 1,000 SCAM at 0.01 (unverified)     1 EUR = 1.10 USD   10 USD = 9.090909090909090909 EUR
    Mar 1   STAKING_REWARD 0.1 ETH at 3,000 USD         1 EUR = 1.20 USD   lot: 300 USD = 250 EUR
    Jun 10  SELL 0.5 BTC at 60,000 USD                  1 EUR = 1.20 USD   proceeds 30,000 USD = 25,000 EUR
                                                                            basis 16,040 EUR, gain 8,960 EUR
    Jun 10  SELL 1,000 SCAM at 0.05                                         50 USD = 41.666666666666666667 EUR
    Jun 30  close: BTC 50,000 USD, ETH 3,500 USD        1 EUR = 1.25 USD   BTC 0.5 x 40,000 = 20,000 EUR (+3,960)
                                                                            ETH 0.1 x  2,800 =    280 EUR (+30)
"""

from __future__ import annotations

import csv
import io
import json
from datetime import date
from decimal import Decimal

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from ingestion.csv_files import CsvFile, import_csv
from ingestion.prices.manual import read_manual_prices, write_manual_prices
from orchestration.cli import app
from reconciliation.close import write_closes
from transforms.canonical import build_canonical
from transforms.pnl import build_pnl
from warehouse.entities import get_or_create_entity, resolve_entity

FIRST, LAST = date(2024, 1, 1), date(2024, 6, 30)
LEDGER = """id,timestamp,action,asset,quantity,unit_price_usd,fee_asset,fee_amount,account
E1,2024-01-10T12:00:00Z,BUY,BTC,1,40000,USD,100,Kraken
S1,2024-02-01T12:00:00Z,AIRDROP,SCAM,1000,0.01,,,Wallet
E2,2024-03-01T12:00:00Z,STAKING_REWARD,ETH,0.1,3000,,,Kraken
E3,2024-06-10T12:00:00Z,SELL,BTC,0.5,60000,,,Kraken
S2,2024-06-10T13:00:00Z,SELL,SCAM,1000,0.05,,,Wallet
"""
PRICES = """asset,timestamp,price_usd,source_note
EUR,2024-01-10T00:00:00Z,1.25,ECB reference rate
EUR,2024-02-01T00:00:00Z,1.10,ECB reference rate
EUR,2024-03-01T00:00:00Z,1.20,ECB reference rate
EUR,2024-06-10T00:00:00Z,1.20,ECB reference rate
EUR,2024-07-01T00:00:00Z,1.25,ECB reference rate
BTC,2024-06-30,50000,board valuation
ETH,2024-06-30,3500,board valuation
"""
BOOK = ["--from", "2024-01-01", "--to", "2024-06-30"]


@pytest.fixture(scope="module")
def fund(database_url: str):
    from api.security import create_api_key
    from tests.conftest import empty_database

    engine = empty_database(database_url)  # whatever an earlier test left would collide with this ledger's rows
    with engine.begin() as conn:
        entity = get_or_create_entity(conn, "eurofund")
        entity = resolve_entity(conn, entity.id)
        import_csv(conn, entity.id, "ledger", CsvFile("ledger.csv", LEDGER))
        write_manual_prices(conn, entity, "prices.csv", read_manual_prices(CsvFile("prices.csv", PRICES)),
                            threshold=Decimal("0.02"))
        build_canonical(conn, entity, FIRST, LAST)
        build_pnl(conn, entity, FIRST, LAST)
        write_closes(conn, entity, FIRST, LAST, run_id=None)
        key = create_api_key(conn, entity.id, label="currency tests")
    assert "reporting currency USD" in CliRunner().invoke(app, ["entity", "show", "--entity", "eurofund"]).stdout
    assert "USD -> EUR" in CliRunner().invoke(app, ["entity", "set-currency", "--entity", "eurofund", "-c", "eur"]).stdout
    bad = CliRunner().invoke(app, ["entity", "set-currency", "--entity", "eurofund", "-c", "JPY"])
    assert bad.exit_code == 1 and "allowed: USD, EUR, GBP" in bad.output
    return engine, entity, key


@pytest.fixture()
def client():
    from fastapi.testclient import TestClient

    from api.main import create_app

    return TestClient(create_app(rate_limit_per_minute=0))


def cli_json(*args: str) -> dict:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_realized_pnl_in_the_entitys_currency_by_hand(fund) -> None:
    realized = cli_json("pnl", "realized", "--entity", "eurofund", *BOOK, "--json")  # the entity's setting: EUR
    assert realized["currency"] == "EUR"
    assert (realized["proceeds"], realized["cost_basis"], realized["realized_gain"]) == ("25000", "16040", "8960")
    assert (realized["short_term_gain"], realized["long_term_gain"], realized["disposals"]) == ("8960", "0", 1)
    fx = realized["fx"]
    assert (fx["pair"], fx["sources"]) == ("EUR/USD", ["manual"])
    assert [(r["ts"][:10], r["rate_usd"], r["note"]) for r in fx["rates"]] == [
        ("2024-01-10", "1.25", "ECB reference rate"), ("2024-03-01", "1.2", "ECB reference rate"),
        ("2024-06-10", "1.2", "ECB reference rate")]
    usd = cli_json("pnl", "realized", "--entity", "eurofund", *BOOK, "--currency", "usd", "--json")
    assert (usd["currency"], usd["realized_gain"], usd["fx"]) == ("USD", "9950", None)  # 30,000 - 20,050
    hifo = cli_json("pnl", "realized", "--entity", "eurofund", *BOOK, "--method", "hifo", "--pool", "account",
                    "--json")  # not stored by the close: computed on demand, same keys
    assert set(hifo) == set(realized) and hifo["realized_gain"] == "8960"


def test_breakdowns_and_unrealized_in_eur_through_the_api(fund, client) -> None:
    engine, entity, key = fund
    headers = {"X-API-Key": key}
    resp = client.get("/api/v1/pnl/realized", headers=headers,
                      params={"from": "2024-01-01", "to": "2024-06-30", "method": "lofo", "pool": "universal"})
    assert resp.status_code == 200, resp.text
    data = resp.json()["data"]
    assert (data["currency"], data["realized_gain"], data["method"]) == ("EUR", "8960", "lofo")
    assert data["fx"]["rates_used"] == 3
    for by, expected in (("term", [("short", "8960"), ("long", "0")]), ("asset", [("BTC", "8960")]),
                         ("month", [("2024-06", "8960")]), ("quarter", [("2024-Q2", "8960")])):
        resp = client.get("/api/v1/pnl/realized/breakdown", headers=headers,
                          params={"from": "2024-01-01", "to": "2024-06-30", "by": by, "currency": "EUR"})
        assert resp.status_code == 200, resp.text
        assert [(r[by], r["realized_gain"]) for r in resp.json()["data"]] == expected, by
        assert resp.json()["meta"]["currency"] == "EUR" and resp.json()["meta"]["fx"]["pair"] == "EUR/USD"
    resp = client.get("/api/v1/pnl/unrealized", headers=headers, params={"as_of": "2024-06-30"})
    assert resp.status_code == 200, resp.text
    rows = {r["asset"]: (r["quantity"], r["cost_basis"], r["close_price"], r["market_value"], r["unrealized_gain"])
            for r in resp.json()["data"]}
    assert rows == {"BTC": ("0.5", "16040", "40000", "20000", "3960"), "ETH": ("0.1", "250", "2800", "280", "30")}
    resp = client.get("/api/v1/pnl/unrealized", headers=headers, params={"as_of": "2024-06-30", "currency": "USD"})
    usd = {r["asset"]: r["unrealized_gain"] for r in resp.json()["data"]}
    assert usd == {"BTC": "4950", "ETH": "50"}  # 25,000 - 20,050 and 350 - 300, as the close stored them
    # the same list as CSV and XLSX, same filters
    resp = client.get("/api/v1/pnl/realized/breakdown", headers=headers,
                      params={"from": "2024-01-01", "to": "2024-06-30", "by": "asset", "format": "csv"})
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/csv")
    assert list(csv.DictReader(io.StringIO(resp.text))) == [
        {"asset": "BTC", "realized_gain": "8960", "proceeds": "25000", "cost_basis": "16040", "disposals": "1",
         "currency": "EUR"}]
    resp = client.get("/api/v1/pnl/unrealized", params={"as_of": "2024-06-30"},
                      headers={**headers, "Accept": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"})
    assert resp.status_code == 200 and resp.content[:2] == b"PK"
    from openpyxl import load_workbook

    sheet = load_workbook(io.BytesIO(resp.content)).active
    values = [[c.value for c in row] for row in sheet.iter_rows()]
    assert values[0][:4] == ["pool_account_id", "account", "asset", "asset_id"]
    assert ["BTC", 0.5, 16040, 40000, 20000, 3960, "EUR"] == [values[1][2], *values[1][4:10]]  # numbers, not text
    assert all(not isinstance(v, str) for v in values[1][4:9])
    assert values[1][10] in ("true", True)  # priced
    resp = client.get("/api/v1/pnl/compare", headers=headers, params={
        "books": "fifo:universal,hifo:account", "from": "2024-01-01", "to": "2024-06-30", "format": "csv"})
    (row,) = list(csv.DictReader(io.StringIO(resp.text)))
    assert (row["asset"], row["gain fifo:universal"], row["gain hifo:account"], row["difference hifo:account"],
            row["currency"]) == ("BTC", "8960", "8960", "0", "EUR")
    for path, params in (("/api/v1/pnl/lots", {"as_of": "2024-06-30"}),
                         ("/api/v1/pnl/rollforward", {"from": "2024-01-01", "to": "2024-06-30"}),
                         ("/api/v1/pnl/shortfalls", {"from": "2024-01-01", "to": "2024-06-30"}),
                         ("/api/v1/pnl/excluded", {})):
        resp = client.get(path, headers=headers, params={**params, "format": "csv"})
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/csv"), path
        assert len(list(csv.reader(io.StringIO(resp.text)))) == 1 + len(client.get(path, headers=headers,
                                                                                   params=params).json()["data"])


def test_a_missing_fx_rate_is_an_error_naming_the_day_and_the_pair(fund, client) -> None:
    engine, entity, key = fund
    result = CliRunner().invoke(app, ["pnl", "realized", "--entity", "eurofund", *BOOK, "--currency", "GBP"])
    assert result.exit_code == 1 and "no GBP/USD rate for 2024-01-10" in result.output
    resp = client.get("/api/v1/pnl/realized", headers={"X-API-Key": key},
                      params={"from": "2024-01-01", "to": "2024-06-30", "currency": "GBP"})
    body = resp.json()
    assert resp.status_code == 409 and body["error"]["details"][0]["field"] == "currency"
    assert "GBP/USD" in body["error"]["message"] and "2024-01-10" in body["error"]["message"]
    resp = client.get("/api/v1/pnl/unrealized", headers={"X-API-Key": key},
                      params={"as_of": "2024-06-30", "currency": "JPY"})
    assert resp.status_code == 400 and "'USD', 'EUR' or 'GBP'" in resp.json()["error"]["message"]


def test_an_unverified_token_is_listed_not_booked_until_approved(fund, client) -> None:
    engine, entity, key = fund
    headers = {"X-API-Key": key}
    (excluded,) = cli_json("pnl", "excluded", "--entity", "eurofund", "--json")
    assert (excluded["asset"], excluded["legs"], excluded["net_quantity"]) == ("SCAM", 2, "0")
    assert client.get("/api/v1/pnl/excluded", headers=headers).json()["data"][0]["asset"] == "SCAM"
    with engine.connect() as conn:  # it still appears in positions
        held = conn.execute(sa.text(
            "SELECT computed_quantity FROM positions p JOIN assets a ON a.id = p.asset_id WHERE p.entity_id = :e"
            " AND a.symbol = 'SCAM' AND p.date = '2024-03-01'"), dict(e=entity.id)).scalar()
    assert held == Decimal(1000)
    usd = cli_json("pnl", "realized", "--entity", "eurofund", *BOOK, "--currency", "USD", "--json")
    assert (usd["realized_gain"], usd["disposals"]) == ("9950", 1)
    unrealized = client.get("/api/v1/pnl/unrealized", headers=headers, params={"as_of": "2024-03-01", "currency": "USD"})
    assert "SCAM" not in {r["asset"] for r in unrealized.json()["data"]}

    result = CliRunner().invoke(app, ["asset", "approve", "scam"])
    assert result.exit_code == 0, result.output
    assert "rebooked 2024-02-01 .. 2024-06-30" in result.output

    assert cli_json("pnl", "excluded", "--entity", "eurofund", "--json") == []
    usd = cli_json("pnl", "realized", "--entity", "eurofund", *BOOK, "--currency", "USD", "--json")
    assert (usd["realized_gain"], usd["disposals"]) == ("9990", 2)  # + (50 - 10) USD, read from the rebooked close
    with engine.connect() as conn:
        closed = conn.execute(sa.text("SELECT sum(realized_gain_universal) FROM closes WHERE entity_id = :e"),
                              dict(e=entity.id)).scalar()
    assert closed == Decimal(9990)  # the close records were rewritten too
    eur = cli_json("pnl", "realized", "--entity", "eurofund", *BOOK, "--json")
    # 8,960 + (41.666666666666666667 - 9.090909090909090909)
    assert eur["realized_gain"] == "8992.575757575757575758"
    unrealized = client.get("/api/v1/pnl/unrealized", headers=headers, params={"as_of": "2024-03-01", "currency": "USD"})
    scam = [r for r in unrealized.json()["data"] if r["asset"] == "SCAM"]
    assert scam and (scam[0]["quantity"], scam[0]["cost_basis"]) == ("1000", "10")
    missing = CliRunner().invoke(app, ["asset", "approve", "NOPE-NOT-AN-ASSET"])
    assert missing.exit_code == 1 and "no asset with id, symbol or alias" in missing.output

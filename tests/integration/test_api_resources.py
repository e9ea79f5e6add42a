"""Assets, accounts with freshness, positions in the reporting currency, transfer status, range limits and
CSV/XLSX exports, against the real PostgreSQL (rows inserted with SQLAlchemy Core)."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from fastapi.testclient import TestClient
from openpyxl import load_workbook

from tests.integration.test_api import DAY, T0, Seed, assert_error, auth, client, floats_in, seed  # noqa: F401 (fixtures)
from warehouse.schema import (
    accounts,
    asset_aliases,
    assets,
    entities,
    positions,
    prices,
    raw_records,
    transactions,
    transfers,
)

UTC = timezone.utc
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def test_each_position_names_the_latest_stored_price_at_its_price_time(client: TestClient, seed: Seed) -> None:
    """Two accounts hold BTC priced at the same time, stored twice (a coingecko row, then a ledger trade): both show
    the later row; an ETH price at another time of the same asset is not mixed in; no price time, no provenance;
    the asset filter keeps the provenance."""
    with seed.engine.begin() as conn:
        conn.execute(sa.insert(prices), [
            {"entity_id": seed.a, "asset_id": seed.asset["BTC"], "ts": T0, "price_usd": Decimal("59000"),
             "source": "coingecko", "resolution": "day"},
            {"entity_id": seed.a, "asset_id": seed.asset["BTC"], "ts": T0, "price_usd": Decimal("60000"),
             "source": "ledger", "resolution": "trade"},
            {"entity_id": seed.a, "asset_id": seed.asset["ETH"], "ts": T0 - timedelta(hours=2),
             "price_usd": Decimal("3000"), "source": "kraken", "resolution": "hour"},
            {"entity_id": seed.a, "asset_id": seed.asset["ETH"], "ts": T0, "price_usd": Decimal("3100"),
             "source": "coingecko", "resolution": "minute"},
            {"entity_id": seed.b, "asset_id": seed.asset["BTC"], "ts": T0, "price_usd": Decimal("1"),
             "source": "other-entity", "resolution": "day"},  # another entity's price of the same time
        ])
        row = {"entity_id": seed.a, "date": DAY, "reported_quantity": None, "reported_at": None}
        conn.execute(sa.insert(positions), [
            {**row, "account_id": seed.spot, "asset_id": seed.asset["BTC"], "computed_quantity": Decimal("1"),
             "close_price_usd": Decimal("60000"), "price_at": T0},
            {**row, "account_id": seed.wallet, "asset_id": seed.asset["BTC"], "computed_quantity": Decimal("2"),
             "close_price_usd": Decimal("60000"), "price_at": T0},
            {**row, "account_id": seed.spot, "asset_id": seed.asset["ETH"], "computed_quantity": Decimal("3"),
             "close_price_usd": Decimal("3000"), "price_at": T0 - timedelta(hours=2)},
            {**row, "account_id": seed.wallet, "asset_id": seed.asset["ETH"], "computed_quantity": Decimal("4"),
             "close_price_usd": None, "price_at": None},
        ])
    h = auth(seed.key_a)
    served = client.get("/api/v1/positions", headers=h, params={"as_of": DAY.isoformat()}).json()["data"]
    got = {(p["account_id"], p["asset"]): (p["price_source"], p["price_resolution"], p["value"]) for p in served}
    assert got == {(seed.spot, "BTC"): ("ledger", "trade", "60000"), (seed.wallet, "BTC"): ("ledger", "trade", "120000"),
                   (seed.spot, "ETH"): ("kraken", "hour", "9000"), (seed.wallet, "ETH"): (None, None, None)}
    only_eth = client.get("/api/v1/positions", headers=h, params={"as_of": DAY.isoformat(), "asset": "eth"})
    assert [(p["asset"], p["price_source"]) for p in only_eth.json()["data"]] == [("ETH", "kraken"), ("ETH", None)]


def test_assets_registry_aliases_and_unverified(client: TestClient, seed: Seed) -> None:
    with seed.engine.begin() as conn:
        pepe = conn.execute(sa.insert(assets).values(symbol="PEPE2", decimals=18, unverified=True)
                            .returning(assets.c.id)).scalar_one()
        conn.execute(sa.insert(asset_aliases), [
            {"asset_id": seed.asset["BTC"], "source": "binance", "alias": "BTC"},
            {"asset_id": seed.asset["BTC"], "source": "coingecko", "alias": "bitcoin"},
            {"asset_id": pepe, "source": "ethereum", "alias": "0xdead"},
        ])
        seed.leg(conn, seed.a, seed.spot, "ETH", "1", "deposit", T0)
        seed.asset["PEPE2"] = pepe
        seed.leg(conn, seed.a, seed.wallet, "PEPE2", "1000", "airdrop", T0)
    h = auth(seed.key_a)
    data = client.get("/api/v1/assets", headers=h).json()["data"]
    assert [a["symbol"] for a in data] == ["ETH", "PEPE2"]  # BTC is only B's; USDT nobody's
    assert data[1]["unverified"] is True and data[1]["aliases"] == [{"source": "ethereum", "alias": "0xdead"}]
    assert [a["symbol"] for a in client.get("/api/v1/assets", headers=h, params={"unverified": "true"})
            .json()["data"]] == ["PEPE2"]
    b = client.get(f"/api/v1/assets/{seed.asset['BTC']}", headers=auth(seed.key_b)).json()["data"]
    assert b["aliases"] == [{"source": "binance", "alias": "BTC"}, {"source": "coingecko", "alias": "bitcoin"}]
    assert_error(client.get(f"/api/v1/assets/{seed.asset['BTC']}", headers=h), 404, "NOT_FOUND")
    assert client.get(f"/api/v1/assets/{pepe}", headers=h).json()["data"]["symbol"] == "PEPE2"


def test_accounts_last_sync_and_freshness(client: TestClient, seed: Seed) -> None:
    with seed.engine.begin() as conn:
        seed.leg(conn, seed.a, seed.spot, "BTC", "1", "deposit", T0)  # raw record of account "binance", now
        old = conn.execute(sa.insert(accounts).values(entity_id=seed.a, source="kraken", name="kraken-old",
                                                      account_type="spot").returning(accounts.c.id)).scalar_one()
        seed.raw(conn, seed.a, {"id": "old"}, account="kraken-old", ingested_at=datetime.now(UTC) - timedelta(days=3))
    data = {(a["name"], a["account_type"]): a for a in
            client.get("/api/v1/accounts", headers=auth(seed.key_a)).json()["data"]}
    spot = data[("binance", "spot")]
    assert spot["source"] == "binance" and spot["freshness"] == "fresh" and spot["last_sync_at"] is not None
    assert 0 <= spot["sync_age_seconds"] < 600
    assert data[("kraken-old", "spot")]["freshness"] == "stale"
    assert data[("kraken-old", "spot")]["sync_age_seconds"] >= 3 * 86400 - 60
    wallet = data[("ledger-wallet", "wallet")]
    assert wallet["freshness"] == "never" and wallet["last_sync_at"] is None and wallet["sync_age_seconds"] is None
    one = client.get(f"/api/v1/accounts/{old}", headers=auth(seed.key_a)).json()["data"]
    assert one["name"] == "kraken-old" and one["freshness"] == "stale"
    assert_error(client.get(f"/api/v1/accounts/{seed.b_spot}", headers=auth(seed.key_a)), 404, "NOT_FOUND")


def test_positions_valued_in_the_reporting_currency_with_provenance(client: TestClient, seed: Seed) -> None:
    with seed.engine.begin() as conn:
        eur = conn.execute(sa.insert(assets).values(symbol="EUR", decimals=2, is_fiat=True)
                           .returning(assets.c.id)).scalar_one()
        conn.execute(sa.insert(prices), [
            {"entity_id": seed.a, "asset_id": seed.asset["BTC"], "ts": T0, "price_usd": Decimal("60000"),
             "source": "ledger", "resolution": "trade"},
            {"entity_id": seed.a, "asset_id": eur, "ts": T0 - timedelta(hours=1), "price_usd": Decimal("1.25"),
             "source": "ecb", "resolution": "day"},
        ])
        conn.execute(sa.insert(positions), [
            {"entity_id": seed.a, "account_id": seed.spot, "asset_id": seed.asset["BTC"], "date": DAY,
             "computed_quantity": Decimal("0.1"), "reported_quantity": Decimal("0.1"), "reported_at": T0,
             "close_price_usd": Decimal("60000"), "price_at": T0},
            {"entity_id": seed.a, "account_id": seed.wallet, "asset_id": seed.asset["ETH"], "date": DAY,
             "computed_quantity": Decimal("2"), "reported_quantity": None, "reported_at": None,
             "close_price_usd": None, "price_at": None},
            {"entity_id": seed.a, "account_id": seed.spot, "asset_id": seed.asset["BTC"], "date": DAY - timedelta(2),
             "computed_quantity": Decimal("1"), "reported_quantity": None, "reported_at": None,
             "close_price_usd": Decimal("3"), "price_at": T0 - timedelta(2)},
        ])
    h = auth(seed.key_a)
    usd = client.get("/api/v1/positions", headers=h, params={"as_of": "2024-03-01"}).json()["data"]
    btc, eth = usd
    assert btc["reporting_currency"] == "USD" and btc["price"] == "60000" and btc["value"] == "6000"
    assert btc["price_source"] == "ledger" and btc["price_resolution"] == "trade" and btc["fx_rate_usd"] == "1"
    assert btc["valuation"] == "valued" and eth["valuation"] == "no_price" and eth["value"] is None
    resp = client.get("/api/v1/positions", headers=h, params={"as_of": "2024-03-01", "currency": "eur"})
    assert floats_in(resp.text) == []
    btc_eur = resp.json()["data"][0]
    assert btc_eur["reporting_currency"] == "EUR" and btc_eur["price"] == "48000" and btc_eur["value"] == "4800"
    assert btc_eur["fx_rate_usd"] == "1.25" and btc_eur["fx_source"] == "ecb"
    assert btc_eur["fx_at"] == "2024-03-01T08:00:00Z" and btc_eur["value_usd"] == "6000"
    before_fx = client.get("/api/v1/positions", headers=h, params={"as_of": "2024-02-28", "currency": "EUR"})
    assert before_fx.json()["data"][0]["valuation"] == "no_fx_rate"
    with seed.engine.begin() as conn:  # the entity's own reporting currency is the default
        conn.execute(sa.update(entities).where(entities.c.id == seed.a).values(reporting_currency="EUR"))
    assert client.get("/api/v1/positions", headers=h, params={"as_of": "2024-03-01"}).json()["data"][0]["value"] == "4800"
    bad = assert_error(client.get("/api/v1/positions", headers=h, params={"currency": "XYZ"}), 404, "NOT_FOUND")
    assert bad["error"]["details"][0]["field"] == "currency"
    only = client.get("/api/v1/positions", headers=h, params={"as_of": "2024-03-01", "asset": "ETH"}).json()["data"]
    assert [(r["account"], r["asset"]) for r in only] == [("ledger-wallet", "ETH")]


def _transfer_legs(seed: Seed) -> tuple[int, int, int]:
    with seed.engine.begin() as conn:
        out = seed.leg(conn, seed.a, seed.spot, "BTC", "-1", "transfer_out", T0)
        into = seed.leg(conn, seed.a, seed.wallet, "BTC", "1", "transfer_in", T0 + timedelta(minutes=5))
        lone = seed.leg(conn, seed.a, seed.spot, "ETH", "-2", "withdrawal", T0 + timedelta(minutes=9))
        conn.execute(sa.insert(transfers), [
            {"id": out, "entity_id": seed.a, "out_leg_id": out, "in_leg_id": into, "asset_id": seed.asset["BTC"],
             "status": "matched", "close_date": DAY},
            {"id": lone, "entity_id": seed.a, "out_leg_id": lone, "in_leg_id": None, "asset_id": seed.asset["ETH"],
             "status": "unmatched_out", "close_date": DAY},
        ])
        seed.leg(conn, seed.a, seed.spot, "USDT", "100", "deposit", T0 + timedelta(hours=1))
    return out, into, lone


def test_transactions_transfer_status_and_counterpart(client: TestClient, seed: Seed) -> None:
    out, into, lone = _transfer_legs(seed)
    h = auth(seed.key_a)

    def get(**params: Any) -> list[dict[str, Any]]:
        resp = client.get("/api/v1/transactions", headers=h, params=params)
        assert resp.status_code == 200, resp.text
        return resp.json()["data"]

    matched = get(transfer_status="matched")
    assert [(l["id"], l["counterpart_leg_id"], l["transfer_id"]) for l in matched] == [(out, into, out), (into, out, out)]
    assert [l["id"] for l in get(transfer_status="unmatched_out")] == [lone]
    none = get(transfer_status="none")
    assert [l["kind"] for l in none] == ["deposit"] and none[0]["transfer_status"] == "none"
    assert none[0]["counterpart_leg_id"] is None
    assert len(get()) == 4
    detail = client.get(f"/api/v1/transactions/{into}", headers=h).json()["data"]
    assert detail["transfer_status"] == "matched" and detail["counterpart_leg_id"] == out
    assert detail["raw_record"]["id"] == detail["raw_record_id"]
    bad = assert_error(client.get("/api/v1/transactions", headers=h, params={"transfer_status": "lost"}),
                       400, "VALIDATION_ERROR")
    assert bad["error"]["details"][0]["field"] == "transfer_status"


def test_a_range_too_large_is_a_422_naming_the_limit(client: TestClient, seed: Seed) -> None:
    resp = client.get("/api/v1/transactions", headers=auth(seed.key_a),
                      params={"from": "2023-01-01", "to": "2024-12-31"})
    body = assert_error(resp, 422, "VALIDATION_ERROR")
    assert "731 days" in body["error"]["message"] and "366 days" in body["error"]["message"]
    assert body["error"]["details"][0]["field"] == "to"
    ok = client.get("/api/v1/transactions", headers=auth(seed.key_a), params={"from": "2024-01-01", "to": "2024-12-31"})
    assert ok.status_code == 200


def _csv(resp: Any) -> list[dict[str, str]]:
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/csv")
    assert "attachment" in resp.headers["content-disposition"]
    return list(csv.DictReader(io.StringIO(resp.text)))


def test_exports_csv_and_xlsx_match_json_with_the_same_filters(client: TestClient, seed: Seed) -> None:
    _transfer_legs(seed)
    with seed.engine.begin() as conn:  # 1,200 ETH buys: more than one JSON page and more than one CSV chunk
        first = seed.next_raw
        seed.next_raw += 1200
        conn.execute(sa.insert(raw_records), [
            {"id": first + i, "entity_id": seed.a, "source": "csv", "account": "binance", "stream": "ledger",
             "source_raw_id": f"r{first + i}", "payload": {"i": i}, "payload_hash": f"h{first + i}",
             "ingestion_run_id": seed.run_a} for i in range(1200)])
        conn.execute(sa.insert(transactions), [
            {"id": (first + i) * 10, "entity_id": seed.a, "account_id": seed.spot, "asset_id": seed.asset["ETH"],
             "ts": T0 + timedelta(seconds=i + 1), "close_date": DAY,
             "quantity": Decimal(f"0.{i + 1:04d}00000000000001"), "kind": "buy", "group_id": f"g{first + i}",
             "leg_index": 0, "raw_record_id": first + i} for i in range(1200)])
        # a formula in a source-supplied text (the group id; kinds are a closed vocabulary the database enforces)
        seed.leg(conn, seed.a, seed.spot, "USDT", "-5", "sell", T0 + timedelta(hours=2), group="=HYPERLINK(\"x\")")
    h = auth(seed.key_a)
    params = {"asset": "ETH", "from": "2024-03-01", "to": "2024-03-01"}
    legs, cursor = [], None
    while True:
        page = client.get("/api/v1/transactions", headers=h, params={**params, "limit": 1000, **(
            {"cursor": cursor} if cursor else {})}).json()
        legs += page["data"]
        cursor = page["meta"]["next_cursor"]
        if cursor is None:
            break
    rows = _csv(client.get("/api/v1/transactions", headers=h, params={**params, "format": "csv"}))
    assert [int(r["id"]) for r in rows] == [l["id"] for l in legs] and len(rows) == 1201
    assert [r["quantity"] for r in rows] == [l["quantity"] for l in legs]
    assert rows[-1]["quantity"] == "0.120000000000000001"  # exact decimal text
    assert rows[0]["transfer_status"] == "none" and rows[0]["usd_value"] == ""
    by_accept = _csv(client.get("/api/v1/transactions", headers={**h, "Accept": "text/csv"}, params=params))
    assert by_accept == rows
    injected = _csv(client.get("/api/v1/transactions", headers=h, params={"asset": "USDT", "format": "csv"}))
    assert injected[-1]["group_id"].startswith("'=") and injected[-1]["quantity"] == "-5"
    resp = client.get("/api/v1/transactions", headers={**h, "Accept": XLSX}, params={"asset": "BTC"})
    assert resp.status_code == 200 and resp.headers["content-type"] == XLSX
    sheet = load_workbook(io.BytesIO(resp.content), read_only=True).active
    table = [list(r) for r in sheet.iter_rows(values_only=True)]
    header, body = table[0], table[1:]
    assert header[:3] == ["id", "ts", "date"] and len(body) == 2
    quantities = [r[header.index("quantity")] for r in body]
    assert quantities == [-1, 1] and not any(isinstance(q, str) for q in quantities)  # number cells
    bad = client.get("/api/v1/transactions", headers=h, params={"asset": "NOPE", "format": "csv"})
    assert_error(bad, 404, "NOT_FOUND")


def test_every_small_list_exports(client: TestClient, seed: Seed) -> None:
    with seed.engine.begin() as conn:
        seed.leg(conn, seed.a, seed.spot, "ETH", "1", "deposit", T0)
        conn.execute(sa.insert(positions).values(entity_id=seed.a, account_id=seed.spot, asset_id=seed.asset["ETH"],
                                                 date=DAY, computed_quantity=Decimal("1.000000000000000001")))
    h = auth(seed.key_a)
    assert [r["name"] for r in _csv(client.get("/api/v1/entities", headers=h, params={"format": "csv"}))] == ["acme-fund"]
    assert {r["name"] for r in _csv(client.get("/api/v1/accounts", headers=h, params={"format": "csv"}))} == {
        "binance", "ledger-wallet"}
    assert [r["symbol"] for r in _csv(client.get("/api/v1/assets", headers=h, params={"format": "csv"}))] == ["ETH"]
    [pos] = _csv(client.get("/api/v1/positions", headers=h, params={"format": "csv"}))
    assert pos["computed"] == "1.000000000000000001" and pos["valuation"] == "no_price"
    xlsx = client.get("/api/v1/accounts", headers=h, params={"format": "xlsx"})
    assert xlsx.status_code == 200 and xlsx.content[:2] == b"PK"
    assert_error(client.get("/api/v1/accounts", headers=h, params={"format": "pdf"}), 400, "VALIDATION_ERROR")

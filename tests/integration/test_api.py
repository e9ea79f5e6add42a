"""The read API against the real PostgreSQL: envelope, auth, entity isolation, pagination, figures.

Rows are inserted with SQLAlchemy Core into the real tables; nothing is mocked.
"""

from __future__ import annotations

import json
import uuid
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.dialects.postgresql import JSONB

from api.deps import ConnDep, CurrentKey
from api.main import create_app
from api.security import create_api_key
from warehouse import reports
from warehouse.schema import (
    accounts,
    assets,
    breaks,
    closes,
    entities,
    ingestion_runs,
    pnl_disposals,
    positions,
    raw_records,
    transactions,
)

UTC = timezone.utc
DAY = date(2024, 3, 1)
T0 = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)


# ---------------------------------------------------------------- seeding


class Seed:
    """Two entities (A with a ledger, B with one leg) and a key for each."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.next_raw = 1
        with engine.begin() as conn:
            self.a = conn.execute(sa.insert(entities).values(name="acme-fund").returning(entities.c.id)).scalar_one()
            self.b = conn.execute(sa.insert(entities).values(name="beta-capital").returning(entities.c.id)).scalar_one()
            self.run_a = self._run(conn, self.a)
            self.run_b = self._run(conn, self.b)
            ids = conn.execute(sa.insert(assets).returning(assets.c.id, assets.c.symbol), [
                {"symbol": "BTC", "name": "Bitcoin", "decimals": 8},
                {"symbol": "ETH", "name": "Ether", "decimals": 18},
                {"symbol": "USDT", "name": "Tether", "decimals": 6},
            ]).all()
            self.asset = {sym: i for i, sym in ids}
            self.spot = self._account(conn, self.a, "binance", "spot")
            self.futures = self._account(conn, self.a, "binance", "futures")
            self.wallet = self._account(conn, self.a, "ledger-wallet", "wallet", chain="ethereum", address="0xabc")
            self.b_spot = self._account(conn, self.b, "kraken", "spot")
            self.key_a = create_api_key(conn, self.a, label="tests A")
            self.key_b = create_api_key(conn, self.b, label="tests B")
            # B's only leg: a deposit of 1 BTC
            self.b_leg = self.leg(conn, self.b, self.b_spot, "BTC", "1", "deposit", T0, run=self.run_b)

    @staticmethod
    def _run(conn: sa.Connection, entity_id: int) -> uuid.UUID:
        run_id = uuid.uuid4()
        conn.execute(sa.insert(ingestion_runs).values(id=run_id, entity_id=entity_id, source="csv", stream="ledger",
                                                      file_name="ledger.csv", status="finished"))
        return run_id

    @staticmethod
    def _account(conn: sa.Connection, entity_id: int, name: str, account_type: str, **extra: Any) -> int:
        return conn.execute(sa.insert(accounts).values(entity_id=entity_id, source=name, name=name,
                                                       account_type=account_type, **extra)
                            .returning(accounts.c.id)).scalar_one()

    def raw(self, conn: sa.Connection, entity_id: int, payload: dict[str, Any] | str, *,
            run: uuid.UUID | None = None, line: int | None = None, account: str = "binance",
            ingested_at: datetime | None = None) -> int:
        """A staging record; ``payload`` as a dict, or as JSON text (to store numbers a float cannot hold). Staging is
        append-only (migration 0026): whatever a test needs in it is written when it is staged."""
        raw_id = self.next_raw  # explicit ids (the identity is BY DEFAULT) keep leg ids predictable
        self.next_raw += 1
        value: Any = payload if isinstance(payload, dict) else sa.cast(sa.literal(payload, sa.Text), JSONB)
        conn.execute(sa.insert(raw_records).values(
            id=raw_id, entity_id=entity_id, source="csv", account=account, stream="ledger",
            source_raw_id=f"r{raw_id}", payload=value, payload_hash=f"h{raw_id}", file_name="ledger.csv",
            line_number=line if line is not None else raw_id + 1, ingestion_run_id=run or self.run_a,
            **({"ingested_at": ingested_at} if ingested_at is not None else {}),
        ))
        return raw_id

    def leg(self, conn: sa.Connection, entity_id: int, account_id: int, symbol: str, quantity: str, kind: str,
            ts: datetime, *, raw_id: int | None = None, leg_index: int = 0, group: str | None = None,
            run: uuid.UUID | None = None, usd_value: str | None = None) -> int:
        if raw_id is None:
            raw_id = self.raw(conn, entity_id, {"id": f"x{self.next_raw}", "amount": quantity, "asset": symbol},
                              run=run)
        leg_id = raw_id * 10 + leg_index
        conn.execute(sa.insert(transactions).values(
            id=leg_id, entity_id=entity_id, account_id=account_id, asset_id=self.asset[symbol], ts=ts,
            close_date=ts.date(), quantity=Decimal(quantity), kind=kind, group_id=group or f"g{raw_id}",
            leg_index=leg_index, raw_record_id=raw_id, usd_value=Decimal(usd_value) if usd_value else None,
        ))
        return leg_id


@pytest.fixture()
def seed(engine: sa.Engine) -> Seed:
    return Seed(engine)


@pytest.fixture()
def client(engine: sa.Engine) -> TestClient:
    return TestClient(create_app(rate_limit_per_minute=0))


def auth(key: str) -> dict[str, str]:
    return {"X-API-Key": key}


def floats_in(text: str) -> list[str]:
    """Every JSON number with a fraction or exponent in a response body."""
    found: list[str] = []

    def grab(s: str) -> float:
        found.append(s)
        return 0.0

    json.loads(text, parse_float=grab)
    return found


def assert_error(resp: Any, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"success", "error", "meta"}
    assert body["success"] is False
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["details"], list)
    assert set(body["meta"]) >= {"timestamp", "request_id"}
    assert resp.headers["X-Request-ID"] == body["meta"]["request_id"]
    return body


def error_fields(body: dict[str, Any]) -> set[str]:
    return {d["field"] for d in body["error"]["details"] if d.get("field")}


# ---------------------------------------------------------------- health, envelope, request id


def test_health_answers_with_the_envelope(client: TestClient) -> None:
    resp = client.get("/health")
    assert resp.status_code == 200
    body = resp.json()
    assert body["success"] is True
    assert body["data"] == {"status": "ok", "database": "ok"}
    assert resp.headers["X-Request-ID"] == body["meta"]["request_id"]


def test_success_envelope_shape(client: TestClient, seed: Seed) -> None:
    resp = client.get("/api/v1/entities", headers=auth(seed.key_a))
    assert resp.status_code == 200
    body = resp.json()
    assert set(body) == {"success", "data", "meta"}
    assert body["success"] is True
    assert body["data"] == [{"id": seed.a, "name": "acme-fund", "timezone": "UTC", "reporting_currency": "USD",
                             "holding_rule": "us"}]
    meta = body["meta"]
    assert {"timestamp", "request_id", "next_cursor", "limit"} <= set(meta)
    assert meta["next_cursor"] is None
    assert meta["timestamp"].endswith("Z")
    assert datetime.fromisoformat(meta["timestamp"].replace("Z", "+00:00")).tzinfo is not None
    assert resp.headers["X-Request-ID"] == meta["request_id"]


def test_request_id_is_honoured_when_sane_and_replaced_otherwise(client: TestClient, seed: Seed) -> None:
    resp = client.get("/api/v1/entities", headers={**auth(seed.key_a), "X-Request-ID": "abc-123.x"})
    assert resp.headers["X-Request-ID"] == "abc-123.x"
    assert resp.json()["meta"]["request_id"] == "abc-123.x"
    resp = client.get("/api/v1/entities", headers={**auth(seed.key_a), "X-Request-ID": "bad id\twith <html>"})
    rid = resp.headers["X-Request-ID"]
    assert rid != "bad id\twith <html>" and rid == resp.json()["meta"]["request_id"]
    resp = client.get("/api/v1/entities", headers={"X-Request-ID": "err-1"})
    body = assert_error(resp, 401, "AUTHENTICATION_ERROR")
    assert body["meta"]["request_id"] == "err-1"


def test_unknown_route_and_write_methods_get_the_error_envelope(client: TestClient, seed: Seed) -> None:
    assert_error(client.get("/api/v1/nope", headers=auth(seed.key_a)), 404, "NOT_FOUND")
    body = assert_error(client.post("/api/v1/transactions", headers=auth(seed.key_a)), 405, "VALIDATION_ERROR")
    assert "read-only" in body["error"]["message"]
    assert_error(client.delete("/api/v1/closes", headers=auth(seed.key_a)), 405, "VALIDATION_ERROR")


def test_unhandled_error_is_a_500_envelope_without_the_exception_text(engine: sa.Engine) -> None:
    app = create_app(rate_limit_per_minute=0)

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("secret internals")

    resp = TestClient(app).get("/boom", headers={"X-Request-ID": "boom-1"})
    body = assert_error(resp, 500, "INTERNAL_ERROR")
    assert "secret internals" not in resp.text
    assert body["meta"]["request_id"] == "boom-1"


def test_request_connection_is_read_only_with_a_statement_timeout(engine: sa.Engine, seed: Seed) -> None:
    app = create_app(rate_limit_per_minute=0)

    @app.get("/probe")
    def probe(conn: ConnDep, key: CurrentKey) -> dict[str, str]:
        return {"timeout": conn.execute(sa.text("SHOW statement_timeout")).scalar_one(),
                "read_only": conn.execute(sa.text("SHOW transaction_read_only")).scalar_one()}

    resp = TestClient(app).get("/probe", headers=auth(seed.key_a))
    assert resp.json() == {"timeout": "15s", "read_only": "on"}
    # the setting is LOCAL to the request's transaction: pooled connections come back clean
    with engine.connect() as conn:
        assert conn.execute(sa.text("SHOW statement_timeout")).scalar_one() != "15s"


def test_a_query_past_the_statement_timeout_is_a_503_envelope(engine: sa.Engine, seed: Seed) -> None:
    app = create_app(rate_limit_per_minute=0)

    @app.get("/slow")
    def slow(conn: ConnDep, key: CurrentKey) -> None:
        conn.exec_driver_sql("BEGIN")  # the API's sessions are in autocommit: SET LOCAL needs a transaction
        conn.execute(sa.text("SET LOCAL statement_timeout = '50ms'"))
        conn.execute(sa.text("SELECT pg_sleep(2)"))

    body = assert_error(TestClient(app).get("/slow", headers=auth(seed.key_a)), 503, "INTERNAL_ERROR")
    assert "too long" in body["error"]["message"]
    assert TestClient(app).get("/api/v1/entities", headers=auth(seed.key_a)).status_code == 200


# ---------------------------------------------------------------- authentication and isolation


def test_missing_or_bad_key_is_401(client: TestClient, seed: Seed) -> None:
    for headers in ({}, {"X-API-Key": ""}, {"X-API-Key": "nonsense"},
                    {"X-API-Key": seed.key_a[:-1] + ("A" if seed.key_a[-1] != "A" else "B")},
                    {"X-API-Key": "cf_00000000_" + "a" * 43}):
        resp = client.get("/api/v1/accounts", headers=headers)
        body = assert_error(resp, 401, "AUTHENTICATION_ERROR")
        if headers.get("X-API-Key"):
            assert headers["X-API-Key"] not in resp.text
        assert "WWW-Authenticate" in resp.headers
        assert "data" not in body


def test_key_of_entity_a_cannot_see_entity_b(client: TestClient, seed: Seed) -> None:
    missing = client.get("/api/v1/accounts", params={"entity": "no-such-entity"}, headers=auth(seed.key_a))
    missing_body = assert_error(missing, 404, "NOT_FOUND")
    for ref in ("beta-capital", str(seed.b)):
        for path in ("/api/v1/accounts", "/api/v1/positions", "/api/v1/transactions", "/api/v1/closes"):
            resp = client.get(path, params={"entity": ref}, headers=auth(seed.key_a))
            body = assert_error(resp, 404, "NOT_FOUND")
            # exactly like a missing entity: same message and details, nothing about B
            assert body["error"] == missing_body["error"]
            assert "beta" not in resp.text
    # B's leg through A's key: not found, with or without naming an entity
    assert_error(client.get(f"/api/v1/transactions/{seed.b_leg}", headers=auth(seed.key_a)), 404, "NOT_FOUND")
    assert_error(client.get(f"/api/v1/transactions/{seed.b_leg}", params={"entity": "beta-capital"},
                            headers=auth(seed.key_a)), 404, "NOT_FOUND")
    # B's own key sees it
    resp = client.get(f"/api/v1/transactions/{seed.b_leg}", headers=auth(seed.key_b))
    assert resp.status_code == 200 and resp.json()["data"]["id"] == seed.b_leg


def test_entity_by_name_id_or_omitted(client: TestClient, seed: Seed) -> None:
    expected = ["binance", "binance", "ledger-wallet"]
    for params in ({}, {"entity": "acme-fund"}, {"entity": "ACME-Fund"}, {"entity": str(seed.a)}):  # names in any case
        resp = client.get("/api/v1/accounts", params=params, headers=auth(seed.key_a))
        assert resp.status_code == 200, resp.text
        assert [a["name"] for a in resp.json()["data"]] == expected
        assert resp.json()["meta"]["entity"] == "acme-fund"
    wallet = [a for a in resp.json()["data"] if a["account_type"] == "wallet"][0]
    assert wallet["chain"] == "ethereum" and wallet["address"] == "0xabc" and wallet["sub_account"] == ""


# ---------------------------------------------------------------- transactions


def test_pagination_over_250_legs(client: TestClient, seed: Seed) -> None:
    with seed.engine.begin() as conn:
        for i in range(250):
            # five legs share each timestamp: the (ts, id) keyset must break the ties
            seed.leg(conn, seed.a, seed.spot, "ETH", f"0.{i + 1}", "deposit", T0 + timedelta(seconds=i // 5))
    seen: list[int] = []
    sizes: list[int] = []
    cursor = None
    for _ in range(5):
        params: dict[str, Any] = {"limit": 100}
        if cursor:
            params["cursor"] = cursor
        resp = client.get("/api/v1/transactions", params=params, headers=auth(seed.key_a))
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["meta"]["limit"] == 100
        sizes.append(len(body["data"]))
        seen += [leg["id"] for leg in body["data"]]
        cursor = body["meta"]["next_cursor"]
        if cursor is None:
            break
        assert all(c.isalnum() or c in "-_" for c in cursor)
    assert sizes == [100, 100, 50]
    assert len(seen) == len(set(seen)) == 250
    with seed.engine.connect() as conn:
        in_order = list(conn.execute(sa.select(transactions.c.id).where(transactions.c.entity_id == seed.a)
                                     .order_by(transactions.c.ts, transactions.c.id)).scalars())
    assert seen == in_order


def test_default_limit_and_limit_bounds(client: TestClient, seed: Seed) -> None:
    with seed.engine.begin() as conn:
        for i in range(120):
            seed.leg(conn, seed.a, seed.spot, "ETH", "1", "deposit", T0 + timedelta(minutes=i))
    resp = client.get("/api/v1/transactions", headers=auth(seed.key_a))
    assert len(resp.json()["data"]) == 100 and resp.json()["meta"]["limit"] == 100
    assert resp.json()["meta"]["next_cursor"]
    resp = client.get("/api/v1/transactions", params={"limit": 1000}, headers=auth(seed.key_a))
    assert len(resp.json()["data"]) == 120 and resp.json()["meta"]["next_cursor"] is None
    for bad in ("0", "1001", "-5", "ten"):
        body = assert_error(client.get("/api/v1/transactions", params={"limit": bad}, headers=auth(seed.key_a)),
                            400, "VALIDATION_ERROR")
        assert error_fields(body) == {"limit"}
        assert body["error"]["details"][0]["location"] == "query"


def test_bad_query_parameters_name_the_field(client: TestClient, seed: Seed) -> None:
    cases = [
        ("/api/v1/transactions", {"from": "2024-13-01"}, "from"),
        ("/api/v1/transactions", {"to": "yesterday"}, "to"),
        ("/api/v1/transactions", {"from": "2024-03-01T05:00"}, "from"),
        ("/api/v1/transactions", {"cursor": "not a cursor"}, "cursor"),
        ("/api/v1/positions", {"as_of": "03/01/2024"}, "as_of"),
        ("/api/v1/pnl/realized", {"from": "2024-03-01", "to": "2024-03-31", "method": "bogus"}, "method"),
        ("/api/v1/pnl/realized", {"from": "2024-03-01", "to": "2024-03-31", "currency": "XYZ"}, "currency"),
        ("/api/v1/pnl/realized", {"from": "2024-03-01", "to": "2024-03-31", "pool": "wallet"}, "pool"),
        ("/api/v1/pnl/realized", {"to": "2024-03-31"}, "from"),
        ("/api/v1/closes", {"from": "2024-02-30"}, "from"),
        ("/api/v1/transactions/abc", {}, "tx_id"),
    ]
    for path, params, field in cases:
        resp = client.get(path, params=params, headers=auth(seed.key_a))
        body = assert_error(resp, 400, "VALIDATION_ERROR")
        assert field in error_fields(body), (path, params, body)
    body = assert_error(client.get("/api/v1/pnl/realized", params={"from": "2024-03-01", "to": "2024-03-31",
                                                                   "method": "bogus"}, headers=auth(seed.key_a)),
                        400, "VALIDATION_ERROR")
    assert "fifo" in body["error"]["message"]
    # each value valid, but not together: 422; a filter naming what the entity does not have: 404
    for path, params, field, status in [
        ("/api/v1/transactions", {"from": "2024-03-05", "to": "2024-03-01"}, "from", 422),
        ("/api/v1/transactions", {"cursor": "notacursor"}, "cursor", 422),
        ("/api/v1/reconciliation/breaks", {}, "from", 422),
        ("/api/v1/reconciliation/breaks", {"date": "2024-03-01", "from": "2024-03-01"}, "date", 422),
        ("/api/v1/transactions", {"account": "no-such-account"}, "account", 404),
        ("/api/v1/transactions", {"asset": "NOPE"}, "asset", 404),
    ]:
        resp = client.get(path, params=params, headers=auth(seed.key_a))
        body = assert_error(resp, status, "VALIDATION_ERROR" if status == 422 else "NOT_FOUND")
        assert field in error_fields(body), (path, params, body)


def test_transaction_filters(client: TestClient, seed: Seed) -> None:
    with seed.engine.begin() as conn:
        d1 = seed.leg(conn, seed.a, seed.spot, "BTC", "1", "deposit", T0)
        buy = seed.leg(conn, seed.a, seed.spot, "ETH", "10", "buy", T0 + timedelta(days=1))
        fee = seed.leg(conn, seed.a, seed.spot, "BTC", "-0.001", "fee", T0 + timedelta(days=1))
        fut = seed.leg(conn, seed.a, seed.futures, "USDT", "-5", "funding", T0 + timedelta(days=2))
        w = seed.leg(conn, seed.a, seed.wallet, "ETH", "2", "transfer_in", T0 + timedelta(days=3))

    def ids(**params: Any) -> list[int]:
        resp = client.get("/api/v1/transactions", params=params, headers=auth(seed.key_a))
        assert resp.status_code == 200, resp.text
        return [leg["id"] for leg in resp.json()["data"]]

    assert ids() == [d1, buy, fee, fut, w]
    assert ids(account="binance") == [d1, buy, fee, fut]  # both the spot and the futures account
    assert ids(account=str(seed.futures)) == [fut]
    assert ids(asset="ETH") == [buy, w]
    assert ids(asset="eth") == [buy, w]
    assert ids(kind="fee") == [fee]
    assert ids(kind="staking_reward") == []
    assert ids(**{"from": "2024-03-02", "to": "2024-03-03"}) == [buy, fee, fut]
    assert ids(**{"from": "2024-03-03"}) == [fut, w]
    assert ids(account="binance", asset="BTC", **{"to": "2024-03-02"}) == [d1, fee]
    resp = client.get("/api/v1/transactions", params={"asset": "ETH", "kind": "buy"}, headers=auth(seed.key_a))
    assert resp.json()["meta"]["filters"] == {"asset": "ETH", "kind": "buy"}
    leg = resp.json()["data"][0]
    assert leg["quantity"] == "10" and leg["account"] == "binance" and leg["account_type"] == "spot"
    assert leg["date"] == "2024-03-02" and leg["ts"] == "2024-03-02T09:00:00Z"


def test_transaction_detail_includes_group_and_raw_payload(client: TestClient, seed: Seed) -> None:
    payload = ('{"id": "T-77", "pair": "ETH/USDT", "price": "3000.123456789012345678", "qty": "0.5",'
               ' "fee": "0.0005", "feeAsset": "ETH", "exact": 0.10000000000000000555, "n": 3}')
    with seed.engine.begin() as conn:
        raw_id = seed.raw(conn, seed.a, payload, line=42)
        eth = seed.leg(conn, seed.a, seed.spot, "ETH", "0.5", "buy", T0, raw_id=raw_id, leg_index=0, group="T-77")
        usdt = seed.leg(conn, seed.a, seed.spot, "USDT", "-1500.0617283945", "sell", T0, raw_id=raw_id, leg_index=1,
                        group="T-77", usd_value="1500.0617283945")
        fee = seed.leg(conn, seed.a, seed.spot, "ETH", "-0.0005", "fee", T0, raw_id=raw_id, leg_index=2, group="T-77")
    resp = client.get(f"/api/v1/transactions/{usdt}", headers=auth(seed.key_a))
    assert resp.status_code == 200, resp.text
    data = resp.json()["data"]
    assert data["id"] == usdt and data["quantity"] == "-1500.0617283945" and data["usd_value"] == "1500.0617283945"
    assert [leg["id"] for leg in data["group_legs"]] == [eth, fee]
    raw = data["raw_record"]
    assert raw["id"] == raw_id
    assert raw["source"] == "csv" and raw["stream"] == "ledger" and raw["source_raw_id"] == f"r{raw_id}"
    assert raw["file_name"] == "ledger.csv" and raw["line_number"] == 42
    assert raw["ingested_at"].endswith("Z")
    assert raw["payload"]["price"] == "3000.123456789012345678"
    assert raw["payload"]["pair"] == "ETH/USDT" and raw["payload"]["n"] == 3
    # a fractional JSON number in the source payload is served with its exact digits, as text
    assert raw["payload"]["exact"] == "0.10000000000000000555"
    assert floats_in(resp.text) == []
    assert_error(client.get("/api/v1/transactions/999999", headers=auth(seed.key_a)), 404, "NOT_FOUND")


# ---------------------------------------------------------------- realized PnL


def _disposal(seed: Seed, conn: sa.Connection, leg_id: int, day: date, *, kind: str = "sale", proceeds: str,
              cost: str, gain: str, short: str, long: str = "0", shortfall: str = "0", method: str = "fifo",
              pool: str = "universal", entity_id: int | None = None, account_id: int | None = None) -> None:
    conn.execute(sa.insert(pnl_disposals).values(
        entity_id=entity_id or seed.a, method=method, pool=pool, date=day,
        ts=datetime(day.year, day.month, day.day, 12, tzinfo=UTC), leg_id=leg_id,
        account_id=account_id or seed.spot, asset_id=seed.asset["ETH"], kind=kind, quantity=Decimal("1"),
        proceeds=Decimal(proceeds), cost_basis=Decimal(cost), realized_gain=Decimal(gain),
        short_term_gain=Decimal(short), long_term_gain=Decimal(long), shortfall_quantity=Decimal(shortfall),
    ))


def test_realized_pnl_sums_exactly(client: TestClient, seed: Seed) -> None:
    with seed.engine.begin() as conn:
        # one disposing leg per disposal: a book disposes of a leg once (uq_pnl_disposals_book_leg)
        legs = [seed.leg(conn, seed.a, seed.spot, "ETH", "-1", "sell", T0) for _ in range(4)]
        _disposal(seed, conn, legs[0], date(2024, 3, 1), proceeds="0.1", cost="0.05", gain="0.05", short="0.05")
        _disposal(seed, conn, legs[1], date(2024, 3, 15), proceeds="0.2", cost="0.15", gain="0.05", short="0.02",
                  long="0.03", shortfall="0.5")
        _disposal(seed, conn, legs[2], date(2024, 3, 31), kind="fee", proceeds="0.000000000000000001",
                  cost="0.1", gain="-0.099999999999999999", short="-0.099999999999999999")
        # outside the period, another pool, another entity: none of them count
        _disposal(seed, conn, legs[3], date(2024, 4, 1), proceeds="100", cost="1", gain="99", short="99")
        _disposal(seed, conn, legs[0], date(2024, 3, 2), proceeds="7", cost="1", gain="6", short="6", pool="account")
        _disposal(seed, conn, seed.b_leg, date(2024, 3, 2), proceeds="9", cost="1", gain="8", short="8",
                  entity_id=seed.b, account_id=seed.b_spot)
    assert float("0.1") + float("0.2") != 0.3  # what the figures must not suffer from
    resp = client.get("/api/v1/pnl/realized", params={"from": "2024-03-01", "to": "2024-03-31"},
                      headers=auth(seed.key_a))
    assert resp.status_code == 200, resp.text
    assert floats_in(resp.text) == []
    expected = {
        "entity": "acme-fund", "from": "2024-03-01", "to": "2024-03-31", "method": "fifo", "pool": "universal",
        "proceeds": "0.300000000000000001", "cost_basis": "0.3", "realized_gain": "0.000000000000000001",
        "short_term_gain": "-0.029999999999999999", "long_term_gain": "0.03",
        "disposals": 3, "fee_disposals": 1, "shortfall_quantity_disposals": 1,
    }
    assert resp.json()["data"] == {**expected, "currency": "USD", "fx": None}
    with seed.engine.connect() as conn:  # the CLI's function gives the same figures
        assert reports.realized_pnl_summary(conn, seed.a, date(2024, 3, 1), date(2024, 3, 31)) == expected
    resp = client.get("/api/v1/pnl/realized", params={"from": "2024-03-01", "to": "2024-03-31", "pool": "account"},
                      headers=auth(seed.key_a))
    assert resp.json()["data"]["realized_gain"] == "6" and resp.json()["data"]["disposals"] == 1
    resp = client.get("/api/v1/pnl/realized", params={"from": "2023-01-01", "to": "2023-12-31"},
                      headers=auth(seed.key_a))
    data = resp.json()["data"]
    assert data["proceeds"] == "0" and data["realized_gain"] == "0" and data["disposals"] == 0


def test_realized_pnl_summary_validates_method_and_pool(engine: sa.Engine, seed: Seed) -> None:
    with engine.connect() as conn:
        with pytest.raises(ValueError, match="fifo"):
            reports.realized_pnl_summary(conn, seed.a, DAY, DAY, method="hifo")
        with pytest.raises(ValueError, match="universal"):
            reports.realized_pnl_summary(conn, seed.a, DAY, DAY, pool="wallet")


# ---------------------------------------------------------------- positions, breaks, closes


def test_positions_at_a_date(client: TestClient, seed: Seed) -> None:
    with seed.engine.begin() as conn:
        rows = [
            {"entity_id": seed.a, "account_id": seed.spot, "asset_id": seed.asset["BTC"], "date": DAY,
             "computed_quantity": Decimal("0.1"), "reported_quantity": Decimal("0.3"),
             "reported_at": T0, "close_price_usd": Decimal("61234.56"), "price_at": T0},
            {"entity_id": seed.a, "account_id": seed.wallet, "asset_id": seed.asset["ETH"], "date": DAY,
             "computed_quantity": Decimal("2.000000000000000001"), "reported_quantity": None,
             "close_price_usd": None},
            {"entity_id": seed.a, "account_id": seed.spot, "asset_id": seed.asset["BTC"], "date": DAY - timedelta(1),
             "computed_quantity": Decimal("5"), "reported_quantity": Decimal("5")},
            {"entity_id": seed.b, "account_id": seed.b_spot, "asset_id": seed.asset["BTC"], "date": DAY,
             "computed_quantity": Decimal("1"), "reported_quantity": Decimal("1")},
        ]
        for row in rows:
            conn.execute(sa.insert(positions).values(**row))
    resp = client.get("/api/v1/positions", params={"as_of": "2024-03-01"}, headers=auth(seed.key_a))
    assert resp.status_code == 200, resp.text
    assert floats_in(resp.text) == []
    rows = resp.json()["data"]
    assert [(r["account"], r["asset"]) for r in rows] == [("binance", "BTC"), ("ledger-wallet", "ETH")]
    btc, eth = rows
    assert btc["computed"] == "0.1" and btc["reported"] == "0.3" and btc["difference"] == "0.2"
    assert btc["value_usd"] == "6123.456" and btc["close_price_usd"] == "61234.56"
    assert btc["account_type"] == "spot" and btc["sub_account"] == "" and btc["date"] == "2024-03-01"
    assert eth["computed"] == "2.000000000000000001"
    assert eth["reported"] is None and eth["difference"] is None and eth["value_usd"] is None
    latest = client.get("/api/v1/positions", headers=auth(seed.key_a)).json()
    assert latest["meta"]["as_of"] == "2024-03-01" and len(latest["data"]) == 2
    prev = client.get("/api/v1/positions", params={"as_of": "2024-02-29"}, headers=auth(seed.key_a)).json()
    assert [r["computed"] for r in prev["data"]] == ["5"]
    assert client.get("/api/v1/positions", params={"as_of": "2020-01-01"}, headers=auth(seed.key_a)).json()["data"] == []


def test_breaks_by_date_and_range(client: TestClient, seed: Seed) -> None:
    with seed.engine.begin() as conn:
        leg = seed.leg(conn, seed.a, seed.spot, "BTC", "0.5", "deposit", T0)
        for day, diff in ((DAY, "-0.0001"), (DAY + timedelta(1), "0.2")):
            conn.execute(sa.insert(breaks).values(
                entity_id=seed.a, date=day, account_id=seed.spot, asset_id=seed.asset["BTC"],
                previous_reported=Decimal("1"), previous_reported_at=T0 - timedelta(1), legs_sum=Decimal("0.5"),
                expected=Decimal("1.5"), reported=Decimal("1.5") + Decimal(diff), reported_at=T0,
                difference=Decimal(diff), tolerance=Decimal("0.00000001"), leg_ids=[leg],
            ))
    resp = client.get("/api/v1/reconciliation/breaks", params={"date": "2024-03-01"}, headers=auth(seed.key_a))
    assert resp.status_code == 200, resp.text
    assert floats_in(resp.text) == []
    [b] = resp.json()["data"]
    assert b["date"] == "2024-03-01" and b["account"] == "binance" and b["asset"] == "BTC"
    assert b["expected"] == "1.5" and b["reported"] == "1.4999" and b["difference"] == "-0.0001"
    assert b["previous_reported"] == "1" and b["legs_sum"] == "0.5" and b["tolerance"] == "0.00000001"
    assert b["leg_ids"] == [leg] and b["status"] == "open" and b["reported_at"] == "2024-03-01T09:00:00Z"
    resp = client.get("/api/v1/reconciliation/breaks", params={"from": "2024-03-01", "to": "2024-03-31"},
                      headers=auth(seed.key_a))
    assert [x["difference"] for x in resp.json()["data"]] == ["-0.0001", "0.2"]


def test_closes(client: TestClient, seed: Seed) -> None:
    with seed.engine.begin() as conn:
        rows = [
            {"entity_id": seed.a, "date": DAY, "status": "closed", "legs": 3, "positions": 2, "breaks": 0,
             "unmatched_transfers": 0, "realized_gain_universal": Decimal("0.3"),
             "realized_gain_account": Decimal("0.30"), "locked": True, "locked_at": T0},
            {"entity_id": seed.a, "date": DAY + timedelta(1), "status": "breaks", "legs": 1, "positions": 2,
             "breaks": 1, "unmatched_transfers": 1, "realized_gain_universal": Decimal("0"),
             "realized_gain_account": Decimal("0"), "message": "1 break"},
            {"entity_id": seed.b, "date": DAY, "status": "closed", "legs": 1, "positions": 1, "breaks": 0,
             "unmatched_transfers": 0, "realized_gain_universal": Decimal("0"), "realized_gain_account": Decimal("0")},
        ]
        for row in rows:
            conn.execute(sa.insert(closes).values(**row))
    resp = client.get("/api/v1/closes", headers=auth(seed.key_a))
    assert resp.status_code == 200, resp.text
    rows = resp.json()["data"]
    assert [(r["date"], r["status"], r["locked"]) for r in rows] == [("2024-03-01", "closed", True),
                                                                      ("2024-03-02", "breaks", False)]
    assert rows[0]["realized_gain_account"] == "0.3" and rows[0]["unrealized_gain_universal"] is None
    resp = client.get("/api/v1/closes", params={"from": "2024-03-02", "to": "2024-03-02"}, headers=auth(seed.key_a))
    assert [r["date"] for r in resp.json()["data"]] == ["2024-03-02"]


# ---------------------------------------------------------------- OpenAPI


def test_openapi_documents_every_route(client: TestClient) -> None:
    resp = client.get("/openapi.json")
    assert resp.status_code == 200
    spec = resp.json()
    paths = spec["paths"]
    for path in ("/health", "/api/v1/entities", "/api/v1/accounts", "/api/v1/positions", "/api/v1/transactions",
                 "/api/v1/transactions/{tx_id}", "/api/v1/reconciliation/breaks", "/api/v1/pnl/realized",
                 "/api/v1/closes"):
        assert set(paths[path]) == {"get"}, path
        op = paths[path]["get"]
        assert op["tags"] and op["summary"]
        assert "$ref" in op["responses"]["200"]["content"]["application/json"]["schema"]
        assert "400" in op["responses"] and "414" in op["responses"]
        if "422" in op["responses"]:  # ours (rules across parameters), never FastAPI's HTTPValidationError
            assert "ErrorEnvelope" in str(op["responses"]["422"])
        if path != "/health":
            assert {"400", "401"} <= set(op["responses"])
            assert ("404" in op["responses"]) == (path != "/api/v1/entities")  # entity-less: nothing to find
            assert op.get("security") == [{"ApiKey": []}]
    assert spec["components"]["securitySchemes"]["ApiKey"] == {
        "type": "apiKey", "in": "header", "name": "X-API-Key",
        "description": spec["components"]["securitySchemes"]["ApiKey"]["description"]}
    money = spec["components"]["schemas"]["RealizedPnlCurrencyOut"]["properties"]["realized_gain"]
    assert money["type"] == "string"
    assert client.get("/docs").status_code == 200

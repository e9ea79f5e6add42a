"""API keys (create, verify, revoke), the rate limit and what is never logged, against the real PostgreSQL."""

from __future__ import annotations

import hashlib
import logging
import re

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from api.main import create_app
from api.security import RateLimiter, create_api_key, list_api_keys, revoke_api_key, verify_api_key
from warehouse.schema import api_keys, entities

KEY_SHAPE = re.compile(r"^cf_[0-9a-f]{8}_[A-Za-z0-9_-]{43}$")


@pytest.fixture()
def entity_id(engine: sa.Engine) -> int:
    with engine.begin() as conn:
        return conn.execute(sa.insert(entities).values(name="acme-fund").returning(entities.c.id)).scalar_one()


def test_create_stores_only_prefix_and_hash(engine: sa.Engine, entity_id: int) -> None:
    with engine.begin() as conn:
        key = create_api_key(conn, entity_id, label="controller")
        other = create_api_key(conn, entity_id)
    assert KEY_SHAPE.match(key) and KEY_SHAPE.match(other) and key != other
    prefix = key[3:11]
    with engine.connect() as conn:
        row = conn.execute(sa.select(api_keys).where(api_keys.c.prefix == prefix)).one()
        stored = " ".join(str(v) for r in conn.execute(sa.select(api_keys)) for v in r)
    assert row.key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert row.label == "controller" and row.revoked_at is None and row.scope == "read"
    assert key[12:] not in stored  # the secret is nowhere in the table


def test_verify_and_revoke(engine: sa.Engine, entity_id: int) -> None:
    with engine.begin() as conn:
        key = create_api_key(conn, entity_id)
    prefix = key[3:11]
    with engine.connect() as conn:
        info = verify_api_key(conn, key)
        assert info is not None and info.prefix == prefix and info.scope == "read"
        assert info.entity_ids == (entity_id,)
        tampered = key[:-1] + ("x" if key[-1] != "x" else "y")
        assert verify_api_key(conn, tampered) is None
        assert verify_api_key(conn, None) is None
        assert verify_api_key(conn, "") is None
        assert verify_api_key(conn, key + "x") is None
        assert verify_api_key(conn, "cf_" + "0" * 8 + "_" + key[12:]) is None
    client = TestClient(create_app(rate_limit_per_minute=0))
    assert client.get("/api/v1/entities", headers={"X-API-Key": key}).status_code == 200
    with engine.begin() as conn:
        assert revoke_api_key(conn, prefix) is True
        assert revoke_api_key(conn, prefix) is False
        assert revoke_api_key(conn, "ffffffff") is False
    with engine.connect() as conn:
        assert verify_api_key(conn, key) is None
        [record] = list_api_keys(conn, entity_id)
        assert record.prefix == prefix and record.revoked_at is not None and record.entities == ("acme-fund",)
    resp = client.get("/api/v1/entities", headers={"X-API-Key": key})
    assert resp.status_code == 401
    assert resp.json()["error"]["code"] == "AUTHENTICATION_ERROR"


def test_create_for_unknown_entity_is_refused(engine: sa.Engine) -> None:
    with engine.begin() as conn, pytest.raises(LookupError):
        create_api_key(conn, 424242)


def test_rate_limit_per_key(engine: sa.Engine, entity_id: int) -> None:
    with engine.begin() as conn:
        key, other = create_api_key(conn, entity_id), create_api_key(conn, entity_id)
    client = TestClient(create_app(rate_limit_per_minute=2))
    statuses = [client.get("/api/v1/entities", headers={"X-API-Key": key}).status_code for _ in range(2)]
    assert statuses == [200, 200]
    resp = client.get("/api/v1/entities", headers={"X-API-Key": key})
    assert resp.status_code == 429
    body = resp.json()
    assert body["success"] is False and body["error"]["code"] == "RATE_LIMIT_ERROR"
    assert 1 <= int(resp.headers["Retry-After"]) <= 60
    assert client.get("/api/v1/entities", headers={"X-API-Key": other}).status_code == 200


def test_rate_limiter_window_resets() -> None:
    limiter = RateLimiter(1)
    assert limiter.hit("k", now=60.0) is None
    assert limiter.hit("k", now=61.0) == 59
    assert limiter.hit("k", now=120.0) is None
    assert RateLimiter(0).hit("k") is None


def test_keys_are_never_logged_or_echoed(engine: sa.Engine, entity_id: int, caplog: pytest.LogCaptureFixture) -> None:
    with engine.begin() as conn:
        key = create_api_key(conn, entity_id)
    bad = key[:-3] + "zzz" if not key.endswith("zzz") else key[:-3] + "yyy"
    client = TestClient(create_app(rate_limit_per_minute=0))
    with caplog.at_level(logging.DEBUG):
        ok = client.get("/api/v1/entities", headers={"X-API-Key": key})
        refused = client.get("/api/v1/entities", headers={"X-API-Key": bad})
    assert ok.status_code == 200 and refused.status_code == 401
    assert key not in ok.text and bad not in refused.text
    assert key[12:] not in caplog.text and bad[12:] not in caplog.text
    assert "/api/v1/entities" in caplog.text  # the request was logged, just not the key


def test_a_malformed_key_is_refused_before_the_database_is_touched() -> None:
    unreachable = sa.create_engine("postgresql+psycopg://nobody@127.0.0.1:1/nothing",
                                   connect_args={"connect_timeout": 2})
    client = TestClient(create_app(engine=unreachable, rate_limit_per_minute=0))
    resp = client.get("/api/v1/accounts")
    assert resp.status_code == 401 and resp.json()["error"]["code"] == "AUTHENTICATION_ERROR"
    # a well-formed key needs the database: unavailable is a 503 INTERNAL_ERROR envelope, not a crash
    resp = client.get("/api/v1/accounts", headers={"X-API-Key": "cf_0123abcd_" + "A" * 43})
    assert resp.status_code == 503 and resp.json()["error"]["code"] == "INTERNAL_ERROR"
    resp = client.get("/health")
    assert resp.status_code == 503 and resp.json()["success"] is False
    unreachable.dispose()

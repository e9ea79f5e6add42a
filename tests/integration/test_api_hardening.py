"""Keys with scopes and several entities, the apikey CLI, size limits, CORS, security headers, JSON logs."""

from __future__ import annotations

import io
import json
import logging

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from api.logs import JsonFormatter, RequestIdFilter, json_handler, redact_secrets
from api.main import create_app
from api.security import create_api_key, verify_api_key
from orchestration.cli import app as cli
from warehouse.schema import accounts, api_key_entities, api_keys, entities


@pytest.fixture()
def three(engine: sa.Engine) -> dict[str, int]:
    with engine.begin() as conn:
        ids = {}
        for name in ("acme-fund", "beta-capital", "gamma-llc"):
            ids[name] = conn.execute(sa.insert(entities).values(name=name).returning(entities.c.id)).scalar_one()
            conn.execute(sa.insert(accounts).values(entity_id=ids[name], source="csv", name=f"{name}-spot",
                                                    account_type="spot"))
    return ids


def test_a_key_bound_to_two_entities_sees_both_and_only_them(engine: sa.Engine, three: dict[str, int]) -> None:
    with engine.begin() as conn:
        key = create_api_key(conn, [three["acme-fund"], three["beta-capital"]], label="group controller")
    client = TestClient(create_app(rate_limit_per_minute=0))
    h = {"X-API-Key": key}
    names = [e["name"] for e in client.get("/api/v1/entities", headers=h).json()["data"]]
    assert names == ["acme-fund", "beta-capital"]
    # with two entities the entity parameter is required, and names exactly one of them
    resp = client.get("/api/v1/accounts", headers=h)
    assert resp.status_code == 422 and resp.json()["error"]["details"][0]["field"] == "entity"
    for name in ("acme-fund", "beta-capital"):
        data = client.get("/api/v1/accounts", headers=h, params={"entity": name}).json()["data"]
        assert [a["name"] for a in data] == [f"{name}-spot"]
    gamma = client.get("/api/v1/accounts", headers=h, params={"entity": "gamma-llc"})
    missing = client.get("/api/v1/accounts", headers=h, params={"entity": "no-such-fund"})
    assert gamma.status_code == missing.status_code == 404
    assert gamma.json()["error"] == missing.json()["error"]  # another entity is indistinguishable from none


def test_scopes_read_and_admin(engine: sa.Engine, three: dict[str, int]) -> None:
    with engine.begin() as conn:
        read = create_api_key(conn, three["acme-fund"])
        admin = create_api_key(conn, [three["acme-fund"], three["gamma-llc"]], scope="admin", label="ops")
        create_api_key(conn, [three["beta-capital"], three["gamma-llc"]], label="other")
        create_api_key(conn, three["beta-capital"], label="hidden")
        with pytest.raises(ValueError):
            create_api_key(conn, three["acme-fund"], scope="write")
        with pytest.raises(LookupError):
            create_api_key(conn, [three["acme-fund"], 987654])
    client = TestClient(create_app(rate_limit_per_minute=0))
    refused = client.get("/api/v1/api-keys", headers={"X-API-Key": read})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "AUTHORIZATION_ERROR"
    assert client.get("/api/v1/accounts", headers={"X-API-Key": admin},
                      params={"entity": "acme-fund"}).status_code == 200  # admin reads data too
    resp = client.get("/api/v1/api-keys", headers={"X-API-Key": admin})
    assert resp.status_code == 200, resp.text
    listed = {k["label"]: k for k in resp.json()["data"]}
    assert set(listed) == {None, "ops", "other"}  # "hidden" is bound to beta-capital only
    assert listed["other"]["entities"] == ["gamma-llc"]  # beta-capital is not revealed
    assert listed["ops"]["scope"] == "admin" and listed[None]["scope"] == "read"
    assert read[12:] not in resp.text and "hash" not in resp.text


def test_apikey_cli_create_list_revoke(engine: sa.Engine, three: dict[str, int]) -> None:
    runner = CliRunner()
    made = runner.invoke(cli, ["apikey", "create", "--entity", "acme-fund", "--entity", str(three["beta-capital"]),
                               "--scope", "admin", "--label", "audit"])
    assert made.exit_code == 0, made.output
    key = made.output.strip().splitlines()[-1]
    with engine.connect() as conn:
        info = verify_api_key(conn, key)
        assert info is not None and info.scope == "admin"
        assert info.entity_ids == (three["acme-fund"], three["beta-capital"])
        assert conn.execute(sa.select(sa.func.count()).select_from(api_key_entities)).scalar() == 2
    listed = runner.invoke(cli, ["apikey", "list", "--entity", "beta-capital"])
    assert listed.exit_code == 0 and f"cf_{key[3:11]}" in listed.output and "admin" in listed.output
    assert key[12:] not in listed.output
    as_json = json.loads(runner.invoke(cli, ["apikey", "list", "--entity", "beta-capital", "--json"]).stdout)
    assert [(k["prefix"], k["scope"], k["revoked_at"]) for k in as_json] == [(f"cf_{key[3:11]}", "admin", None)]
    assert key[12:] not in json.dumps(as_json)
    scripted = runner.invoke(cli, ["apikey", "create", "--entity", "gamma-llc", "--label", "ci", "--json"])
    assert scripted.exit_code == 0, scripted.output
    created = json.loads(scripted.stdout)
    assert (created["prefix"], created["scope"], created["entities"], created["label"]) == (
        f"cf_{created['key'][3:11]}", "read", ["gamma-llc"], "ci")
    with engine.connect() as conn:
        assert verify_api_key(conn, created["key"]).entity_ids == (three["gamma-llc"],)
    assert runner.invoke(cli, ["apikey", "create", "--entity", "acme-fund", "--scope", "root"]).exit_code != 0
    assert runner.invoke(cli, ["apikey", "create", "--entity", "nobody"]).exit_code != 0
    revoked = runner.invoke(cli, ["apikey", "revoke", f"cf_{key[3:11]}"])
    assert revoked.exit_code == 0, revoked.output
    assert runner.invoke(cli, ["apikey", "revoke", key[3:11]]).exit_code != 0  # already revoked
    client = TestClient(create_app(rate_limit_per_minute=0))
    resp = client.get("/api/v1/entities", headers={"X-API-Key": key})
    assert resp.status_code == 401 and resp.json()["error"]["code"] == "AUTHENTICATION_ERROR"
    with engine.connect() as conn:
        assert conn.execute(sa.select(api_keys.c.revoked_at).where(api_keys.c.prefix == key[3:11])).scalar() is not None


def test_size_limits_security_headers_and_cors_off(engine: sa.Engine, three: dict[str, int]) -> None:
    with engine.begin() as conn:
        key = create_api_key(conn, three["acme-fund"])
    client = TestClient(create_app(rate_limit_per_minute=0))
    h = {"X-API-Key": key}
    ok = client.get("/api/v1/accounts", headers=h)
    assert ok.status_code == 200
    for name, value in {"x-content-type-options": "nosniff", "x-frame-options": "DENY",
                        "referrer-policy": "no-referrer", "cache-control": "no-store"}.items():
        assert ok.headers[name] == value
    assert "default-src 'none'" in ok.headers["content-security-policy"]
    assert "access-control-allow-origin" not in ok.headers
    preflight = client.options("/api/v1/accounts", headers={"Origin": "https://evil.example",
                                                             "Access-Control-Request-Method": "GET"})
    assert "access-control-allow-origin" not in preflight.headers
    long_query = client.get("/api/v1/accounts", headers=h, params={"entity": "x" * 5000})
    assert long_query.status_code == 414 and long_query.json()["error"]["code"] == "VALIDATION_ERROR"
    assert long_query.headers["x-request-id"] == long_query.json()["meta"]["request_id"]
    big_body = client.request("GET", "/api/v1/accounts", headers=h, content=b"x" * 70_000)
    assert big_body.status_code == 413 and big_body.json()["success"] is False
    docs = client.get("/docs")
    assert docs.status_code == 200 and "content-security-policy" not in docs.headers  # Swagger UI still loads
    assert docs.headers["x-content-type-options"] == "nosniff"


def test_cors_when_configured(engine: sa.Engine, three: dict[str, int]) -> None:
    client = TestClient(create_app(rate_limit_per_minute=0, cors_origins=["https://books.example"]))
    allowed = client.options("/api/v1/accounts", headers={"Origin": "https://books.example",
                                                           "Access-Control-Request-Method": "GET",
                                                           "Access-Control-Request-Headers": "X-API-Key"})
    assert allowed.headers.get("access-control-allow-origin") == "https://books.example"
    other = client.options("/api/v1/accounts", headers={"Origin": "https://evil.example",
                                                         "Access-Control-Request-Method": "GET"})
    assert "access-control-allow-origin" not in other.headers


def test_every_log_line_of_a_request_is_json_with_its_request_id(engine: sa.Engine, three: dict[str, int]) -> None:
    with engine.begin() as conn:
        key = create_api_key(conn, three["acme-fund"])
    stream = io.StringIO()
    handler = json_handler(stream)
    root = logging.getLogger()
    root.addHandler(handler)
    previous = root.level
    root.setLevel(logging.INFO)
    try:
        client = TestClient(create_app(rate_limit_per_minute=0))
        ok = client.get("/api/v1/accounts", headers={"X-API-Key": key, "X-Request-ID": "trace-42"})
        bad = client.get("/api/v1/accounts", headers={"X-API-Key": key[:-2] + "zz"})
        logging.getLogger("coinfrs.test").warning("outside %s", key)
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)
    assert ok.headers["x-request-id"] == "trace-42" == ok.json()["meta"]["request_id"]
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    by_request = {}
    for line in lines:
        assert {"ts", "level", "logger", "message", "request_id"} <= set(line)
        by_request.setdefault(line["request_id"], []).append(line)
    assert any(l["path"] == "/api/v1/accounts" and l["status"] == 200 for l in by_request["trace-42"])
    bad_rid = bad.headers["x-request-id"]
    assert any(l.get("status") == 401 for l in by_request[bad_rid])
    assert by_request[None][-1]["message"].startswith("outside cf_" + key[3:11] + "_[redacted]")
    assert key[12:] not in stream.getvalue()


def test_redaction_and_formatter_without_request() -> None:
    key = "cf_0123abcd_" + "A" * 43
    assert redact_secrets(f"key={key} end") == "key=cf_0123abcd_[redacted] end"
    record = logging.makeLogRecord({"msg": "hello %s", "args": ("x",), "levelname": "INFO", "name": "t"})
    RequestIdFilter().filter(record)
    data = json.loads(JsonFormatter().format(record))
    assert data["message"] == "hello x" and data["request_id"] is None

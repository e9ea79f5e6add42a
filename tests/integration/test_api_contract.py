"""The exact request contract (``api.contract``): unknown, repeated or NUL-bearing parameters, invalid enum values
and dates outside the window are 4xx with the error envelope, never a 500 nor a silent 200."""

from __future__ import annotations

import pytest
from fastapi import APIRouter, Query
from fastapi.testclient import TestClient

from api.main import API_PREFIX, create_app
from tests.integration.test_api import DAY, Seed, auth, client, seed  # noqa: F401 (fixtures)


def _refused(resp, status: int, field: str | None = None) -> dict:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["success"] is False and body["error"]["code"] in ("VALIDATION_ERROR", "NOT_FOUND")
    assert body["meta"]["request_id"] == resp.headers["X-Request-ID"]
    if field is not None:
        assert field in [d["field"] for d in body["error"]["details"]], body
    return body


def test_unknown_query_parameters_are_refused_by_name(client: TestClient, seed: Seed) -> None:
    h = auth(seed.key_a)
    body = _refused(client.get("/api/v1/positions", params={"date": "2026-13-01"}, headers=h), 400, "date")
    assert "unknown query parameter(s): date" in body["error"]["message"] and "as_of" in body["error"]["message"]
    body = _refused(client.get("/api/v1/transactions", params={"kind": "sell", "limt": "5", "zz": "1"}, headers=h),
                    400)
    assert [d["field"] for d in body["error"]["details"]] == ["limt", "zz"]
    _refused(client.get("/health", params={"verbose": "1"}), 400, "verbose")  # every route, without a key too
    # the route's own parameters, including those of its dependencies (entity), are accepted
    assert client.get("/api/v1/positions", params={"as_of": DAY.isoformat(), "entity": "acme-fund"},
                      headers=h).status_code == 200


def test_invalid_enum_values_and_repeated_parameters_are_400(client: TestClient, seed: Seed) -> None:
    h = auth(seed.key_a)
    body = _refused(client.get("/api/v1/transactions", params={"kind": "withdrawl"}, headers=h), 400, "kind")
    assert body["error"]["details"][0]["type"] == "literal_error"
    _refused(client.get("/api/v1/pnl/realized", params={"from": "2024-01-01", "to": "2024-01-31", "method": "fofo"},
                        headers=h), 400, "method")
    _refused(client.get("/api/v1/pnl/realized", params={"from": "2024-01-01", "to": "2024-01-31", "currency": "JPY"},
                        headers=h), 400, "currency")
    _refused(client.get("/api/v1/pnl/compare", params={"from": "2024-01-01", "to": "2024-01-31",
                                                      "books": "fifo:universal,fifo:nowhere"}, headers=h), 400, "books")
    _refused(client.get("/api/v1/transactions?limit=5&limit=6", headers=h), 400, "limit")
    assert client.get("/api/v1/transactions", params={"kind": "withdrawal"}, headers=h).status_code == 200


@pytest.mark.parametrize("url", [
    "/api/v1/transactions?account=%00", "/api/v1/transactions?asset=BTC%00", "/api/v1/positions?account=a%00b",
    "/api/v1/transactions?kind=sell%00", "/api/v1/accounts?entity=acme%00", "/api/v1/reconciliation/results"
    "?date=2024-03-01&suite=%00",
])
def test_a_nul_byte_in_any_parameter_is_400(client: TestClient, seed: Seed, url: str) -> None:
    _refused(client.get(url, headers=auth(seed.key_a)), 400)


@pytest.mark.parametrize("params", [
    {"from": "0001-01-01", "to": "0001-01-31"}, {"from": "9999-12-01", "to": "9999-12-31"},
    {"from": "1999-12-31", "to": "2000-01-01"}, {"from": "2099-12-31", "to": "2100-01-01"},
])
def test_dates_outside_the_window_are_400(client: TestClient, seed: Seed, params: dict[str, str]) -> None:
    h = auth(seed.key_a)
    for route in ("/api/v1/transactions", "/api/v1/pnl/realized", "/api/v1/closes", "/api/v1/journal-entries",
                  "/api/v1/reconciliation/breaks", "/api/v1/close-periods"):
        _refused(client.get(route, params=params, headers=h), 400)
    outside = params["from"] if params["from"] < "2000" else params["to"]
    _refused(client.get("/api/v1/positions", params={"as_of": outside}, headers=h), 400, "as_of")
    _refused(client.get(f"/api/v1/closes/{outside}", headers=h), 400, "day")


def test_rules_across_parameters_are_422_and_unknown_filters_404(client: TestClient, seed: Seed) -> None:
    h = auth(seed.key_a)
    _refused(client.get("/api/v1/transactions", params={"from": "2024-03-02", "to": "2024-03-01"}, headers=h), 422,
             "from")
    _refused(client.get("/api/v1/transactions", params={"from": "2020-01-01", "to": "2024-03-01"}, headers=h), 422,
             "to")
    _refused(client.get("/api/v1/transactions", params={"cursor": "bm90LWEtY3Vyc29y"}, headers=h), 422, "cursor")
    _refused(client.get("/api/v1/pnl/lots", params={"as_of": "2024-03-01", "method": "fifo", "pool": "configured"},
                        headers=h), 422, "pool")
    _refused(client.get("/api/v1/transactions", params={"account": "no-such-account"}, headers=h), 404, "account")
    _refused(client.get("/api/v1/transactions", params={"asset": "NOSUCHCOIN"}, headers=h), 404, "asset")


def test_a_router_added_later_gets_the_contract_without_an_edit(seed: Seed) -> None:
    app = create_app(rate_limit_per_minute=0)
    extra = APIRouter(prefix=API_PREFIX)

    @extra.get("/echo")
    def echo(word: str = Query("hi", max_length=20)) -> dict:
        return {"word": word}

    app.include_router(extra)
    app.openapi_schema = None
    client = TestClient(app)
    assert client.get("/api/v1/echo", params={"word": "yo"}).json() == {"word": "yo"}
    _refused(client.get("/api/v1/echo", params={"wrd": "yo"}), 400, "wrd")
    _refused(client.get("/api/v1/echo", params={"word": "y\x00o"}), 400, "word")
    parameter = app.openapi()["paths"]["/api/v1/echo"]["get"]["parameters"][0]
    assert parameter["schema"]["pattern"] == "^[^\\x00]*$"
    assert "400" in app.openapi()["paths"]["/api/v1/echo"]["get"]["responses"]

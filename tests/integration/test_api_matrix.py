"""Cross-entity matrix: a key of entity A against every route, with entity B's ids and B's name/id -> 404.

The routes come from the application itself, so a route added later is covered (or fails here until its
path parameter is given a B id below).
"""

from __future__ import annotations

import re

import sqlalchemy as sa
from fastapi.testclient import TestClient

from api.main import create_app
from api.security import create_api_key
from tests.integration.test_api import T0, Seed, auth, seed  # noqa: F401 (fixture)
from warehouse.schema import assets

PERIOD = {"from": "2024-03-01", "to": "2024-03-01"}


def _routes() -> list[tuple[str, set[str]]]:
    """Every GET operation under /api/v1 (from the application's own OpenAPI document) and its query params."""
    document = create_app(rate_limit_per_minute=0).openapi()
    return [(path, {p["name"] for p in item["get"].get("parameters", []) if p["in"] == "query"})
            for path, item in document["paths"].items() if path.startswith("/api/v1") and "get" in item]


def test_a_key_of_entity_a_never_reaches_entity_b(seed: Seed) -> None:
    with seed.engine.begin() as conn:
        b_only = conn.execute(sa.insert(assets).values(symbol="BONLY", decimals=8).returning(assets.c.id)).scalar_one()
        seed.asset["BONLY"] = b_only
        seed.leg(conn, seed.b, seed.b_spot, "BONLY", "3", "deposit", T0)
        admin_a = create_api_key(conn, seed.a, scope="admin")
    b_ids = {"tx_id": seed.b_leg, "account_id": seed.b_spot, "asset_id": b_only,
             "day": PERIOD["from"]}  # a close day is not an object of B's: the entity parameter decides
    client = TestClient(create_app(rate_limit_per_minute=0))
    routes = _routes()
    assert len(routes) >= 13
    checked = 0
    for route, query in routes:
        params = re.findall(r"{(\w+)}", route)
        assert set(params) <= set(b_ids), f"{route}: give the matrix a B id for {params}"
        path = route.format(**{p: b_ids[p] for p in params})
        takes_entity = "entity" in query
        key = admin_a if route.endswith(("/api-keys", "/close-audit")) else seed.key_a  # the admin-scope routes
        cases = []
        if set(params) - {"day"}:
            cases.append({})  # A's own entity (implicit), B's object id
        if takes_entity:
            cases += [{"entity": "beta-capital"}, {"entity": str(seed.b)}]
        for extra in cases:
            taken = {k: v for k, v in PERIOD.items() if k in query}  # a route refuses parameters it does not take
            resp = client.get(path, headers=auth(key), params={**taken, **extra})
            assert resp.status_code == 404, (route, extra, resp.text)
            body = resp.json()
            assert body["success"] is False and body["error"]["code"] == "NOT_FOUND"
            assert "beta-capital" not in resp.text and "kraken" not in resp.text and "BONLY" not in resp.text
            checked += 1
        if not params and not takes_entity:  # entity-less lists (entities, api-keys) only show A
            resp = client.get(path, headers=auth(key))
            assert resp.status_code == 200 and "beta-capital" not in resp.text, (route, resp.text)
            checked += 1
        for fmt in ("csv", "xlsx"):  # exports obey the same rule
            if takes_entity and "format" in query:
                resp = client.get(path, headers=auth(key), params={**taken, "entity": "beta-capital",
                                                                   "format": fmt})
                assert resp.status_code == 404, (route, fmt, resp.status_code)
                assert "kraken" not in resp.text
    assert checked >= 25
    # and B's own key does reach B's objects through the same routes
    assert client.get(f"/api/v1/transactions/{seed.b_leg}", headers=auth(seed.key_b)).status_code == 200
    assert client.get(f"/api/v1/assets/{b_only}", headers=auth(seed.key_b)).status_code == 200
    assert client.get(f"/api/v1/accounts/{seed.b_spot}", headers=auth(seed.key_b)).status_code == 200

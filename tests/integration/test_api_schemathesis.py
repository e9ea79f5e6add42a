"""Schemathesis over the live API server, every phase and every check; and the exact shape of every 200 body.

The server runs as ``coinfrs serve`` runs it (``python -m api.server``, a process of its own on a free port) against
the real PostgreSQL with a seeded ledger; every request carries a valid admin key of entity A (``acme-fund``, the
example value of the ``entity`` parameter), so every route, the admin ones too, answers with data.

Phases: examples, coverage and fuzzing, in both generation modes (positive: schema-valid requests; negative:
requests that break the schema). The stateful phase needs OpenAPI links between operations, and a read-only API of
GETs has none. Checks: all of schemathesis' (no 5xx; only documented statuses, content types and headers; bodies
valid against their schema; invalid data rejected; valid data accepted; ...) and ``served_as_documented`` below.

"Valid data accepted" expects, besides 2xx/401/403/404/409/429, the two refusals no parameter schema can state
(documented on every route that answers them): 422 (each parameter valid, but not together: ``from`` after ``to``,
a range over the limit, a cursor this API did not issue) and 414 (the whole query string over
``COINFRS_API_MAX_QUERY_BYTES``). A 400 for a schema-valid request fails the test: the OpenAPI document states every
enum, format, pattern and range the routes enforce.

Success bodies are not validated by FastAPI at run time (``api.envelope.EnvelopeResponse``), so a stricter check
runs here too: each 200 JSON body must be exactly what the route's ``response_model`` would serve (no extra or
missing field, no number where text is documented, ``Z`` times) — on every generated case, and on one request
with data for every route (``test_every_route_serves_exactly_its_response_model``).

Bounded: a few generated cases per operation (``MAX_EXAMPLES``), so the whole file runs in about a minute.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal

from typing import Any

import httpx
import hypothesis
import pytest
import schemathesis
import sqlalchemy as sa
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from pydantic import TypeAdapter
from hypothesis import HealthCheck
from schemathesis.config import SchemathesisConfig

from api.main import API_PREFIX, ROUTE_MODULES, create_app
from api.routes import health
from api.security import create_api_key
from tests.integration.test_api import DAY, T0, Seed
from tests.conftest import empty_database
from tests.integration.live_api import live_api
from tests.integration.test_api_closes_exports import _close
from reconciliation.periods import Period, lock_period, sign_off
from transforms.pnl import build_pnl
from warehouse.entities import resolve_entity
from warehouse.schema import assets, breaks, closes, expectation_results, pnl_disposals, positions, transfers

MAX_EXAMPLES = 5
ACCEPTED_VALID = ["2xx", "401", "403", "404", "409", "414", "422", "429"]
"""What a schema-valid request may be answered with (``positive_data_acceptance``): see the module's doc."""

app = create_app(rate_limit_per_minute=0)
DOCUMENT = app.openapi()
_config = SchemathesisConfig()
_config.projects.default.checks.positive_data_acceptance.expected_statuses = ACCEPTED_VALID
schema = schemathesis.openapi.from_dict(DOCUMENT, config=_config)
"""Generated from the app's document (schemathesis' lazy fixture loader does not run under pytest 9); the live
server must serve the same document (``live_server`` checks it)."""
LIVE_HEADERS: dict[str, str] = {}
"""The headers of every request to the live server (its admin key, set by ``live_schema``)."""

RESPONSE_MODELS: dict[str, Any] = {
    **{route.path: route.response_model for route in health.router.routes if isinstance(route, APIRoute)
       and route.response_model is not None},
    **{API_PREFIX + route.path: route.response_model for module in ROUTE_MODULES for route in module.router.routes
       if isinstance(route, APIRoute) and route.response_model is not None},
}
"""OpenAPI path template -> the route's response model (routes serving JSON)."""


def assert_served_as_documented(path: str, body: Any) -> None:
    """``body`` is exactly what ``path``'s response model serves: validating it and dumping it again changes
    nothing (an extra or missing field, a float in a money field or a ``+00:00`` time would)."""
    adapter = TypeAdapter(RESPONSE_MODELS[path])
    served = adapter.dump_python(adapter.validate_python(body), mode="json", by_alias=True)
    assert served == body, f"{path}: the body differs from its response model's\nserved:   {body}\nmodelled: {served}"


@schemathesis.check
def served_as_documented(ctx: Any, response: Any, case: schemathesis.Case) -> None:
    content_type = (response.headers.get("content-type") or [""])[0]
    if response.status_code == 200 and content_type.startswith("application/json") and case.path in RESPONSE_MODELS:
        assert_served_as_documented(case.path, response.json())


ADMIN_ROUTES = ("/api/v1/api-keys", "/api/v1/close-audit")


def seed_ledger(engine: sa.Engine) -> Seed:
    """Entity A with legs, a matched transfer, positions and a disposal; B with one leg; an admin key of A."""
    seed = Seed(engine)
    with engine.begin() as conn:
        out = seed.leg(conn, seed.a, seed.spot, "BTC", "-1", "transfer_out", T0, usd_value="60000")
        into = seed.leg(conn, seed.a, seed.wallet, "BTC", "1", "transfer_in", T0 + timedelta(minutes=3))
        conn.execute(sa.insert(transfers).values(id=out, entity_id=seed.a, out_leg_id=out, in_leg_id=into,
                                                 asset_id=seed.asset["BTC"], status="matched", close_date=DAY))
        sale = seed.leg(conn, seed.a, seed.spot, "ETH", "-0.5", "sell", T0 + timedelta(hours=1), usd_value="1500.5")
        conn.execute(sa.insert(pnl_disposals).values(
            entity_id=seed.a, method="fifo", pool="universal", date=DAY, ts=T0, leg_id=sale, account_id=seed.spot,
            asset_id=seed.asset["ETH"], kind="sale", quantity=Decimal("0.5"), proceeds=Decimal("1500.5"),
            cost_basis=Decimal("1000"), realized_gain=Decimal("500.5"), short_term_gain=Decimal("500.5"),
            long_term_gain=Decimal(0), shortfall_quantity=Decimal(0)))
        conn.execute(sa.insert(positions).values(
            entity_id=seed.a, account_id=seed.spot, asset_id=seed.asset["BTC"], date=DAY,
            computed_quantity=Decimal("0.25"), reported_quantity=Decimal("0.25"), reported_at=T0,
            close_price_usd=Decimal("61000.5"), price_at=T0))
        seed.admin_key = create_api_key(conn, [seed.a], scope="admin")  # type: ignore[attr-defined]
    return seed


@pytest.fixture()
def ledger(engine: sa.Engine) -> Seed:
    return seed_ledger(engine)


@pytest.fixture(scope="module")
def live_server(database_url: str) -> Iterator[str]:
    """A live server on a seeded ledger, serving exactly the schema the tests were generated from; its base URL."""
    seed = seed_ledger(empty_database(database_url))
    with live_api(database_url, env={"COINFRS_API_RATE_LIMIT_PER_MINUTE": "0"}) as base_url:
        assert httpx.get(f"{base_url}/openapi.json").json() == DOCUMENT
        LIVE_HEADERS["X-API-Key"] = seed.admin_key  # type: ignore[attr-defined]
        yield base_url


@schema.parametrize()
@hypothesis.settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True,
                     suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                            HealthCheck.filter_too_much])
def test_every_operation_conforms(case: schemathesis.Case, live_server: str) -> None:
    case.call_and_validate(base_url=live_server, headers=LIVE_HEADERS, additional_checks=[served_as_documented])


def test_every_route_serves_exactly_its_response_model(ledger: Seed) -> None:
    """One request with data on every route of the schema: a 200 whose body is exactly its response model's."""
    with ledger.engine.begin() as conn:
        conn.execute(sa.insert(closes), [_close(ledger.a, DAY, "breaks", legs=3, breaks=1,
                                                unrealized_gain_universal=Decimal("-2.000000000000000001"))])
        deposit = ledger.leg(conn, ledger.a, ledger.spot, "BTC", "0.5", "deposit", T0)
        conn.execute(sa.insert(breaks).values(
            entity_id=ledger.a, date=DAY, account_id=ledger.spot, asset_id=ledger.asset["BTC"],
            previous_reported=Decimal("1"), previous_reported_at=T0 - timedelta(1), legs_sum=Decimal("0.5"),
            expected=Decimal("1.5"), reported=Decimal("1.4"), reported_at=T0, difference=Decimal("-0.1"),
            tolerance=Decimal("0"), leg_ids=[deposit]))
        conn.execute(sa.insert(expectation_results).values(
            entity_id=ledger.a, date=DAY, suite="staging.raw", expectation="no_duplicates", severity="error",
            success=False, observed_value={"duplicates": 2}, failing_rows=[{"raw_record_id": 7}]))
        conn.execute(sa.insert(positions).values(  # reported off computed: a break to localise
            entity_id=ledger.a, account_id=ledger.futures, asset_id=ledger.asset["ETH"], date=DAY,
            computed_quantity=Decimal("1"), reported_quantity=Decimal("1.1"), reported_at=T0))
        spam = conn.execute(sa.insert(assets).values(symbol="FREEAIRDROP", name="spam", decimals=18, unverified=True)
                            .returning(assets.c.id)).scalar_one()
        ledger.asset["FREEAIRDROP"] = spam
        ledger.leg(conn, ledger.a, ledger.wallet, "FREEAIRDROP", "1000", "deposit", T0)
        ledger.leg(conn, ledger.a, ledger.spot, "ETH", "2", "buy", T0 - timedelta(days=1), usd_value="4000")
        ledger.leg(conn, ledger.a, ledger.futures, "USDT", "-10", "fee", T0)  # no lots behind it: a shortfall
        build_pnl(conn, resolve_entity(conn, ledger.a), DAY - timedelta(days=1), DAY)  # the stored books
        conn.execute(sa.text("UPDATE breaks SET status = 'acknowledged'"))  # the day can be locked and signed off
        entity_a = resolve_entity(conn, ledger.a)
        lock_period(conn, entity_a, Period("day", DAY, DAY), by="alice", reason="checked")
        sign_off(conn, entity_a, Period("day", DAY, DAY), role="preparer", by="alice")
        # the next day: an operation no rule understood, and a person's classification of it (not rebuilt yet)
        odd = ledger.leg(conn, ledger.a, ledger.spot, "ETH", "0.01", "unclassified", T0 + timedelta(days=1))
        from transforms.classifications import classify_leg
        classify_leg(conn, entity_a, odd, "airdrop", by="alice", reason="a promo distribution")
        # and a staged record its mapper could not read (transforms/quarantine.py)
        conn.execute(sa.text(
            "INSERT INTO quarantined_records (entity_id, source, stream, source_raw_id, raw_record_id, account, "
            "close_date, field, error) SELECT :e, source, stream, source_raw_id, id, account, :d, 'quantity', "
            "'not a number' FROM raw_records WHERE entity_id = :e ORDER BY id LIMIT 1"),
            dict(e=entity_a.id, d=DAY + timedelta(days=1)))
    day, span = DAY.isoformat(), {"from": DAY.isoformat(), "to": DAY.isoformat()}
    next_day = (DAY + timedelta(days=1)).isoformat()
    lifo = {"method": "lifo", "pool": "universal"}  # a book the close does not store: computed from the legs
    requests: dict[str, tuple[str, dict[str, str]]] = {
        "/health": ("/health", {}),
        "/api/v1/entities": ("/api/v1/entities", {}),
        "/api/v1/accounts": ("/api/v1/accounts", {}),
        "/api/v1/accounts/{account_id}": (f"/api/v1/accounts/{ledger.spot}", {}),
        "/api/v1/assets": ("/api/v1/assets", {}),
        "/api/v1/assets/{asset_id}": (f"/api/v1/assets/{ledger.asset['BTC']}", {}),
        "/api/v1/positions": ("/api/v1/positions", {"as_of": day}),
        "/api/v1/transactions": ("/api/v1/transactions", span),
        "/api/v1/reconciliation/breaks": ("/api/v1/reconciliation/breaks", span),
        "/api/v1/reconciliation/results": ("/api/v1/reconciliation/results", span),
        "/api/v1/reconciliation/localise": ("/api/v1/reconciliation/localise", span),
        "/api/v1/pnl/realized": ("/api/v1/pnl/realized", span),
        "/api/v1/pnl/disposals": ("/api/v1/pnl/disposals", {**span, "method": "fifo"}),
        "/api/v1/pnl/realized/breakdown": ("/api/v1/pnl/realized/breakdown", {**span, "method": "fifo"}),
        "/api/v1/pnl/unrealized": ("/api/v1/pnl/unrealized", {"as_of": day, **lifo}),
        "/api/v1/pnl/excluded": ("/api/v1/pnl/excluded", {}),
        "/api/v1/pnl/compare": ("/api/v1/pnl/compare", {**span, "books": "fifo:universal,lifo:universal"}),
        "/api/v1/pnl/lots": ("/api/v1/pnl/lots", {"as_of": day}),
        "/api/v1/pnl/rollforward": ("/api/v1/pnl/rollforward", span),
        "/api/v1/pnl/shortfalls": ("/api/v1/pnl/shortfalls", span),
        "/api/v1/prices/missing": ("/api/v1/prices/missing", span),
        "/api/v1/classifications": ("/api/v1/classifications", {}),
        "/api/v1/classifications/unclassified": ("/api/v1/classifications/unclassified",
                                                 {"from": next_day, "to": next_day}),
        "/api/v1/quarantine": ("/api/v1/quarantine", {"from": next_day, "to": next_day}),
        "/api/v1/closes": ("/api/v1/closes", {}),
        "/api/v1/closes/{day}": (f"/api/v1/closes/{day}", {}),
        "/api/v1/journal-entries": ("/api/v1/journal-entries", span),
        "/api/v1/journal/trial-balance": ("/api/v1/journal/trial-balance", span),
        "/api/v1/journal/tieout": ("/api/v1/journal/tieout", {"date": day}),
        "/api/v1/journal/asset-rollforward": ("/api/v1/journal/asset-rollforward", span),
        "/api/v1/api-keys": ("/api/v1/api-keys", {}),
        "/api/v1/close-periods": ("/api/v1/close-periods", {}),
        "/api/v1/close-audit": ("/api/v1/close-audit", {}),
    }
    client = TestClient(app)
    legs = client.get("/api/v1/transactions", params=span, headers={"X-API-Key": ledger.key_a}).json()["data"]
    requests["/api/v1/transactions/{tx_id}"] = (f"/api/v1/transactions/{legs[0]['id']}", {})
    assert set(requests) == set(RESPONSE_MODELS), "a route without a request here, or a request without a route"
    problems = []
    for template, (url, params) in requests.items():
        key = ledger.admin_key if template in ADMIN_ROUTES else ledger.key_a
        resp = client.get(url, params=params, headers={"X-API-Key": key})
        if resp.status_code != 200 or not resp.json()["data"]:
            problems.append(f"{url}: {resp.status_code} {resp.text[:300]}")
            continue
        try:
            assert_served_as_documented(template, resp.json())
        except AssertionError as exc:
            problems.append(str(exc)[:2000])
    assert not problems, "\n".join(problems)

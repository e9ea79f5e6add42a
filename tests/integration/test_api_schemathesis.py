"""Schemathesis over every operation of the OpenAPI schema: no 5xx, no response that violates its schema.

Bounded: a few generated cases per operation (``MAX_EXAMPLES``), so the whole file runs in well under a
minute. The API runs in-process (ASGI) against the real PostgreSQL with a seeded ledger; every request
carries a valid key of entity A (``acme-fund``, the example value of the ``entity`` parameter).
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import hypothesis
import pytest
import schemathesis
import sqlalchemy as sa
from hypothesis import HealthCheck
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.main import create_app
from api.security import create_api_key
from tests.integration.test_api import DAY, T0, Seed
from warehouse.schema import pnl_disposals, positions, transfers

MAX_EXAMPLES = 8
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
"""No 5xx; only documented statuses and content types; every body valid against its documented schema.
(Not ``positive_data_acceptance``: a schema-valid but unknown currency, asset or account is a documented 400.)"""

app = create_app(rate_limit_per_minute=0)
schema = schemathesis.openapi.from_asgi("/openapi.json", app)


@pytest.fixture()
def ledger(engine: sa.Engine) -> Seed:
    """Entity A with legs, a matched transfer, positions and a disposal; B with one leg."""
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


@schema.parametrize()
@hypothesis.settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True,
                     suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                            HealthCheck.filter_too_much])
def test_every_operation_conforms(case: schemathesis.Case, ledger: Seed) -> None:
    headers = {"X-API-Key": ledger.key_a}
    if case.path == "/api/v1/api-keys":
        headers = {"X-API-Key": ledger.admin_key}
    case.call_and_validate(headers=headers, checks=CHECKS)

"""``coinfrs entity set-currency``: the reporting currency the read API values positions in, end to end
(CLI → PostgreSQL → API), against the real database."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import sqlalchemy as sa
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from orchestration.cli import app as cli
from tests.integration.test_api import DAY, T0, Seed, auth, client, seed  # noqa: F401 (fixtures)
from warehouse.schema import assets, positions, prices


def test_set_currency_drives_the_apis_valued_positions(client: TestClient, seed: Seed) -> None:
    with seed.engine.begin() as conn:
        eur = conn.execute(sa.insert(assets).values(symbol="EUR", decimals=2, is_fiat=True)
                           .returning(assets.c.id)).scalar_one()
        conn.execute(sa.insert(prices), [
            {"entity_id": seed.a, "asset_id": seed.asset["BTC"], "ts": T0, "price_usd": Decimal("60000"),
             "source": "coingecko", "resolution": "day"},
            {"entity_id": seed.a, "asset_id": eur, "ts": T0 - timedelta(hours=1), "price_usd": Decimal("1.2"),
             "source": "coingecko", "resolution": "day"},
        ])
        conn.execute(sa.insert(positions).values(
            entity_id=seed.a, account_id=seed.spot, asset_id=seed.asset["BTC"], date=DAY,
            computed_quantity=Decimal("0.1"), close_price_usd=Decimal("60000"), price_at=T0))
    runner = CliRunner()
    h = auth(seed.key_a)

    def valued() -> tuple[str, str, str]:
        [row] = client.get("/api/v1/positions", headers=h, params={"as_of": DAY.isoformat()}).json()["data"]
        return row["reporting_currency"], row["value"], row["valuation"]

    assert valued() == ("USD", "6000", "valued")  # the default
    done = runner.invoke(cli, ["entity", "set-currency", "--entity", "acme-fund", "--currency", "eur"])
    assert done.exit_code == 0, done.output
    assert "USD -> EUR" in done.output and "1 day(s) with a USD rate of EUR" in done.output
    assert valued() == ("EUR", "5000", "valued")  # 0.1 × 60000 ÷ 1.2
    [me] = client.get("/api/v1/entities", headers=h).json()["data"]
    assert me["reporting_currency"] == "EUR"
    assert "reporting currency EUR" in runner.invoke(cli, ["entity", "show", "--entity", "acme-fund"]).output

    no_rates = runner.invoke(cli, ["entity", "set-currency", "--entity", "acme-fund", "--currency", "GBP"])
    assert no_rates.exit_code == 0 and "no USD rate of GBP" in no_rates.output
    assert valued() == ("GBP", None, "no_fx_rate")

    refused = runner.invoke(cli, ["entity", "set-currency", "--entity", "acme-fund", "--currency", "XYZ"])
    assert refused.exit_code == 1 and "allowed: USD, EUR, GBP" in refused.output
    unknown = runner.invoke(cli, ["entity", "set-currency", "--entity", "nobody", "--currency", "USD"])
    assert unknown.exit_code == 1 and "nobody" in unknown.output
    assert valued()[0] == "GBP"  # a refused change changed nothing
    # the other entity is untouched
    [other] = client.get("/api/v1/entities", headers=auth(seed.key_b)).json()["data"]
    assert other["reporting_currency"] == "USD"

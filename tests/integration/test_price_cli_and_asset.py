"""`coinfrs prices ...` and the close_prices asset in the close run, against real PostgreSQL and the local
CoinGecko/Binance server. Without a configured source the close stays offline and says so."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import dagster as dg
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from ingestion.csv_files import CsvFile, import_csv
from ingestion.prices.settings import get_price_settings
from orchestration.cli import app
from orchestration.close_runner import close_days
from tests.integration.price_servers import PriceServer
from warehouse.entities import get_or_create_entity

D0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
FIRST, LAST = date(2026, 1, 1), date(2026, 1, 3)
LEDGER = """id,timestamp,action,asset,quantity,unit_price_usd,fee_asset,fee_amount,quote_asset,quote_quantity,account,tx_hash,external_id,notes
L1,2026-01-01T09:00:00Z,INCOME,USD,100000,1,,,,,Bank,,,
L2,2026-01-01T10:00:00Z,BUY,BTC,1,86000,,,USD,86000,Bank,,,
"""
runner = CliRunner()


@pytest.fixture()
def acme(engine):
    with engine.begin() as conn:
        entity = get_or_create_entity(conn, "acme")
        import_csv(conn, entity.id, "ledger", CsvFile("ledger.csv", LEDGER))
    return entity


@pytest.fixture()
def configured(monkeypatch):
    with PriceServer() as server:
        days = [D0 + timedelta(days=i) for i in range(6)]
        server.state.add_chart("bitcoin", "usd", [(t, f"{90000 + 1000 * i}") for i, t in enumerate(days)])
        server.state.add_chart("bitcoin", "eur", [(t, f"{80000 + 1000 * i}") for i, t in enumerate(days)])
        server.state.add_chart("bitcoin", "gbp", [(t, f"{70000 + 1000 * i}") for i, t in enumerate(days)])
        for name, value in {"COINFRS_COINGECKO_URL": server.url, "COINFRS_COINGECKO_MIN_INTERVAL_SECONDS": "0",
                            "COINFRS_PRICE_RETRY_ATTEMPTS": "2", "COINFRS_PRICE_RETRY_INITIAL_WAIT": "0.01"}.items():
            monkeypatch.setenv(name, value)
        get_price_settings.cache_clear()
        yield server
    get_price_settings.cache_clear()


@pytest.fixture(autouse=True)
def _fresh_settings():
    get_price_settings.cache_clear()
    yield
    get_price_settings.cache_clear()


def _materialization(instance: dg.DagsterInstance, key: str) -> dict:
    event = instance.get_latest_materialization_event(dg.AssetKey(key))
    assert event is not None
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


def test_the_close_runs_offline_when_no_price_source_is_configured(engine, acme, monkeypatch) -> None:
    for name in ("COINFRS_COINGECKO_URL", "COINFRS_PRICE_EXCHANGE"):
        monkeypatch.delenv(name, raising=False)
    instance = dg.DagsterInstance.ephemeral()
    run = close_days(["acme"], FIRST, LAST, instance=instance)
    assert run.success, run.error
    metadata = _materialization(instance, "close_prices")
    assert metadata["status"].startswith("no price source configured")
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT DISTINCT source FROM prices")).scalars().all() == ["ledger"]


def test_the_close_fetches_prices_before_cost_basis(engine, acme, configured) -> None:
    instance = dg.DagsterInstance.ephemeral()
    run = close_days(["acme"], FIRST, LAST, instance=instance)
    assert run.success, run.error
    metadata = _materialization(instance, "close_prices")
    assert metadata["status"] == "complete" and metadata["prices written"] == 9  # BTC, EUR, GBP x 3 days
    with engine.connect() as conn:
        position = conn.execute(sa.text(
            "SELECT p.close_price_usd FROM positions p JOIN assets a ON a.id = p.asset_id "
            "WHERE a.symbol = 'BTC' AND p.date = '2026-01-02'")).scalar_one()
        unrealized = conn.execute(sa.text(
            "SELECT d.close_price_usd FROM pnl_daily d JOIN assets a ON a.id = d.asset_id "
            "WHERE a.symbol = 'BTC' AND d.date = '2026-01-02' AND d.pool = 'universal'")).scalar_one()
    assert position == Decimal("92000")
    assert unrealized is not None
    # a second close makes no new CoinGecko request: the prices are cached
    calls = len(configured.state.paths("/api/v3/coins"))
    assert close_days(["acme"], FIRST, LAST, instance=instance).success
    assert len(configured.state.paths("/api/v3/coins")) == calls


def test_close_prices_sits_between_the_canonical_ledger_and_cost_basis_in_the_close_job() -> None:
    from orchestration.definitions import defs

    graph = defs.resolve_asset_graph()
    key = dg.AssetKey("close_prices")
    assert graph.get(key).parent_keys == {dg.AssetKey("canonical_ledger")}
    assert key in graph.get(dg.AssetKey("cost_basis_pnl")).parent_keys
    job = defs.resolve_job_def("daily_close_job")
    assert key in job.asset_layer.executable_asset_keys


def test_cli_import_show_and_fetch(engine, acme, configured, tmp_path) -> None:
    good = tmp_path / "prices.csv"
    good.write_text("asset,timestamp,price_usd,source_note\nBTC,2026-01-02,95000,desk quote\n", encoding="utf-8")
    bad = tmp_path / "bad.csv"
    bad.write_text("asset,timestamp,price_usd\nBTC,2026-01-02,95000\nETH,yesterday,-1\n", encoding="utf-8")

    result = runner.invoke(app, ["prices", "import", "--entity", "acme", str(bad)])
    assert result.exit_code == 1
    assert "line 3, field 'timestamp'" in result.output and "line 3, field 'price_usd'" in result.output
    assert "nothing was imported" in result.output
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM prices WHERE source = 'manual'")).scalar_one() == 0

    assert runner.invoke(app, ["prices", "import", "--entity", "acme", str(good)]).exit_code == 0
    result = runner.invoke(app, ["prices", "fetch", "--entity", "acme", "--from", "2026-01-01", "--to", "2026-01-03",
                                 "--asset", "BTC"])
    assert result.exit_code == 0, result.output
    again = runner.invoke(app, ["prices", "fetch", "--entity", "acme", "--from", "2026-01-01", "--to", "2026-01-03",
                                "--asset", "BTC", "--json"])  # every day cached now
    assert again.exit_code == 0, again.output
    fetched = json.loads(again.stdout)
    assert (fetched["entity"], fetched["from"], fetched["to"], fetched["rows_written"]) == (
        "acme", "2026-01-01", "2026-01-03", 0)
    assert {o["asset"] for o in fetched["outcomes"]} == {"BTC", "EUR", "GBP"}  # the asset and the FX rates
    assert all((o["cached_days"], o["fetched_days"], o["error"]) == (3, 0, None) for o in fetched["outcomes"])
    result = runner.invoke(app, ["prices", "show", "--entity", "acme", "--asset", "BTC", "--date", "2026-01-02",
                                 "--currency", "EUR", "--json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    table = runner.invoke(app, ["prices", "show", "--entity", "acme", "--asset", "BTC", "--date", "2026-01-02"])
    assert table.exit_code == 0 and "FLAGGED" in table.output and "desk quote" in table.output
    assert [(p["chosen"], p["source"], p["price_usd"], p["flagged"]) for p in shown["prices"]] == [
        (True, "manual", "95000", True), (False, "coingecko", "92000", True)]
    assert shown["prices"][0]["note"] == "desk quote" and shown["prices"][1]["pair"] == "bitcoin/usd"
    assert shown["converted"]["currency"] == "EUR" and shown["converted"]["rate_source"] == "coingecko"
    rate = (Decimal("92000") / Decimal("82000")).quantize(Decimal("1e-18"))  # stored with 18 fractional digits
    assert Decimal(shown["converted"]["rate_usd"]) == rate
    assert Decimal(shown["converted"]["price"]) == (Decimal("95000") / rate).quantize(Decimal("1e-18"))


def test_cli_fetch_without_a_source_says_what_to_configure(engine, acme, monkeypatch) -> None:
    for name in ("COINFRS_COINGECKO_URL", "COINFRS_PRICE_EXCHANGE"):
        monkeypatch.delenv(name, raising=False)
    result = runner.invoke(app, ["prices", "fetch", "--entity", "acme", "--from", "2026-01-01", "--to", "2026-01-02"])
    assert result.exit_code == 1 and "COINFRS_COINGECKO_URL" in result.output

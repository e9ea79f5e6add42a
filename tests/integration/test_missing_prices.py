"""No silent zero, end to end on real PostgreSQL: an acquisition without a price and the open position it leaves
are missing-price items stored with the book; the close of those days is `unpriced` (not `closed`) and cannot be
locked; `coinfrs prices missing`, `GET /api/v1/prices/missing` and the close report list the same items; a manual
price clears them at the next close. Also: `coinfrs entity set-holding-rule`."""

from __future__ import annotations

import json
from datetime import date

import dagster as dg
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from api.main import create_app
from api.security import create_api_key
from orchestration.cli import app
from orchestration.close_runner import close_days
from reconciliation.close import CloseError, lock_close
from reconciliation.report import close_report_html
from tests.integration.recon_ledgers import Row, funded, stage, ts
from warehouse.entities import resolve_entity

D1, D2, D3 = date(2026, 1, 1), date(2026, 1, 2), date(2026, 1, 3)
runner = CliRunner()
ROWS = funded() + [
    Row("B1", ts(1, "10:00"), "BUY", "BTC", "1", "Kraken", unit_price_usd="100", quote_asset="USD", quote_quantity="100"),
    Row("I1", ts(2, "09:00"), "TRANSFER_IN", "ETH", "2", "Kraken", tx_hash="0xin"),  # unmatched: at fair value, none
]


def _closes(engine) -> dict[date, tuple[str, int | None, str | None]]:
    with engine.connect() as conn:
        return {r.date: (r.status, r.missing_prices, r.message) for r in conn.execute(sa.text(
            "SELECT date, status, missing_prices, message FROM closes ORDER BY date"))}


@pytest.fixture()
def unpriced(engine):
    stage(engine, "unpriced", ROWS, ROWS, 3)
    assert close_days(["unpriced"], D1, D3, instance=dg.DagsterInstance.ephemeral()).success
    return engine


def test_a_figure_without_a_price_makes_the_close_unpriced_and_is_listed_everywhere(unpriced, tmp_path) -> None:
    engine = unpriced
    closes = _closes(engine)
    assert closes[D1][:2] == ("closed", 0)
    assert closes[D2][:2] == ("unpriced", 2) and closes[D3][:2] == ("unpriced", 1)  # acquisition + position; position
    assert "unpriced: 2 missing price(s) (acquisition ETH x1, position ETH x1)" in closes[D2][2]
    with engine.begin() as conn:
        entity = resolve_entity(conn, "unpriced")
        with pytest.raises(CloseError, match="is unpriced"):
            lock_close(conn, entity, D2)
        leg = conn.execute(sa.text("SELECT id FROM transactions WHERE kind = 'transfer_in' AND quantity = 2")).scalar_one()
        stored = conn.execute(sa.text(
            "SELECT method, pool, date, what, leg_id, quantity FROM pnl_missing_prices ORDER BY method, pool, date, what"
        )).all()
        report = close_report_html(conn, entity, D2)
        key = create_api_key(conn, entity.id, label="t")
    # every stored book has the same items (three books x (day 2: acquisition + position, day 3: position))
    assert len(stored) == 9 and {(r.date, r.what, r.leg_id) for r in stored} == {
        (D2, "acquisition", leg), (D2, "position", None), (D3, "position", None)}
    assert "Unpriced items (2)" in report and "acquisition without a price" in report
    # the CLI
    result = runner.invoke(app, ["prices", "missing", "--entity", "unpriced", "--json"])
    assert result.exit_code == 0, result.output
    items = json.loads(result.output)["missing_prices"]
    assert [(i["date"], i["what"], i["asset"], i["leg_id"], i["quantity"]) for i in items] == [
        ("2026-01-02", "acquisition", "ETH", leg, "2"), ("2026-01-02", "position", "ETH", None, "2"),
        ("2026-01-03", "position", "ETH", None, "2")]
    result = runner.invoke(app, ["prices", "missing", "--entity", "unpriced", "--from", "2026-01-03", "--to", "2026-01-03"])
    assert result.exit_code == 0 and "1 missing price(s) on 1 day(s)" in result.output
    # the API: the same items; the unrealized figures that lack the price are marked
    client = TestClient(create_app(rate_limit_per_minute=0))
    unrealized = client.get("/api/v1/pnl/unrealized", params={"as_of": "2026-01-02"}, headers={"X-API-Key": key})
    assert {r["asset"]: (r["priced"], r["market_value"]) for r in unrealized.json()["data"]} == {
        "BTC": (True, "100"), "ETH": (False, None)}
    resp = client.get(
        "/api/v1/prices/missing", params={"from": "2026-01-01", "to": "2026-01-03"}, headers={"X-API-Key": key})
    assert resp.status_code == 200, resp.text
    assert [(i["date"], i["what"], i["leg_id"]) for i in resp.json()["data"]] == [
        (i["date"], i["what"], i["leg_id"]) for i in items]
    assert resp.json()["data"][0]["effect"].startswith("lot basis zero")
    # a price for ETH (manual) clears them at the next close, idempotently
    prices = tmp_path / "prices.csv"
    prices.write_text("asset,timestamp,price_usd,source_note\nETH,2026-01-01,3000,desk\n")
    assert runner.invoke(app, ["prices", "import", "--entity", "unpriced", str(prices)]).exit_code == 0
    for _ in range(2):
        assert close_days(["unpriced"], D1, D3, instance=dg.DagsterInstance.ephemeral()).success
        assert {day: c[:2] for day, c in _closes(engine).items()} == {D1: ("closed", 0), D2: ("closed", 0),
                                                                      D3: ("closed", 0)}
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM pnl_missing_prices")).scalar_one() == 0


def test_set_holding_rule(engine) -> None:
    stage(engine, "hold", funded(), funded(), 1)
    result = runner.invoke(app, ["entity", "set-holding-rule", "--entity", "hold", "--rule", "uk"])
    assert result.exit_code == 1 and "unknown holding-period rule 'uk'" in result.output
    result = runner.invoke(app, ["entity", "set-holding-rule", "--entity", "hold", "--rule", "elapsed"])
    assert result.exit_code == 0 and "holding rule us -> elapsed" in result.output
    with engine.connect() as conn:
        assert resolve_entity(conn, "hold").holding_rule == "elapsed"
    assert "holding rule elapsed" in runner.invoke(app, ["entity", "show", "--entity", "hold"]).output

"""Listing quarantined records (``coinfrs recon quarantine``, ``GET /api/v1/quarantine``) and the break cause
``quarantined_record``: a Binance deposit whose amount is a float (not Binance's decimal string) among good ones, the
account's reported balance includes it, so its day has a break, and the break names the quarantined record."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone

import dagster as dg
import sqlalchemy as sa
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from api.main import create_app
from ingestion.staging import BalanceSnapshotIn, start_run, write_balance_snapshots
from orchestration.cli import app
from orchestration.close_runner import close_days
from tests.integration.manual_prices import price_known_assets
from tests.integration.test_quarantine import CASES, D1, D2, stage
from api.security import create_api_key
from warehouse.entities import get_or_create_entity
from warehouse.reports import list_breaks

CASE = CASES["binance"]


def setup(engine) -> int:
    with engine.begin() as conn:
        entity = get_or_create_entity(conn, "quarantine-listing")
        other = get_or_create_entity(conn, "someone-else")
    price_known_assets(engine, "quarantine-listing", D1 - timedelta(days=1))
    stage(engine, entity.id, CASE, [*CASE.good, CASE.bad])
    with engine.begin() as conn:  # Binance's balance, which counts the deposit the mapper could not read
        run = start_run(conn, entity.id, "binance", "snapshots")
        write_balance_snapshots(conn, entity.id, "binance", [
            BalanceSnapshotIn("main", "spot", "", datetime(d.year, d.month, d.day, 23, 59, 59, tzinfo=timezone.utc),
                              {"BTC": qty}, {"type": "spot", "day": d.isoformat()})
            for d, qty in ((D1, "0.5"), (D2, "0.875"))], run)
    assert close_days(["quarantine-listing", "someone-else"], D1, D2, instance=dg.DagsterInstance.ephemeral()).success
    return entity.id, other.id


def test_the_cli_and_the_api_list_the_quarantined_record_and_the_break_names_it(engine) -> None:
    entity_id, other_id = setup(engine)
    result = CliRunner().invoke(app, ["recon", "quarantine", "--entity", "quarantine-listing", "--from", str(D1),
                                      "--to", str(D2), "--json"])
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.output)
    assert {k: row[k] for k in ("date", "source", "stream", "account", "source_raw_id", "field")} == {
        "date": str(D2), "source": "binance", "stream": "deposits", "account": "main", "source_raw_id": "main|3",
        "field": "amount"}
    assert "0.125" in row["error"] and "main|3" in row["error"]
    assert json.loads(CliRunner().invoke(app, ["recon", "quarantine", "--entity", "quarantine-listing", "--date",
                                               str(D1), "--json"]).output) == []
    table = CliRunner().invoke(app, ["recon", "quarantine", "--entity", "quarantine-listing"])
    assert table.exit_code == 0 and "main|3" in table.output and "1 quarantined record(s)" in table.output
    bad = CliRunner().invoke(app, ["recon", "quarantine", "--entity", "quarantine-listing", "--from", "2026-03-40"])
    assert bad.exit_code != 0 and "Traceback" not in bad.output

    with engine.begin() as conn:
        key = create_api_key(conn, entity_id, label="listing")
        other_key = create_api_key(conn, other_id, label="other")
    client = TestClient(create_app(rate_limit_per_minute=0))
    resp = client.get("/api/v1/quarantine", params={"from": str(D1), "to": str(D2)}, headers={"X-API-Key": key})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["success"] is True and body["data"] == [row]
    assert body["meta"]["from"] == str(D1)
    assert client.get("/api/v1/quarantine", params={"source": "evm"}, headers={"X-API-Key": key}).json()["data"] == []
    assert client.get("/api/v1/quarantine", params={"entity": "quarantine-listing"},
                      headers={"X-API-Key": other_key}).status_code == 404  # another entity's key sees nothing
    assert client.get("/api/v1/quarantine", params={"to": "2026-13-01"}, headers={"X-API-Key": key}).status_code == 400
    assert client.get("/api/v1/quarantine", headers={}).status_code == 401
    assert "/api/v1/quarantine" in client.get("/openapi.json").json()["paths"]
    csv = client.get("/api/v1/quarantine", params={"format": "csv"}, headers={"X-API-Key": key})
    assert csv.status_code == 200 and "main|3" in csv.text

    with engine.connect() as conn:
        [brk] = list_breaks(conn, entity_id, D2, D2)
    codes = [c["code"] for c in brk["causes"]]
    assert "quarantined_record" in codes, brk["causes"]
    cause = next(c for c in brk["causes"] if c["code"] == "quarantined_record")
    assert cause["data"]["source_raw_id"] == "main|3" and cause["data"]["field"] == "amount"
    assert "quarantined" in cause["evidence"]

"""The close around reconciliation: lock, late data, partial closes, provenance and reports, the break
workflow (acknowledge / adjust) and localisation. Closes run through Dagster in-process, as the CLI does."""

from __future__ import annotations

import json
from datetime import date

import dagster as dg
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from ingestion.csv_files import CsvFile, import_csv
from orchestration.cli import app
from orchestration.close_runner import close_days
from reconciliation.close import CloseError, lock_close
from reconciliation.outages import record_source_outage
from reconciliation.report import close_report_html, load_provenance, verify_close
from tests.integration.recon_ledgers import Row, balances_csv, changed, funded, ledger_csv, reconcile, stage, ts
from warehouse.entities import resolve_entity
from warehouse.numbers import to_text
from warehouse.reports import list_breaks

D1, D2, D3, D4 = (date(2026, 1, d) for d in range(1, 5))
LOCKED_CONTENT = {
    "transactions": "id, account_id, asset_id, ts, close_date, quantity, kind, is_adjustment",
    "positions": "account_id, asset_id, date, computed_quantity, reported_quantity, reported_at, close_price_usd",
    "breaks": "date, account_id, asset_id, difference, status, causes",
    "pnl_daily": "method, pool, date, pool_account_id, asset_id, quantity, cost_basis, unrealized_gain, realized_gain",
    "closes": "date, status, legs, positions, breaks, realized_gain_universal, unrealized_gain_universal, locked, closed_at",
    "close_provenance": "date, code_version, input_counts, source_cursors, outputs, output_hash, report_html, computed_at",
}


def _locked_rows(conn, days: list[date]) -> dict[str, str]:
    out = {}
    for table, columns in LOCKED_CONTENT.items():
        day_column = "close_date" if table == "transactions" else "date"
        rows = conn.execute(sa.text(f"SELECT {columns} FROM {table} WHERE {day_column} = ANY(:d) ORDER BY {columns}"),
                            dict(d=days)).all()
        out[table] = repr(rows)
    return out


@pytest.fixture()
def instance():
    return dg.DagsterInstance.ephemeral()


def _trades() -> list[Row]:
    return funded() + [
        Row("B1", ts(1, "10:00"), "BUY", "BTC", "2", "Kraken", unit_price_usd="90000", fee_asset="USD", fee_amount="90"),
        Row("S1", ts(2, "11:00"), "SELL", "BTC", "0.5", "Kraken", unit_price_usd="95000", fee_asset="USD", fee_amount="20"),
        Row("B2", ts(3, "09:00"), "BUY", "BTC", "1", "Kraken", unit_price_usd="91000", fee_asset="USD", fee_amount="45"),
        Row("S2", ts(4, "16:00"), "SELL", "BTC", "1", "Kraken", unit_price_usd="97000", fee_asset="USD", fee_amount="48.5"),
    ]


def test_lock_then_late_data_books_an_adjustment_and_the_locked_day_never_moves(engine, instance) -> None:
    truth = _trades()
    entity_id = stage(engine, "late", truth, truth, 4)
    assert close_days(["late"], D1, D4, instance=instance).success
    with engine.begin() as conn:
        entity = resolve_entity(conn, "late")
        for day in (D1, D2):
            assert lock_close(conn, entity, day).locked
    with engine.connect() as conn:
        before = _locked_rows(conn, [D1, D2])
        as_closed = close_report_html(conn, entity, D2)
    assert "Known now" not in as_closed

    # a deposit of day 2 arrives after the lock, with the source's restated balances
    late = truth + [Row("LATE1", ts(2, "15:00"), "INCOME", "USD", "500", "Kraken", unit_price_usd="1")]
    with engine.begin() as conn:
        import_csv(conn, entity_id, "ledger", CsvFile("late.csv", ledger_csv(late)))
        import_csv(conn, entity_id, "balances", CsvFile("late-balances.csv", balances_csv(late, 4)))
    assert close_days(["late"], D1, D4, instance=instance).success

    with engine.connect() as conn:
        assert _locked_rows(conn, [D1, D2]) == before  # byte-identical figures of the locked days
        adjustment = conn.execute(sa.text(
            "SELECT close_date, quantity, kind FROM transactions WHERE is_adjustment")).one()
        assert (adjustment.close_date, str(adjustment.quantity), adjustment.kind) == (D3, "500", "income")
        assert list_breaks(conn, entity_id, D1, D4) == []  # the adjustment ties day 3 to the restated balance
        report = close_report_html(conn, entity, D2)
        proof = verify_close(conn, entity, D2)
    assert report.startswith(as_closed.replace("</body></html>", ""))  # "as closed", unchanged ...
    known_now = report[report.index("<section id='known-now'>"):]  # ... and, separately, what is known now
    assert "500" in known_now and "2026-01-03" in known_now
    assert proof["unchanged"] and proof["stored_hash"] == proof["current_hash"]
    with engine.begin() as conn:
        with pytest.raises(sa.exc.DBAPIError, match="locked"):
            conn.execute(sa.text("UPDATE close_provenance SET output_hash = 'x' WHERE date = :d"), dict(d=D2))


def test_a_changed_record_of_a_locked_day_is_adjusted_by_the_difference_only(engine, instance) -> None:
    truth = _trades()
    entity_id = stage(engine, "restated", truth, truth, 4)
    assert close_days(["restated"], D1, D4, instance=instance).success
    with engine.begin() as conn:
        entity = resolve_entity(conn, "restated")
        for day in (D1, D2):
            lock_close(conn, entity, day)
    with engine.connect() as conn:
        before = _locked_rows(conn, [D1, D2])

    # the exchange restates S1 (day 2, locked): 0.6 BTC sold instead of 0.5, same price and fee
    restated = changed(truth, "S1", quantity="0.6")
    with engine.begin() as conn:
        import_csv(conn, entity_id, "ledger", CsvFile("restated.csv", ledger_csv(restated)))
        import_csv(conn, entity_id, "balances", CsvFile("restated-balances.csv", balances_csv(restated, 4)))
    for _ in range(2):  # a rerun changes nothing
        assert close_days(["restated"], D1, D4, instance=instance).success
        with engine.connect() as conn:
            assert _locked_rows(conn, [D1, D2]) == before  # byte-identical figures of the locked days
            adjustments = conn.execute(sa.text(
                """SELECT l.close_date, s.symbol, l.quantity, l.kind FROM transactions l JOIN assets s ON s.id = l.asset_id
                   WHERE l.is_adjustment ORDER BY s.symbol""")).all()
            # new - old per leg: -0.1 BTC sold, +9,500 USD proceeds; the unchanged fee leg is not booked again
            assert [(d, a, to_text(q), k) for d, a, q, k in adjustments] == [(D3, "BTC", "-0.1", "sell"),
                                                                        (D3, "USD", "9500", "buy")]
            assert list_breaks(conn, entity_id, D1, D4) == []  # day 3 ties to the restated balances


def test_provenance_records_inputs_code_cursors_and_an_output_hash(engine, instance) -> None:
    from ingestion.staging import write_cursor

    truth = _trades()
    entity_id = stage(engine, "prov", truth, truth, 4)
    with engine.begin() as conn:  # an incremental source keeps its own cursor per account and stream
        write_cursor(conn, entity_id, "binance", "main", "trades", {"BTCUSDT": {"fromId": 4242}})
    assert close_days(["prov"], D1, D4, instance=instance).success
    with engine.connect() as conn:
        entity = resolve_entity(conn, "prov")
        stored = load_provenance(conn, entity.id, D2)
        assert stored["input_counts"] == {"raw_records:csv/ledger": 1, "raw_balance_snapshots": 2, "legs": 3,
                                          "adjustment_legs": 0, "positions": 2}
        cursors = stored["source_cursors"]
        assert cursors["csv/ledger"]["records"] == 5 and cursors["csv/ledger"]["from"] == "staging_high_water_mark"
        assert cursors["binance/trades"]["from"] == "ingestion_cursors"
        assert cursors["binance/trades"]["cursors"]["main"]["cursor"] == {"BTCUSDT": {"fromId": 4242}}
        assert stored["code_version"].startswith(("git:", "coinfrs=="))
        assert verify_close(conn, entity, D2)["unchanged"]
    with engine.begin() as conn:  # an unlocked day's figures changed behind the close's back: detected
        conn.execute(sa.text("UPDATE positions SET computed_quantity = computed_quantity + 1 WHERE date = :d"), dict(d=D2))
    with engine.connect() as conn:
        assert not verify_close(conn, entity, D2)["unchanged"]


def test_a_source_outage_makes_the_close_partial_and_it_cannot_be_locked(engine, instance) -> None:
    truth = _trades()
    entity_id = stage(engine, "down", truth, truth, 4)
    with engine.begin() as conn:
        record_source_outage(conn, entity_id, "kraken-api", D3, "HTTP 503 after 5 retries; circuit open")
    assert close_days(["down"], D1, D4, instance=instance).success
    with engine.begin() as conn:
        entity = resolve_entity(conn, "down")
        status = dict(conn.execute(sa.text("SELECT date, status FROM closes")).all())
        message = conn.execute(sa.text("SELECT message FROM closes WHERE date = :d"), dict(d=D3)).scalar()
        assert status == {D1: "closed", D2: "closed", D3: "partial", D4: "closed"}
        assert "kraken-api" in message and "503" in message
        with pytest.raises(CloseError, match="partial"):
            lock_close(conn, entity, D3)


def test_acknowledge_and_adjust_through_the_cli(engine, database_url, instance, monkeypatch) -> None:
    truth = _trades()
    booked = changed(changed(truth, "S1", fee_asset="", fee_amount=""), "B2", fee_asset="", fee_amount="")
    stage(engine, "wf", booked, truth, 4)
    assert close_days(["wf"], D1, D4, instance=instance).success
    runner = CliRunner()
    result = runner.invoke(app, ["recon", "breaks", "--entity", "wf", "--from", "2026-01-01", "--to", "2026-01-04", "--json"])
    assert result.exit_code == 0, result.output
    breaks = json.loads(result.stdout)
    assert [(b["date"], b["asset"], b["difference"]) for b in breaks] == [("2026-01-02", "USD", "-20"), ("2026-01-03", "USD", "-45")]
    assert all(b["causes"][0]["code"] == "fee" and b["causes"][0]["evidence"] for b in breaks)
    first, second = breaks

    result = runner.invoke(app, ["recon", "ack", "--entity", "wf", "--break", str(first["id"]), "--by", "alice",
                                 "--reason", "fee waived by Kraken, confirmed by email"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["recon", "ack", "--entity", "wf", "--break", str(first["id"]), "--by", "", "--reason", "x"])
    assert result.exit_code == 1 and "--by" in result.output
    result = runner.invoke(app, ["recon", "adjust", "--entity", "wf", "--break", str(second["id"]), "--by", "bob",
                                 "--reason", "fee missing from the export", "--no-reclose"])
    assert result.exit_code == 0, result.output
    assert close_days(["wf"], D1, D4, instance=instance).success  # acknowledgement survives a re-close

    with engine.begin() as conn:
        entity = resolve_entity(conn, "wf")
        remaining = list_breaks(conn, entity.id, D1, D4, include_resolved=True)
        # same ids after the re-close; the adjusted break stays listed, resolved by the adjustment
        assert [(b["id"], b["date"], b["status"], b["resolution"]) for b in remaining] == [
            (first["id"], "2026-01-02", "acknowledged", None), (second["id"], "2026-01-03", "resolved", "adjustment")]
        assert [e["event"] for e in remaining[1]["history"]] == ["opened", "adjusted", "resolved"]
        assert list_breaks(conn, entity.id, D1, D4, status="open") == []
        leg = conn.execute(sa.text(
            """SELECT l.quantity, l.kind, l.close_date, r.source, r.payload FROM transactions l
               JOIN raw_records r ON r.id = l.raw_record_id WHERE l.kind = 'adjustment'""")).one()
        assert (str(leg.quantity), leg.close_date, leg.source) == ("-45", D3, "manual")
        assert leg.payload["entered_by"] == "bob" and leg.payload["reason"] == "fee missing from the export"
        assert lock_close(conn, entity, D2).locked  # acknowledged: no open break left on the day
    result = runner.invoke(app, ["recon", "actions", "--entity", "wf", "--from", "2026-01-01", "--to", "2026-01-04", "--json"])
    actions = json.loads(result.stdout)
    assert [(a["break_id"], a["action"], a["by"], a["quantity"]) for a in actions] == [
        (first["id"], "acknowledge", "alice", None), (second["id"], "adjust", "bob", "-45")]


def test_localise_finds_the_first_day_and_whether_it_persists(engine, database_url) -> None:
    truth = _trades() + [Row("T1", ts(5, "23:50"), "INCOME", "USD", "700", "Kraken", unit_price_usd="1"),
                         Row("B3", ts(6), "BUY", "BTC", "0.1", "Kraken", unit_price_usd="90000")]
    booked = changed(changed(truth, "S1", fee_asset="", fee_amount=""), "T1", timestamp=ts(6, "00:20"))
    stage(engine, "loc", booked, truth, 7)
    reconcile(engine, database_url, "loc", 7)
    runner = CliRunner()
    result = runner.invoke(app, ["recon", "localise", "--entity", "loc", "--from", "2026-01-01", "--to", "2026-01-07", "--json"])
    assert result.exit_code == 0, result.output
    [usd] = json.loads(result.stdout)
    # off from the missing fee on day 2 to the end; the timing difference of day 5 came and went on top
    assert (usd["asset"], usd["first_day"], usd["persists"], usd["difference_last_day"]) == ("USD", "2026-01-02", True, "-20")
    assert usd["break_days"] == ["2026-01-02", "2026-01-05", "2026-01-06"]


def test_the_close_report_is_html_with_positions_breaks_causes_and_pnl(engine, instance) -> None:
    truth = _trades()
    stage(engine, "rep", changed(truth, "S2", fee_asset="", fee_amount=""), truth, 4)
    assert close_days(["rep"], D1, D4, instance=instance).success
    runner = CliRunner()
    result = runner.invoke(app, ["recon", "report", "--entity", "rep", "--date", "2026-01-04"])
    assert result.exit_code == 0, result.output
    page = result.stdout
    assert page.startswith("<!doctype html>") and "Status: breaks" in page
    assert "Kraken" in page and "-48.5" in page and "fee" in page and "Realized gain, FIFO, universal pool" in page


def test_api_serves_breaks_with_causes_results_close_provenance_and_the_report(engine, instance) -> None:
    from fastapi.testclient import TestClient

    from api.main import create_app
    from api.security import create_api_key

    truth = _trades()
    stage(engine, "api", changed(truth, "S1", fee_asset="", fee_amount=""), truth, 4)
    assert close_days(["api"], D1, D4, instance=instance).success
    with engine.begin() as conn:
        key = create_api_key(conn, resolve_entity(conn, "api").id, label="test")
    client = TestClient(create_app(rate_limit_per_minute=0))
    headers = {"X-API-Key": key}

    resp = client.get("/api/v1/reconciliation/breaks", params={"from": "2026-01-01", "to": "2026-01-04", "cause": "fee"},
                      headers=headers)
    assert resp.status_code == 200, resp.text
    [brk] = resp.json()["data"]
    assert brk["difference"] == "-20" and brk["causes"][0]["code"] == "fee" and brk["causes"][0]["rank"] == 1
    resp = client.get("/api/v1/reconciliation/breaks", params={"date": "2026-01-02", "cause": "timing"}, headers=headers)
    assert resp.json()["data"] == []
    resp = client.get("/api/v1/reconciliation/breaks", params={"date": "2026-01-02", "cause": "nonsense"}, headers=headers)
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "VALIDATION_ERROR"

    results = client.get("/api/v1/reconciliation/results", params={"from": "2026-01-01", "to": "2026-01-04"},
                         headers=headers).json()["data"]
    completeness = [(r["date"], r["success"]) for r in results if r["suite"] == "canonical.completeness"]
    assert completeness == [("2026-01-01", True), ("2026-01-02", False), ("2026-01-03", True), ("2026-01-04", True)]

    detail = client.get("/api/v1/closes/2026-01-02", headers=headers)
    assert detail.status_code == 200, detail.text
    close = detail.json()["data"]
    assert close["status"] == "breaks" and close["provenance"]["unchanged"] is True
    assert close["provenance"]["input_counts"]["legs"] == 2
    report = client.get(close["report_url"].replace("http://testserver", ""), headers=headers)
    assert report.status_code == 200 and report.headers["content-type"].startswith("text/html")
    assert "Status: breaks" in report.text and "fee" in report.text
    missing = client.get("/api/v1/closes/2025-06-01/report", headers=headers)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "NOT_FOUND"

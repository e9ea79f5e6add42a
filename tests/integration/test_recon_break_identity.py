"""Stable break identities, resolutions with history, openings from the snapshot before a first close (or a gap),
and legs selected by close day (adjustments included) in the transactions list. Closes run through Dagster
in-process, as the CLI does, against the real PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
from datetime import date

import dagster as dg
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from ingestion.csv_files import CsvFile, import_csv
from orchestration.cli import app
from orchestration.close_runner import close_days
from reconciliation.close import lock_close
from tests.integration.recon_ledgers import Row, balances_csv, changed, funded, ledger_csv, stage, ts, without
from warehouse.entities import get_or_create_entity, resolve_entity
from warehouse.reports import list_breaks

D1, D2, D3, D4 = (date(2026, 1, d) for d in range(1, 5))


@pytest.fixture()
def instance():
    return dg.DagsterInstance.ephemeral()


def _trades() -> list[Row]:
    return funded() + [
        Row("B1", ts(1, "10:00"), "BUY", "BTC", "2", "Kraken", unit_price_usd="90000", fee_asset="USD", fee_amount="90"),
        Row("S1", ts(2, "11:00"), "SELL", "BTC", "0.5", "Kraken", unit_price_usd="95000", fee_asset="USD", fee_amount="20"),
        Row("R1", ts(3, "08:00"), "INCOME", "BTC", "0.01", "Kraken", unit_price_usd="91000"),
        Row("B2", ts(3, "09:00"), "BUY", "BTC", "1", "Kraken", unit_price_usd="91000", fee_asset="USD", fee_amount="45"),
        Row("S2", ts(4, "16:00"), "SELL", "BTC", "1", "Kraken", unit_price_usd="97000", fee_asset="USD", fee_amount="48.5"),
    ]


def _import(engine, entity_id: int, name: str, ledger: list[Row] | None = None, balances: str | None = None) -> None:
    with engine.begin() as conn:
        if ledger is not None:
            import_csv(conn, entity_id, "ledger", CsvFile(f"{name}.csv", ledger_csv(ledger)))
        if balances is not None:
            import_csv(conn, entity_id, "balances", CsvFile(f"{name}-balances.csv", balances))


def _close_status(conn, entity_id: int) -> dict[date, tuple[str, int]]:
    return {r.date: (r.status, r.breaks) for r in conn.execute(sa.text(
        "SELECT date, status, breaks FROM closes WHERE entity_id = :e"), dict(e=entity_id))}


def test_a_break_keeps_its_id_over_re_closes_and_takes_actions_by_it(engine, instance) -> None:
    truth = _trades()
    entity_id = stage(engine, "ids", changed(truth, "S1", fee_asset="", fee_amount=""), truth, 4)
    assert close_days(["ids"], D1, D4, instance=instance).success
    with engine.connect() as conn:
        [first] = list_breaks(conn, entity_id, D1, D4)
    assert (first["date"], first["asset"], first["difference"], first["status"]) == ("2026-01-02", "USD", "-20", "open")

    for start in (D1, D2, D1):  # re-closes of overlapping ranges
        assert close_days(["ids"], start, D4, instance=instance).success
    with engine.connect() as conn:
        [again] = list_breaks(conn, entity_id, D1, D4)
    assert again["id"] == first["id"] and again["status"] == "open"
    assert [e["event"] for e in again["history"]] == ["opened"]  # found again, unchanged: no new event
    assert again["seen_at"] >= first["seen_at"]

    result = CliRunner().invoke(app, ["recon", "ack", "--entity", "ids", "--break", str(first["id"]), "--by", "alice",
                                      "--reason", "fee waived by Kraken"])
    assert result.exit_code == 0, result.output
    assert close_days(["ids"], D2, D4, instance=instance).success
    with engine.connect() as conn:
        [acked] = list_breaks(conn, entity_id, D1, D4)
        assert _close_status(conn, entity_id)[D2] == ("closed", 0)  # the close counts open breaks only
    assert (acked["id"], acked["status"]) == (first["id"], "acknowledged")
    assert [(e["event"], e["by"]) for e in acked["history"]] == [("opened", "close"), ("acknowledged", "alice")]
    assert acked["history"][1]["reason"] == "fee waived by Kraken"


def test_a_corrected_record_and_late_data_resolve_breaks_that_stay_listed_with_history(engine, instance) -> None:
    truth = _trades()
    booked = without(changed(truth, "S1", fee_asset="", fee_amount=""), "R1")  # a fee and a reward missing
    entity_id = stage(engine, "fixed", booked, truth, 4)
    assert close_days(["fixed"], D1, D4, instance=instance).success
    with engine.connect() as conn:
        before = list_breaks(conn, entity_id, D1, D4)
    assert [(b["date"], b["asset"], b["difference"]) for b in before] == [("2026-01-02", "USD", "-20"),
                                                                          ("2026-01-03", "BTC", "0.01")]

    # the exchange restates S1 with its fee (a new version of the staged record), and the reward arrives late
    _import(engine, entity_id, "corrected", ledger=truth)
    run = close_days(["fixed"], D1, D4, instance=instance)
    assert run.success
    records = instance.get_records_for_run(run_id=run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
    checks = [r.event_log_entry.dagster_event.event_specific_data for r in records]
    assert all(c.passed for c in checks if c.check_name == "completeness")  # resolved breaks fail no check

    with engine.connect() as conn:
        after = list_breaks(conn, entity_id, D1, D4, include_resolved=True)
        assert list_breaks(conn, entity_id, D1, D4) == []  # by default: the breaks that still stand
        assert _close_status(conn, entity_id) == {d: ("closed", 0) for d in (D1, D2, D3, D4)}
        assert list_breaks(conn, entity_id, D1, D4, status="open") == []
        assert [b["id"] for b in list_breaks(conn, entity_id, D1, D4, status="resolved")] == [b["id"] for b in before]
    assert [b["id"] for b in after] == [b["id"] for b in before]  # still listed, same ids
    fee, reward = after
    assert (fee["status"], fee["resolution"]) == ("resolved", "corrected_record")
    assert "csv/ledger S1" in fee["resolution_detail"] and "restated" in fee["resolution_detail"]
    assert (reward["status"], reward["resolution"]) == ("resolved", "late_data")
    assert "csv/ledger R1" in reward["resolution_detail"]
    assert fee["resolved_at"] is not None and fee["difference"] == "-20"  # the figures as last found
    opened, resolved = fee["history"]
    assert (opened["event"], opened["difference"], opened["status"]) == ("opened", "-20", "open")
    assert (resolved["event"], resolved["by"], resolved["previous_status"], resolved["status"]) == (
        "resolved", "close", "open", "resolved")
    assert (resolved["previous_difference"], resolved["difference"]) == ("-20", None)
    assert resolved["reason"].startswith("corrected_record: ")

    # a resolved break takes no action; the CLI says why
    result = CliRunner().invoke(app, ["recon", "ack", "--entity", "fixed", "--break", str(fee["id"]), "--by", "alice",
                                      "--reason", "late acknowledgement"])
    assert result.exit_code == 1 and "resolved" in result.output and "corrected_record" in result.output

    # the difference comes back (the restatement is reverted): the same break reopens
    _import(engine, entity_id, "reverted", ledger=changed(truth, "S1", fee_asset="", fee_amount="", tx_hash="restated"))
    assert close_days(["fixed"], D1, D4, instance=instance).success
    with engine.connect() as conn:
        [back] = list_breaks(conn, entity_id, D2, D2)
    assert (back["id"], back["status"], back["resolution"]) == (fee["id"], "open", None)
    assert [e["event"] for e in back["history"]] == ["opened", "resolved", "reopened"]


def test_breaks_through_the_api_show_and_filter_on_status(engine, instance) -> None:
    from api.main import create_app
    from api.security import create_api_key

    truth = _trades()
    entity_id = stage(engine, "api-breaks", without(truth, "R1"), truth, 4)
    assert close_days(["api-breaks"], D1, D4, instance=instance).success
    _import(engine, entity_id, "late", ledger=truth)
    assert close_days(["api-breaks"], D1, D4, instance=instance).success
    with engine.begin() as conn:
        key = create_api_key(conn, entity_id, label="test")
    client = TestClient(create_app(rate_limit_per_minute=0))
    headers = {"X-API-Key": key}
    params = {"from": "2026-01-01", "to": "2026-01-04"}

    [brk] = client.get("/api/v1/reconciliation/breaks", params=params, headers=headers).json()["data"]
    assert (brk["status"], brk["resolution"]) == ("resolved", "late_data")
    assert [e["event"] for e in brk["history"]] == ["opened", "resolved"]
    assert client.get("/api/v1/reconciliation/breaks", params={**params, "status": "open"},
                      headers=headers).json()["data"] == []
    assert len(client.get("/api/v1/reconciliation/breaks", params={**params, "status": "resolved"},
                          headers=headers).json()["data"]) == 1
    wrong = client.get("/api/v1/reconciliation/breaks", params={**params, "status": "gone"}, headers=headers)
    assert wrong.status_code == 400 and wrong.json()["error"]["code"] == "VALIDATION_ERROR"
    exported = client.get("/api/v1/reconciliation/breaks", params={**params, "format": "csv"}, headers=headers)
    [row] = list(csv.DictReader(io.StringIO(exported.text)))
    assert row["status"] == "resolved" and row["resolution"] == "late_data"
    assert [e["event"] for e in json.loads(row["history"])] == ["opened", "resolved"]


def test_the_first_close_and_a_close_after_a_gap_open_from_the_snapshot_before_them(engine, instance) -> None:
    # the account held 1,000,000 USD before the ledger starts: the source's snapshot at the cutoff of 2025-12-31
    truth = [Row("F0", "2025-12-31T12:00:00Z", "INCOME", "USD", "1000000", "Kraken", unit_price_usd="1")] + _trades()
    booked = without(truth, "F0")  # the ledger imported starts on 2026-01-01
    opening = "timestamp,account,account_type,sub_account,asset,quantity\n2026-01-01T00:00:00Z,Kraken,spot,,USD,1000000\n"
    with engine.begin() as conn:
        entity_id = get_or_create_entity(conn, "opening").id
    _import(engine, entity_id, "opening", ledger=booked, balances=opening)
    _import(engine, entity_id, "daily", balances=balances_csv(truth, 4))

    assert close_days(["opening"], D1, D2, instance=instance).success  # the entity's first close
    with engine.connect() as conn:
        assert list_breaks(conn, entity_id, D1, D2, include_resolved=True) == []
        assert _close_status(conn, entity_id) == {D1: ("closed", 0), D2: ("closed", 0)}

    assert close_days(["opening"], D4, D4, instance=instance).success  # after a gap: day 3 never closed
    with engine.connect() as conn:
        assert list_breaks(conn, entity_id, D1, D4, include_resolved=True) == []
        assert _close_status(conn, entity_id)[D4] == ("closed", 0)
        opening_row = conn.execute(sa.text(
            """SELECT c.previous_reported_at FROM completeness_differences c WHERE c.entity_id = :e AND c.date = :d"""),
            dict(e=entity_id, d=D4)).all()
    assert opening_row == []  # day 4 rolls forward from day 3's snapshot: no difference at all


def test_a_single_day_transactions_list_includes_the_days_adjustment_legs(engine, instance) -> None:
    from api.main import create_app
    from api.security import create_api_key

    truth = _trades()
    entity_id = stage(engine, "adj-list", truth, truth, 4)
    assert close_days(["adj-list"], D1, D4, instance=instance).success
    with engine.begin() as conn:
        entity = resolve_entity(conn, "adj-list")
        for day in (D1, D2):
            lock_close(conn, entity, day)
    late = truth + [Row("LATE1", ts(2, "15:00"), "INCOME", "USD", "500", "Kraken", unit_price_usd="1")]
    _import(engine, entity_id, "late", ledger=late, balances=balances_csv(late, 4))
    assert close_days(["adj-list"], D1, D4, instance=instance).success
    with engine.begin() as conn:
        key = create_api_key(conn, entity_id, label="test")
        adjustment_id, booked_on = conn.execute(sa.text(
            "SELECT id, close_date FROM transactions WHERE entity_id = :e AND is_adjustment"), dict(e=entity_id)).one()
        legs_of_day_3 = conn.execute(sa.text("SELECT legs FROM closes WHERE entity_id = :e AND date = :d"),
                                     dict(e=entity_id, d=D3)).scalar_one()
    assert booked_on == D3
    client = TestClient(create_app(rate_limit_per_minute=0))
    headers = {"X-API-Key": key}

    for params in ({"from": "2026-01-03", "to": "2026-01-03"}, {"from": "2026-01-03"}, {"from": "2026-01-03", "limit": 1}):
        ids, cursor = [], None
        while True:
            page = client.get("/api/v1/transactions", params={**params, **({"cursor": cursor} if cursor else {})},
                              headers=headers)
            assert page.status_code == 200, page.text
            body = page.json()
            ids += [leg["id"] for leg in body["data"] if leg["date"] == "2026-01-03"]
            assert all(leg["date"] >= "2026-01-03" for leg in body["data"])
            cursor = body["meta"].get("next_cursor")
            if not cursor:
                break
        assert adjustment_id in ids and len(ids) == legs_of_day_3, params
    exported = client.get("/api/v1/transactions", params={"from": "2026-01-03", "to": "2026-01-03", "format": "csv"},
                          headers=headers)
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert len(rows) == legs_of_day_3 and str(adjustment_id) in {r["id"] for r in rows}
    adjustment = next(r for r in rows if r["id"] == str(adjustment_id))
    assert (adjustment["is_adjustment"], adjustment["date"], adjustment["quantity"]) == ("true", "2026-01-03", "500")
    day_2 = client.get("/api/v1/transactions", params={"from": "2026-01-02", "to": "2026-01-02"}, headers=headers)
    assert adjustment_id not in [leg["id"] for leg in day_2.json()["data"]]  # its timestamp's day, locked: not there


def test_a_first_close_whose_first_day_has_no_snapshot_still_opens_from_the_one_before(engine, instance) -> None:
    truth = [Row("F0", "2025-12-31T12:00:00Z", "INCOME", "USD", "1000000", "Kraken", unit_price_usd="1")] + _trades()
    opening = "timestamp,account,account_type,sub_account,asset,quantity\n2026-01-01T00:00:00Z,Kraken,spot,,USD,1000000\n"
    daily = [line for line in balances_csv(truth, 4).splitlines(keepends=True) if not line.startswith("2026-01-02T")]
    with engine.begin() as conn:
        entity_id = get_or_create_entity(conn, "no-first-snapshot").id
    _import(engine, entity_id, "opening", ledger=without(truth, "F0"), balances=opening)
    _import(engine, entity_id, "daily", balances="".join(daily))  # nothing reported at the cutoff of day 1

    assert close_days(["no-first-snapshot"], D1, D4, instance=instance).success
    with engine.connect() as conn:
        assert list_breaks(conn, entity_id, D1, D4, include_resolved=True) == []  # day 2 rolls forward from the opening, through day 1
        checked = dict(conn.execute(sa.text(
            "SELECT date, checked_count FROM recon_results WHERE entity_id = :e AND suite = 'canonical.completeness'"),
            dict(e=entity_id)).all())
    assert checked[D2] >= 1 and checked[D1] == 0  # day 2 was checked (day 1 had nothing fresh to check)

"""Expectation suites on staging and canonical data, through Dagster's asset checks: stored results, failing
rows, an error that stops PnL and the close, warnings that do not, a missing stream that makes the close partial."""

from __future__ import annotations

import uuid
from datetime import date

import dagster as dg
import sqlalchemy as sa

from orchestration.close_runner import close_days
from reconciliation.suites import EXPECTATIONS, expect_stream
from tests.integration.recon_ledgers import Row, funded, stage, ts

D1, D3 = date(2026, 1, 1), date(2026, 1, 3)


def _results(conn) -> dict[tuple[str, str], tuple[bool, list]]:
    rows = conn.execute(sa.text(
        "SELECT date, expectation, success, failing_rows FROM expectation_results ORDER BY date, expectation")).all()
    return {(r.date.isoformat(), r.expectation): (r.success, r.failing_rows) for r in rows}


def test_clean_data_passes_every_expectation_and_results_are_stored_per_day(engine) -> None:
    truth = funded() + [Row("T1", ts(2), "TRANSFER_OUT", "USD", "10", "Kraken", tx_hash="0x1"),
                        Row("T2", ts(2), "TRANSFER_IN", "USD", "10", "Cold", "wallet", tx_hash="0x1")]
    stage(engine, "ok", truth, truth, 3)
    instance = dg.DagsterInstance.ephemeral()
    assert close_days(["ok"], D1, D3, instance=instance).success
    with engine.connect() as conn:
        results = _results(conn)
    assert len(results) == 3 * len(EXPECTATIONS) and all(ok for ok, _ in results.values())
    records = instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(dg.AssetKey("canonical_ledger"), "canonical_expectations"), limit=10)
    assert records and all(r.evaluation and r.evaluation.passed for r in records)


def test_invalid_staging_data_is_an_error_that_stops_pnl_and_the_close(engine) -> None:
    truth = funded()
    entity_id = stage(engine, "bad", truth, truth, 3)
    with engine.begin() as conn:  # a record staged without the source's own id
        run = conn.execute(sa.text("SELECT ingestion_run_id FROM raw_records LIMIT 1")).scalar_one()
        conn.execute(sa.text(
            """INSERT INTO raw_records (entity_id, source, account, stream, source_raw_id, payload, payload_hash,
                                        occurred_at, ingestion_run_id)
               VALUES (:e, 'csv', 'Kraken', 'trades', ' ', '{"x": 1}', :h, '2026-01-02T10:00:00Z', :run)"""),
            dict(e=entity_id, h=uuid.uuid4().hex, run=run))
    instance = dg.DagsterInstance.ephemeral()
    result = close_days(["bad"], D1, D3, instance=instance)
    assert not result.success and "staging_expectations" in result.error
    with engine.connect() as conn:
        results = _results(conn)
        closes = dict(conn.execute(sa.text("SELECT date, status FROM closes")).all())
        pnl_rows = conn.execute(sa.text("SELECT count(*) FROM pnl_daily")).scalar()
    ok, failing = results[("2026-01-02", "raw_keys_not_empty")]
    assert not ok and failing[0]["source_raw_id"] == " " and failing[0]["stream"] == "trades"
    assert set(closes.values()) == {"failed"} and pnl_rows == 0


def test_a_negative_computed_balance_is_an_error_naming_the_legs(engine) -> None:
    truth = [Row("S1", ts(1), "AIRDROP", "SOL", "1", "Cold", "wallet", unit_price_usd="150"),
             Row("S2", ts(2), "TRANSFER_OUT", "SOL", "3", "Cold", "wallet", tx_hash="0xneg")]
    stage(engine, "neg", truth, truth, 3)
    result = close_days(["neg"], D1, D3, instance=dg.DagsterInstance.ephemeral())
    assert not result.success and "canonical_expectations" in result.error  # an error stops PnL and the close
    with engine.connect() as conn:
        results = _results(conn)
        closes = dict(conn.execute(sa.text("SELECT date, status FROM closes")).all())
        out_leg = conn.execute(sa.text("SELECT id FROM transactions WHERE kind = 'transfer_out'")).scalar_one()
    assert results[("2026-01-01", "no_negative_computed_balance")][0]
    ok, failing = results[("2026-01-02", "no_negative_computed_balance")]
    assert not ok and failing[0]["computed"] == "-2" and failing[0]["asset"] == "SOL"
    assert failing[0]["legs_of_the_day"] == str(out_leg) and failing[0]["went_negative_at_leg"] == out_leg
    _, failing = results[("2026-01-03", "no_negative_computed_balance")]  # still negative: the same leg, no leg that day
    assert failing[0]["legs_of_the_day"] is None and failing[0]["went_negative_at_leg"] == out_leg
    assert set(closes.values()) == {"failed"}


def test_a_missing_stream_makes_the_day_partial(engine) -> None:
    # (a liability may be negative: the Binance margin debt closes in tests/integration/test_binance_ingestion.py)
    truth = [Row("S1", ts(1), "AIRDROP", "SOL", "1", "Cold", "wallet", unit_price_usd="150"),
             Row("S2", ts(2), "TRANSFER_OUT", "SOL", "0.5", "Cold", "wallet", tx_hash="0xout")]
    entity_id = stage(engine, "warn", truth, truth, 3)
    with engine.begin() as conn:
        expect_stream(conn, entity_id, "binance", "funding", D3)
    instance = dg.DagsterInstance.ephemeral()
    assert close_days(["warn"], D1, D3, instance=instance).success  # warnings do not stop the close
    with engine.connect() as conn:
        results = _results(conn)
        closes = dict(conn.execute(sa.text("SELECT date, status FROM closes")).all())
        outage = conn.execute(sa.text("SELECT source, stream, date FROM source_outages")).one()
    assert results[("2026-01-02", "no_negative_computed_balance")][0]
    assert not results[("2026-01-03", "expected_streams_ran")][0]
    assert tuple(outage) == ("binance", "funding", D3)
    assert closes[D3] == "partial" and closes[D1] == "closed"


def test_a_staged_record_no_mapper_reads_is_an_error_naming_its_stream(engine) -> None:
    truth = funded()
    entity_id = stage(engine, "unmapped", truth, truth, 3)
    with engine.begin() as conn:  # a stream no connector maps (before: staged, then closed to 0 legs in silence)
        run = conn.execute(sa.text("SELECT ingestion_run_id FROM raw_records LIMIT 1")).scalar_one()
        conn.execute(sa.text(
            """INSERT INTO raw_records (entity_id, source, account, stream, source_raw_id, payload, payload_hash,
                                        occurred_at, ingestion_run_id)
               VALUES (:e, 'someexchange', 'someexchange', 'ledger', 'L1', '{"amount": "1"}', :h,
                       '2026-01-02T10:00:00Z', :run)"""), dict(e=entity_id, h=uuid.uuid4().hex, run=run))
    result = close_days(["unmapped"], D1, D3, instance=dg.DagsterInstance.ephemeral())
    assert not result.success and "staging_expectations" in result.error
    with engine.connect() as conn:
        results = _results(conn)
    ok, failing = results[("2026-01-02", "staged_records_have_a_mapper")]
    assert not ok and failing == [{"date": "2026-01-02", "source": "someexchange", "stream": "ledger", "records": 1,
                                   "example_source_raw_id": "L1", "accounts": "someexchange"}]
    assert results[("2026-01-01", "staged_records_have_a_mapper")][0]

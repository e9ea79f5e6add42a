"""Blocking per entity and day: a break at ERROR severity stops PnL and the close of its entity from that day on;
the other entity of the same run, and the days before the break, close normally. Closes run through Dagster
in-process, as the CLI does."""

from __future__ import annotations

import json
from datetime import date

import dagster as dg
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from orchestration.cli import app
from orchestration.close_runner import close_days
from reconciliation.close import CloseError, lock_close
from reconciliation.workflow import acknowledge_break
from tests.integration.recon_ledgers import Row, changed, funded, stage, ts
from warehouse.entities import resolve_entity
from warehouse.numbers import to_text
from warehouse.reports import list_breaks

D1, D2, D3, D4 = (date(2026, 1, d) for d in range(1, 5))


def _trades() -> list[Row]:
    return funded() + [
        Row("B1", ts(1, "10:00"), "BUY", "BTC", "2", "Kraken", unit_price_usd="90000", fee_asset="USD", fee_amount="90"),
        Row("S1", ts(2, "11:00"), "SELL", "BTC", "0.5", "Kraken", unit_price_usd="95000", fee_asset="USD", fee_amount="20"),
        Row("B2", ts(3, "09:00"), "BUY", "BTC", "1", "Kraken", unit_price_usd="91000", fee_asset="USD", fee_amount="45"),
        Row("S2", ts(4, "16:00"), "SELL", "BTC", "1", "Kraken", unit_price_usd="97000", fee_asset="USD", fee_amount="48.5"),
    ]


def _closes(conn, entity_id: int) -> dict[date, tuple[str, str | None]]:
    return {r.date: (r.status, r.message) for r in conn.execute(sa.text(
        "SELECT date, status, message FROM closes WHERE entity_id = :e ORDER BY date"), dict(e=entity_id))}


def _pnl_days(conn, entity_id: int) -> dict[str, list[date]]:
    return {table: list(conn.execute(sa.text(
        f"SELECT DISTINCT date FROM {table} WHERE entity_id = :e AND method = 'fifo' AND pool = 'universal' ORDER BY 1"),
        dict(e=entity_id)).scalars()) for table in ("pnl_daily", "pnl_disposals")}


def test_an_error_break_blocks_its_entity_from_that_day_and_the_other_entity_closes(engine) -> None:
    instance = dg.DagsterInstance.ephemeral()
    truth = _trades()
    clean_id = stage(engine, "clean-co", truth, truth, 4)
    # the booked ledger misses the fee of S1 on day 2: a -20 USD break there
    broken_id = stage(engine, "broken-co", changed(truth, "S1", fee_asset="", fee_amount=""), truth, 4)
    runner = CliRunner()
    result = runner.invoke(app, ["recon", "policy", "--entity", "broken-co", "--block-above-usd", "10", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["block_above_usd"] == "10"
    result = runner.invoke(app, ["recon", "policy", "--entity", "broken-co", "--transfer-fee-tolerance", "2"])
    assert result.exit_code == 1 and "fraction" in result.output

    assert close_days(["clean-co", "broken-co"], D1, D4, instance=instance).success  # one run per entity

    with engine.begin() as conn:
        assert {d: s for d, (s, _) in _closes(conn, clean_id).items()} == {D1: "closed", D2: "closed", D3: "closed",
                                                                          D4: "closed"}
        assert _pnl_days(conn, clean_id) == {"pnl_daily": [D1, D2, D3, D4], "pnl_disposals": [D2, D4]}

        closes = _closes(conn, broken_id)
        assert [closes[d][0] for d in (D1, D2, D3, D4)] == ["closed", "breaks", "blocked", "blocked"]
        assert "ERROR severity" in closes[D2][1] and "no PnL booked" in closes[D2][1]
        assert "blocked since 2026-01-02" in closes[D3][1] and "blocked since 2026-01-02" in closes[D4][1]
        assert _pnl_days(conn, broken_id) == {"pnl_daily": [D1], "pnl_disposals": []}  # nothing booked from day 2 on
        realized = dict(conn.execute(sa.text(
            "SELECT date, (realized_gain_universal, realized_gain_account, realized_gain_book) FROM closes"
            " WHERE entity_id = :e"), dict(e=broken_id)).all())
        assert realized[D1] == ("0", "0", "0")  # booked: nothing realized that day
        assert realized[D2] == realized[D3] == realized[D4] == (None, None, None)  # not booked, never a 0
        severities = conn.execute(sa.text("SELECT date, difference, severity FROM breaks WHERE entity_id = :e"),
                                  dict(e=broken_id)).all()
        assert [(d, to_text(x), s) for d, x, s in severities] == [(D2, "-20", "error")]
        listed = list_breaks(conn, broken_id, D1, D4)  # what `recon breaks` and GET /reconciliation/breaks serve
        assert [(b["date"], b["severity"]) for b in listed] == [(D2.isoformat(), "error")]
        broken = resolve_entity(conn, "broken-co")
        assert lock_close(conn, broken, D1).locked  # the day before the break closes and locks normally
        with pytest.raises(CloseError, match="blocked"):
            lock_close(conn, broken, D3)

    # the day check in Dagster fails at ERROR severity for that entity and day only
    evaluations = {}
    for run in instance.get_runs():
        records = instance.get_records_for_run(run_id=run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
        evaluations.update({e.partition: e for e in (r.event_log_entry.dagster_event.event_specific_data for r in records)
                            if e.check_name == "completeness" and e.partition})
    assert len(evaluations) == 8  # 4 days x 2 entities
    assert [k for k, e in evaluations.items() if not e.passed] == ["2026-01-02|broken-co"]
    assert evaluations["2026-01-02|broken-co"].severity == dg.AssetCheckSeverity.ERROR
    assert evaluations["2026-01-03|broken-co"].passed and evaluations["2026-01-02|clean-co"].passed

    # acknowledged (accepted): it no longer blocks; the next close books the days
    with engine.begin() as conn:
        break_id = conn.execute(sa.text("SELECT id FROM breaks WHERE entity_id = :e"), dict(e=broken_id)).scalar_one()
        acknowledge_break(conn, broken, break_id, actor="alice", reason="fee waived, confirmed by Kraken")
    assert close_days(["broken-co"], D2, D4, instance=instance).success
    with engine.connect() as conn:
        assert [s for _, (s, _) in sorted(_closes(conn, broken_id).items())] == ["closed"] * 4
        assert _pnl_days(conn, broken_id) == {"pnl_daily": [D1, D2, D3, D4], "pnl_disposals": [D2, D4]}


def test_a_break_under_the_threshold_only_warns(engine) -> None:
    instance = dg.DagsterInstance.ephemeral()
    truth = _trades()
    entity_id = stage(engine, "small-break", changed(truth, "S1", fee_asset="", fee_amount=""), truth, 4)
    result = CliRunner().invoke(app, ["recon", "policy", "--entity", "small-break", "--block-above-usd", "100"])
    assert result.exit_code == 0, result.output
    assert close_days(["small-break"], D1, D4, instance=instance).success
    with engine.connect() as conn:
        assert [s for _, (s, _) in sorted(_closes(conn, entity_id).items())] == ["closed", "breaks", "closed", "closed"]
        assert _pnl_days(conn, entity_id)["pnl_daily"] == [D1, D2, D3, D4]
        assert conn.execute(sa.text("SELECT severity FROM breaks WHERE entity_id = :e"), dict(e=entity_id)).scalar() == "warn"

"""Day x entity partitions as a data engineer sees them, and a close killed halfway.

- Through Dagster's GraphQL API (the UI's own queries, in process against a real instance): after a close, the
  partitions view of the completeness check shows which days of which entity passed and failed; an acknowledged
  break passes (at WARN). The run is the named job, tagged with the entity's name.
- A `coinfrs close` killed with SIGKILL mid-run leaves its days `stale` (not old figures beside new legs), and the
  next schedule tick closes again from the first of them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG
from dagster._core.test_utils import in_process_test_workspace
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster_graphql.test.utils import execute_dagster_graphql

from assets.resources import WarehouseResource
from orchestration.close_runner import close_days
from orchestration.definitions import daily_close_schedule
from reconciliation.workflow import acknowledge_break
from tests.integration.test_close_e2e import import_sample
from warehouse.entities import resolve_entity
from warehouse.reports import list_breaks

ROOT = Path(__file__).resolve().parents[2]
FIRST, LAST = date(2026, 1, 1), date(2026, 1, 22)
BREAK_DAY = "2026-01-20"  # the sample's Kraken USD break (tests/integration/test_close_e2e.py)

CHECK_STATUSES = """
query ($path: [String!]!) {
  assetNodeOrError(assetKey: {path: $path}) {
    ... on AssetNode {
      assetChecksOrError {
        ... on AssetChecks {
          checks {
            name
            partitionStatuses {
              __typename
              ... on AssetCheckMultiPartitionStatuses {
                primaryDimensionName
                ranges {
                  primaryDimStartKey
                  primaryDimEndKey
                  secondaryDim {
                    ... on AssetCheckDefaultPartitionStatuses { succeededPartitions failedPartitions }
                  }
                }
              }
            }
          }
        }
      }
    }
  }
}
"""

CHECK_EXECUTION = """
query ($partition: String!) {
  assetCheckExecutions(assetKey: {path: ["reconciliation"]}, checkName: "completeness", partition: $partition, limit: 1) {
    status
    partition
    evaluation { severity }
  }
}
"""


def _check_partitions(context, asset: str) -> dict[str, dict[str, dict[str, set[str]]]]:
    """{check: {day: {"passed": {entity, ...}, "failed": {...}}}} from the partitions view's query."""
    result = execute_dagster_graphql(context, CHECK_STATUSES, {"path": [asset]})
    checks = result.data["assetNodeOrError"]["assetChecksOrError"]["checks"]
    out: dict[str, dict[str, dict[str, set[str]]]] = {}
    for check in checks:
        statuses = check["partitionStatuses"]
        assert statuses["__typename"] == "AssetCheckMultiPartitionStatuses", statuses
        assert statuses["primaryDimensionName"] == "date"
        days: dict[str, dict[str, set[str]]] = {}
        for r in statuses["ranges"]:
            first, last = date.fromisoformat(r["primaryDimStartKey"]), date.fromisoformat(r["primaryDimEndKey"])
            for n in range((last - first).days + 1):
                day = date.fromordinal(first.toordinal() + n).isoformat()
                days[day] = {"passed": set(r["secondaryDim"]["succeededPartitions"]),
                             "failed": set(r["secondaryDim"]["failedPartitions"])}
        out[check["name"]] = days
    return out


def test_per_entity_per_day_check_status_through_graphql(engine, tmp_path) -> None:
    import_sample(engine, "northwind")
    import_sample(engine, "southwind")
    (tmp_path / "dagster").mkdir()
    with dg.DagsterInstance.local_temp(str(tmp_path / "dagster")) as instance:
        north = close_days(["northwind"], FIRST, LAST, instance=instance)
        assert north.success, north.error
        south = close_days(["southwind"], FIRST, date(2026, 1, 3), instance=instance)
        assert south.success, south.error
        assert instance.get_dynamic_partitions("entity") == ["northwind", "southwind"]

        # the CLI's run is the named job, tagged with the entity's name; 22 days are one run
        run = instance.get_run_by_id(north.run_id)
        assert run.job_name == "daily_close_job"
        assert run.tags["coinfrs/entity_names"] == "northwind"
        assert (run.tags[ASSET_PARTITION_RANGE_START_TAG], run.tags[ASSET_PARTITION_RANGE_END_TAG]) == (
            "2026-01-01|northwind", "2026-01-22|northwind")
        assert instance.get_runs_count() == 2

        origin = LoadableTargetOrigin(module_name="orchestration.definitions", attribute="defs",
                                      working_directory=str(ROOT))
        with in_process_test_workspace(instance, origin) as context, context:
            checks = _check_partitions(context, "reconciliation")
            completeness = checks["completeness"]
            assert sorted(completeness) == [f"2026-01-{d:02d}" for d in range(1, 23)]
            assert completeness[BREAK_DAY] == {"passed": set(), "failed": {"northwind"}}
            for day in ("2026-01-01", "2026-01-02", "2026-01-03"):
                assert completeness[day] == {"passed": {"northwind", "southwind"}, "failed": set()}, day
            for day in set(completeness) - {BREAK_DAY, "2026-01-01", "2026-01-02", "2026-01-03"}:
                assert completeness[day] == {"passed": {"northwind"}, "failed": set()}, day
            suites = _check_partitions(context, "canonical_ledger")
            assert set(suites) == {"staging_expectations", "canonical_expectations"}
            assert all(not v["failed"] for days in suites.values() for v in days.values())
            assert len(suites["canonical_expectations"]) == 22

            # a person accepts the break; the next close of the day shows it passed, at WARN
            with engine.begin() as conn:
                entity = resolve_entity(conn, "northwind")
                [brk] = list_breaks(conn, entity.id, date(2026, 1, 20), date(2026, 1, 20))
                acknowledge_break(conn, entity, brk["id"], actor="alice", reason="fee waived, confirmed by Kraken")
            again = close_days(["northwind"], date(2026, 1, 20), LAST, instance=instance)
            assert again.success, again.error
            completeness = _check_partitions(context, "reconciliation")["completeness"]
            assert completeness[BREAK_DAY] == {"passed": {"northwind"}, "failed": set()}
            [execution] = execute_dagster_graphql(context, CHECK_EXECUTION,
                                                  {"partition": f"{BREAK_DAY}|northwind"}).data["assetCheckExecutions"]
            assert execution == {"status": "SUCCEEDED", "partition": f"{BREAK_DAY}|northwind",
                                 "evaluation": {"severity": "WARN"}}
    with engine.connect() as conn:
        status = conn.execute(sa.text("SELECT status FROM closes WHERE entity_id = :e AND date = :d"),
                              dict(e=entity.id, d=date(2026, 1, 20))).scalar_one()
    assert status == "closed"


def _statuses(engine: sa.Engine, entity_id: int) -> dict[date, tuple[str, str | None]]:
    with engine.connect() as conn:
        return {r.date: (r.status, r.run_id) for r in conn.execute(sa.text(
            "SELECT date, status, run_id FROM closes WHERE entity_id = :e ORDER BY date"), dict(e=entity_id))}


def test_a_close_killed_mid_run_leaves_its_days_stale_and_the_next_tick_recloses_them(engine, database_url,
                                                                                       tmp_path) -> None:
    entity_id = import_sample(engine, "northwind")
    first, last = date(2026, 1, 1), date(2026, 3, 1)
    done = close_days(["northwind"], first, last, instance=dg.DagsterInstance.ephemeral())
    assert done.success, done.error
    before = _statuses(engine, entity_id)
    assert {s for s, _ in before.values()} == {"closed", "breaks"} and len(before) == 60

    env = {**os.environ, "DATABASE_URL": database_url, "COINFRS_DATA_DIR": str(tmp_path / "data"),
           "PYTHONPATH": str(ROOT), "GX_ANALYTICS_ENABLED": "false"}
    env.pop("DAGSTER_HOME", None)
    process = subprocess.Popen([sys.executable, "-m", "orchestration.cli", "close", "--entity", "northwind",
                                "--from", first.isoformat(), "--to", last.isoformat()],
                               cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    try:
        while time.monotonic() < deadline:  # kill it as soon as it has started to rebuild the days
            statuses = _statuses(engine, entity_id)
            if any(s == "stale" for s, _ in statuses.values()):
                break
            assert process.poll() is None, process.stdout.read().decode()
            time.sleep(0.02)
        else:
            pytest.fail("the close never started rebuilding its days")
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == -signal.SIGKILL

    killed = _statuses(engine, entity_id)
    assert set(killed) == set(before)
    assert {s for s, _ in killed.values()} == {"stale"}  # no day shows its old figures as current
    [killed_run] = {run for _, run in killed.values()}
    assert killed_run not in {run for _, run in before.values()}
    with engine.connect() as conn:
        message = conn.execute(sa.text("SELECT message FROM closes WHERE entity_id = :e AND date = :d"),
                               dict(e=entity_id, d=first)).scalar_one()
    assert f"close run {killed_run} is rebuilding this day" in message

    # the next schedule tick (for 2026-03-02, closing 2026-03-01) closes again from the first stale day
    (tmp_path / "dagster").mkdir()
    instance = dg.DagsterInstance.local_temp(str(tmp_path / "dagster"))
    with dg.build_schedule_context(scheduled_execution_time=datetime(2026, 3, 2, 1, 0), instance=instance,
                                   resources={"warehouse": WarehouseResource(database_url=database_url)}) as context:
        [request] = daily_close_schedule(context)
    assert (request.tags[ASSET_PARTITION_RANGE_START_TAG], request.tags[ASSET_PARTITION_RANGE_END_TAG]) == (
        "2026-01-01|northwind", "2026-03-01|northwind")
    assert instance.get_dynamic_partitions("entity") == ["northwind"]
    rerun = close_days(["northwind"], last, last, instance=instance)  # what the requested run does
    assert rerun.success, rerun.error
    assert rerun.start == first
    after = _statuses(engine, entity_id)
    assert {d: s for d, (s, _) in after.items()} == {d: s for d, (s, _) in before.items()}


def test_runs_of_the_schedule_alert_from_the_sensor_and_cli_runs_alert_once(engine, database_url, tmp_path,
                                                                             monkeypatch) -> None:
    from orchestration.definitions import close_alert_sensor
    from orchestration.jobs import close_run_tags, resolved_close_job
    from tests.servers.slack_webhook import SlackWebhookServer
    from warehouse.settings import get_settings

    webhook = SlackWebhookServer().start()
    monkeypatch.setenv("COINFRS_ALERT_WEBHOOK_URL", webhook.url)
    get_settings.cache_clear()
    try:
        entity_id = import_sample(engine, "northwind")
        (tmp_path / "dagster").mkdir()
        with dg.DagsterInstance.local_temp(str(tmp_path / "dagster")) as instance:
            cli = close_days(["northwind"], FIRST, date(2026, 1, 20), instance=instance)  # the break day is last
            assert cli.success, cli.error
            assert len(webhook.state.received) == 1 and cli.run_id in webhook.state.received[0]["text"]
            # a run the daemon launched (the schedule's): the run itself does not alert, its sensor does
            scheduled = resolved_close_job().execute_in_process(
                instance=instance, tags=close_run_tags(entity_id, "northwind", date(2026, 1, 20), date(2026, 1, 20)))
            assert scheduled.success and len(webhook.state.received) == 1
            resources = {"warehouse": WarehouseResource(database_url=database_url)}
            for run_id in (cli.run_id, scheduled.run_id):
                [success] = instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_SUCCESS)
                with dg.build_run_status_sensor_context(
                        sensor_name="close_alert_sensor", dagster_event=success.dagster_event, dagster_instance=instance,
                        dagster_run=instance.get_run_by_id(run_id), resources=resources) as context:
                    close_alert_sensor(context)
    finally:
        webhook.stop()
        get_settings.cache_clear()
    texts = [p["text"] for p in webhook.state.received]
    assert len(texts) == 2, texts  # the CLI run is not alerted a second time
    assert scheduled.run_id in texts[1] and "northwind: 1 day(s) breaks (2026-01-20)" in texts[1]


def test_history_of_any_age_closes_without_a_setting(engine, tmp_path) -> None:
    """Partitions start at the Bitcoin genesis block (2009-01-03): a 2012 ledger closes as it is; earlier is refused."""
    from orchestration.close_runner import CloseRunError
    from typer.testing import CliRunner

    from orchestration.cli import app

    ledger = tmp_path / "ledger.csv"
    ledger.write_text("id,timestamp,action,asset,quantity,unit_price_usd,fee_asset,fee_amount,quote_asset,"
                      "quote_quantity,account,tx_hash,external_id,notes\n"
                      "old1,2012-06-01T10:00:00Z,BUY,BTC,10,5.25,,,,,Mt Gox,,,\n"
                      "old2,2012-06-02T10:00:00Z,SELL,BTC,4,5.50,,,,,Mt Gox,,,\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["import-csv", "--entity", "pioneer", "--create", "--kind", "ledger", str(ledger)])
    assert result.exit_code == 0, result.output
    run = close_days(["pioneer"], date(2012, 6, 1), date(2012, 6, 2), instance=dg.DagsterInstance.ephemeral())
    assert run.success, run.error
    with engine.connect() as conn:
        closed = conn.execute(sa.text("SELECT date, status, legs, realized_gain_universal FROM closes ORDER BY date")).all()
    assert [(d, s, n) for d, s, n, _ in closed] == [(date(2012, 6, 1), "closed", 2), (date(2012, 6, 2), "closed", 2)]
    assert closed[1][3] == Decimal("1")  # 4 BTC sold at 5.50, bought at 5.25
    with pytest.raises(CloseRunError, match="before the first close day 2009-01-03"):
        close_days(["pioneer"], date(2009, 1, 2), date(2009, 1, 3), instance=dg.DagsterInstance.ephemeral())


def test_a_failed_run_of_the_schedule_is_marked_failed_and_alerted_by_its_sensor(engine, database_url, tmp_path,
                                                                                 monkeypatch) -> None:
    """A run launched by the daemon that fails (here: its entity was archived after the run was requested) gets its
    days marked `failed` with the run's error by ``close_failure_sensor``, and one alert naming the run."""
    from assets.partitions import ensure_entity_partitions
    from orchestration.definitions import close_failure_sensor
    from orchestration.jobs import close_run_tags, resolved_close_job
    from tests.servers.slack_webhook import SlackWebhookServer
    from warehouse.entities import archive_entity
    from warehouse.settings import get_settings

    webhook = SlackWebhookServer().start()
    monkeypatch.setenv("COINFRS_ALERT_WEBHOOK_URL", webhook.url)
    get_settings.cache_clear()
    day = date(2026, 1, 5)
    try:
        entity_id = import_sample(engine, "northwind")
        with engine.begin() as conn:
            archive_entity(conn, "northwind")
        (tmp_path / "dagster").mkdir()
        with dg.DagsterInstance.local_temp(str(tmp_path / "dagster")) as instance:
            ensure_entity_partitions(instance, ["northwind"])  # the schedule's own step before it requests a run
            failed = resolved_close_job().execute_in_process(
                instance=instance, tags=close_run_tags(entity_id, "northwind", day, day), raise_on_error=False)
            assert not failed.success
            assert webhook.state.received == []  # a run the daemon launched does not alert by itself
            [failure] = instance.all_logs(failed.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
            with dg.build_run_status_sensor_context(
                    sensor_name="close_failure_sensor", dagster_event=failure.dagster_event, dagster_instance=instance,
                    dagster_run=instance.get_run_by_id(failed.run_id),
                    resources={"warehouse": WarehouseResource(database_url=database_url)}) as context:
                close_failure_sensor(context.for_run_failure())
    finally:
        webhook.stop()
        get_settings.cache_clear()
    with engine.connect() as conn:
        close = conn.execute(sa.text("SELECT status, message, run_id FROM closes WHERE entity_id = :e AND date = :d"),
                             dict(e=entity_id, d=day)).one()
    assert (close.status, close.run_id) == ("failed", failed.run_id)
    assert "archived" in close.message, close.message
    texts = [p["text"] for p in webhook.state.received]
    assert len(texts) == 1 and failed.run_id in texts[0] and "northwind" in texts[0], texts

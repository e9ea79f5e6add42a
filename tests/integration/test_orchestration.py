"""The Dagster side of the spine: definitions, the schedule, the inbox sensor, the lock, and the
deployment's dagster.yaml, against real PostgreSQL."""

from __future__ import annotations

import os
import textwrap
from datetime import date
from decimal import Decimal
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
import yaml
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from assets.partitions import close_partitions
from assets.resources import ENTITIES_TAG, ENTITY_NAMES_TAG, WarehouseResource
from orchestration.cli import app
from orchestration.close_runner import close_days
from orchestration.definitions import defs, inbox_sensor
from tests.support.dagster_home import deployment_dagster_home
from warehouse.entities import create_entity
from warehouse.settings import get_settings

ROOT = Path(__file__).resolve().parents[2]
LEDGER_HEADER = "id,timestamp,action,asset,quantity,unit_price_usd,fee_asset,fee_amount,quote_asset,quote_quantity,account,tx_hash,external_id,notes"


def test_definitions_snapshot():
    """Every asset, check, partitions definition, job, schedule and sensor of the code location, as it is."""
    graph = defs.resolve_asset_graph()
    assets = {key.to_user_string(): graph.get(key) for key in graph.get_all_asset_keys()}
    assert {name: node.group_name for name, node in assets.items()} == {
        "raw_records": "staging", "raw_balance_snapshots": "staging", "source_sync": "staging",
        "canonical_ledger": "canonical", "close_prices": "prices", "reconciliation": "reconciliation",
        "cost_basis_pnl": "pnl", "daily_close": "close"}
    partitioned = {name for name, node in assets.items() if node.partitions_def is not None}
    assert partitioned == {"canonical_ledger", "close_prices", "reconciliation", "cost_basis_pnl", "daily_close"}
    for name in partitioned:
        assert assets[name].partitions_def == close_partitions, name
        assert assets[name].backfill_policy == dg.BackfillPolicy.single_run(), name
    # day x entity: daily from the Bitcoin genesis block, entities as dynamic partitions named "entity"
    dims = {d.name: d.partitions_def for d in close_partitions.partitions_defs}
    assert list(dims) == ["date", "entity"]
    assert dims["date"] == dg.DailyPartitionsDefinition(start_date="2009-01-03", timezone="UTC")
    assert dims["entity"] == dg.DynamicPartitionsDefinition(name="entity")
    assert str(dg.MultiPartitionKey({"date": "2026-01-05", "entity": "acme"})) == "2026-01-05|acme"

    checks = {(key.asset_key.to_user_string(), key.name): graph.get(key) for key in graph.asset_check_keys}
    assert sorted(checks) == [("canonical_ledger", "canonical_expectations"), ("canonical_ledger", "staging_expectations"),
                              ("reconciliation", "completeness")]
    for key, node in checks.items():
        assert node.partitions_def == close_partitions, key
    assert {key: node.blocking for key, node in checks.items()} == {
        ("canonical_ledger", "canonical_expectations"): True, ("canonical_ledger", "staging_expectations"): True,
        ("reconciliation", "completeness"): False}

    jobs = {job.name: job for job in defs.resolve_all_job_defs()}
    assert set(jobs) == {"daily_close_job", "daily_close_celery_job", "__ASSET_JOB"}
    close_job = jobs["daily_close_job"]
    assert close_job.partitions_def == close_partitions
    assert {key.to_user_string() for key in close_job.asset_layer.selected_asset_keys} == partitioned | {"source_sync"}
    assert set(close_job.asset_layer.asset_graph.asset_check_keys) == set(graph.asset_check_keys)
    assert jobs["daily_close_celery_job"].partitions_def == close_partitions
    # retries with exponential backoff and jitter on the steps that call the outside world, and only there
    retry = dg.RetryPolicy(max_retries=3, delay=5, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)
    assert {name: defs.resolve_assets_def(name).op.retry_policy for name in partitioned} == {
        "canonical_ledger": None, "close_prices": retry, "reconciliation": None, "cost_basis_pnl": None,
        "daily_close": None}
    sync_ops = defs.resolve_assets_def("source_sync").node_def.node_defs
    assert {op.name: op.retry_policy for op in sync_ops} == {
        **{f"sync_{kind}_sources": retry for kind in ("binance", "kraken", "ccxt", "fireblocks")},
        "sync_chain_wallets": retry, "report_source_sync": None}

    schedules = {s.name: s for s in defs.schedules}
    assert set(schedules) == {"daily_close_schedule"}
    schedule = defs.resolve_schedule_def("daily_close_schedule")
    assert (schedule.cron_schedule, schedule.execution_timezone, schedule.job_name) == ("0 1 * * *", "UTC", "daily_close_job")
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    sensors = {s.name: s for s in defs.sensors}
    assert set(sensors) == {"inbox_sensor", "entity_partitions_sensor", "close_alert_sensor", "close_failure_sensor",
                            "chain_reorg_sensor"}
    assert all(s.default_status == dg.DefaultSensorStatus.RUNNING for s in sensors.values())
    for name in ("inbox_sensor", "chain_reorg_sensor"):
        assert sensors[name].job_name == "daily_close_job", name
    for name in ("close_alert_sensor", "close_failure_sensor"):
        assert {j.name for j in sensors[name]._monitored_jobs} == {"daily_close_job", "daily_close_celery_job"}  # noqa: SLF001
    assert sensors["close_alert_sensor"]._run_status == dg.DagsterRunStatus.SUCCESS  # noqa: SLF001


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


@pytest.fixture()
def inbox(tmp_path, monkeypatch):
    monkeypatch.setenv("COINFRS_INBOX_DIR", str(tmp_path / "inbox"))
    get_settings.cache_clear()
    yield tmp_path / "inbox"
    get_settings.cache_clear()


def test_inbox_sensor_imports_dropped_files_and_requests_the_days_they_touch(engine, database_url, inbox):
    with engine.begin() as conn:  # the inbox imports into existing entities only
        create_entity(conn, "acme")
    good = _write(inbox / "acme" / "ledger" / "january.csv", f"""
        {LEDGER_HEADER}
        t1,2026-01-03T10:00:00Z,BUY,BTC,0.5,40000,,,,,Kraken,,,
        t2,2026-01-05T10:00:00Z,SELL,BTC,0.25,42000,,,,,Kraken,,,
        """)
    bad = _write(inbox / "acme" / "balances" / "broken.csv", """
        timestamp,account,asset,quantity
        2026-01-04T00:00:00Z,Kraken,BTC,not-a-number
        """)
    # the warehouse resource holds the close lock in runs, so Dagster wants its context opened as a context manager
    with dg.build_sensor_context(instance=dg.DagsterInstance.ephemeral(),
                                 resources={"warehouse": WarehouseResource(database_url=database_url)}) as context:
        requests = inbox_sensor(context)
        # nothing new in the inbox: the sensor skips and says why
        assert isinstance(inbox_sensor(context), dg.SkipReason)
        assert context.instance.get_dynamic_partitions("entity") == ["acme"]  # the entity's row in the UI
    assert len(requests) == 1
    tags = requests[0].tags
    assert requests[0].job_name in (None, "daily_close_job")
    assert (tags[ASSET_PARTITION_RANGE_START_TAG], tags[ASSET_PARTITION_RANGE_END_TAG]) == ("2026-01-03|acme", "2026-01-05|acme")
    assert tags[ENTITY_NAMES_TAG] == "acme"
    with engine.connect() as conn:
        entity_id = conn.execute(sa.text("SELECT id FROM entities WHERE name = 'acme'")).scalar_one()
        staged = conn.execute(sa.text("SELECT count(*) FROM raw_records WHERE entity_id = :e"), dict(e=entity_id)).scalar_one()
        balances = conn.execute(sa.text("SELECT count(*) FROM raw_balance_snapshots")).scalar_one()
    assert tags[ENTITIES_TAG] == str(entity_id)
    assert (staged, balances) == (2, 0)
    assert not good.exists() and (good.parent / "processed" / "january.csv").exists()
    errors = (bad.parent / "failed" / "broken.csv.errors.txt").read_text()
    assert "line 2" in errors and "quantity" in errors


def _cli(*args: str):
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def test_lock_is_refused_with_open_breaks_and_a_locked_day_never_changes(engine, tmp_path):
    ledger = _write(tmp_path / "ledger.csv", f"""
        {LEDGER_HEADER}
        a1,2026-01-02T09:00:00Z,BUY,ETH,2,3000,,,,,Vault,,,
        a2,2026-01-03T09:00:00Z,SELL,ETH,1,3100,,,,,Vault,,,
        """)
    balances = _write(tmp_path / "balances.csv", """
        timestamp,account,asset,quantity
        2026-01-02T00:00:00Z,Vault,ETH,0
        2026-01-03T00:00:00Z,Vault,ETH,2
        2026-01-04T00:00:00Z,Vault,ETH,1.5
        """)
    assert _cli("import-csv", "--entity", "lockco", "--create", "--kind", "ledger", str(ledger))[0] == 0
    assert _cli("import-csv", "--entity", "lockco", "--kind", "balances", str(balances))[0] == 0
    run = close_days(["lockco"], date(2026, 1, 1), date(2026, 1, 3), instance=dg.DagsterInstance.ephemeral())
    assert run.success, run.error

    code, output = _cli("close", "lock", "--entity", "lockco", "--date", "2026-01-03")
    assert code == 1 and "open break" in output  # reported 1.5, the legs say 1
    code, output = _cli("close", "lock", "--entity", "lockco", "--date", "2026-01-02")
    assert code == 0, output

    def day_rows(conn):
        return {t: conn.execute(sa.text(f"SELECT * FROM {t} WHERE {c} = '2026-01-02' ORDER BY 1, 2, 3")).all()
                for t, c in (("transactions", "close_date"), ("positions", "date"), ("pnl_daily", "date"),
                             ("pnl_disposals", "date"), ("closes", "date"))}

    with engine.connect() as conn:
        before = day_rows(conn)
    # a late record for the locked day, then the whole range closed again
    late = _write(tmp_path / "late.csv", f"""
        {LEDGER_HEADER}
        a3,2026-01-02T18:00:00Z,INCOME,ETH,0.5,3050,,,,,Vault,,,
        """)
    assert _cli("import-csv", "--entity", "lockco", "--kind", "ledger", str(late))[0] == 0
    run = close_days(["lockco"], date(2026, 1, 1), date(2026, 1, 3), instance=dg.DagsterInstance.ephemeral())
    assert run.success, run.error
    with engine.connect() as conn:
        assert day_rows(conn) == before
        adjustment = conn.execute(sa.text(
            "SELECT close_date, quantity FROM transactions WHERE is_adjustment")).one()
        assert adjustment == (date(2026, 1, 3), Decimal("0.5"))
        with pytest.raises(sa.exc.DBAPIError, match="locked"):
            conn.execute(sa.text("DELETE FROM positions WHERE date = '2026-01-02'"))


def test_the_deployment_dagster_yaml_runs_on_real_postgresql(database_url, tmp_path, monkeypatch):
    """deploy/dagster.yaml (docker compose) loads and its storage, coordinator and launcher work."""
    url = make_url(database_url)
    name = f"{url.database}_deploy"  # not <db>_dagster: the CLI instance's own storage (orchestration/instance.py)
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        home = deployment_dagster_home(url, name, tmp_path, monkeypatch)
        from dagster._core.instance.ref import InstanceRef

        with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
            assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
            assert type(instance.run_launcher).__name__ == "MonitoredRunLauncher"
            # run monitoring and run retries (a dead run is failed, then retried; step errors are not run retries)
            assert instance.run_monitoring_enabled
            assert (instance.run_monitoring_start_timeout_seconds, instance.run_monitoring_max_runtime_seconds,
                    instance.run_monitoring_max_resume_run_attempts) == (180, 21600, 0)
            assert (instance.run_retries_enabled, instance.run_retries_max_retries) == (True, 2)
            assert not instance.run_retries_retry_on_asset_or_op_failure
            limits = instance.run_coordinator.get_run_queue_config().tag_concurrency_limits
            assert limits == [{"key": "coinfrs/entities", "value": {"applyLimitPerUniqueValue": True}, "limit": 1}]
            result = dg.materialize([_probe], instance=instance)
            assert result.success
            assert instance.get_runs_count() == 1
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@dg.asset
def _probe() -> int:
    return 1


def test_docker_compose_names_only_commands_and_files_that_exist():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"postgres", "dagster-webserver", "dagster-daemon", "api", "code-location", "migrate"} <= set(services)
    cli_commands = {c.name or c.callback.__name__ for c in app.registered_commands} | {g.name for g in app.registered_groups}
    for name, service in services.items():
        command = service.get("command") or []
        if command[:1] == ["coinfrs"]:
            assert command[1] in cli_commands, f"{name}: coinfrs {command[1]} does not exist"
        if "-m" in command:
            module = command[command.index("-m") + 1]
            assert (ROOT / (module.replace(".", "/") + ".py")).exists(), f"{name}: module {module} is missing"
        if "-w" in command:
            assert (ROOT / command[command.index("-w") + 1]).exists(), f"{name}: workspace file missing"
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "requirements.lock" in dockerfile and "deploy/dagster.yaml" in dockerfile


def test_the_command_line_ends_every_error_in_one_line_without_a_traceback(database_url, tmp_path):
    import subprocess
    import sys

    env = {**os.environ, "DATABASE_URL": database_url, "COINFRS_DATA_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    for args, expected in (
            (["close", "--entity", "no-such-fund", "--date", "2026-01-05"], "no entity named or numbered 'no-such-fund'"),
            (["close", "list", "--entity", "no-such-fund", "--from", "2026-01-01", "--to", "2026-01-02", "--json"],
             "no entity named or numbered")):
        done = subprocess.run([sys.executable, "-m", "orchestration.cli", *args], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 1, done
        assert expected in done.stdout + done.stderr and "Traceback" not in done.stdout + done.stderr, done
    down = {**env, "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/nothing"}
    done = subprocess.run([sys.executable, "-m", "orchestration.cli", "entity", "list"], cwd=ROOT, env=down,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "the database is not available" in done.stdout + done.stderr, done
    assert "Traceback" not in done.stdout + done.stderr


def test_the_command_line_names_a_database_without_the_schema_and_how_to_migrate_it(database_url, tmp_path):
    import subprocess
    import sys
    import uuid

    from warehouse.db import get_owner_engine

    name = f"coinfrs_empty_{uuid.uuid4().hex[:8]}"
    owner = get_owner_engine(database_url).execution_options(isolation_level="AUTOCOMMIT")
    with owner.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        empty = make_url(database_url).set(database=name).render_as_string(hide_password=False)
        env = {**os.environ, "DATABASE_URL": empty, "COINFRS_DATA_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
        done = subprocess.run([sys.executable, "-m", "orchestration.cli", "entity", "list"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120)
        said = done.stdout + done.stderr
        assert done.returncode == 1, done
        assert "has no Coinfrs schema" in said and "coinfrs db upgrade" in said and "Traceback" not in said, done
    finally:
        with owner.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

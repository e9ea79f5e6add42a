"""The CLI's Dagster instance (orchestration/instance.py, issue 17 item 5): its storage is PostgreSQL, in a database
of its own beside the warehouse (``<warehouse>_dagster``), a close through the CLI records its run and events there
(none in the warehouse), an earlier SQLite default is replaced, and a backup dumps that database."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from orchestration.cli import app
from orchestration.instance import LOCAL_DAGSTER_YAML, cli_instance, dagster_home, dispose_cli_instances
from tests.integration.test_close_e2e import import_sample
from warehouse.db import DAGSTER_STORAGE_ENV


@pytest.fixture()
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    monkeypatch.delenv(DAGSTER_STORAGE_ENV, raising=False)
    yield tmp_path / "dagster_home"
    dispose_cli_instances()


def _tables(url: str) -> set[str]:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_the_cli_instance_keeps_its_storage_in_a_postgresql_database_of_its_own(engine, database_url, home):
    instance = cli_instance()
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
    storage = make_url(instance.event_log_storage.postgres_url)
    warehouse = make_url(database_url)
    assert storage.database == f"{warehouse.database}_dagster" and storage.drivername == "postgresql+psycopg2"
    assert (storage.host, storage.port, storage.query) == (warehouse.host, warehouse.port, warehouse.query)
    assert cli_instance() is instance  # one per home and storage in a process
    assert (home / "dagster.yaml").read_text() == LOCAL_DAGSTER_YAML

    import_sample(engine)
    before = {r.run_id for r in instance.get_runs()}  # the session's other tests close through this storage too
    result = CliRunner().invoke(app, ["close", "--entity", "northwind", "--from", "2026-01-01", "--to", "2026-01-02"])
    assert result.exit_code == 0, result.output
    [run] = [r for r in instance.get_runs() if r.run_id not in before]
    assert run.run_id in " ".join(result.output.split())
    assert instance.get_run_by_id(run.run_id).is_success
    dagster_url = storage.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    with sa.create_engine(dagster_url, poolclass=sa.pool.NullPool).connect() as conn:
        events = conn.execute(sa.text("SELECT dagster_event_type, count(*) FROM event_logs WHERE run_id = :r "
                                      "GROUP BY 1"), dict(r=run.run_id)).all()
    counts = dict(events)
    assert counts["ASSET_MATERIALIZATION"] >= 2 * 5 and counts["ASSET_CHECK_EVALUATION"] >= 2
    assert not {"runs", "event_logs", "asset_keys"} & _tables(database_url)  # nothing of Dagster's in the warehouse


def test_a_former_sqlite_default_is_replaced_and_an_edited_yaml_kept(database_url, home, monkeypatch):
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\nnux:\n  enabled: false\n")  # before PostgreSQL
    dagster_home()
    assert (home / "dagster.yaml").read_text() == LOCAL_DAGSTER_YAML

    own = "telemetry:\n  enabled: false\n"  # someone's own choice (SQLite): left alone, no variable set
    (home / "dagster.yaml").write_text(own)
    monkeypatch.delenv(DAGSTER_STORAGE_ENV)
    dagster_home()
    assert (home / "dagster.yaml").read_text() == own
    assert type(cli_instance().event_log_storage).__name__ == "SqliteEventLogStorage"


def test_a_backup_of_the_cli_instance_dumps_its_dagster_database(engine, database_url, home, tmp_path):
    from warehouse.backup import create_backup

    cli_instance()  # the storage's tables exist
    manifest = create_backup(tmp_path / "backup", dagster_home=dagster_home())
    assert sorted(manifest["files"]) == ["dagster.dump", "warehouse.dump"]
    assert manifest["dagster"] == {"storage": "postgres", "database": f"{make_url(database_url).database}_dagster"}
    assert json.loads((tmp_path / "backup" / "manifest.json").read_text())["dagster"]["storage"] == "postgres"

"""One writer per entity (issue 13): two closes of one entity from two processes, a close refused while another
runs, an import during a close, and the database refusing a second copy of a disposal. Real processes running the
real `coinfrs close` against real PostgreSQL; the final tables are compared with one serial close."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from ingestion.csv_files import CsvFile, import_csv
from orchestration.close_runner import close_days
from tests.integration.test_close_e2e import SAMPLE, content_digest
from warehouse.entities import get_or_create_entity
from warehouse.locks import APPLICATION_PREFIX, EntityBusyError, entity_close_lock, lock_holder
from tests.conftest import truncate_all

ROOT = Path(__file__).resolve().parents[2]
FIRST, LAST = date(2026, 1, 1), date(2026, 1, 20)
LATE_ROW = ("id,timestamp,action,asset,quantity,unit_price_usd,fee_asset,fee_amount,quote_asset,quote_quantity,account,"
            "tx_hash,external_id,notes\n"
            "late-1,2026-01-05T12:00:00Z,BUY,BTC,0.01,40000,,,USD,400,Coinbase Prime,,late-1,arrived during a close\n")


def _reset(engine: sa.Engine) -> int:
    truncate_all(engine.url.render_as_string(hide_password=False))  # as the owner: the application may not TRUNCATE
    with engine.begin() as conn:
        entity = get_or_create_entity(conn, "northwind")
        import_csv(conn, entity.id, "ledger", CsvFile.from_path(SAMPLE / "ledger.csv"))
        import_csv(conn, entity.id, "balances", CsvFile.from_path(SAMPLE / "balances.csv"))
    return entity.id


def _import_late_row(engine: sa.Engine, entity_id: int, tmp_path: Path) -> None:
    path = tmp_path / "late.csv"
    path.write_text(LATE_ROW, encoding="utf-8")
    with engine.begin() as conn:
        import_csv(conn, entity_id, "ledger", CsvFile.from_path(path))


def _digest(engine: sa.Engine) -> dict[str, str]:
    with engine.connect() as conn:
        return content_digest(conn)


def _cli_close(database_url: str, data_dir: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "DATABASE_URL": database_url, "COINFRS_DATA_DIR": str(data_dir),
           "PYTHONPATH": str(ROOT), "GX_ANALYTICS_ENABLED": "false", "DAGSTER_DISABLE_TELEMETRY": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "orchestration.cli", "close", "--entity", "northwind", "--from", FIRST.isoformat(),
         "--to", LAST.isoformat(), *extra], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True)


def _waiting_closes(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name LIKE :a"),
            dict(a=f"{APPLICATION_PREFIX}: Dagster run%")).scalar_one()


@pytest.fixture(scope="module")
def serial_digest(database_url: str) -> dict[str, str]:
    """The tables after one clean serial close of the range: what every concurrent scenario must end in."""
    from warehouse.db import get_engine

    engine = get_engine(database_url)
    _reset(engine)
    run = close_days(["northwind"], FIRST, LAST, instance=dg.DagsterInstance.ephemeral())
    assert run.success, run.error
    return _digest(engine)


def test_two_closes_of_one_entity_from_two_processes_end_as_one_serial_close(database_url, serial_digest, tmp_path):
    from warehouse.db import get_engine

    engine = get_engine(database_url)
    entity_id = _reset(engine)
    # hold the entity so both processes are queued before either may start, then let them race
    with entity_close_lock(engine, [(entity_id, "northwind")], label="test gate", wait=False):
        first = _cli_close(database_url, tmp_path / "a", "--wait")
        second = _cli_close(database_url, tmp_path / "b", "--wait")
        deadline = time.monotonic() + 120
        while _waiting_closes(engine) < 2:
            assert first.poll() is None and second.poll() is None, (first.stdout.read() if first.poll() is not None
                                                                    else second.stdout.read())
            assert time.monotonic() < deadline, "the two closes never reached the lock"
            time.sleep(0.2)
    outputs = [p.communicate(timeout=600)[0] for p in (first, second)]
    assert [p.returncode for p in (first, second)] == [0, 0], outputs
    assert _digest(engine) == serial_digest
    with engine.connect() as conn:
        duplicates = conn.execute(sa.text(
            "SELECT count(*) FROM (SELECT 1 FROM pnl_disposals GROUP BY entity_id, method, pool, leg_id"
            " HAVING count(*) > 1) d")).scalar_one()
    assert duplicates == 0


def test_a_second_close_is_refused_with_a_message_naming_the_running_one_and_writes_nothing(
        database_url, serial_digest, tmp_path):
    from warehouse.db import get_engine

    engine = get_engine(database_url)
    entity_id = _reset(engine)
    with entity_close_lock(engine, [(entity_id, "northwind")], label="nightly close of northwind", wait=False):
        with engine.connect() as conn:
            holder = lock_holder(conn, entity_id)
        assert holder is not None and "nightly close of northwind" in holder.application
        refused = _cli_close(database_url, tmp_path / "c")
        output = refused.communicate(timeout=300)[0]
        with pytest.raises(EntityBusyError, match="northwind is being closed by nightly close of northwind"):
            close_days(["northwind"], FIRST, LAST, instance=dg.DagsterInstance.ephemeral())
    assert refused.returncode == 1, output
    assert "northwind is being closed by nightly close of northwind" in output, output
    assert "--wait" in output and "Traceback" not in output, output
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM closes")).scalar_one() == 0  # no day marked failed
    # the entity is free again: the close runs
    run = close_days(["northwind"], FIRST, LAST, instance=dg.DagsterInstance.ephemeral())
    assert run.success, run.error
    assert _digest(engine) == serial_digest


def test_an_import_during_a_close_is_booked_by_the_next_close_as_if_imported_first(database_url, tmp_path):
    from warehouse.db import get_engine

    engine = get_engine(database_url)
    entity_id = _reset(engine)
    _import_late_row(engine, entity_id, tmp_path)
    assert close_days(["northwind"], FIRST, LAST, instance=dg.DagsterInstance.ephemeral()).success
    expected = _digest(engine)

    entity_id = _reset(engine)
    with entity_close_lock(engine, [(entity_id, "northwind")], label="test gate", wait=False):
        running = _cli_close(database_url, tmp_path / "d", "--wait")
        deadline = time.monotonic() + 120
        while _waiting_closes(engine) < 1:
            assert running.poll() is None, running.stdout.read()
            assert time.monotonic() < deadline
            time.sleep(0.2)
    time.sleep(1.0)  # the close is running its steps now
    _import_late_row(engine, entity_id, tmp_path)  # the import does not wait for the close
    output = running.communicate(timeout=600)[0]
    assert running.returncode == 0, output
    assert close_days(["northwind"], FIRST, LAST, instance=dg.DagsterInstance.ephemeral()).success
    assert _digest(engine) == expected


def test_the_database_refuses_a_second_copy_of_a_disposal(database_url, serial_digest):
    from warehouse.db import get_engine

    engine = get_engine(database_url)
    with engine.connect() as conn:
        count = conn.execute(sa.text("SELECT count(*) FROM pnl_disposals")).scalar_one()
    if count == 0:  # another test of the module may have left the tables empty
        _reset(engine)
        assert close_days(["northwind"], FIRST, LAST, instance=dg.DagsterInstance.ephemeral()).success
    with pytest.raises(sa.exc.IntegrityError, match="uq_pnl_disposals_book_leg"):
        with engine.begin() as conn:
            conn.execute(sa.text(
                "INSERT INTO pnl_disposals (entity_id, method, pool, date, ts, leg_id, account_id, asset_id, kind,"
                " quantity, proceeds, cost_basis, realized_gain, short_term_gain, long_term_gain, shortfall_quantity)"
                " SELECT entity_id, method, pool, date, ts, leg_id, account_id, asset_id, kind, quantity, proceeds,"
                " cost_basis, realized_gain, short_term_gain, long_term_gain, shortfall_quantity FROM pnl_disposals"
                " ORDER BY id LIMIT 1"))

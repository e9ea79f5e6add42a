"""The close on real Celery workers (issue 17, item 4): a real Redis broker started by the test, two real
`coinfrs worker start` processes, one run per entity submitted together. Every step runs in a worker process (not
the test's), both workers take steps, and the books equal those of one in-process close of the same entities."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from dagster._core.storage.tags import ASSET_PARTITION_RANGE_START_TAG

from orchestration.close_runner import close_days
from orchestration.distributed import run_entity_closes
from reconciliation.staleness import close_starts, mark_stale
from tests.conftest import truncate_all
from tests.integration.test_close_e2e import import_sample
from warehouse.entities import resolve_entity
from warehouse.settings import get_settings

ROOT = Path(__file__).resolve().parents[2]
FIRST, LAST = date(2026, 1, 1), date(2026, 1, 5)
ENTITIES = ("northwind", "southwind")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory):
    """A real Redis server of the test's own, on a free port (no persistence)."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed: .ci/run installs Debian's redis-server")
    port = _free_port()
    workdir = tmp_path_factory.mktemp("redis")
    process = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                                "--dir", str(workdir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}"
    process.terminate()
    process.wait(timeout=10)


def _reset(engine: sa.Engine, database_url: str) -> None:
    truncate_all(database_url)  # as the owner: the application's role may not TRUNCATE (migration 0026)
    for name in ENTITIES:
        import_sample(engine, name)


# what each entity's books hold, by natural keys (account and asset ids depend on which run created them first)
BOOKS = {
    "closes": "SELECT c.entity_id, c.date, c.status, c.legs, c.positions, c.breaks, c.unmatched_transfers, "
              "c.realized_gain_universal, c.realized_gain_account, c.unrealized_gain_universal FROM closes c",
    "legs": "SELECT a.entity_id, a.name, s.symbol, t.ts, t.close_date, t.quantity, t.kind, t.usd_value, t.tx_hash "
            "FROM transactions t JOIN accounts a ON a.id = t.account_id JOIN assets s ON s.id = t.asset_id",
    "positions": "SELECT a.entity_id, a.name, s.symbol, p.date, p.computed_quantity, p.reported_quantity "
                 "FROM positions p JOIN accounts a ON a.id = p.account_id JOIN assets s ON s.id = p.asset_id",
    "disposals": "SELECT a.entity_id, a.name, s.symbol, d.method, d.pool, d.date, d.ts, d.kind, d.quantity, "
                 "d.proceeds, d.cost_basis, d.realized_gain FROM pnl_disposals d "
                 "JOIN accounts a ON a.id = d.account_id JOIN assets s ON s.id = d.asset_id",
}


def _books(engine: sa.Engine) -> dict[str, list]:
    with engine.connect() as conn:
        return {name: sorted(conn.execute(sa.text(query)).all()) for name, query in BOOKS.items()}


def _start_worker(name: str, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "orchestration.cli", "worker", "start", "--name", name],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def _wait_for_workers(broker: str, names: list[str], timeout: float = 60) -> None:
    from celery import Celery

    app = Celery(broker=broker)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        replies = app.control.ping(timeout=1.0) or []
        seen = {host.split("@")[0] for reply in replies for host in reply}
        if set(names) <= seen:
            return
    raise AssertionError(f"workers {names} did not answer a ping within {timeout} s")


def test_multi_entity_close_runs_on_celery_workers(database_url: str, redis_url: str, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from warehouse.db import get_engine

    engine = get_engine(database_url)
    _reset(engine, database_url)
    in_process = close_days(list(ENTITIES), FIRST, LAST, instance=dg.DagsterInstance.ephemeral())
    assert in_process.success, in_process.error
    expected = _books(engine)
    assert expected["disposals"] and expected["legs"], "the sample closes with legs and disposals"

    _reset(engine, database_url)
    broker, backend = f"{redis_url}/0", f"{redis_url}/1"
    monkeypatch.setenv("COINFRS_CELERY_BROKER_URL", broker)
    monkeypatch.setenv("COINFRS_CELERY_BACKEND_URL", backend)
    get_settings.cache_clear()
    env = {**os.environ, "DATABASE_URL": database_url, "COINFRS_DATA_DIR": str(tmp_path / "data"),
           "PYTHONPATH": str(ROOT), "GX_ANALYTICS_ENABLED": "false", "DAGSTER_DISABLE_TELEMETRY": "1"}
    workers = [_start_worker(name, env) for name in ("w1", "w2")]
    try:
        _wait_for_workers(broker, ["w1", "w2"])
        (tmp_path / "dagster").mkdir()
        with dg.DagsterInstance.local_temp(str(tmp_path / "dagster")) as instance:
            with engine.connect() as conn:
                entities = [(e.id, e.name) for e in (resolve_entity(conn, n) for n in ENTITIES)]
            runs = run_entity_closes(entities, FIRST, LAST, instance=instance)
            assert [(r.entity, r.success, r.error) for r in runs] == [(n, True, None) for n in ENTITIES]
            step_pids = set()
            for run in runs:
                starts = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_START)
                assert starts, f"run {run.run_id} started no step"
                step_pids |= {record.dagster_event.pid for record in starts}
                assert instance.get_run_by_id(run.run_id).job_name == "daily_close_celery_job"
            assert os.getpid() not in step_pids  # every step ran in a worker, not here
            assert len(step_pids) >= 2, f"the steps ran in one process only: {step_pids}"
            assert _books(engine) == expected

            # `coinfrs worker close` closes each entity from its own earliest stale day: a late change makes
            # southwind stale from the 2nd; closing the 4th..5th recomputes southwind from the 2nd, northwind from
            # the 4th only (before, every entity started from the earliest stale day of any of them)
            north, south = (entity_id for entity_id, _ in entities)
            with engine.begin() as conn:
                mark_stale(conn, south, date(2026, 1, 2), "a late row (test)")
            with engine.connect() as conn:
                first_days = close_starts(conn, [north, south], date(2026, 1, 4), LAST)
            assert first_days == {north: date(2026, 1, 4), south: date(2026, 1, 2)}
            again = run_entity_closes(entities, date(2026, 1, 4), LAST, instance=instance, starts=first_days)
            assert [(r.entity, r.success, r.error) for r in again] == [(n, True, None) for n in ENTITIES]
            ranges = {instance.get_run_by_id(r.run_id).tags[ASSET_PARTITION_RANGE_START_TAG] for r in again}
            assert ranges == {"2026-01-04|northwind", "2026-01-02|southwind"}
    finally:
        outputs = []
        for worker in workers:
            os.killpg(worker.pid, signal.SIGTERM)  # Celery's warm shutdown: the worker finishes its task and exits
        for worker in workers:
            out, _ = worker.communicate(timeout=60)
            outputs.append(out)
        get_settings.cache_clear()
    assert all(w.returncode == 0 for w in workers), outputs
    assert _books(engine) == expected
    with engine.connect() as conn:
        closed = conn.execute(sa.text(
            "SELECT count(*) FROM closes WHERE date BETWEEN :f AND :l AND status NOT IN ('failed', 'stale')"),
            dict(f=FIRST, l=LAST)).scalar_one()
    assert closed == len(ENTITIES) * ((LAST - FIRST).days + 1)

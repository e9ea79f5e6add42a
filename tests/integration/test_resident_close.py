"""The resident close process (orchestration/resident.py): `coinfrs close` forked from a process with Dagster and
Great Expectations imported behaves as a new process would: the client's environment (its database, its Dagster
home), its output on the client's own stdout/stderr, its exit code; other commands and `COINFRS_RESIDENT=0` run
in-process; `stop` ends it."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from tests.integration.test_close_e2e import import_sample

ROOT = Path(__file__).resolve().parents[2]
COINFRS = [sys.executable, "-c", "from orchestration.resident import main; main()"]  # the console script's entry


def _run(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*COINFRS, *args], env=env, capture_output=True, text=True, cwd=ROOT, timeout=600)


def test_a_close_through_the_resident_process_is_the_cli_in_a_process_of_its_own(engine, database_url, tmp_path):
    import_sample(engine)
    env = {k: v for k, v in os.environ.items() if k != "COINFRS_DAGSTER_STORAGE_URL"}
    env.update(DATABASE_URL=database_url, COINFRS_DATA_DIR=str(tmp_path / "data"), DAGSTER_HOME=str(tmp_path / "dh"),
               COINFRS_RESIDENT="1")
    assert _run(env, "resident", "status").returncode == 1
    started = _run(env, "resident", "start", "--json")
    assert started.returncode == 0, started.stderr
    resident = json.loads(started.stdout)
    try:
        assert _run(env, "resident", "status").returncode == 0

        done = _run(env, "close", "--entity", "northwind", "--from", "2026-01-01", "--to", "2026-01-01")
        assert done.returncode == 0, done.stderr
        assert "2026-01-01" in done.stdout and "closed" in done.stdout  # the table, on the client's own stdout
        assert "Dagster run" in done.stderr
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT status FROM closes")).scalars().all() == ["closed"]
        run_id = re.search(r"Dagster run ([0-9a-f-]{36})", " ".join(done.stderr.split())).group(1)
        dagster_url = make_url(database_url).set(database=f"{engine.url.database}_dagster")  # same server (or socket)
        dagster_db = sa.create_engine(dagster_url.render_as_string(hide_password=False), poolclass=sa.pool.NullPool)
        with dagster_db.connect() as conn:  # the client's storage (the session's other tests write there too)
            assert conn.execute(sa.text("SELECT status FROM runs WHERE run_id = :r"), dict(r=run_id)).scalar_one() == "SUCCESS"
        dagster_db.dispose()

        failed = _run(env, "close", "--entity", "nobody", "--date", "2026-01-01")
        assert failed.returncode == 1 and "nobody" in failed.stderr and "Traceback" not in failed.stderr

        log = (tmp_path / "data" / "resident.log").read_text()
        assert log.count("ready on") == 1 and "Traceback" not in log
    finally:
        stopped = _run(env, "resident", "stop")
    assert stopped.returncode == 0 and "stopped" in stopped.stderr
    assert _run(env, "resident", "status").returncode == 1
    assert not Path(resident["socket"]).exists()


def test_a_resident_process_whose_code_changed_stops_and_the_close_runs_in_process(database_url, tmp_path):
    env = dict(os.environ, DATABASE_URL=database_url, COINFRS_DATA_DIR=str(tmp_path / "data"),
               DAGSTER_HOME=str(tmp_path / "dh"))
    assert _run(env, "resident", "start", "--idle-minutes", "5").returncode == 0
    try:
        loaded = ROOT / "orchestration" / "instance.py"
        os.utime(loaded)  # as a `git pull` would: the module it loaded is not the one on disk any more
        failed = _run(env, "close", "--entity", "nobody", "--date", "2026-01-01")
        assert failed.returncode == 1 and "nobody" in failed.stderr  # answered in-process
        assert "code changed since start: stopping" in (tmp_path / "data" / "resident.log").read_text()
        assert _run(env, "resident", "status").returncode == 1
    finally:
        _run(env, "resident", "stop")


def test_stop_removes_the_socket_of_a_resident_process_that_was_killed(database_url, tmp_path):
    """kill -9 leaves the socket file (the process could not remove it): `resident stop` says none was running and
    removes it; `status` then says none runs."""
    env = dict(os.environ, DATABASE_URL=database_url, COINFRS_DATA_DIR=str(tmp_path / "data"),
               DAGSTER_HOME=str(tmp_path / "dh"))
    started = _run(env, "resident", "start", "--json")
    assert started.returncode == 0, started.stderr
    resident = json.loads(started.stdout)
    os.kill(resident["pid"], signal.SIGKILL)
    socket_file = Path(resident["socket"])
    deadline = time.monotonic() + 10
    while _run(env, "resident", "status").returncode == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert socket_file.exists()
    stopped = _run(env, "resident", "stop")
    assert stopped.returncode == 0 and "no resident close process was running" in stopped.stderr
    assert not socket_file.exists()
    assert _run(env, "resident", "status").returncode == 1

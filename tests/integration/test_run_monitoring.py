"""Run monitoring with the deployment's run launcher (orchestration/run_launcher.py, deploy/dagster.yaml), all parts
real: `dagster api grpc` code servers in subprocesses (what docker-compose.yml's code-location runs), the instance of
deploy/dagster.yaml on PostgreSQL, and Dagster's own monitoring iteration (what the daemon runs every
poll_interval_seconds). Nothing of ours or Dagster's is mocked."""

from __future__ import annotations

import logging
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import sqlalchemy as sa
import yaml
from dagster import DagsterInstance
from dagster._core.definitions.selector import JobSubsetSelector
from dagster._core.events import DagsterEventType
from dagster._core.instance.ref import InstanceRef
from dagster._core.launcher import WorkerStatus
from dagster._core.storage.dagster_run import DagsterRun, DagsterRunStatus
from dagster._core.workspace.context import WorkspaceProcessContext, WorkspaceRequestContext
from dagster._core.workspace.load_target import GrpcServerTarget
from dagster._daemon.monitoring.run_monitoring import execute_run_monitoring_iteration
from dagster._grpc.client import DagsterGrpcClient
from sqlalchemy.engine import make_url

from orchestration.run_launcher import MonitoredRunLauncher
from tests.support.dagster_home import deployment_dagster_home

ROOT = Path(__file__).resolve().parents[2]
LOCATION = "runmon"
DEFINITIONS = '''
import time

import dagster as dg


@dg.op
def wait_a_minute() -> None:
    time.sleep(60)


@dg.op
def at_once() -> int:
    return 1


# in-process: the run's worker is the one process the code server started for it
@dg.job(executor_def=dg.in_process_executor)
def sleeper():
    wait_a_minute()


@dg.job(executor_def=dg.in_process_executor)
def quick():
    at_once()


defs = dg.Definitions(jobs=[sleeper, quick])
'''


def test_a_run_whose_worker_is_gone_is_failed_at_the_next_poll_and_an_unreachable_server_fails_nothing(
        database_url, tmp_path, monkeypatch):
    url = make_url(database_url)
    name = f"{url.database}_runmon"
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    servers: list[subprocess.Popen[bytes]] = []
    try:
        home = deployment_dagster_home(url, name, tmp_path, monkeypatch)
        definitions = tmp_path / "definitions.py"
        definitions.write_text(textwrap.dedent(DEFINITIONS))
        port = _free_port()
        servers.append(_start_code_server(definitions, port, tmp_path))
        with DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance, \
                WorkspaceProcessContext(instance, GrpcServerTarget(host="127.0.0.1", port=port, socket=None,
                                                                   location_name=LOCATION)) as workspace:
            launcher = instance.run_launcher
            assert isinstance(launcher, MonitoredRunLauncher) and launcher.supports_check_run_worker_health

            def monitor() -> None:  # one poll of the daemon's run monitoring
                errors = list(execute_run_monitoring_iteration(workspace, logging.getLogger(__name__)))
                assert not any(errors), errors

            # a live run: its server runs it; monitoring leaves it alone
            live = _launch(instance, workspace.create_request_context(), "sleeper")
            assert launcher.check_run_worker_health(live).status is WorkerStatus.RUNNING
            monitor()
            assert _status(instance, live) is DagsterRunStatus.STARTED

            # its worker killed under a live code server: that server fails the run itself, before any poll
            worker = _worker(instance, live)
            assert worker.pid in {child.pid for child in psutil.Process(servers[0].pid).children()}
            worker.send_signal(signal.SIGKILL)
            _wait_for(lambda: _status(instance, live) is DagsterRunStatus.FAILURE, "the server to fail the run")
            assert any(f"Run execution process for {live.run_id}" in m for m in _messages(instance, live))
            assert launcher.check_run_worker_health(live).status is WorkerStatus.FAILED  # finished, not running

            # the code server killed with its worker (the code-location container crashed or was recreated)
            orphan = _launch(instance, workspace.create_request_context(), "sleeper")
            assert launcher.check_run_worker_health(orphan).status is WorkerStatus.RUNNING
            orphan_worker = _worker(instance, orphan)
            _kill_tree(servers[0])
            assert not orphan_worker.is_running()

            # ... and not back yet: unknown, so the run is left as it is (max_runtime_seconds still bounds it)
            probe = launcher.probe_run_worker(orphan)
            assert probe.status is WorkerStatus.UNKNOWN and "did not answer" in (probe.msg or ""), probe
            assert launcher.check_run_worker_health(orphan).status is WorkerStatus.RUNNING
            monitor()
            assert _status(instance, orphan) is DagsterRunStatus.STARTED
            assert not instance.all_logs(orphan.run_id, of_type=DagsterEventType.RUN_FAILURE)

            # ... back on its address without the run: its worker is gone, and the next poll fails the run
            servers.append(_start_code_server(definitions, port, tmp_path))
            health = launcher.check_run_worker_health(orphan)
            assert health.status is WorkerStatus.FAILED, health
            gone = f"the worker process of run {orphan.run_id} is gone (killed or crashed)"
            assert gone in (health.msg or "")
            monitor()
            assert _status(instance, orphan) is DagsterRunStatus.FAILURE
            failures = instance.all_logs(orphan.run_id, of_type=DagsterEventType.RUN_FAILURE)
            assert len(failures) == 1 and gone in failures[0].message, failures

            # a run that finished is reported as finished; a run executed in-process (no code server) is unknown
            quick = _launch(instance, workspace.create_request_context(), "quick")
            _wait_for(lambda: _status(instance, quick) is DagsterRunStatus.SUCCESS, "the quick run to succeed")
            # (its worker is listed by the server until it has exited, within a second)
            _wait_for(lambda: launcher.check_run_worker_health(quick).status is WorkerStatus.SUCCESS,
                      "the check to see the quick run finished")
            in_process = instance.add_run(DagsterRun(job_name="quick", status=DagsterRunStatus.STARTED))
            probe = launcher.probe_run_worker(in_process)
            assert probe.status is WorkerStatus.UNKNOWN and "no code server address" in (probe.msg or ""), probe
            monitor()
            assert _status(instance, in_process) is DagsterRunStatus.STARTED
            assert _status(instance, quick) is DagsterRunStatus.SUCCESS
    finally:
        for server in servers:
            _kill_tree(server)
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_the_deployment_runs_a_code_server_the_launcher_can_ask():
    """`dagster code-server start`'s proxy does not implement GetCurrentRuns: the launcher could never tell."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert compose["services"]["code-location"]["command"][:3] == ["dagster", "api", "grpc"]
    config = yaml.safe_load((ROOT / "deploy" / "dagster.yaml").read_text())
    assert config["run_launcher"] == {"module": "orchestration.run_launcher", "class": "MonitoredRunLauncher"}
    assert config["run_monitoring"]["enabled"] is True


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start_code_server(definitions: Path, port: int, cwd: Path) -> subprocess.Popen[bytes]:
    server = subprocess.Popen(
        [sys.executable, "-m", "dagster", "api", "grpc", "-h", "127.0.0.1", "-p", str(port), "-f", str(definitions),
         "--location-name", LOCATION], cwd=cwd)
    client = DagsterGrpcClient(port=port, host="127.0.0.1")
    deadline = time.monotonic() + 60
    while True:
        try:
            client.ping("")
            return server
        except Exception:
            if server.poll() is not None or time.monotonic() > deadline:
                _kill_tree(server)
                raise
            time.sleep(0.2)


def _kill_tree(server: subprocess.Popen[bytes]) -> None:
    """SIGKILL the server and every process under it (SIGTERM would wait for its runs to finish)."""
    try:
        processes = [psutil.Process(server.pid), *psutil.Process(server.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        processes = []
    for process in processes:
        try:
            process.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(processes, timeout=10)
    server.wait(timeout=10)


def _launch(instance: DagsterInstance, context: WorkspaceRequestContext, job_name: str) -> DagsterRun:
    """Create and launch a run of ``job_name`` as the daemon does (dagster/_daemon/sensor.py), until STARTED."""
    location = context.get_code_location(LOCATION)
    repository = next(iter(location.get_repositories().values()))
    job = location.get_job(JobSubsetSelector(location_name=LOCATION, repository_name=repository.name,
                                             job_name=job_name, op_selection=None))
    plan = location.get_execution_plan(job, {}, step_keys_to_execute=None, known_state=None, instance=instance)
    run = instance.create_run(
        job_name=job_name, run_id=None, run_config={}, status=DagsterRunStatus.NOT_STARTED, tags={},
        root_run_id=None, parent_run_id=None, step_keys_to_execute=None,
        execution_plan_snapshot=plan.execution_plan_snapshot, job_snapshot=job.job_snapshot,
        parent_job_snapshot=job.parent_job_snapshot, asset_selection=None, asset_check_selection=None,
        resolved_op_selection=None, op_selection=None, remote_job_origin=job.get_remote_origin(),
        job_code_origin=job.get_python_origin(), asset_graph=repository.asset_graph)
    instance.launch_run(run.run_id, context)
    _wait_for(lambda: _status(instance, run) is not DagsterRunStatus.STARTING, f"run {run.run_id} to start")
    started = instance.get_run_by_id(run.run_id)
    assert started is not None and started.status in (DagsterRunStatus.STARTED, DagsterRunStatus.SUCCESS), started
    return started


def _status(instance: DagsterInstance, run: DagsterRun) -> DagsterRunStatus:
    current = instance.get_run_by_id(run.run_id)
    assert current is not None
    return current.status


def _messages(instance: DagsterInstance, run: DagsterRun) -> list[str]:
    return [entry.message for entry in instance.all_logs(run.run_id)]


def _worker(instance: DagsterInstance, run: DagsterRun) -> psutil.Process:
    """The run's worker process: the pid of its RUN_START event."""
    (start,) = instance.all_logs(run.run_id, of_type=DagsterEventType.RUN_START)
    assert start.dagster_event is not None and start.dagster_event.pid is not None
    return psutil.Process(start.dagster_event.pid)


def _wait_for(condition, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)

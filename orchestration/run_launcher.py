"""The deployment's run launcher (deploy/dagster.yaml): Dagster's DefaultRunLauncher, plus a worker health check.

Runs launch as before: the code server (`dagster api grpc`, docker-compose.yml's ``code-location``) starts each
run's worker process and Dagster tags the run with the server's address (``GRPC_INFO_TAG``). Run monitoring (the
daemon, every ``poll_interval_seconds``) asks ``check_run_worker_health`` about every STARTED run; this launcher
asks that code server which runs it is running (``GetCurrentRuns``):

- the run is among them: RUNNING;
- the server answers without it and the run, read again, has not finished: FAILED. Its worker is gone without a
  word: the code server it ran under was killed or restarted (container recreated, crash, OOM) and took it along.
  Dagster's monitor fails the run at once (``close_failure_sensor`` and run retries follow) instead of leaving it
  STARTED until ``max_runtime_seconds``. A worker killed under a live code server is failed by that server itself
  within a second (its orphan check); the run is then finished before the monitor looks.
- no answer (server down or unreachable, or ``dagster code-server start``, whose proxy does not implement
  ``GetCurrentRuns``) or no address tag (a run executed in-process, e.g. by ``coinfrs close``): UNKNOWN, which
  ``check_run_worker_health`` reports to the monitor as RUNNING, because Dagster's monitor fails a STARTED run on
  every status but RUNNING and SUCCESS (dagster/_daemon/monitoring/run_monitoring.py, ``monitor_started_run``).
  Such runs keep the ``max_runtime_seconds`` bound, as with the DefaultRunLauncher.

tests/integration/test_run_monitoring.py runs all of it against a real code server and PostgreSQL.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from dagster._core.errors import DagsterUserCodeUnreachableError
from dagster._core.launcher import CheckRunHealthResult, DefaultRunLauncher, WorkerStatus
from dagster._core.storage.dagster_run import DagsterRun, DagsterRunStatus
from dagster._core.storage.tags import GRPC_INFO_TAG
from dagster._serdes import deserialize_value

if TYPE_CHECKING:
    from dagster._grpc.client import DagsterGrpcClient


class MonitoredRunLauncher(DefaultRunLauncher):
    """DefaultRunLauncher whose runs' workers run monitoring can check (``module: orchestration.run_launcher``)."""

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        """What run monitoring acts on: ``probe_run_worker``, with UNKNOWN reported as RUNNING (never fail a run
        because its code server could not be asked; ``max_runtime_seconds`` still applies)."""
        result = self.probe_run_worker(run)
        if result.status is WorkerStatus.UNKNOWN:
            return CheckRunHealthResult(WorkerStatus.RUNNING, f"not checked: {result.msg}", transient=True)
        return result

    def probe_run_worker(self, run: DagsterRun) -> CheckRunHealthResult:
        """Ask the code server that launched ``run`` whether it still runs it (RUNNING, FAILED, SUCCESS or UNKNOWN)."""
        from dagster._grpc.types import GetCurrentRunsResult

        client = _code_server_client(run)
        if client is None:
            return CheckRunHealthResult(
                WorkerStatus.UNKNOWN, f"run {run.run_id} has no code server address (tag {GRPC_INFO_TAG})")
        address = f"{client.host}:{client.port or client.socket}"
        try:
            answer = deserialize_value(client.get_current_runs(), GetCurrentRunsResult)
        except DagsterUserCodeUnreachableError as error:
            return CheckRunHealthResult(
                WorkerStatus.UNKNOWN, f"the code server at {address} of run {run.run_id} did not answer: {error}")
        if answer.serializable_error_info is not None:
            return CheckRunHealthResult(
                WorkerStatus.UNKNOWN,
                f"the code server at {address} could not list its runs: {answer.serializable_error_info.message}")
        if run.run_id in answer.current_runs:
            return CheckRunHealthResult(WorkerStatus.RUNNING, run_worker_id=address)
        # read again after the answer: a run that finished in between is not dead
        current = self._instance.get_run_by_id(run.run_id)
        if current is not None and current.is_finished:
            status = WorkerStatus.SUCCESS if current.status == DagsterRunStatus.SUCCESS else WorkerStatus.FAILED
            return CheckRunHealthResult(status, f"run {run.run_id} has finished ({current.status.value})")
        return CheckRunHealthResult(
            WorkerStatus.FAILED,
            f"the worker process of run {run.run_id} is gone (killed or crashed): the code server at {address} "
            "that launched it no longer runs it, and the run never finished",
            run_worker_id=address)


def _code_server_client(run: DagsterRun) -> DagsterGrpcClient | None:
    """A client of the code server recorded on the run by DefaultRunLauncher.launch_run_from_grpc_client."""
    from dagster._grpc.client import DagsterGrpcClient

    tag = run.tags.get(GRPC_INFO_TAG)
    if not tag:
        return None
    info = json.loads(tag)
    return DagsterGrpcClient(port=info.get("port"), socket=info.get("socket"), host=info.get("host", "localhost"),
                             use_ssl=bool(info.get("use_ssl", False)))

"""The close beyond one process: the same close assets as a job whose steps run on Celery workers (dagster-celery).

Each step of a run is a Celery task on the ``dagster`` queue of the broker (Redis by default,
``COINFRS_CELERY_BROKER_URL``); any number of workers on any number of machines take them
(``coinfrs worker start``). A multi-entity close is one run per entity, submitted together, so the
entities' steps spread over the workers while each entity's steps keep their order; the close lock
per entity (``warehouse/locks.py``) still admits one writer per entity whatever runs where.

Workers and the process that submits the runs must share the Dagster instance (its storage) and the
warehouse: the instance is passed to the workers by reference, the warehouse by ``DATABASE_URL``.
"""

from __future__ import annotations

import os
import shutil
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date

import dagster as dg
from celery.exceptions import DuplicateTaskNameWarning
from dagster_celery import celery_executor

from assets.close_assets import CLOSE_ASSETS
from assets.partitions import ensure_entity_partitions
from orchestration.close_runner import QUIET_LOGS, run_failure_message
from orchestration.jobs import close_run_tags, daily_close_job
from warehouse.settings import get_settings

# dagster-celery's executor registers the same step task on its Celery app once per run; with runs submitted
# together from one process Celery warns that the name is taken (by the identical task): nothing to act on
warnings.filterwarnings("ignore", category=DuplicateTaskNameWarning)

CELERY_JOB_NAME = "daily_close_celery_job"
CELERY_QUEUE = "dagster"  # the queue dagster-celery routes every step to (dagster_celery.make_app)
WORKER_APP = "orchestration.celery_worker"


def celery_config() -> dict[str, object]:
    """The executor's config: the broker and result backend from the settings, and the modules workers import."""
    settings = get_settings()
    return {"broker": settings.celery_broker_url, "backend": settings.celery_backend_url,
            "include": ["orchestration.definitions"]}


daily_close_celery_job = dg.define_asset_job(
    CELERY_JOB_NAME,
    selection=dg.AssetSelection.assets(*CLOSE_ASSETS),
    partitions_def=daily_close_job.partitions_def,
    executor_def=celery_executor,
    config={"execution": {"config": celery_config()}},  # a launch may give its own (run_entity_closes does)
    description="The daily close with each step on a Celery worker (`coinfrs worker start`), partitioned like "
                "daily_close_job (day x entity); submit one run per entity to spread them.",
)


def celery_close_job() -> dg.JobDefinition:
    """The resolved Celery close job (with its resources); a module-level function, so workers can rebuild it."""
    from orchestration.definitions import defs

    return defs.resolve_job_def(CELERY_JOB_NAME)


@dataclass(frozen=True)
class EntityRun:
    entity: str
    run_id: str
    success: bool
    error: str | None


def run_entity_closes(entities: list[tuple[int, str]], start: date, end: date, *,
                      instance: dg.DagsterInstance, parallel: int | None = None,
                      starts: dict[int, date] | None = None) -> list[EntityRun]:
    """One Celery-executed close run per entity over [start, end] (the entity's partitions of those days), or from
    the entity's own ``starts[id]`` (its earliest stale day: fresh forward per entity), submitted together; the runs'
    steps go to whatever workers listen on the broker. Blocks until every run ends; a failed run is reported, not
    raised."""
    job = dg.reconstructable(celery_close_job)
    run_config = {"execution": {"config": celery_config()}, **QUIET_LOGS}
    ensure_entity_partitions(instance, [name for _, name in entities])

    def one(entity: tuple[int, str]) -> EntityRun:
        entity_id, name = entity
        tags = close_run_tags(entity_id, name, (starts or {}).get(entity_id, start), end)
        with dg.execute_job(job, instance=instance, tags=tags, run_config=run_config, raise_on_error=False) as result:
            error = None if result.success else run_failure_message(result.all_events)
            return EntityRun(name, result.run_id, result.success, error)

    with ThreadPoolExecutor(max_workers=parallel or len(entities) or 1) as pool:
        return list(pool.map(one, entities))


def worker_command(*, concurrency: int = 1, name: str | None = None, loglevel: str = "warning") -> list[str]:
    """The Celery worker command line for this project's worker app (``coinfrs worker start`` runs it)."""
    celery = shutil.which("celery", path=os.path.dirname(sys.executable)) or "celery"
    command = [celery, "-A", WORKER_APP, "worker", "-Q", CELERY_QUEUE, "--prefetch-multiplier=1",
               f"--concurrency={concurrency}", f"--loglevel={loglevel}", "--without-gossip", "--without-mingle"]
    if name:
        command.append(f"--hostname={name}@%h")
    return command

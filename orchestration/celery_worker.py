"""The Celery app Coinfrs workers run (``celery -A orchestration.celery_worker worker``, or ``coinfrs worker start``).

dagster-celery's own ``dagster_celery.app`` reads its broker from ``dagster_celery_config`` modules; this
one takes it from the same settings the executor uses (``orchestration.distributed.celery_config``), so
workers and runs always meet on the same broker and queue.
"""

from __future__ import annotations

from dagster_celery.executor import CeleryExecutor
from dagster_celery.make_app import make_app
from dagster_celery.tasks import create_execute_job_task, create_resume_job_task, create_task

from orchestration.distributed import celery_config

_config = celery_config()
app = make_app(CeleryExecutor.for_cli(broker=_config["broker"], backend=_config["backend"],
                                      include=_config["include"]).app_args())

execute_plan = create_task(app)
execute_job = create_execute_job_task(app)
resume_job = create_resume_job_task(app)

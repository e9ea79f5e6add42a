"""Dagster Definitions: the close assets and checks, the daily schedule, the inbox, reorg, entity-partition,
alert and failure sensors. Every close runs as ``daily_close_job``, one run per entity (orchestration/jobs.py)."""


from datetime import date, timedelta

import dagster as dg

from assets.partitions import FIRST_DAY, ENTITY_PARTITIONS, ensure_entity_partitions, partition_name_problem, run_scope
from assets.resources import WarehouseResource
from ingestion.inbox import process_inbox_file, scan_inbox
from orchestration.chain_reclose import chain_reorg_sensor
from orchestration.close_runner import last_closable_day, run_failure_message
from orchestration.distributed import daily_close_celery_job
from orchestration.jobs import ASSETS, LAUNCHED_BY_TAG, close_run_tags, daily_close_job
from reconciliation.close import days_to_reclose, latest_close_date, write_failed_closes
from reconciliation.staleness import close_window
from warehouse.entities import Entity, list_entities, resolve_entity
from warehouse.settings import get_settings

_settings = get_settings()
_hour, _minute = (int(x) for x in _settings.close_schedule_time.split(":"))


@dg.schedule(job=daily_close_job, cron_schedule=f"{_minute} {_hour} * * *", execution_timezone="UTC",
             name="daily_close_schedule", default_status=dg.DefaultScheduleStatus.RUNNING,
             description=f"At {_settings.close_schedule_time} UTC (COINFRS_CLOSE_SCHEDULE_TIME) one run per active entity "
                         "closes the previous day, from the entity's earliest stale (or failed, or killed) day when it "
                         "has one (fresh forward).")
def daily_close_schedule(context: dg.ScheduleEvaluationContext, warehouse: WarehouseResource) -> list[dg.RunRequest]:
    day = context.scheduled_execution_time.date() - timedelta(days=1)
    requests = []
    with warehouse.engine().connect() as conn:
        entities = [e for e in list_entities(conn) if _closable(context, e)]
        for entity in entities:
            start = close_window(conn, entity.id, day, day)
            requests.append(dg.RunRequest(run_key=f"daily:{entity.id}:{day}",
                                          tags=close_run_tags(entity.id, entity.name, start, day)))
    ensure_entity_partitions(context.instance, [e.name for e in entities])
    return requests


def _closable(context: dg.ScheduleEvaluationContext | dg.SensorEvaluationContext, entity: Entity) -> bool:
    problem = partition_name_problem(entity.name)
    if problem:
        context.log.warning(f"{problem}; it is not closed by the schedule or the sensors")
    return problem is None



@dg.sensor(job=daily_close_job, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Imports CSV files dropped into <inbox>/<entity>/<ledger|balances>/ and closes the days they "
                       "touch (through the entity's latest close, since positions and cost basis roll forward).")
def inbox_sensor(context: dg.SensorEvaluationContext, warehouse: WarehouseResource) -> list[dg.RunRequest] | dg.SkipReason:
    settings = get_settings()  # read at each evaluation: COINFRS_INBOX_DIR may change without a reload
    inbox = settings.inbox_dir
    files = scan_inbox(inbox)
    if not files:
        return dg.SkipReason(f"no CSV files in {inbox}")
    engine = warehouse.engine()
    touched: dict[str, tuple[date, date]] = {}
    run_keys: list[str] = []
    for file in files:
        outcome = process_inbox_file(engine, file, create_entities=settings.inbox_create_entities)
        if outcome.error:
            context.log.warning(f"{file.path.name}: rejected; errors written beside it in failed/:\n{outcome.error}")
            continue
        assert outcome.result is not None and outcome.entity_name is not None
        context.log.info(f"{file.path.name}: {outcome.result.inserted} new of {outcome.result.rows} rows")
        run_keys.append(str(outcome.result.run_id))
        if outcome.first_day and outcome.last_day and outcome.result.inserted:
            lo, hi = touched.get(outcome.entity_name, (outcome.first_day, outcome.last_day))
            touched[outcome.entity_name] = (min(lo, outcome.first_day), max(hi, outcome.last_day))
    requests: list[dg.RunRequest] = []
    with engine.connect() as conn:
        for entity_name, (lo, hi) in touched.items():
            entity = resolve_entity(conn, entity_name)
            if not _closable(context, entity):
                continue
            window = days_to_reclose(lo, hi, latest_close_date(conn, entity.id), FIRST_DAY, last_closable_day())
            if window is not None:  # and from any day the import (or an earlier change) left stale
                window = (close_window(conn, entity.id, *window), window[1])
            if window is None:
                continue
            requests.append(dg.RunRequest(run_key=f"inbox:{entity.id}:{','.join(run_keys)}",
                                          tags=close_run_tags(entity.id, entity.name, *window)))
            ensure_entity_partitions(context.instance, [entity.name])
    if not requests:
        return dg.SkipReason(f"{len(files)} file(s) processed, no new rows in a closable day "
                             f"({len(files) - len(run_keys)} rejected: see failed/ in the inbox)")
    return requests


@dg.sensor(minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Adds a partition to the close's entity dimension for every entity of the warehouse, so the UI "
                       "shows a row per entity (closes and imports add theirs too). An entity whose name cannot be a "
                       "partition key is reported, not added.")
def entity_partitions_sensor(context: dg.SensorEvaluationContext,
                             warehouse: WarehouseResource) -> dg.SensorResult | dg.SkipReason:
    with warehouse.engine().connect() as conn:
        names = [e.name for e in list_entities(conn) if _closable(context, e)]
    known = set(context.instance.get_dynamic_partitions(ENTITY_PARTITIONS))
    missing = [n for n in names if n not in known]
    if not missing:
        return dg.SkipReason(f"every entity has its partition ({len(names)})")
    return dg.SensorResult(dynamic_partitions_requests=[dg.AddDynamicPartitionsRequest(ENTITY_PARTITIONS, missing)])


def _run_entities(context: dg.RunStatusSensorContext,
                  warehouse: WarehouseResource) -> tuple[list[Entity], date, date] | None:
    """The entities and days of a close run, from its partition tags (None for a run without them)."""
    run = context.dagster_run
    scope = run_scope(run.tags, context.instance)
    if scope is None:
        return None
    with warehouse.engine().connect() as conn:
        return [resolve_entity(conn, name) for name in scope.entities], scope.start, scope.end


def _alert(context: dg.RunStatusSensorContext, warehouse: WarehouseResource, entities: list[Entity], start: date,
           end: date, run_error: str | None) -> None:
    """The close alert (reconciliation/alerts.py) of a run the CLI did not execute (the CLI alerts by itself)."""
    from reconciliation.alerts import alert_after_close

    if context.dagster_run.tags.get(LAUNCHED_BY_TAG) == "cli":
        return
    _, problems = alert_after_close(warehouse.engine(), entities, start, end, run_id=context.dagster_run.run_id,
                                        run_error=run_error)
    for problem in problems:
        context.log.warning(problem.line())


@dg.run_status_sensor(run_status=dg.DagsterRunStatus.SUCCESS, monitored_jobs=[daily_close_job, daily_close_celery_job],
                      default_status=dg.DefaultSensorStatus.RUNNING, name="close_alert_sensor",
                      description="After a successful close run of the schedule, a sensor or the UI: the alert rule "
                                  "over its closes (failed, partial, breaks, unpriced, stale days; a wrong master key) "
                                  "and the webhook (COINFRS_ALERT_WEBHOOK_URL). CLI runs alert by themselves.")
def close_alert_sensor(context: dg.RunStatusSensorContext, warehouse: WarehouseResource) -> None:
    found = _run_entities(context, warehouse)
    if found is not None:
        _alert(context, warehouse, *found, run_error=None)


@dg.run_failure_sensor(monitored_jobs=[daily_close_job, daily_close_celery_job],
                       default_status=dg.DefaultSensorStatus.RUNNING,
                       description="Marks the closes of a failed close run (a step error, or a run that run monitoring "
                                   "found dead) as failed, with the error; then alerts (not for CLI runs, which alert "
                                   "by themselves).")
def close_failure_sensor(context: dg.RunFailureSensorContext, warehouse: WarehouseResource) -> None:
    found = _run_entities(context, warehouse)
    if found is None:
        return
    entities, start, end = found
    events = [r.dagster_event for r in context.instance.all_logs(context.dagster_run.run_id) if r.dagster_event]
    message = run_failure_message(events)
    with warehouse.engine().begin() as conn:
        for entity in entities:
            write_failed_closes(conn, entity, start, end, message=message, run_id=context.dagster_run.run_id)
    _alert(context, warehouse, entities, start, end, run_error=message)


defs = dg.Definitions(
    assets=ASSETS,
    jobs=[daily_close_job, daily_close_celery_job],
    schedules=[daily_close_schedule],
    sensors=[inbox_sensor, entity_partitions_sensor, close_alert_sensor, close_failure_sensor, chain_reorg_sensor],
    resources={"warehouse": WarehouseResource()},
)

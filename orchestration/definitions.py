"""Dagster Definitions: the close assets and check, the daily schedule, the inbox and failure sensors."""


from datetime import date, timedelta

import dagster as dg
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from assets.close_assets import CLOSE_ASSETS
from assets.resources import ENTITIES_TAG, WarehouseResource
from assets.staging import raw_balance_snapshots, raw_records
from ingestion.inbox import process_inbox_file, scan_inbox
from orchestration.chain_reclose import chain_reorg_sensor
from orchestration.close_runner import last_closable_day
from orchestration.distributed import daily_close_celery_job
from orchestration.jobs import daily_close_job
from reconciliation.close import days_to_reclose, latest_close_date, write_failed_closes
from reconciliation.staleness import close_window
from warehouse.entities import list_entities, resolve_entity
from warehouse.settings import get_settings

_settings = get_settings()
_hour, _minute = (int(x) for x in _settings.close_schedule_time.split(":"))


@dg.schedule(job=daily_close_job, cron_schedule=f"{_minute} {_hour} * * *", execution_timezone="UTC",
             name="daily_close_schedule", default_status=dg.DefaultScheduleStatus.RUNNING,
             description=f"At {_settings.close_schedule_time} UTC (COINFRS_CLOSE_SCHEDULE_TIME) one run per entity closes "
                         "the previous day, from the entity's earliest stale day when it has one (fresh forward).")
def daily_close_schedule(context: dg.ScheduleEvaluationContext, warehouse: WarehouseResource) -> list[dg.RunRequest]:
    day = context.scheduled_execution_time.date() - timedelta(days=1)
    requests = []
    with warehouse.engine().connect() as conn:
        for entity in list_entities(conn):
            start = close_window(conn, entity.id, day, day)
            requests.append(dg.RunRequest(
                run_key=f"daily:{entity.id}:{day}",
                tags={ENTITIES_TAG: str(entity.id), ASSET_PARTITION_RANGE_START_TAG: start.isoformat(),
                      ASSET_PARTITION_RANGE_END_TAG: day.isoformat()}))
    return requests



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
    first_day = date.fromisoformat(settings.partitions_start)
    requests: list[dg.RunRequest] = []
    with engine.connect() as conn:
        for entity_name, (lo, hi) in touched.items():
            entity = resolve_entity(conn, entity_name)
            window = days_to_reclose(lo, hi, latest_close_date(conn, entity.id), first_day, last_closable_day())
            if window is not None:  # and from any day the import (or an earlier change) left stale
                window = (close_window(conn, entity.id, *window), window[1])
            if window is None:
                continue
            start, end = window
            requests.append(dg.RunRequest(
                run_key=f"inbox:{entity.id}:{','.join(run_keys)}",
                tags={ENTITIES_TAG: str(entity.id), ASSET_PARTITION_RANGE_START_TAG: start.isoformat(),
                      ASSET_PARTITION_RANGE_END_TAG: end.isoformat()}))
    if not requests:
        return dg.SkipReason(f"{len(files)} file(s) processed, no new rows in a closable day "
                             f"({len(files) - len(run_keys)} rejected: see failed/ in the inbox)")
    return requests


@dg.run_failure_sensor(monitored_jobs=[daily_close_job, daily_close_celery_job],
                       default_status=dg.DefaultSensorStatus.RUNNING,
                       description="Marks the closes of a failed close run as failed, with the error.")
def close_failure_sensor(context: dg.RunFailureSensorContext, warehouse: WarehouseResource) -> None:
    run = context.dagster_run
    start = run.tags.get(ASSET_PARTITION_RANGE_START_TAG) or run.tags.get("dagster/partition")
    end = run.tags.get(ASSET_PARTITION_RANGE_END_TAG) or start
    if not start or not end:
        return
    message = context.failure_event.message or "the close run failed"
    engine = warehouse.engine()
    with engine.begin() as conn:
        refs = [r for r in (run.tags.get(ENTITIES_TAG) or "").split(",") if r.strip()]
        entities = [resolve_entity(conn, r) for r in refs] if refs else list_entities(conn)
        for entity in entities:
            write_failed_closes(conn, entity, date.fromisoformat(start), date.fromisoformat(end),
                                message=message, run_id=run.run_id)


defs = dg.Definitions(
    assets=[raw_records, raw_balance_snapshots, *CLOSE_ASSETS],
    jobs=[daily_close_job, daily_close_celery_job],
    schedules=[daily_close_schedule],
    sensors=[inbox_sensor, close_failure_sensor, chain_reorg_sensor],
    resources={"warehouse": WarehouseResource()},
)

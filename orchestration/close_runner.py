"""Run the daily close for entities and days in-process: the named job ``daily_close_job``, as the UI runs it.

A range is one run per entity over all its days (a single-run backfill of the day x entity partitions); a
failure marks the days' closes ``failed`` with the step's error.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta, timezone

import dagster as dg

from assets.partitions import FIRST_DAY, ensure_entity_partitions, partition_name_problem
from orchestration.instance import LOCAL_DAGSTER_YAML, cli_instance, dagster_home  # noqa: F401 (re-exported)
from reconciliation.close import write_failed_closes
from reconciliation.staleness import close_window, earliest_stale_day
from warehouse.db import get_engine
from warehouse.entities import Entity, resolve_active_entity
from warehouse.locks import EntityBusyError, ensure_free
from warehouse.settings import get_settings

# A single-run backfill writes ONE "materialization planned" event per asset for the whole range instead of one
# per asset and day (Dagster's own switch; ~30 ms saved per asset and day, ~55 s for five years of the close).
# The trade-off Dagster names: a failed run does not mark each partition failed in the UI; our
# close_failure_sensor and write_failed_closes mark the closes of a failed run `failed` instead.
PLANNED_EVENTS_SWITCH = "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS"
os.environ.setdefault(PLANNED_EVENTS_SWITCH, "true")

# The CLI shows its own progress and the failing step's cause; the full log is in the Dagster run.
QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


MAX_RECLOSE_DEPTH = 2  # re-closes of a run that made earlier days stale (its source sync brought late records)


class CloseRunError(RuntimeError):
    """The close could not run or failed; the message says which step and why."""


@dataclass(frozen=True)
class CloseRun:
    run_id: str
    entities: list[Entity]
    start: date
    end: date
    success: bool
    error: str | None
    key_problems: tuple[str, ...] = ()  # one line per stored source the master key cannot decrypt (reconciliation/alerts.py)


def last_closable_day() -> date:
    """Yesterday (UTC): the newest daily partition."""
    return datetime.now(timezone.utc).date() - timedelta(days=1)


def validate_range(start: date, end: date) -> None:
    if end < start:
        raise CloseRunError(f"--to {end} is before --from {start}")
    if start < FIRST_DAY:
        raise CloseRunError(f"{start} is before the first close day {FIRST_DAY} (the Bitcoin genesis block)")
    if end > last_closable_day():
        raise CloseRunError(f"{end} has not ended yet: the newest day that can be closed is {last_closable_day()}")


def _root_cause(error) -> str | None:
    """The innermost cause's message of a Dagster ``SerializableErrorInfo`` (None without one)."""
    while error is not None and error.cause is not None:
        error = error.cause
    return error.message.strip() if error is not None else None


def run_failure_message(events: list[dg.DagsterEvent]) -> str:
    """Why a close run failed, for the close records and the alert: each failed step's root cause, else the run's
    own error's (a resource that refused to start, e.g. an archived entity), else "the run failed"."""
    steps = [f"{e.step_key}: {_root_cause(e.step_failure_data.error) or 'failed'}" for e in events
             if e.is_step_failure and e.step_failure_data]
    if steps:
        return "; ".join(steps)
    for event in events:
        if event.event_type == dg.DagsterEventType.RUN_FAILURE:
            cause = _root_cause(getattr(event.event_specific_data, "error", None))
            if cause:
                return cause
    return "the run failed"


def close_days(entity_refs: list[str], start: date, end: date, *, instance: dg.DagsterInstance | None = None,
               wait: bool = False, _reclose_depth: int = 0) -> CloseRun:
    """``_close_days``, then (for the outermost run) the alert rule over its closes (reconciliation/alerts.py):
    a wrong master key is said in one line, and a webhook alert goes out when one is configured. Alerting never
    fails the close. Runs of the schedule and the sensors alert through ``close_alert_sensor`` and
    ``close_failure_sensor`` instead, which skip the runs tagged ``coinfrs/launched_by=cli``: one alert per close."""
    run = _close_days(entity_refs, start, end, instance=instance, wait=wait, _reclose_depth=_reclose_depth)
    if _reclose_depth > 0:
        return run
    from reconciliation.alerts import alert_after_close

    _, problems = alert_after_close(get_engine(), run.entities, run.start, run.end, run_id=run.run_id,
                                    run_error=run.error)
    return replace(run, key_problems=tuple(p.line() for p in problems))


def _close_days(entity_refs: list[str], start: date, end: date, *, instance: dg.DagsterInstance | None = None,
                wait: bool = False, _reclose_depth: int = 0) -> CloseRun:
    """Execute ``daily_close_job`` in process over [start, end], one run per entity (its partitions: the days of
    that entity; the entity's partition is added to the instance first); then close again any earlier days a chain
    reorg found by its sync touched (orchestration.chain_reclose).

    One close per entity at a time (``warehouse/locks.py``): when another close of one of the entities is running,
    ``wait=False`` raises ``EntityBusyError`` (nothing is written, no day is marked failed); ``wait=True`` queues
    behind it (the run's resource waits for the lock)."""
    from orchestration.jobs import LAUNCHED_BY_TAG, close_run_tags, resolved_close_job

    validate_range(start, end)
    engine = get_engine()
    with engine.connect() as conn:
        entities = [resolve_active_entity(conn, ref) for ref in entity_refs]  # archived: EntityArchived
    for entity in entities:
        problem = partition_name_problem(entity.name)
        if problem:
            raise CloseRunError(problem)
    if not wait:
        ensure_free(engine, [(e.id, e.name) for e in entities])
    with engine.connect() as conn:  # fresh forward: recompute from the earliest stale day
        start = min(close_window(conn, e.id, start, end) for e in entities)
    instance = instance or cli_instance()
    ensure_entity_partitions(instance, [e.name for e in entities])
    job = resolved_close_job()
    run_ids: list[str] = []
    errors: list[str] = []
    for entity in entities:  # one run per entity, as the schedule asks them
        tags = {**close_run_tags(entity.id, entity.name, start, end), LAUNCHED_BY_TAG: "cli"}
        result = job.execute_in_process(instance=instance, run_config=QUIET_LOGS, raise_on_error=False, tags=tags)
        run_ids.append(result.run_id)
        if result.success:
            continue
        error = run_failure_message(result.all_events)
        errors.append(error if len(entities) == 1 else f"{entity.name}: {error}")
        with engine.begin() as conn:
            write_failed_closes(conn, entity, start, end, message=error, run_id=result.run_id)
    run_id = ", ".join(run_ids)
    if not errors:
        from orchestration.chain_reclose import reclose_reorged_days

        reclose_reorged_days(entities, (start, end), run_id=run_id, instance=instance, depth=_reclose_depth)
        with engine.connect() as conn:  # the run's own source sync may have brought records for earlier days
            stale = [d for d in (earliest_stale_day(conn, e.id) for e in entities) if d is not None and d < start]
        if stale and _reclose_depth < MAX_RECLOSE_DEPTH:
            return _close_days(entity_refs, min(stale), end, instance=instance, wait=wait, _reclose_depth=_reclose_depth + 1)
    return CloseRun(run_id, entities, start, end, not errors, "; ".join(errors) or None)

"""Re-close the days a chain reorg touched, without anyone asking.

In process (the `coinfrs close` / `coinfrs wallet sync` path): after a close run, ``reclose_reorged_days`` closes
again the days of reorgs its sync found that the run itself did not cover. In a deployment: ``chain_reorg_sensor``
requests a close run for the same days. Either way, a locked day is not rebuilt: the change lands as adjustments on
the first open day (ingestion.chain_reorgs).
"""

from __future__ import annotations

from datetime import date

import dagster as dg

from assets.partitions import FIRST_DAY, ensure_entity_partitions
from assets.resources import WarehouseResource
from ingestion.chain_reorgs import NOTHING_CLOSED, load_reclose_windows, mark_reclosed
from orchestration.jobs import close_run_tags, daily_close_job
from warehouse.db import get_engine
from warehouse.entities import Entity, resolve_entity


def _allowed() -> tuple[date, date]:
    from orchestration.close_runner import last_closable_day

    return FIRST_DAY, last_closable_day()


def reclose_reorged_days(entities: list[Entity], covered: tuple[date, date] | None, *, run_id: str | None,
                         instance: dg.DagsterInstance | None = None, depth: int = 0) -> list[tuple[str, date, date]]:
    """Close again the days touched by the entities' pending reorgs; days inside ``covered`` (just closed by
    ``run_id``, after its sync) need nothing more. Returns the (entity, start, end) re-closed."""
    from orchestration.close_runner import CloseRunError, close_days

    engine = get_engine()
    by_id = {e.id: e for e in entities}
    with engine.connect() as conn:
        windows = load_reclose_windows(conn, *_allowed(), entity_ids=list(by_id))
    done: list[tuple[str, date, date]] = []
    for window in windows:
        entity = by_id[window.entity_id]
        if window.start is None or window.end is None or (
                covered is not None and covered[0] <= window.start and window.end <= covered[1]):
            with engine.begin() as conn:
                mark_reclosed(conn, window.reorg_ids, NOTHING_CLOSED if window.start is None else run_id or "in-process close")
            continue
        if depth >= 3:  # the chain keeps reorganising under us: leave the rest to the next close or the sensor
            raise CloseRunError(f"{entity.name}: reorgs keep arriving; close {window.start}..{window.end} again later")
        run = close_days([str(entity.id)], window.start, window.end, instance=instance, _reclose_depth=depth + 1)
        if not run.success:
            raise CloseRunError(f"{entity.name}: re-closing {window.start}..{window.end} after a reorg failed: {run.error}")
        done.append((entity.name, window.start, window.end))
    return done


@dg.sensor(job=daily_close_job, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Closes again the days a chain reorg touched (found by the wallet sync), through the entity's "
                       "latest close; a locked day gets the change as adjustments on the first open day.")
def chain_reorg_sensor(context: dg.SensorEvaluationContext, warehouse: WarehouseResource) -> list[dg.RunRequest] | dg.SkipReason:
    engine = warehouse.engine()
    with engine.connect() as conn:
        windows = load_reclose_windows(conn, *_allowed())
    requests = []
    for window in windows:
        if window.start is None or window.end is None:
            with engine.begin() as conn:
                mark_reclosed(conn, window.reorg_ids, NOTHING_CLOSED)
            continue
        key = f"reorg:{window.entity_id}:{','.join(map(str, window.reorg_ids))}"
        with engine.connect() as conn:
            entity = resolve_entity(conn, window.entity_id)
        ensure_entity_partitions(context.instance, [entity.name])
        requests.append(dg.RunRequest(run_key=key, tags=close_run_tags(entity.id, entity.name, window.start, window.end)))
        with engine.begin() as conn:
            mark_reclosed(conn, window.reorg_ids, key)
    return requests or dg.SkipReason("no chain reorg waiting to be re-closed")

"""The daily close job (all close assets and their checks), partitioned by day x entity, and its run tags.

Every close runs as this named job, whoever asks: the CLI (in process), the schedule, the sensors, the UI.
A run covers one entity and a range of days (one run for a five-year backfill: ``BackfillPolicy.single_run``).
"""

from __future__ import annotations

from datetime import date
from functools import lru_cache

import dagster as dg

from assets.close_assets import CLOSE_ASSETS
from assets.partitions import close_partitions, range_tags
from assets.resources import ENTITIES_TAG, ENTITY_NAMES_TAG, WarehouseResource
from assets.staging import raw_balance_snapshots, raw_records

CLOSE_JOB_NAME = "daily_close_job"
LAUNCHED_BY_TAG = "coinfrs/launched_by"  # "cli" on the runs `coinfrs close` executes (it alerts by itself)

daily_close_job = dg.define_asset_job(
    CLOSE_JOB_NAME,
    selection=dg.AssetSelection.assets(*CLOSE_ASSETS),
    partitions_def=close_partitions,
    description="The daily close: sources -> canonical ledger -> prices -> reconciliation -> cost basis -> close "
                "record, for the entity and days of the run's partitions (day x entity). Tags: "
                f"{ENTITY_NAMES_TAG} (names), {ENTITIES_TAG} (ids: the per-entity concurrency limit's key).",
)

ASSETS = [raw_records, raw_balance_snapshots, *CLOSE_ASSETS]


def close_run_tags(entity_id: int, entity_name: str, start: date, end: date) -> dict[str, str]:
    """The tags of a close run of one entity over [start, end]: its partition range and the entity by id and name."""
    return {ENTITIES_TAG: str(entity_id), ENTITY_NAMES_TAG: entity_name, **range_tags(entity_name, start, end)}


@lru_cache(maxsize=1)
def resolved_close_job() -> dg.JobDefinition:
    """``daily_close_job`` with its resources bound, for in-process execution (the CLI, tests, benchmarks) without
    loading the whole code location (sensors, the Celery job)."""
    return dg.Definitions(assets=ASSETS, jobs=[daily_close_job],
                          resources={"warehouse": WarehouseResource()}).resolve_job_def(CLOSE_JOB_NAME)

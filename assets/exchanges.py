"""Exchange sources as a Dagster asset: sync every configured source of the entities in scope into staging,
before the canonical ledger is built. Thin: the work is ``ingestion.exchanges.sources``.

Daily partitioned with a single-run backfill like the close; a sync is incremental (cursors), so one run
fetches whatever is new whatever the range. With no source configured it does nothing and needs no network
or encryption key. A source that fails is recorded on its row (``coinfrs source list``) and reported in
the materialization; it does not stop the close of the data already staged.
"""

import dagster as dg

from assets.partitions import daily_partitions
from assets.progress import report
from assets.resources import WarehouseResource, entities_in_scope

EXCHANGE_POOL = "exchange_api"


@dg.asset(
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name="staging",
    kinds={"python"},
    pool=EXCHANGE_POOL,
    description="Syncs the configured exchange sources (Binance via ccxt) of the entities in scope into raw_records "
                "and raw_balance_snapshots: read-only key checked first, incremental per stream, resumable. "
                "Nothing to do when no source is configured.",
)
def exchange_sources(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    from ingestion.exchanges.sources import sync_entity_sources  # ccxt loads only when the asset runs

    engine = warehouse.engine()
    statuses: dict[str, str] = {}
    inserted = 0
    for entity in entities_in_scope(context, warehouse):
        for result in sync_entity_sources(engine, entity):
            key = f"{entity.name}/{result.source}"
            statuses[key] = result.status
            new = sum(result.stats.records_inserted.values()) if result.stats else 0
            inserted += new
            if result.status == "succeeded":
                report(context, f"exchange source · {key}: {new} new records")
            else:
                context.log.warning(f"exchange source {key} {result.status}: {result.message}")
    failed = sorted(k for k, v in statuses.items() if v != "succeeded")
    return dg.MaterializeResult(metadata={
        "sources": dg.MetadataValue.int(len(statuses)),
        "new records": dg.MetadataValue.int(inserted),
        "sources not synced": dg.MetadataValue.text(", ".join(f"{k} ({statuses[k]})" for k in failed) or "none"),
    })

"""Source syncs as ONE Dagster asset: every configured exchange source and on-chain wallet of the entities in
scope is synced into staging before the canonical ledger is built.

Not partitioned, on purpose: a sync is incremental (cursors per stream, blocks, signatures), so a run over any
range of days fetches whatever is new, whatever the range; and Dagster writes one materialization event per asset
and day of a single-run backfill (~12-30 ms each here), so a daily-partitioned sync would cost half a minute on a
five-year backfill for nothing. It still runs first in every close run (the close job selects it), once. With nothing configured it does nothing: no
network, no encryption key. A source or chain that fails is recorded and reported here; the close goes on with
what is staged.
"""

from datetime import date

import dagster as dg
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from assets.progress import report
from assets.resources import WarehouseResource, entities_in_scope

EXCHANGE_POOL = "exchange_api"


def run_days(context: dg.AssetExecutionContext) -> tuple[date, date] | None:
    """The days of the close run this sync belongs to (its partition range tags), if any."""
    tags = context.run.tags
    start = tags.get(ASSET_PARTITION_RANGE_START_TAG) or tags.get("dagster/partition")
    end = tags.get(ASSET_PARTITION_RANGE_END_TAG) or start
    try:
        return (date.fromisoformat(start), date.fromisoformat(end)) if start and end else None
    except ValueError:
        return None


@dg.asset(
    group_name="staging",
    kinds={"python"},
    pool=EXCHANGE_POOL,
    description=(
        "Syncs the configured sources of the entities in scope into raw_records and raw_balance_snapshots: "
        "exchanges (Binance via ccxt; read-only key checked first, incremental per stream, resumable), EVM wallets "
        "(web3: native and ERC-20 transfers, gas and L1 fees, balances at each cutoff, reorgs orphaned) and Solana "
        "wallets (solana-py: SOL and SPL changes, balances rolled back to each cutoff). Nothing to do when nothing "
        "is configured (coinfrs source add, coinfrs wallet add)."
    ),
)
def source_sync(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    from ingestion.chain_sync import sync_entity_wallets  # web3, solana and ccxt load only when the asset runs
    from ingestion.exchanges.sources import sync_entity_sources

    engine = warehouse.engine()
    exchanges: dict[str, str] = {}
    exchange_records = 0
    chains: list[str] = []
    chains_down: list[str] = []
    staged = snapshots = orphaned = 0
    for entity in entities_in_scope(context, warehouse):
        for result in sync_entity_sources(engine, entity):
            key = f"{entity.name}/{result.source}"
            exchanges[key] = result.status
            new = sum(result.stats.records_inserted.values()) if result.stats else 0
            exchange_records += new
            if result.status == "succeeded":
                report(context, f"exchange source · {key}: {new} new records")
            else:
                context.log.warning(f"exchange source {key} {result.status}: {result.message}")
        for outcome in sync_entity_wallets(engine, entity, close_range=run_days(context),
                                           log=lambda message: report(context, f"chains · {message}")):
            chains.append(f"{entity.name}:{outcome.chain}")
            if outcome.error:
                chains_down.append(f"{entity.name}:{outcome.chain} ({outcome.error[:200]})")
                context.log.warning(f"chain {outcome.chain} of {entity.name} could not be synced: {outcome.error}; "
                                    f"synced through {outcome.synced_through}")
            staged, snapshots, orphaned = staged + outcome.staged, snapshots + outcome.snapshots, orphaned + outcome.orphaned
    exchanges_down = sorted(k for k, v in exchanges.items() if v != "succeeded")
    return dg.MaterializeResult(metadata={
        "exchange sources": dg.MetadataValue.int(len(exchanges)),
        "exchange records new": dg.MetadataValue.int(exchange_records),
        "exchange sources not synced": dg.MetadataValue.text(
            ", ".join(f"{k} ({exchanges[k]})" for k in exchanges_down) or "none"),
        "chains": dg.MetadataValue.text(", ".join(chains) or "no wallets configured"),
        "chain records staged": dg.MetadataValue.int(staged),
        "chain balance snapshots": dg.MetadataValue.int(snapshots),
        "raw records orphaned (reorgs)": dg.MetadataValue.int(orphaned),
        "chains down": dg.MetadataValue.text("; ".join(chains_down) or "none"),
    })

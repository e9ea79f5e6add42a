"""On-chain wallets as a Dagster asset: sync every configured wallet before the canonical ledger is built.

Daily partitioned with a single-run backfill like the close: a run over any range syncs each chain once, up to its
final block (EVM) or finalized slot (Solana), which covers every day of the range that is final. No wallets: it does
nothing (no network). A chain that fails is recorded (``chain_sync_failures``) and reported; the close goes on.
"""

import dagster as dg

from assets.partitions import daily_partitions
from assets.progress import report
from assets.resources import WarehouseResource, entities_in_scope
from ingestion.chain_sync import sync_entity_wallets

SINGLE_RUN = dg.BackfillPolicy.single_run()


@dg.asset(
    partitions_def=daily_partitions,
    backfill_policy=SINGLE_RUN,
    group_name="ingestion",
    kinds={"postgres"},
    description=(
        "EVM wallets (web3: native and ERC-20 transfers, gas and L1 fees, balances at each cutoff, reorgs orphaned) "
        "and Solana wallets (solana-py: SOL and SPL changes, balances rolled back to each cutoff) synced into "
        "staging. Nothing to do without configured wallets (coinfrs wallet add)."
    ),
)
def chain_wallets(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    engine = warehouse.engine()
    chains: list[str] = []
    failed: list[str] = []
    staged = snapshots = orphaned = 0
    for entity in entities_in_scope(context, warehouse):
        for outcome in sync_entity_wallets(engine, entity, log=lambda message: report(context, f"chains · {message}")):
            chains.append(f"{entity.name}:{outcome.chain}")
            if outcome.error:
                failed.append(f"{entity.name}:{outcome.chain} ({outcome.error[:200]})")
                context.log.warning(f"chain {outcome.chain} of {entity.name} could not be synced: {outcome.error}; "
                                    f"synced through {outcome.synced_through}")
            staged, snapshots, orphaned = staged + outcome.staged, snapshots + outcome.snapshots, orphaned + outcome.orphaned
    return dg.MaterializeResult(metadata={
        "chains": dg.MetadataValue.text(", ".join(chains) or "no wallets configured"),
        "records staged": dg.MetadataValue.int(staged),
        "balance snapshots": dg.MetadataValue.int(snapshots),
        "raw records orphaned (reorgs)": dg.MetadataValue.int(orphaned),
        "chains down": dg.MetadataValue.text("; ".join(failed) or "none"),
    })

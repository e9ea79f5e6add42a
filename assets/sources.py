"""Source syncs as ONE Dagster asset: every configured exchange source and on-chain wallet of the entities in
scope is synced into staging before the canonical ledger is built.

Not partitioned, on purpose: a sync is incremental (cursors per stream, blocks, signatures), so a run over any
range of days fetches whatever is new, whatever the range; and Dagster writes one materialization event per asset
and day of a single-run backfill (~12-30 ms each here), so a daily-partitioned sync would cost half a minute on a
five-year backfill for nothing. It still runs first in every close run (the close job selects it), once. With nothing
configured it does nothing: no network, no encryption key. A source or chain that fails is recorded and reported
here (and its unread days become source outages: those closes are partial); the close goes on with what is staged.

The asset is a graph: one op per exchange kind, each in its own Dagster concurrency pool ``exchange_<kind>``
(``exchange_binance``), one op for the chain wallets, and the op that reports. A pool limit therefore bounds how
many runs call one exchange at the same time, whatever the entities and runs (schedules, backfills, CLI closes),
without holding back the other exchanges or the wallets: ``dagster instance concurrency set exchange_binance 1``
(or ``concurrency: pools:`` in dagster.yaml). Ops of a pool without a limit run freely.
"""

from datetime import date

import dagster as dg

from assets.partitions import run_scope
from assets.progress import progress_log
from assets.resources import WarehouseResource, entities_in_scope
from assets.retries import EXTERNAL_STEP_RETRY

# One pool per exchange kind; a new connector kind adds itself here (tests check this list against the connectors').
# ``ccxt`` stands for every ``ccxt.<exchange id>`` source (the generic connector).
EXCHANGE_KINDS = ("binance", "kraken", "ccxt", "fireblocks")


def kind_family(kind: str) -> str:
    """The op and pool a source kind syncs in: ``ccxt.bitstamp`` → ``ccxt``; ``binance`` → ``binance``."""
    return kind.split(".", 1)[0]


def run_days(context: dg.OpExecutionContext) -> tuple[date, date] | None:
    """The days of the close run this sync belongs to (its partition range tags), if any."""
    scope = run_scope(context.run.tags)
    return (scope.start, scope.end) if scope else None


def exchange_pool(kind: str) -> str:
    return f"exchange_{kind}"


def _say(context: dg.OpExecutionContext, message: str) -> None:
    context.log.info(message)
    progress_log.info(message, extra={"asset": "source_sync"})


def _exchange_op(kind: str) -> dg.OpDefinition:
    @dg.op(name=f"sync_{kind}_sources", pool=exchange_pool(kind), out=dg.Out(dict), retry_policy=EXTERNAL_STEP_RETRY,
           description=f"Syncs every enabled {kind} source of the entities in scope (pool {exchange_pool(kind)}).")
    def sync_kind(context: dg.OpExecutionContext, warehouse: WarehouseResource) -> dict:
        from ingestion.breakers import breaker_states
        from ingestion.credentials import list_sources

        engine = warehouse.engine()

        outcome = {"statuses": {}, "records": 0, "breakers": {}}
        for entity in entities_in_scope(context, warehouse):
            with engine.connect() as conn:
                names = [s.name for s in list_sources(conn, entity.id) if kind_family(s.kind) == kind]
            if not names:
                continue
            from ingestion.sources import sync_entity_sources  # ccxt (~2-5 s) only for an entity with sources

            results = sync_entity_sources(engine, entity, names=names)
            with engine.connect() as conn:
                breakers = breaker_states(conn, entity.id)
            outcome["breakers"].update({f"{entity.name}/{n}": breakers[n]["summary"] for n in names if n in breakers})
            for result in results:
                key = f"{entity.name}/{result.source}"
                outcome["statuses"][key] = result.status
                new = sum(result.stats.records_inserted.values()) if result.stats else 0
                outcome["records"] += new
                if result.status == "succeeded":
                    _say(context, f"exchange source · {key}: {new} new records")
                else:
                    context.log.warning(f"exchange source {key} {result.status}: {result.message}")
        return outcome

    return sync_kind


EXCHANGE_OPS = [_exchange_op(kind) for kind in EXCHANGE_KINDS]


@dg.op(out=dg.Out(dict), retry_policy=EXTERNAL_STEP_RETRY,
       description="Syncs the EVM, Solana and Bitcoin wallets of the entities in scope.")
def sync_chain_wallets(context: dg.OpExecutionContext, warehouse: WarehouseResource) -> dict:
    from ingestion.wallets import load_wallets

    engine = warehouse.engine()
    outcome = {"chains": [], "down": [], "staged": 0, "snapshots": 0, "orphaned": 0}
    for entity in entities_in_scope(context, warehouse):
        with engine.connect() as conn:
            if not load_wallets(conn, entity.id):
                continue
        from ingestion.chain_sync import sync_entity_wallets  # web3 and solana (~2-4 s) only for an entity with wallets

        for result in sync_entity_wallets(engine, entity, close_range=run_days(context),
                                          log=lambda message: _say(context, f"chains · {message}")):
            outcome["chains"].append(f"{entity.name}:{result.chain}")
            if result.error:
                outcome["down"].append(f"{entity.name}:{result.chain} ({result.error[:200]})")
                context.log.warning(f"chain {result.chain} of {entity.name} could not be synced: {result.error}; "
                                    f"synced through {result.synced_through}")
            for name in ("staged", "snapshots", "orphaned"):
                outcome[name] += getattr(result, name)
    return outcome


@dg.op(ins={"chains": dg.In(dict), "exchanges": dg.In(list)}, out=dg.Out(dg.Nothing))
def report_source_sync(context: dg.OpExecutionContext, chains: dict, exchanges: list) -> None:
    statuses = {k: v for outcome in exchanges for k, v in outcome["statuses"].items()}
    down = sorted(k for k, v in statuses.items() if v != "succeeded")
    breakers = {k: v for outcome in exchanges for k, v in outcome.get("breakers", {}).items()}
    context.add_output_metadata({
        "circuit breakers": dg.MetadataValue.md("\n".join(f"- {k}: {breakers[k]}" for k in sorted(breakers))
                                                or "no exchange source configured"),
        "exchange sources": dg.MetadataValue.int(len(statuses)),
        "exchange records new": dg.MetadataValue.int(sum(o["records"] for o in exchanges)),
        "exchange sources not synced": dg.MetadataValue.text(", ".join(f"{k} ({statuses[k]})" for k in down) or "none"),
        "exchange pools": dg.MetadataValue.text(", ".join(exchange_pool(k) for k in EXCHANGE_KINDS)),
        "chains": dg.MetadataValue.text(", ".join(chains["chains"]) or "no wallets configured"),
        "chain records staged": dg.MetadataValue.int(chains["staged"]),
        "chain balance snapshots": dg.MetadataValue.int(chains["snapshots"]),
        "raw records orphaned (reorgs)": dg.MetadataValue.int(chains["orphaned"]),
        "chains down": dg.MetadataValue.text("; ".join(chains["down"]) or "none"),
    })


@dg.graph_asset(
    group_name="staging",
    kinds={"python"},
    description=(
        "Syncs the configured sources of the entities in scope into raw_records and raw_balance_snapshots: "
        "exchanges (Binance via ccxt; read-only key checked first, incremental per stream, resumable; Kraken and any "
        "ccxt exchange through the generic connector), Fireblocks vault accounts (signed JWT), one Dagster "
        "concurrency pool per source family, exchange_<kind>; EVM wallets (web3: native and ERC-20 transfers, gas and L1 "
        "fees, balances at each cutoff, reorgs orphaned) and Solana wallets (solana-py: SOL and SPL changes, "
        "balances rolled back to each cutoff) and Bitcoin wallets by address or xpub/ypub/zpub (an Esplora API: "
        "final transactions by confirmations, change across the wallet's addresses, fees, balances at each cutoff). "
        "Nothing to do when nothing is configured (coinfrs source add, "
        "coinfrs wallet add)."
    ),
)
def source_sync():
    return report_source_sync(chains=sync_chain_wallets(), exchanges=[op() for op in EXCHANGE_OPS])

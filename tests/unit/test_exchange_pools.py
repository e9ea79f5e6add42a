"""Each exchange kind syncs in its own Dagster op and concurrency pool, inside the one source_sync asset."""

from assets.sources import EXCHANGE_KINDS, EXCHANGE_OPS, exchange_pool, source_sync
from ingestion.exchanges.sources import KINDS


def test_every_exchange_kind_has_its_own_pool():
    assert set(EXCHANGE_KINDS) == set(KINDS)  # a new connector kind must get its op and pool
    assert {op.name: op.pool for op in EXCHANGE_OPS} == {f"sync_{k}_sources": f"exchange_{k}" for k in KINDS}
    assert exchange_pool("binance") == "exchange_binance"


def test_the_pools_are_on_the_ops_of_the_source_sync_asset():
    graph = source_sync.node_def
    pools = {node.name: node.definition.pool for node in graph.nodes}
    assert pools["sync_binance_sources"] == "exchange_binance"
    assert pools["sync_chain_wallets"] is None and pools["report_source_sync"] is None
    assert [key.to_user_string() for key in source_sync.keys] == ["source_sync"]

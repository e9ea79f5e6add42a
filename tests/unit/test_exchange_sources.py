"""Exchange sources in Dagster and their settings: one op and concurrency pool per exchange kind inside the one
source_sync asset; bounded backfills."""

from datetime import date, datetime, timezone

import pytest

from assets.sources import EXCHANGE_KINDS, EXCHANGE_OPS, exchange_pool, source_sync
from ingestion.binance.client import binance_options
from ingestion.sources import KINDS, validate_config
from ingestion.connectors import last_day_read
from warehouse.entities import Entity


def test_every_exchange_kind_has_its_own_pool():
    assert set(EXCHANGE_KINDS) == {k.split(".")[0] for k in KINDS}  # a new connector kind must get its op and pool
    assert {op.name: op.pool for op in EXCHANGE_OPS} == {f"sync_{k}_sources": f"exchange_{k}" for k in EXCHANGE_KINDS}
    assert exchange_pool("binance") == "exchange_binance"


def test_the_pools_are_on_the_ops_of_the_source_sync_asset():
    graph = source_sync.node_def
    pools = {node.name: node.definition.pool for node in graph.nodes}
    assert pools["sync_binance_sources"] == "exchange_binance"
    assert pools["sync_chain_wallets"] is None and pools["report_source_sync"] is None
    assert [key.to_user_string() for key in source_sync.keys] == ["source_sync"]


def test_a_bounded_backfill_reads_up_to_the_end_of_its_until_day():
    options = binance_options(validate_config({"since": "2026-01-01", "until": "2026-03-01"}))
    assert options.until == datetime(2026, 3, 2, tzinfo=timezone.utc)
    assert binance_options({}).until is None  # default: up to now
    with pytest.raises(ValueError):
        validate_config({"until": "March"})


def test_isolated_pairs_closed_before_the_first_sync_can_be_named():
    assert binance_options(validate_config({"isolated_pairs": "btcusdt, ETHUSDT,"})).isolated_pairs == ("BTCUSDT", "ETHUSDT")
    assert binance_options({}).isolated_pairs == ()


def test_a_bounded_backfill_marks_or_clears_outages_only_up_to_its_last_day():
    entity = Entity(1, "acme", "UTC")
    assert last_day_read(entity, datetime(2026, 3, 2, tzinfo=timezone.utc)) == date(2026, 3, 1)
    assert last_day_read(entity, None) == datetime.now(timezone.utc).date()
    assert last_day_read(Entity(1, "acme", "Asia/Tokyo"), datetime(2026, 3, 2, tzinfo=timezone.utc)) == date(2026, 3, 2)

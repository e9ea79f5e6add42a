"""Reorgs and RPC failover against a real Anvil node: a reorg inside the finality window orphans raw rows (kept),
re-ingests the new branch and the re-closed days have no orphaned leg and no break; a dead RPC URL fails over; a
dead chain's error never shows the URL's key."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timezone

import dagster as dg
import pytest
import sqlalchemy as sa

from ingestion.evm.chains import ChainConfig, ChainConfigError
from ingestion.evm.mapping import base_units
from ingestion.evm.client import EvmRpc, RpcError
from ingestion.evm.sync import sync_evm_chain
from ingestion.wallets import write_wallet
from orchestration.close_runner import close_days
from samples.chains.anvil import ANVIL_CHAIN_ID, DEV, AnvilNode, Chain, free_port
from warehouse.entities import get_or_create_entity
from warehouse.reports import list_breaks

W = "0x1000000000000000000000000000000000000001"
X = "0x3000000000000000000000000000000000000003"
ETH = 10 ** 18


def config(url: str, **overrides) -> ChainConfig:
    return replace(ChainConfig("anvil", ANVIL_CHAIN_ID, "ETH", confirmations=0, rpc_urls=(url,), blocks_per_request=4),
                   **overrides)


def setup_entity(engine, url: str):
    with engine.begin() as conn:
        entity = get_or_create_entity(conn, "reorg-co")
        wallet = write_wallet(conn, entity.id, chain="anvil", chain_id=ANVIL_CHAIN_ID, address=W, rpc_urls=[url])
    return entity, [wallet]


def test_a_reorg_orphans_raw_rows_and_the_rebuilt_days_have_no_orphaned_leg(engine) -> None:
    with AnvilNode(genesis=datetime(2025, 12, 31, 12, tzinfo=timezone.utc)) as node:
        chain = Chain(node.url)
        tusd = chain.deploy_token("2025-12-31T13:00:00", "Test USD", "TUSD", 6, 10 ** 15)
        chain.fund("2026-01-01T09:00:00", W, 5 * ETH)
        snapshot = chain.w3.provider.make_request("evm_snapshot", [])["result"]
        chain.send_native("2026-01-02T08:00:00", W, X, ETH)
        chain.send_token("2026-01-02T09:00:00", tusd, DEV, W, 100_000000)
        chain.mine("2026-01-03T01:00:00")
        entity, wallets = setup_entity(engine, node.url)
        chain_config = config(node.url, tokens={tusd: "USDC"})
        sync_evm_chain(engine, entity, chain_config, wallets)
        first, last = date(2026, 1, 1), date(2026, 1, 2)
        assert close_days(["reorg-co"], first, last, instance=dg.DagsterInstance.ephemeral()).success

        # the last three blocks are replaced by another branch: a smaller payment, no token transfer
        chain.w3.provider.make_request("evm_revert", [snapshot])
        chain.send_native("2026-01-02T08:30:00", W, X, ETH // 3)
        chain.mine("2026-01-02T20:00:00")
        chain.mine("2026-01-03T01:00:00")
        chain.mine("2026-01-03T02:00:00")
        result = sync_evm_chain(engine, entity, chain_config, wallets)
        assert result.fork_block == 3 and result.orphaned == 2  # the ETH payment and the token transfer
        assert date(2026, 1, 2) in result.affected_days
        assert close_days(["reorg-co"], first, last, instance=dg.DagsterInstance.ephemeral()).success
        expected_eth = chain.balance(W)
    with engine.connect() as conn:
        assert list_breaks(conn, entity.id, first, last) == []
        orphaned_legs = conn.execute(sa.text(
            "SELECT count(*) FROM transactions l JOIN raw_records r ON r.id = l.raw_record_id"
            " WHERE r.processing_status = 'orphaned'")).scalar()
        kept = dict(conn.execute(sa.text(
            "SELECT processing_status, count(*) FROM raw_records GROUP BY 1")).all())
        eth = conn.execute(sa.text(
            """SELECT p.computed_quantity, p.reported_quantity FROM positions p JOIN assets s ON s.id = p.asset_id
               WHERE s.symbol = 'ETH' AND p.date = :d"""), dict(d=last)).one()
        usdc_legs = conn.execute(sa.text(
            "SELECT count(*) FROM transactions l JOIN assets s ON s.id = l.asset_id WHERE s.symbol = 'USDC'")).scalar()
    assert orphaned_legs == 0
    assert kept.get("orphaned") == 2 and kept.get("new", 0) >= 2
    assert eth.computed_quantity == eth.reported_quantity == base_units(expected_eth, 18)
    assert usdc_legs == 0


@pytest.fixture(scope="module")
def node():
    with AnvilNode(genesis=datetime(2025, 12, 31, 12, tzinfo=timezone.utc)) as anvil:
        chain = Chain(anvil.url)
        chain.fund("2026-01-01T09:00:00", W, 2 * ETH)
        chain.mine("2026-01-02T01:00:00")
        yield anvil


def test_a_dead_rpc_url_fails_over_to_the_next(engine, node) -> None:
    dead = f"http://127.0.0.1:{free_port()}/v3/secret-key"
    chain_config = config(dead, rpc_urls=(dead, node.url))
    entity, wallets = setup_entity(engine, node.url)
    rpc = EvmRpc(chain_config, backoff=0.01)
    result = sync_evm_chain(engine, entity, chain_config, wallets, rpc=rpc)
    assert result.transactions == 1 and rpc.stats.failovers >= 1


def test_a_chain_that_stays_down_fails_without_showing_the_key(engine) -> None:
    dead = f"http://127.0.0.1:{free_port()}/v3/secret-key"
    rpc = EvmRpc(config(dead), backoff=0.01, retries=2)
    with pytest.raises(RpcError) as failure:
        rpc.fetch_block_number()
    assert "secret-key" not in str(failure.value) and "127.0.0.1" in str(failure.value)
    assert rpc.stats.requests == 3  # the first try and two retries


def test_a_node_serving_another_chain_is_refused(engine, node) -> None:
    entity, wallets = setup_entity(engine, node.url)
    with pytest.raises(ChainConfigError, match="expects chain id 1, the RPC node serves 31337"):
        sync_evm_chain(engine, entity, config(node.url, chain_id=1), wallets)


def test_a_reverted_call_is_not_retried(node) -> None:
    rpc = EvmRpc(config(node.url), backoff=0.01)
    with pytest.raises(RpcError):
        rpc.call("eth_call", [{"to": W, "data": "0x"}, "0xffffff"])  # a block that does not exist
    assert rpc.stats.retries == 0


def test_the_client_side_rate_limit_spaces_requests(node) -> None:
    import time

    rpc = EvmRpc(config(node.url, max_requests_per_second=20.0))
    started = time.monotonic()
    for _ in range(5):
        rpc.fetch_block_number()
    assert time.monotonic() - started >= 4 / 20

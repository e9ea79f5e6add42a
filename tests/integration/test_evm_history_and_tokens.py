"""EVM against nodes that answer like real ones (issue 15): a token not deployed yet at the start block (``eth_call``
answers ``0x``), a token whose decimals are read where the contract exists (never 0 from a failed call), a first
plain-RPC scan from block 0 on a long chain refused with its cost, and a node without old blocks or state saying so.

Real Anvil nodes; the node without old blocks is Anvil behind samples/chains/pruned_node.py (EIP-4444's 4444 answer,
or a null block); the node without old state is Anvil with ``--prune-history``."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import dagster as dg
import pytest
import sqlalchemy as sa

from ingestion.chain_sync import sync_entity_wallets
from ingestion.evm.mapping import map_evm_opening
from ingestion.wallets import write_wallet
from orchestration.close_runner import close_days
from samples.chains.anvil import ANVIL_CHAIN_ID, DEV, AnvilNode, Chain
from samples.chains.pruned_node import PrunedHistoryProxy
from tests.integration.manual_prices import price_known_assets
from transforms.mappers import StagedRecord
from warehouse.entities import get_or_create_entity

W = "0x1000000000000000000000000000000000000001"
X = "0x3000000000000000000000000000000000000003"
ETH = 10 ** 18
GENESIS = datetime(2025, 12, 31, 12, tzinfo=timezone.utc)
D1, D2 = date(2026, 1, 1), date(2026, 1, 2)


def staged(engine, stream: str) -> list[sa.Row]:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT id, source_raw_id, payload FROM raw_records WHERE stream = :s ORDER BY id"),
                            dict(s=stream)).all()


def test_a_token_deployed_after_the_start_block_opens_at_zero_with_its_real_decimals(engine, monkeypatch) -> None:
    monkeypatch.setenv("COINFRS_CONFIRMATIONS_ANVIL", "0")
    with AnvilNode(genesis=GENESIS) as node:
        chain = Chain(node.url)
        chain.fund("2026-01-01T08:00:00", W, 3 * ETH)  # block 1
        chain.mine("2026-01-01T09:00:00")  # block 2
        tusd = chain.deploy_token("2026-01-01T10:00:00", "Test USD", "TUSD", 6, 10 ** 15)  # block 3
        chain.send_token("2026-01-01T11:00:00", tusd, DEV, W, 250_000000)  # block 4
        chain.send_native("2026-01-02T09:00:00", W, X, ETH)
        chain.mine("2026-01-03T01:00:00")
        monkeypatch.setenv("COINFRS_TOKENS_ANVIL", f"{tusd}=TUSD")
        with engine.begin() as conn:
            entity = get_or_create_entity(conn, "late-token-co")
            write_wallet(conn, entity.id, chain="anvil", chain_id=ANVIL_CHAIN_ID, address=W, rpc_urls=[node.url],
                         start_block=2)  # the wallet is scanned from block 2: the token is deployed at block 3
        [outcome] = sync_entity_wallets(engine, entity)  # registers the token before a price names it
        assert outcome.error is None
        price_known_assets(engine, "late-token-co", D1 - timedelta(days=1), extra=("TUSD",))
        assert close_days(["late-token-co"], D1, D2, instance=dg.DagsterInstance.ephemeral()).success

    [opening] = staged(engine, "evm_opening_balances")
    [token] = opening.payload["tokens"]
    assert token["balanceOf"] == "0x"  # what the node answered at block 1 (no code there), staged unchanged
    assert token["decimals"] == 6  # read where the contract exists, not 0 from the failed call at block 1
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT decimals FROM assets WHERE symbol = 'TUSD'")).scalar_one() == 6
        assert conn.execute(sa.text("SELECT count(*) FROM quarantined_records")).scalar_one() == 0
        statuses = dict(conn.execute(sa.text("SELECT date, status FROM closes ORDER BY date")).all())
        tusd_legs = conn.execute(sa.text(
            "SELECT sum(quantity) FROM transactions l JOIN assets a ON a.id = l.asset_id WHERE a.symbol = 'TUSD'")).scalar()
    assert statuses == {D1: "closed", D2: "closed"}
    assert tusd_legs == 250


def test_a_staged_opening_record_with_a_0x_balance_maps_to_zero() -> None:
    """A record staged before the fix (immutable): ``balanceOf`` ``0x`` and the 0 decimals of the failed call; the
    mapper reads it as no balance, so the quarantined record clears on the next close."""
    record = StagedRecord(1, "evm", "evm_opening_balances", "ethereum:" + W, "ethereum:w:opening:5", None, {
        "chain": "ethereum", "chain_id": 1, "wallet": W, "native_symbol": "ETH", "block": {"number": 5},
        "eth_getBalance": hex(2 * ETH), "tokens": [
            {"address": "0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48", "alias": "ETHEREUM:0XA0B8", "symbol": "?",
             "decimals": 0, "balanceOf": "0x"}]})
    legs = map_evm_opening(record)
    assert [(l.asset, l.quantity) for l in legs] == [("ETH", 2)]


def test_a_first_plain_rpc_scan_from_block_0_on_a_long_chain_is_refused_with_its_cost(engine, monkeypatch) -> None:
    monkeypatch.setenv("COINFRS_CONFIRMATIONS_ANVIL", "0")
    monkeypatch.setenv("COINFRS_MAX_SCAN_BLOCKS_ANVIL", "500")
    with AnvilNode(genesis=GENESIS) as node:
        chain = Chain(node.url)
        chain.fund("2026-01-01T08:00:00", W, ETH)
        chain.mine_blocks("2026-01-01T09:00:00", 1200)
        with engine.begin() as conn:
            entity = get_or_create_entity(conn, "long-chain-co")
            write_wallet(conn, entity.id, chain="anvil", chain_id=ANVIL_CHAIN_ID, address=W, rpc_urls=[node.url])
        [outcome] = sync_entity_wallets(engine, entity)
        assert outcome.error is not None
        assert "refusing a plain-RPC scan of 1,202 blocks from block 0" in outcome.error
        assert "(≈1,208 JSON-RPC calls, ≈12 requests)" in outcome.error  # 1,202 blocks + 2 eth_getLogs per chunk
        assert "--start-block" in outcome.error and "COINFRS_EXPLORER_URL_ANVIL" in outcome.error
        assert staged(engine, "evm_transactions") == []  # refused before anything was read

        with engine.begin() as conn:  # a wallet added with a start block: a short scan, allowed
            later = get_or_create_entity(conn, "long-chain-later-co")
            write_wallet(conn, later.id, chain="anvil", chain_id=ANVIL_CHAIN_ID, address=W, rpc_urls=[node.url],
                         start_block=900)
        [outcome] = sync_entity_wallets(engine, later)
        assert outcome.error is None


@pytest.mark.parametrize("mode", ["eip4444", "null"])
def test_a_node_without_old_blocks_says_so_and_what_to_do(engine, monkeypatch, mode: str) -> None:
    monkeypatch.setenv("COINFRS_CONFIRMATIONS_ANVIL", "0")
    with AnvilNode(genesis=GENESIS) as node:
        chain = Chain(node.url)
        chain.fund("2026-01-01T08:00:00", W, ETH)
        chain.mine_blocks("2026-01-01T09:00:00", 1200)
        with PrunedHistoryProxy(node.url, cutoff=1100, mode=mode) as pruned:
            with engine.begin() as conn:
                entity = get_or_create_entity(conn, f"pruned-{mode}")
                write_wallet(conn, entity.id, chain="anvil", chain_id=ANVIL_CHAIN_ID, address=W, rpc_urls=[pruned.url])
            [outcome] = sync_entity_wallets(engine, entity)
    assert outcome.error is not None and outcome.error.startswith("HistoryUnavailable")
    assert "not available yet" not in outcome.error
    expected = "4444: pruned history unavailable" if mode == "eip4444" else "the node answers no block 0 (its head is 1201)"
    assert expected in outcome.error
    assert "archive node" in outcome.error and "--start-block" in outcome.error


def test_a_node_without_old_state_says_so(engine, monkeypatch) -> None:
    """Anvil keeping only recent states refuses the opening balance at the start block, as a full (non-archive)
    node does: the sync says the node lacks that history instead of a bare JSON-RPC error."""
    monkeypatch.setenv("COINFRS_CONFIRMATIONS_ANVIL", "0")
    with AnvilNode(genesis=GENESIS, extra=["--prune-history", "5"]) as node:
        chain = Chain(node.url)
        chain.fund("2026-01-01T08:00:00", W, ETH)
        chain.mine_blocks("2026-01-01T09:00:00", 100)
        with engine.begin() as conn:
            entity = get_or_create_entity(conn, "no-state-co")
            write_wallet(conn, entity.id, chain="anvil", chain_id=ANVIL_CHAIN_ID, address=W, rpc_urls=[node.url],
                         start_block=10)
        [outcome] = sync_entity_wallets(engine, entity)
    assert outcome.error is not None and outcome.error.startswith("HistoryUnavailable")
    assert "BlockOutOfRangeError" in outcome.error and "archive node" in outcome.error

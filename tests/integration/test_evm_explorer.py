"""Discovery through an Etherscan-compatible account API (requests, paging, envelope, rate-limit answers) against a
local explorer that answers from a real Anvil node: the same raw records, legs and balances as the block scan."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone

import dagster as dg
import pytest
import sqlalchemy as sa

from ingestion.evm.chains import ExplorerConfig
from ingestion.evm.explorer import ExplorerClient, ExplorerError
from ingestion.evm.sync import sync_evm_chain
from ingestion.wallets import write_wallet
from orchestration.close_runner import close_days
from tests.integration.test_evm_anvil import FIRST, LAST, W, W2, anvil_chain, script_history
from tests.servers.etherscan_api import EtherscanServer
from samples.chains.anvil import ANVIL_CHAIN_ID, AnvilNode, Chain
from warehouse.entities import get_or_create_entity
from warehouse.reports import list_breaks

KEY = "explorer-secret-key"


@pytest.fixture(scope="module")
def anvil():
    with AnvilNode(genesis=datetime(2025, 12, 31, 12, tzinfo=timezone.utc)) as node:
        chain = Chain(node.url)
        tokens = script_history(chain)
        yield node, chain, tokens


def entity_with_wallets(engine, name: str, url: str):
    with engine.begin() as conn:
        entity = get_or_create_entity(conn, name)
        wallets = [write_wallet(conn, entity.id, chain="anvil", chain_id=ANVIL_CHAIN_ID, address=a, rpc_urls=[url])
                   for a in (W, W2)]
    return entity, wallets


def staged(engine, entity_id: int) -> set[tuple]:
    with engine.connect() as conn:
        return {(r.stream, r.source_raw_id, r.payload_hash) for r in conn.execute(sa.text(
            "SELECT stream, source_raw_id, payload_hash FROM raw_records WHERE entity_id = :e"), dict(e=entity_id))}


def legs(engine, entity_id: int) -> list[tuple]:
    with engine.connect() as conn:
        return sorted(tuple(r) for r in conn.execute(sa.text(
            """SELECT a.name, s.symbol, l.ts, l.close_date, l.quantity, l.kind, l.tx_hash, l.leg_index
               FROM transactions l JOIN accounts a ON a.id = l.account_id JOIN assets s ON s.id = l.asset_id
               WHERE l.entity_id = :e"""), dict(e=entity_id)))


def snapshots(engine, entity_id: int) -> set[tuple]:
    with engine.connect() as conn:
        return {(r.account, r.snapshot_time, str(r.balances)) for r in conn.execute(sa.text(
            "SELECT account, snapshot_time, balances FROM raw_balance_snapshots WHERE entity_id = :e"), dict(e=entity_id))}


def test_the_account_api_and_the_block_scan_give_the_same_legs(engine, anvil) -> None:
    node, chain, tokens = anvil
    config = anvil_chain(node.url, tokens["tusd"], blocks_per_request=5)
    scan_co, scan_wallets = entity_with_wallets(engine, "scan-co", node.url)
    scanned = sync_evm_chain(engine, scan_co, config, scan_wallets)

    with EtherscanServer(node.url, api_key=KEY, rate_limit_every=4) as explorer:
        api_co, api_wallets = entity_with_wallets(engine, "api-co", node.url)
        # a page of 2 entries forces paging; the chunk of 9 blocks forces several discovery rounds
        api_config = replace(config, explorer=ExplorerConfig(explorer.url, KEY, page_size=2, blocks_per_request=9))
        client = ExplorerClient(api_config.explorer, backoff=0.01)
        found = sync_evm_chain(engine, api_co, api_config, api_wallets, explorer=client)
        pages = [q for q in explorer.requests if int(q.get("page", "1")) > 1]
        actions = {q["action"] for q in explorer.requests}
    assert repr(api_config.explorer).count(KEY) == 0  # the key is not in the configuration's repr
    assert explorer.rate_limited >= 1 and client.stats.rate_limited == explorer.rate_limited  # answered, retried
    assert pages and actions == {"txlist", "txlistinternal", "tokentx"}
    assert found.blocks < scanned.blocks  # only the blocks the explorer named (and the cutoffs' blocks) were read
    assert (found.transactions, found.logs) == (scanned.transactions, scanned.logs) == (8, 8)
    assert staged(engine, api_co.id) == staged(engine, scan_co.id)  # the very same raw records from the node
    assert snapshots(engine, api_co.id) == snapshots(engine, scan_co.id)  # and the same balances at every cutoff

    for name in ("scan-co", "api-co"):
        assert close_days([name], FIRST, LAST, instance=dg.DagsterInstance.ephemeral()).success
    assert legs(engine, api_co.id) and legs(engine, api_co.id) == [
        (account.replace("scan-co", "api-co"), *rest) for account, *rest in legs(engine, scan_co.id)]
    with engine.connect() as conn:
        assert list_breaks(conn, api_co.id, FIRST, LAST) == []


def test_a_refused_key_fails_at_once_without_showing_it(anvil) -> None:
    node, _, _ = anvil
    with EtherscanServer(node.url, api_key=KEY) as explorer:
        client = ExplorerClient(ExplorerConfig(explorer.url, "wrong-" + KEY), backoff=0.01)
        with pytest.raises(ExplorerError, match="Invalid API Key") as failure:
            client.fetch_account("txlist", W, 0, 10)
    assert KEY not in str(failure.value) and client.stats.requests == 1


def test_an_explorer_that_stays_rate_limited_gives_up_after_the_retries(anvil) -> None:
    node, _, _ = anvil
    with EtherscanServer(node.url, rate_limit_every=1) as explorer:
        client = ExplorerClient(ExplorerConfig(explorer.url, KEY), backoff=0.001, retries=3)
        with pytest.raises(ExplorerError, match="unavailable after 3 retries .rate limited.") as failure:
            client.fetch_account("tokentx", W, 0, 10)
    assert KEY not in str(failure.value) and client.stats.requests == 4

"""Internal native transfers from contracts, from the node's traces (Anvil's trace_filter / trace_transaction): the
committed Forwarder contract pays the wallets in internal calls; both discovery paths (block scan + trace_filter,
account API txlistinternal + trace_transaction) stage the same records, and every day closes with zero breaks to the
wei."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timezone

import dagster as dg
import sqlalchemy as sa
from web3 import Web3

from ingestion.evm.chains import ChainConfig, ExplorerConfig
from ingestion.evm.explorer import ExplorerClient
from ingestion.evm.mapping import base_units
from ingestion.evm.sync import sync_evm_chain
from orchestration.close_runner import close_days
from tests.integration.test_evm_explorer import entity_with_wallets, legs, snapshots, staged
from tests.servers.etherscan_api import EtherscanServer
from samples.chains.anvil import ANVIL_CHAIN_ID, DEV, AnvilNode, Chain
from warehouse.reports import list_breaks

W = "0x1000000000000000000000000000000000000001"
W2 = "0x2000000000000000000000000000000000000002"
ETH = 10 ** 18
FIRST, LAST = date(2026, 1, 1), date(2026, 1, 3)
cs = Web3.to_checksum_address


def test_internal_transfers_from_a_contract_close_with_zero_breaks_to_the_wei(engine) -> None:
    with AnvilNode(genesis=datetime(2025, 12, 31, 12, tzinfo=timezone.utc)) as node:
        chain = Chain(node.url)
        forwarder = chain.deploy_forwarder("2025-12-31T13:00:00")
        chain.fund("2026-01-01T09:00:00", W, 5 * ETH)
        chain.call_forwarder("2026-01-01T10:00:00", forwarder, DEV, "forward", [cs(W), cs(W2)], [3 * ETH // 10, 2 * ETH // 10],
                             value=ETH // 2)  # W and W2 paid by the contract: no transaction of their own
        chain.call_forwarder("2026-01-02T09:00:00", forwarder, W, "forward", [cs(W2)], [ETH], value=ETH)  # W -> W2 via it
        chain.call_forwarder("2026-01-02T10:00:00", forwarder, DEV, "hold", value=2 * ETH)
        chain.call_forwarder("2026-01-03T11:00:00", forwarder, DEV, "payOut", cs(W), 7 * ETH // 10)
        failed = chain.call_forwarder("2026-01-03T12:00:00", forwarder, DEV, "forward", [cs(W)], [5], value=4,
                                      gas=200_000)  # pays W 5 wei, then reverts: moves nothing
        chain.call_forwarder("2026-01-03T13:00:00", forwarder, DEV, "tryPay", Web3.to_checksum_address(forwarder), 1)  # a refused inner call
        chain.mine("2026-01-04T01:00:00")
        assert failed["status"] == 0
        config = ChainConfig("anvil", ANVIL_CHAIN_ID, "ETH", confirmations=0, rpc_urls=(node.url,), blocks_per_request=4)
        scan_co, scan_wallets = entity_with_wallets(engine, "scan-co", node.url)
        scanned = sync_evm_chain(engine, scan_co, config, scan_wallets)
        with EtherscanServer(node.url, api_key="k") as explorer:
            api_co, api_wallets = entity_with_wallets(engine, "api-co", node.url)
            api_config = replace(config, explorer=ExplorerConfig(explorer.url, "k", blocks_per_request=6))
            found = sync_evm_chain(engine, api_co, api_config, api_wallets, explorer=ExplorerClient(api_config.explorer))
        balances = {a: base_units(chain.balance(a, chain.w3.eth.block_number - 1), 18) for a in (W, W2)}
    # W: 0.3 on 01-01 and 0.7 on 01-03; W2: 0.2 on 01-01 and 1 from W on 01-02
    assert scanned.traces_available and scanned.internal == found.internal == 4
    assert staged(engine, api_co.id) == staged(engine, scan_co.id)
    assert snapshots(engine, api_co.id) == snapshots(engine, scan_co.id)
    for name in ("scan-co", "api-co"):
        assert close_days([name], FIRST, LAST, instance=dg.DagsterInstance.ephemeral()).success
    assert legs(engine, api_co.id) == [(a.replace("scan-co", "api-co"), *rest) for a, *rest in legs(engine, scan_co.id)]
    with engine.connect() as conn:
        assert list_breaks(conn, scan_co.id, FIRST, LAST) == []
        positions = {r.name: (r.computed_quantity, r.reported_quantity) for r in conn.execute(sa.text(
            """SELECT a.name, p.computed_quantity, p.reported_quantity FROM positions p JOIN accounts a ON a.id = p.account_id
               JOIN assets s ON s.id = p.asset_id WHERE s.symbol = 'ETH' AND p.date = :d AND p.entity_id = :e"""),
            dict(d=LAST, e=scan_co.id))}
        internal = conn.execute(sa.text(
            """SELECT a.name, l.close_date, l.quantity, l.kind FROM transactions l JOIN accounts a ON a.id = l.account_id
               JOIN raw_records r ON r.id = l.raw_record_id
               WHERE r.stream = 'evm_internal' AND l.entity_id = :e ORDER BY l.ts, a.name"""), dict(e=scan_co.id)).all()
        matched = conn.execute(sa.text("SELECT count(*) FROM transfers WHERE status = 'matched' AND entity_id = :e"),
                               dict(e=scan_co.id)).scalar_one()
    assert positions == {f"anvil:{a}": (balances[a], balances[a]) for a in (W, W2)}
    assert [(a.split(":")[1], d, q, k) for a, d, q, k in internal] == [
        (W, FIRST, base_units(3 * ETH // 10, 18), "transfer_in"), (W2, FIRST, base_units(2 * ETH // 10, 18), "transfer_in"),
        (W2, date(2026, 1, 2), base_units(ETH, 18), "transfer_in"), (W, LAST, base_units(7 * ETH // 10, 18), "transfer_in")]
    assert matched == 1  # W's payment into the contract matched to W2's internal receipt (same transaction)


def test_a_node_without_traces_books_no_internal_transfer_and_says_so(engine) -> None:
    with AnvilNode(genesis=datetime(2025, 12, 31, 12, tzinfo=timezone.utc)) as node:
        Chain(node.url).fund("2026-01-01T09:00:00", W, ETH)
        config = ChainConfig("anvil", ANVIL_CHAIN_ID, "ETH", confirmations=0, rpc_urls=(node.url,), traces=False)
        entity, wallets = entity_with_wallets(engine, "notrace-co", node.url)
        result = sync_evm_chain(engine, entity, config, wallets)
    assert result.transactions == 1 and result.internal == 0 and not result.traces_available

"""EVM ingestion against a real Anvil node (web3 over HTTP), an ERC-20 deployed from the committed bytecode and a
scripted wallet history placed on chosen days; closed by Dagster in-process against real PostgreSQL."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import dagster as dg
import pytest
import sqlalchemy as sa

from ingestion.evm.chains import ChainConfig
from ingestion.evm.mapping import base_units
from ingestion.evm.sync import sync_evm_chain
from ingestion.wallets import write_wallet
from orchestration.close_runner import close_days
from tests.integration.manual_prices import price_known_assets
from samples.chains.anvil import ANVIL_CHAIN_ID, DEV, AnvilNode, Chain
from warehouse.entities import get_or_create_entity
from warehouse.reports import list_breaks

W = "0x1000000000000000000000000000000000000001"  # the entity's wallet
W2 = "0x2000000000000000000000000000000000000002"  # its second wallet
X = "0x3000000000000000000000000000000000000003"  # someone else
ETH = 10 ** 18
USD6 = 10 ** 6
FIRST, LAST = date(2026, 1, 1), date(2026, 1, 7)


def anvil_chain(url: str, tusd: str, **overrides) -> ChainConfig:
    values = dict(name="anvil", chain_id=ANVIL_CHAIN_ID, native_symbol="ETH", confirmations=0, rpc_urls=(url,),
                  tokens={tusd: "USDC"}, blocks_per_request=7)
    values.update(overrides)
    return ChainConfig(**values)


def script_history(chain: Chain) -> dict[str, str]:
    """A week of wallet activity; returns the token addresses."""
    tusd = chain.deploy_token("2025-12-31T13:00:00", "Test USD", "TUSD", 6, 10 ** 15)
    spam = chain.deploy_token("2025-12-31T14:00:00", "Free Money", "SPAM", 18, 10 ** 30)
    chain.fund("2026-01-01T09:00:00", W, 5 * ETH)
    chain.send_token("2026-01-01T10:00:00", tusd, DEV, W, 1000_500000)
    chain.send_native("2026-01-02T08:00:00", W, X, 1_250000000000000000)
    chain.send_token("2026-01-02T15:30:00", tusd, W, X, 200_000001)
    # 2026-01-03: nothing
    chain.send_native("2026-01-04T11:00:00", W, W2, ETH // 2)  # between own wallets
    chain.send_token("2026-01-04T12:00:00", spam, DEV, W, 10 ** 24)  # unsolicited token (spam)
    chain.failing_transfer_from("2026-01-05T09:00:00", tusd, W, DEV, 5)  # reverts: pays gas only
    chain.multi_transfer("2026-01-05T10:00:00", tusd, DEV, [(W, 1), (W2, 7_000000), (W, 2)])
    chain.send_native("2026-01-06T23:59:59", W, W, ETH // 10)  # to itself: only the fee
    chain.send_token("2026-01-07T00:00:00", tusd, W2, W, 3_000000)  # exactly at the cutoff of 01-06
    chain.mine("2026-01-08T01:00:00")  # a block after the last cutoff makes 01-07 final
    return {"tusd": tusd, "spam": spam}


@pytest.fixture(scope="module")
def anvil():
    with AnvilNode(genesis=datetime(2025, 12, 31, 12, tzinfo=timezone.utc)) as node:
        chain = Chain(node.url)
        tokens = script_history(chain)
        yield node, chain, tokens


def add_wallets(engine, url: str) -> object:
    with engine.begin() as conn:
        entity = get_or_create_entity(conn, "acme")
        wallets = [write_wallet(conn, entity.id, chain="anvil", chain_id=ANVIL_CHAIN_ID, address=a, rpc_urls=[url])
                   for a in (W, W2)]
    price_known_assets(engine, "acme", FIRST - timedelta(days=1))
    return entity, wallets


def test_wallets_close_every_day_with_zero_breaks_to_the_base_unit(engine, anvil) -> None:
    node, chain, tokens = anvil
    entity, wallets = add_wallets(engine, node.url)
    config = anvil_chain(node.url, tokens["tusd"])
    result = sync_evm_chain(engine, entity, config, wallets)
    assert result.blocks == chain.w3.eth.block_number + 1
    # transactions sent or received: fund, W's ETH and token sends, W->W2 (once per wallet), failed tx, self-send,
    # W2's token send; Transfer logs: DEV->W, W->X, spam, multiTransfer (W, W2, W), W2->W (once per wallet)
    assert (result.transactions, result.logs) == (8, 8)
    assert result.snapshots == 2 * ((LAST - FIRST).days + 2)  # 2025-12-31 .. 2026-01-07, two wallets
    run = close_days(["acme"], FIRST, LAST, instance=dg.DagsterInstance.ephemeral())
    assert run.success, run.error
    with engine.connect() as conn:
        assert list_breaks(conn, entity.id, FIRST, LAST) == []
        statuses = dict(conn.execute(sa.text("SELECT status, count(*) FROM closes GROUP BY 1")).all())
        positions = {(r.account, r.symbol, r.date): (r.computed_quantity, r.reported_quantity) for r in conn.execute(sa.text(
            """SELECT a.name AS account, s.symbol, p.date, p.computed_quantity, p.reported_quantity FROM positions p
               JOIN accounts a ON a.id = p.account_id JOIN assets s ON s.id = p.asset_id""")).all()}
        fees = conn.execute(sa.text("SELECT count(*), sum(quantity) FROM transactions WHERE kind = 'fee'")).one()
        transfers = dict(conn.execute(sa.text("SELECT status, count(*) FROM transfers GROUP BY 1")).all())
        spam_asset = conn.execute(sa.text("SELECT symbol, unverified, decimals FROM assets WHERE symbol LIKE 'SPAM%'")).one()
        usdc = conn.execute(sa.text("SELECT unverified FROM assets WHERE symbol = 'USDC'")).scalar_one()
    assert statuses == {"closed": (LAST - FIRST).days + 1}
    # every position equals the chain's own balance at the day's last block, to the wei / base unit
    last_block = chain.w3.eth.block_number - 1  # the block before the one that made 01-07 final
    w_eth = base_units(chain.balance(W, last_block), 18)
    w_tusd = base_units(chain.token_balance(tokens["tusd"], W, last_block), 6)
    assert positions[(f"anvil:{W}", "ETH", LAST)] == (w_eth, w_eth)
    assert positions[(f"anvil:{W}", "USDC", LAST)] == (w_tusd, w_tusd)
    assert w_tusd == Decimal("1000.5") - Decimal("200.000001") + Decimal("0.000003") + Decimal("3")
    for (account, symbol, day), (computed, reported) in positions.items():
        assert computed == reported, (account, symbol, day)
    # 01-06's close sees the transfer stamped exactly at its cutoff (a moment at the cutoff ends the day)
    assert positions[(f"anvil:{W}", "USDC", date(2026, 1, 6))][0] == w_tusd
    assert fees[0] == 6 and fees[1] < 0  # W: 2 sends, 1 token send, W->W2, failed tx, self-send; W2: 1 token send
    assert transfers.get("matched") == 2  # W -> W2 in ETH, W2 -> W in USDC
    # the unsolicited token is listed with the decimals its contract reports, and flagged unverified
    assert spam_asset.unverified is True and spam_asset.decimals == 18
    assert spam_asset.symbol == f"SPAM (ANVIL:{tokens['spam'].upper()})"
    assert usdc is False
    assert positions[(f"anvil:{W}", spam_asset.symbol, LAST)] == (Decimal(10 ** 6), Decimal(10 ** 6))


def test_a_rerun_stages_nothing_new_and_a_killed_run_resumes_without_gap(engine, anvil) -> None:
    node, chain, tokens = anvil
    entity, wallets = add_wallets(engine, node.url)
    config = anvil_chain(node.url, tokens["tusd"])
    head = chain.w3.eth.block_number
    partial = sync_evm_chain(engine, entity, config, wallets, to_block=head // 2)  # a run stopped half-way
    assert partial.to_block == head // 2
    rest = sync_evm_chain(engine, entity, config, wallets)
    again = sync_evm_chain(engine, entity, config, wallets)
    assert rest.from_block == head // 2 + 1 and again.inserted == 0 and again.blocks == 0
    with engine.connect() as conn:
        staged = conn.execute(sa.text(
            "SELECT stream, count(*), count(DISTINCT source_raw_id) FROM raw_records GROUP BY 1 ORDER BY 1")).all()
    assert [tuple(r) for r in staged] == [("evm_logs", 8, 8), ("evm_transactions", 8, 8)]


def test_a_wallet_scanned_from_a_later_block_opens_with_its_balances_and_closes_without_breaks(engine, anvil) -> None:
    from samples.chains.anvil import at

    node, chain, tokens = anvil
    start = next(n for n in range(chain.w3.eth.block_number + 1)
                 if chain.w3.eth.get_block(n)["timestamp"] >= at("2026-01-04T00:00:00"))
    with engine.begin() as conn:
        entity = get_or_create_entity(conn, "late-co")
        wallet = write_wallet(conn, entity.id, chain="anvil", chain_id=ANVIL_CHAIN_ID, address=W, rpc_urls=[node.url],
                              start_block=start)
    result = sync_evm_chain(engine, entity, anvil_chain(node.url, tokens["tusd"]), [wallet])
    assert result.from_block == start
    first = date(2026, 1, 4)
    run = close_days(["late-co"], first, LAST, instance=dg.DagsterInstance.ephemeral())
    assert run.success, run.error
    with engine.connect() as conn:
        assert list_breaks(conn, entity.id, first, LAST) == []
        opening = dict(conn.execute(sa.text(
            """SELECT s.symbol, l.quantity FROM transactions l JOIN assets s ON s.id = l.asset_id
               WHERE l.kind = 'opening_balance'""")).all())
    assert opening == {"ETH": base_units(chain.balance(W, start - 1), 18),
                       "USDC": base_units(chain.token_balance(tokens["tusd"], W, start - 1), 6)}

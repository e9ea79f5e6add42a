"""A chain that stays down makes the close partial and names the chain; a reorg found by the sync re-closes the days it
touched by itself (the Dagster sensor, or the in-process close), and on a locked day lands as adjustments on the
first open day. Real Anvil node, real PostgreSQL, the close run by Dagster in-process."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import dagster as dg
import pytest
import sqlalchemy as sa
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from assets.resources import ENTITIES_TAG, WarehouseResource
from ingestion.chain_sync import sync_entity_wallets
from ingestion.evm.mapping import base_units
from ingestion.wallets import write_wallet
from orchestration.chain_reclose import chain_reorg_sensor
from orchestration.close_runner import close_days
from reconciliation.close import lock_close
from samples.chains.anvil import ANVIL_CHAIN_ID, DEV, AnvilNode, Chain, free_port
from tests.integration.manual_prices import price_known_assets
from warehouse.entities import get_or_create_entity, resolve_entity
from warehouse.reports import list_breaks

W = "0x1000000000000000000000000000000000000001"
W2 = "0x2000000000000000000000000000000000000002"
X = "0x3000000000000000000000000000000000000003"
ETH = 10 ** 18
DEADNET_ID = 999
D1, D2, D3, D4 = date(2026, 1, 1), date(2026, 1, 2), date(2026, 1, 3), date(2026, 1, 4)


def closes(engine, entity_id: int) -> dict[date, sa.Row]:
    with engine.connect() as conn:
        return {r.date: r for r in conn.execute(sa.text(
            "SELECT date, status, message, run_id, locked, legs, breaks FROM closes WHERE entity_id = :e"), dict(e=entity_id))}


def test_a_chain_that_stays_down_makes_the_close_partial_and_names_the_chain(engine, monkeypatch) -> None:
    monkeypatch.setenv("COINFRS_CONFIRMATIONS_ANVIL", "0")
    monkeypatch.setenv("COINFRS_CONFIRMATIONS_DEADNET", "0")
    dead = f"http://127.0.0.1:{free_port()}/v3/secret-key"
    with AnvilNode(genesis=datetime(2025, 12, 31, 12, tzinfo=timezone.utc)) as node:
        chain = Chain(node.url)
        chain.fund("2026-01-01T09:00:00", W, 2 * ETH)
        chain.mine("2026-01-03T01:00:00")
        with engine.begin() as conn:
            entity = get_or_create_entity(conn, "outage-co")
            write_wallet(conn, entity.id, chain="anvil", chain_id=ANVIL_CHAIN_ID, address=W, rpc_urls=[node.url])
            write_wallet(conn, entity.id, chain="deadnet", chain_id=DEADNET_ID, address=W2, rpc_urls=[dead])
        price_known_assets(engine, "outage-co", D1 - timedelta(days=1))
        assert close_days(["outage-co"], D1, D2, instance=dg.DagsterInstance.ephemeral()).success
        down = closes(engine, entity.id)
        assert {d: r.status for d, r in down.items()} == {D1: "partial", D2: "partial"}
        for row in down.values():
            assert "source down: evm/deadnet (chain deadnet could not be synced (never synced)" in row.message
            assert "127.0.0.1" in row.message and "secret-key" not in row.message and "anvil" not in row.message
        with engine.connect() as conn:
            assert list_breaks(conn, entity.id, D1, D2) == []  # the working chain closes clean

        # the chain is back (a working URL): the next close clears its outages and the days close
        with AnvilNode(genesis=datetime(2025, 12, 31, 12, tzinfo=timezone.utc), chain_id=DEADNET_ID) as deadnet:
            Chain(deadnet.url).mine("2026-01-03T01:00:00")
            with engine.begin() as conn:
                write_wallet(conn, entity.id, chain="deadnet", chain_id=DEADNET_ID, address=W2, rpc_urls=[deadnet.url])
            assert close_days(["outage-co"], D1, D2, instance=dg.DagsterInstance.ephemeral()).success
    back = closes(engine, entity.id)
    assert {d: (r.status, r.message) for d, r in back.items()} == {D1: ("closed", None), D2: ("closed", None)}
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM source_outages")).scalar_one() == 0
        assert conn.execute(sa.text("SELECT count(*) FROM chain_sync_failures")).scalar_one() == 1  # history kept


def test_outage_days_run_from_where_the_chain_stopped() -> None:
    from ingestion.chain_sync import outage_days
    from warehouse.entities import Entity

    entity = Entity(1, "x", "UTC")
    synced = datetime(2026, 1, 3, 5, tzinfo=timezone.utc)  # complete through 01-02
    assert outage_days(entity, synced, (D1, D4)) == [D3, D4]
    assert outage_days(entity, datetime(2026, 1, 3, tzinfo=timezone.utc), (D1, D3)) == [D3]  # exactly the cutoff of 01-02
    assert outage_days(entity, None, (D2, D3)) == [D2, D3]
    assert outage_days(entity, synced, (D1, D2)) == []
    assert outage_days(entity, None, None, now=datetime(2026, 1, 5, 10, tzinfo=timezone.utc)) == [D4]


def script(chain: Chain) -> tuple[str, str]:
    """Token, a funded wallet on 01-01, then a branch on 01-02 (payment + token transfer) that a reorg replaces.
    Returns (token, snapshot id before the branch)."""
    tusd = chain.deploy_token("2025-12-31T13:00:00", "Test USD", "TUSD", 6, 10 ** 15)
    chain.fund("2026-01-01T09:00:00", W, 5 * ETH)
    snapshot = chain.w3.provider.make_request("evm_snapshot", [])["result"]
    chain.send_native("2026-01-02T08:00:00", W, X, ETH)
    chain.send_token("2026-01-02T09:00:00", tusd, DEV, W, 100_000000)
    chain.mine("2026-01-04T01:00:00")
    return tusd, snapshot


def reorg(chain: Chain, snapshot: str, *, through: str) -> None:
    """Replace everything after the snapshot: a smaller payment on 01-02, no token transfer."""
    chain.w3.provider.make_request("evm_revert", [snapshot])
    chain.send_native("2026-01-02T08:30:00", W, X, ETH // 3)
    chain.mine("2026-01-02T20:00:00")
    chain.mine(through)


def setup(engine, name: str, url: str, tusd: str, monkeypatch):
    monkeypatch.setenv("COINFRS_CONFIRMATIONS_ANVIL", "0")
    monkeypatch.setenv("COINFRS_TOKENS_ANVIL", f"{tusd}=USDC")
    with engine.begin() as conn:
        entity = get_or_create_entity(conn, name)
        write_wallet(conn, entity.id, chain="anvil", chain_id=ANVIL_CHAIN_ID, address=W, rpc_urls=[url])
    price_known_assets(engine, name, D1 - timedelta(days=1))
    return entity


def eth_position(engine, entity_id: int, day: date):
    with engine.connect() as conn:
        return conn.execute(sa.text(
            """SELECT p.computed_quantity, p.reported_quantity FROM positions p JOIN assets s ON s.id = p.asset_id
               WHERE s.symbol = 'ETH' AND p.entity_id = :e AND p.date = :d"""), dict(e=entity_id, d=day)).one()


def test_the_sensor_recloses_the_days_a_reorg_touched(engine, database_url, monkeypatch) -> None:
    with AnvilNode(genesis=datetime(2025, 12, 31, 12, tzinfo=timezone.utc)) as node:
        chain = Chain(node.url)
        tusd, snapshot = script(chain)
        entity = setup(engine, "reorg-auto", node.url, tusd, monkeypatch)
        instance = dg.DagsterInstance.ephemeral()
        assert close_days(["reorg-auto"], D1, D3, instance=instance).success
        before = closes(engine, entity.id)
        with dg.build_sensor_context(instance=instance,
                                     resources={"warehouse": WarehouseResource(database_url=database_url)}) as context:
            assert isinstance(chain_reorg_sensor(context), dg.SkipReason)

            reorg(chain, snapshot, through="2026-01-04T01:00:00")
            [outcome] = sync_entity_wallets(engine, entity)  # what the next scheduled close's source_sync does
            assert outcome.fork_block is not None and outcome.orphaned == 2
            [request] = chain_reorg_sensor(context)
            second = chain_reorg_sensor(context)
        tags = request.tags
        assert (tags[ENTITIES_TAG], tags[ASSET_PARTITION_RANGE_START_TAG], tags[ASSET_PARTITION_RANGE_END_TAG]) == (
            str(entity.id), "2026-01-02|reorg-auto", "2026-01-03|reorg-auto")
        assert isinstance(second, dg.SkipReason)  # requested once
        # the daemon runs the requested close
        assert close_days([tags[ENTITIES_TAG]], D2, D3, instance=instance).success
        expected = base_units(chain.balance(W), 18)
    after = closes(engine, entity.id)
    assert after[D1].run_id == before[D1].run_id and after[D2].run_id != before[D2].run_id
    assert {d: r.status for d, r in after.items()} == {D1: "closed", D2: "closed", D3: "closed"}
    with engine.connect() as conn:
        assert list_breaks(conn, entity.id, D1, D3) == []
        assert conn.execute(sa.text(
            "SELECT count(*) FROM transactions l JOIN raw_records r ON r.id = l.raw_record_id"
            " WHERE r.processing_status = 'orphaned'")).scalar_one() == 0
        assert conn.execute(sa.text("SELECT count(*) FROM raw_records WHERE processing_status = 'orphaned'")).scalar_one() == 2
    eth = eth_position(engine, entity.id, D3)
    assert eth.computed_quantity == eth.reported_quantity == expected


def test_a_reorg_of_a_locked_day_lands_as_adjustments_on_the_first_open_day(engine, monkeypatch) -> None:
    with AnvilNode(genesis=datetime(2025, 12, 31, 12, tzinfo=timezone.utc)) as node:
        chain = Chain(node.url)
        tusd, snapshot = script(chain)
        entity = setup(engine, "reorg-locked", node.url, tusd, monkeypatch)
        instance = dg.DagsterInstance.ephemeral()
        assert close_days(["reorg-locked"], D1, D3, instance=instance).success
        with engine.begin() as conn:
            for day in (D1, D2):
                lock_close(conn, resolve_entity(conn, "reorg-locked"), day)
        with engine.connect() as conn:
            locked_before = conn.execute(sa.text(
                "SELECT * FROM transactions WHERE entity_id = :e AND close_date <= :d ORDER BY id"),
                dict(e=entity.id, d=D2)).all()
        locked_position = eth_position(engine, entity.id, D2)

        reorg(chain, snapshot, through="2026-01-05T01:00:00")
        # the next daily close (01-04) syncs, finds the reorg and closes 01-02..01-04 again by itself
        assert close_days(["reorg-locked"], D4, D4, instance=instance).success
        expected = base_units(chain.balance(W), 18)
    with engine.connect() as conn:
        assert conn.execute(sa.text(
            "SELECT * FROM transactions WHERE entity_id = :e AND close_date <= :d ORDER BY id"),
            dict(e=entity.id, d=D2)).all() == locked_before  # the locked days never move
        adjustments = conn.execute(sa.text(
            """SELECT l.kind, s.symbol, l.quantity, r.stream FROM transactions l JOIN assets s ON s.id = l.asset_id
               JOIN raw_records r ON r.id = l.raw_record_id
               WHERE l.entity_id = :e AND l.is_adjustment AND l.close_date = :d ORDER BY r.stream, l.leg_index"""),
            dict(e=entity.id, d=D3)).all()
        assert list_breaks(conn, entity.id, D3, D4) == []
        reorg_row = conn.execute(sa.text("SELECT first_day, reclosed_at, reclose_run FROM chain_reorgs")).one()
    assert eth_position(engine, entity.id, D2) == locked_position
    by_stream = {}
    for row in adjustments:
        by_stream.setdefault(row.stream, []).append((row.kind, row.symbol, row.quantity))
    # the old branch's payment, fee and token receipt taken back; the new branch's payment and fee booked late
    reversed_ = by_stream["evm_reorg_reversals"]
    assert ("adjustment", "ETH", 1) in [(k, s, q) for k, s, q in reversed_]
    assert ("adjustment", "USDC", -100) in [(k, s, q) for k, s, q in reversed_]
    assert [(k, s) for k, s, _ in by_stream["evm_transactions"]] == [("transfer_out", "ETH"), ("fee", "ETH")]
    assert by_stream["evm_transactions"][0][2] == -base_units(ETH // 3, 18)
    eth = eth_position(engine, entity.id, D4)
    assert eth.computed_quantity == eth.reported_quantity == expected
    assert reorg_row.first_day == D2 and reorg_row.reclosed_at is not None and reorg_row.reclose_run
    statuses = {d: r.status for d, r in closes(engine, entity.id).items()}
    assert statuses == {D1: "closed", D2: "closed", D3: "closed", D4: "closed"}

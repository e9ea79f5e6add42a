"""Solana ingestion with the real solana-py AsyncClient against a local JSON-RPC server answering in Solana's format
(strictly parsed by solders) from a generated wallet history; closed by Dagster in-process on real PostgreSQL."""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal

import dagster as dg
import pytest
import sqlalchemy as sa

from ingestion.solana.client import SolanaSyncError
from ingestion.solana.sync import sync_solana_wallet
from ingestion.wallets import write_wallet
from orchestration.close_runner import close_days
from samples.chains.solana_rpc import FEE, SolanaLedger, SolanaRpcServer, address
from samples.chains.anvil import free_port
from warehouse.entities import get_or_create_entity
from warehouse.reports import list_breaks

W, X, SPAMMER = address("wallet"), address("exchange"), address("spammer")
USDC, SPAM = address("mint:usdc"), address("mint:spam")
SOL = 10 ** 9


def history() -> SolanaLedger:
    ledger = SolanaLedger()
    ledger.fund(X, 100 * SOL)
    ledger.fund(SPAMMER, SOL)
    ledger.mint(USDC, 6)
    ledger.mint(SPAM, 9)
    ledger.give_tokens(X, USDC, 10 ** 12)
    ledger.give_tokens(SPAMMER, SPAM, 10 ** 18)
    ledger.transfer_sol("2026-01-01T09:00:00", X, W, 2_500_000_000)
    ledger.transfer_tokens("2026-01-01T10:00:00", USDC, X, W, 1000_500000)  # creates W's token account (X pays rent)
    ledger.transfer_sol("2026-01-02T08:00:00", W, X, 750_000_000)
    ledger.transfer_tokens("2026-01-02T15:00:00", USDC, W, X, 200_000001)
    ledger.transfer_sol("2026-01-03T12:00:00", W, X, 10 * SOL, failed=True)  # fails: pays the fee only
    ledger.transfer_tokens("2026-01-04T03:00:00", SPAM, SPAMMER, W, 5 * 10 ** 12)  # unsolicited token
    ledger.transfer_sol("2026-01-05T00:00:00", X, W, SOL)  # exactly at 01-04's cutoff
    for minute in range(12):  # enough signatures for several pages
        ledger.transfer_sol(f"2026-01-05T10:{minute:02d}:00", W, X, 1_000 + minute)
    return ledger


def wallet_of(engine, url: str):
    with engine.begin() as conn:
        entity = get_or_create_entity(conn, "sol-co")
        wallet = write_wallet(conn, entity.id, chain="solana", chain_id=None, address=W, rpc_urls=[url])
    return entity, wallet


def test_solana_wallet_closes_every_day_with_zero_breaks_and_syncs_incrementally(engine) -> None:
    ledger = history()
    with SolanaRpcServer(ledger) as url:
        entity, wallet = wallet_of(engine, url)
        first = sync_solana_wallet(engine, entity, wallet, urls=[url], as_of=datetime(2026, 1, 6, 12, tzinfo=timezone.utc),
                                   known_mints={USDC: "USDC"}, page=5)
        assert first.signatures == 19 and first.inserted == 19
        assert first.snapshots == 5  # 01-01 .. 01-05
        # the next days arrive; only new signatures are fetched (cursors per address)
        ledger.transfer_tokens("2026-01-06T09:00:00", USDC, X, W, 3)
        ledger.transfer_sol("2026-01-07T09:00:00", W, X, 123_456_789)
        second = sync_solana_wallet(engine, entity, wallet, urls=[url], as_of=datetime(2026, 1, 8, 1, tzinfo=timezone.utc),
                                    known_mints={USDC: "USDC"}, page=5)
        assert (second.signatures, second.inserted, second.snapshots) == (2, 2, 2)
        # the close syncs the wallet again first (nothing new up to 01-07; later days are snapshotted as of now)
        run = close_days(["sol-co"], date(2026, 1, 1), date(2026, 1, 7), instance=dg.DagsterInstance.ephemeral())
        assert run.success, run.error
    with engine.connect() as conn:
        assert list_breaks(conn, entity.id, date(2026, 1, 1), date(2026, 1, 7)) == []
        positions = {(r.symbol, r.date): (r.computed_quantity, r.reported_quantity) for r in conn.execute(sa.text(
            """SELECT s.symbol, p.date, p.computed_quantity, p.reported_quantity FROM positions p
               JOIN assets s ON s.id = p.asset_id""")).all()}
        fees = conn.execute(sa.text("SELECT count(*), sum(quantity) FROM transactions WHERE kind = 'fee'")).one()
        spam = conn.execute(sa.text("SELECT symbol, unverified, decimals FROM assets WHERE unverified")).all()
    final_sol = Decimal(ledger.lamports[W]) / SOL
    assert positions[("SOL", date(2026, 1, 7))] == (final_sol, final_sol)
    assert positions[("USDC", date(2026, 1, 7))] == (Decimal("800.500002"), Decimal("800.500002"))
    for key, (computed, reported) in positions.items():
        assert computed == reported, key
    assert fees[0] == 16 and fees[1] == Decimal(-16 * FEE) / SOL  # W paid: 2 sends, 1 token send, failed tx, 12 sends
    assert [(s.unverified, s.decimals) for s in spam] == [(True, 9)]
    assert spam[0].symbol.endswith(f"(SOLANA:{SPAM.upper()})")


def test_a_solana_rpc_that_is_down_fails_without_showing_the_url(engine) -> None:
    dead = f"http://127.0.0.1:{free_port()}/rpc?api-key=secret"
    entity, wallet = wallet_of(engine, dead)
    with pytest.raises(SolanaSyncError) as failure:
        sync_solana_wallet(engine, entity, wallet, urls=[dead], timeout=2)
    assert "secret" not in str(failure.value)


def test_a_dead_solana_url_fails_over_to_the_next() -> None:
    from ingestion.solana.client import fetch_wallet

    ledger = SolanaLedger()
    ledger.fund(X, SOL)
    ledger.transfer_sol("2026-01-01T09:00:00", X, W, 42)
    with SolanaRpcServer(ledger) as url:
        fetched = fetch_wallet([f"http://127.0.0.1:{free_port()}", url], W, {}, timeout=2, backoff=0.01)
    assert fetched.lamports == 42 and len(fetched.transactions) == 1


def test_the_local_node_refuses_an_unknown_token_program_as_agave_does_and_the_sync_asks_only_real_ones() -> None:
    """A node refuses getTokenAccountsByOwner for a program id that is not SPL Token or Token-2022 (-32602); the sync's
    program ids are solana-py's own, so a real node answers both (issue 15: Token-2022 was misspelt)."""
    import asyncio

    from solana.exceptions import SolanaRpcException
    from solana.rpc.async_api import AsyncClient
    from solana.rpc.core import RPCException
    from solana.rpc.models import TokenAccountOpts
    from solders.pubkey import Pubkey

    from ingestion.solana.client import TOKEN_PROGRAMS
    from samples.chains.solana_rpc import KNOWN_TOKEN_PROGRAMS

    assert sorted(TOKEN_PROGRAMS) == sorted(KNOWN_TOKEN_PROGRAMS)
    misspelt = "TokenzQdBNbLqP5VEhdkAS6EPFLC1PhnBqCXEpPxuEb"

    async def ask(url: str, program: str):
        async with AsyncClient(url) as client:
            return await client.get_token_accounts_by_owner_json_parsed(
                Pubkey.from_string(address("owner")), TokenAccountOpts(program_id=Pubkey.from_string(program)))

    with SolanaRpcServer(history()) as url:
        for program in TOKEN_PROGRAMS:
            assert asyncio.run(ask(url, program)).value is not None
        with pytest.raises((RPCException, SolanaRpcException)) as refused:
            asyncio.run(ask(url, misspelt))
    assert "unrecognized Token program id" in str(refused.value)

"""`coinfrs wallet add/list/sync` against a real Anvil node, and a chain that stays down (recorded, named)."""

from __future__ import annotations

import json

from datetime import datetime, timezone

import sqlalchemy as sa
from typer.testing import CliRunner

from ingestion.wallets import load_chain_outages
from orchestration.cli import app
from samples.chains.anvil import AnvilNode, Chain, free_port

W = "0x1000000000000000000000000000000000000001"


def test_wallet_add_list_and_sync_through_the_cli(engine, monkeypatch) -> None:
    runner = CliRunner()
    with AnvilNode(genesis=datetime(2026, 1, 1, tzinfo=timezone.utc)) as node:
        chain = Chain(node.url)
        chain.fund("2026-01-01T10:00:00", W, 10 ** 18)
        chain.mine("2026-01-02T10:00:00")
        monkeypatch.setenv("COINFRS_CONFIRMATIONS_DEVNET", "0")
        added = runner.invoke(app, ["wallet", "add", "--entity", "cli-co", "--create", "--chain", "devnet", "--chain-id", "31337",
                                    "--address", W.upper().replace("0X", "0x"), "--rpc-url", node.url + "/?key=abc"])
        assert added.exit_code == 0, added.output
        assert "abc" not in added.output
        listed = runner.invoke(app, ["wallet", "list", "--entity", "cli-co"])
        assert W in listed.stdout and "abc" not in listed.stdout
        wallets = json.loads(runner.invoke(app, ["wallet", "list", "--entity", "cli-co", "--json"]).stdout)
        assert [(w["chain"], w["chain_id"], w["address"], w["start_block"]) for w in wallets] == [("devnet", 31337, W, 0)]
        assert wallets[0]["rpc_hosts"] == [node.url.rstrip("/")] and "abc" not in json.dumps(wallets)
        synced = runner.invoke(app, ["wallet", "sync", "--entity", "cli-co"])
        assert synced.exit_code == 0, synced.output
        # genesis is stamped 2026-01-01T00:00 (the cutoff of 12-31): snapshots of 12-31 and 01-01 (01-02 is not final)
        assert "devnet: 1 new records, 2 balance snapshots" in synced.output
    with engine.connect() as conn:
        account = conn.execute(sa.text("SELECT name, chain, address, source FROM accounts")).one()
    assert tuple(account) == (f"devnet:{W}", "devnet", W, "evm")


def test_bad_wallets_are_refused_with_the_field_named(engine) -> None:
    runner = CliRunner()
    bad = runner.invoke(app, ["wallet", "add", "--entity", "x", "--chain", "ethereum", "--address", "0x123"])
    assert bad.exit_code == 1 and "not an EVM address: '0x123'" in bad.output
    custom = runner.invoke(app, ["wallet", "add", "--entity", "x", "--chain", "mychain", "--address", W])
    assert custom.exit_code == 1 and "give its chain id" in custom.output
    solana = runner.invoke(app, ["wallet", "add", "--entity", "x", "--chain", "solana", "--address", "not-base58!"])
    assert solana.exit_code == 1 and "not a Solana address" in solana.output


def test_a_chain_that_stays_down_is_recorded_and_named(engine) -> None:
    runner = CliRunner()
    dead = f"http://127.0.0.1:{free_port()}/v2/secret"
    assert runner.invoke(app, ["wallet", "add", "--entity", "down-co", "--create", "--chain", "base", "--address", W,
                               "--rpc-url", dead]).exit_code == 0
    synced = runner.invoke(app, ["wallet", "sync", "--entity", "down-co"])
    assert synced.exit_code == 2 and "base: FAILED" in synced.output and "secret" not in synced.output
    as_json = runner.invoke(app, ["wallet", "sync", "--entity", "down-co", "--json"])
    assert as_json.exit_code == 2 and "secret" not in as_json.stdout
    [base] = json.loads(as_json.stdout)["chains"]
    assert base["chain"] == "base" and base["error"] and base["staged"] == 0
    with engine.connect() as conn:
        entity_id = conn.execute(sa.text("SELECT id FROM entities WHERE name = 'down-co'")).scalar_one()
        outages = load_chain_outages(conn, entity_id, datetime(2026, 1, 2, tzinfo=timezone.utc),
                                     since=datetime(2000, 1, 1, tzinfo=timezone.utc))
    assert [o["chain"] for o in outages] == ["base"] and outages[0]["synced_through"] is None


def test_adding_a_wallet_again_keeps_its_urls_unless_new_ones_are_given(engine) -> None:
    runner = CliRunner()
    base = ["wallet", "add", "--entity", "again-co", "--create", "--chain", "polygon", "--address", W]
    assert runner.invoke(app, [*base, "--rpc-url", "http://127.0.0.1:1/a"]).exit_code == 0
    assert runner.invoke(app, [*base, "--label", "treasury"]).exit_code == 0
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT rpc_urls, label, chain_id FROM chain_wallets")).one() == (
            ["http://127.0.0.1:1/a"], "treasury", 137)
    assert runner.invoke(app, [*base, "--rpc-url", "http://127.0.0.1:2/b"]).exit_code == 0
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT rpc_urls FROM chain_wallets")).scalar_one() == ["http://127.0.0.1:2/b"]

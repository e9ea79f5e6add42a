"""Binance ingestion end to end: the real ccxt.binance against the local Binance server (signatures, timestamps
and recvWindow verified), staging in real PostgreSQL, the `coinfrs source` CLI, and the daily close run by
Dagster in-process with the source_sync asset syncing first."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import multiprocessing
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from ingestion.binance.client import ApiCredentials, BinanceOptions, make_client
from ingestion.binance.sync import sync_binance
from ingestion.ccxt.client import RetryPolicy, call_exchange
from ingestion.sources import add_source, sync_entity_sources
from orchestration.cli import app
from orchestration.close_runner import close_days
from samples.demo_binance import write_demo_prices
from samples.servers.binance_history import generate_history
from samples.servers.binance_server import BinanceServer, ServerState
from warehouse.entities import get_or_create_entity, resolve_entity
from warehouse.reports import list_breaks

FIRST, LAST = date(2026, 1, 1), date(2026, 3, 31)
KEY, SECRET = "test-read-only-key", "test-secret-0123456789"
MASTER_KEY = base64.b64encode(bytes(range(32))).decode()
FAST_RETRY = RetryPolicy(attempts=8, initial_seconds=0.01, max_seconds=0.05)
FAST = {"since": "2026-01-01", "rate_limit_ms": "0.05", "timeout_ms": "300", "retry_attempts": "8",
        "retry_initial_seconds": "0.01", "retry_max_seconds": "0.05"}


def options(server: BinanceServer) -> BinanceOptions:
    return BinanceOptions(api_url=server.base_url, since=datetime(2026, 1, 1, tzinfo=timezone.utc), rate_limit_ms=0.05,
                          timeout_ms=2000, retry=FAST_RETRY)


@pytest.fixture(scope="module")
def history():
    return generate_history(FIRST, LAST)


@pytest.fixture()
def server(history):
    state = ServerState(history)
    state.add_key(KEY, SECRET)
    state.add_key("trading-key", "trading-secret", enableSpotAndMarginTrading=True, enableWithdrawals=True)
    srv = BinanceServer(state).start()
    yield srv
    srv.stop()


@pytest.fixture(autouse=True)
def master_key(monkeypatch):
    monkeypatch.setenv("COINFRS_ENCRYPTION_KEY", MASTER_KEY)


def staging_digest(conn: sa.Connection, entity_id: int) -> dict[str, str]:
    """What a sync staged, independent of ids, runs and entity (run-time balances left out: they carry 'now')."""
    records = conn.execute(sa.text(
        "SELECT stream, source_raw_id, payload_hash FROM raw_records WHERE entity_id = :e ORDER BY 1, 2, 3"),
        dict(e=entity_id)).all()
    snapshots = conn.execute(sa.text(
        """SELECT account_type, snapshot_time, payload_hash FROM raw_balance_snapshots
           WHERE entity_id = :e AND payload->>'endpoint' IS NULL ORDER BY 1, 2, 3"""), dict(e=entity_id)).all()
    versions = conn.execute(sa.text(
        "SELECT count(*) - count(DISTINCT (stream, source_raw_id)) FROM raw_records WHERE entity_id = :e"),
        dict(e=entity_id)).scalar()
    derived = conn.execute(sa.text(
        "SELECT count(*) FROM raw_balance_snapshots WHERE entity_id = :e AND payload ? 'derived'"), dict(e=entity_id)).scalar()
    return {"records": hashlib.sha256(repr(records).encode()).hexdigest(), "record_count": len(records),
            "derived_count": derived,
            "snapshots": hashlib.sha256(repr(snapshots).encode()).hexdigest(), "snapshot_count": len(snapshots),
            "versions_beyond_one": versions}


@pytest.fixture(scope="module")
def reference(database_url, history) -> dict[str, str]:
    """What one uninterrupted sync without faults stages (the digest does not depend on the entity)."""
    from warehouse.db import get_engine

    state = ServerState(history)
    state.add_key(KEY, SECRET)
    srv = BinanceServer(state).start()
    engine = get_engine(database_url)
    with engine.begin() as conn:
        entity = get_or_create_entity(conn, "reference")
    sync_binance(engine, entity.id, "binance", ApiCredentials(KEY, SECRET), options(srv))
    srv.stop()
    with engine.connect() as conn:
        return staging_digest(conn, entity.id)


def credentials_file(tmp_path: Path, key: str = KEY, secret: str = SECRET) -> Path:
    path = tmp_path / "binance.json"
    path.write_text(json.dumps({"api_key": key, "api_secret": secret}))
    return path


def cli_add(server: BinanceServer, tmp_path: Path, entity: str, key: str = KEY, secret: str = SECRET):
    args = ["source", "add", "binance", "--entity", entity, "--create", "--credentials-file", str(credentials_file(tmp_path, key, secret)),
            "--api-url", server.base_url]
    for k, v in FAST.items():
        args += ["--since", v] if k == "since" else ["--set", f"{k}={v}"]
    return CliRunner().invoke(app, args)


def test_sync_stages_every_stream_exactly_and_a_rerun_changes_nothing(engine, server, history, reference):
    with engine.begin() as conn:
        entity = get_or_create_entity(conn, "acme")
    stats = sync_binance(engine, entity.id, "binance", ApiCredentials(KEY, SECRET), options(server))
    with engine.connect() as conn:
        counts = dict(conn.execute(sa.text("SELECT stream, count(*) FROM raw_records GROUP BY 1")).all())
        trade = conn.execute(sa.text(
            "SELECT source_raw_id, payload FROM raw_records WHERE stream = 'trades' ORDER BY id LIMIT 1")).one()
        first = staging_digest(conn, entity.id)
    assert counts == {"trades": sum(len(t) for t in history.trades.values()), "deposits": len(history.deposits),
                      "withdrawals": len(history.withdrawals), "transfers": len(history.transfers),
                      "futures_income": len(history.income), "converts": len(history.converts),
                      "dust": sum(len(d["userAssetDribbletDetails"]) for d in history.dust),
                      "margin_interest": len(history.interest),
                      "margin_trades": sum(len(t) for t in history.margin_trades.values()),
                      "margin_loans": len(history.loans["BORROW"]), "margin_repays": len(history.loans["REPAY"]),
                      "sub_accounts": len(history.sub_accounts), "sub_transfers": len(history.sub_transfers)}
    assert min(counts.values()) > 0
    # SPOT, FUTURES, MARGIN twice (the assets held and the debt), and the managed sub-account's SPOT, per day
    assert first["snapshot_count"] - first["derived_count"] == 5 * ((LAST - FIRST).days + 1)
    # and, rolled back from the run-time balance, the funding wallet and the non-managed sub-account, every day
    # through yesterday (the sync reads up to now)
    assert first["derived_count"] == 2 * (datetime.now(timezone.utc).date() - FIRST).days
    assert sorted(stats.symbols) == ["BNB/USDT", "BTC/USDT", "ETH/BTC", "ETH/USDT"]
    symbol = trade.payload["symbol"]
    assert trade.payload == next(t for t in history.trades[symbol] if t["id"] == trade.payload["id"])  # exact strings
    calls_before = sum(server.state.calls.values())
    sync_binance(engine, entity.id, "binance", ApiCredentials(KEY, SECRET), options(server))
    with engine.connect() as conn:
        assert staging_digest(conn, entity.id) == first
    assert first == reference and first["versions_beyond_one"] == 0
    # incremental: the rerun asks trades from the last id of each symbol, not from the start
    assert sum(server.state.calls.values()) - calls_before <= calls_before


def test_an_account_that_is_not_a_master_syncs_without_sub_accounts(engine, server):
    server.state.is_master = False
    with engine.begin() as conn:
        entity = get_or_create_entity(conn, "solo")
    stats = sync_binance(engine, entity.id, "binance", ApiCredentials(KEY, SECRET), options(server))
    assert "sub_transfers" not in stats.records_seen and "sub_accounts" not in stats.records_seen
    assert stats.notes and "not a master account" in stats.notes[0]
    assert stats.records_inserted["margin_trades"] > 0


def test_cli_refuses_a_trading_key_and_names_the_permissions(engine, server, tmp_path):
    result = cli_add(server, tmp_path, "acme", key="trading-key", secret="trading-secret")
    assert result.exit_code == 1
    message = " ".join(result.output.split())
    assert "not read-only" in message and "Enable Withdrawals" in message and "Enable Spot & Margin Trading" in message
    assert "trading-secret" not in result.output
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM source_credentials")).scalar() == 0


def test_cli_add_stores_the_key_encrypted_then_test_and_sync(engine, server, tmp_path):
    result = cli_add(server, tmp_path, "acme")
    assert result.exit_code == 0, result.output
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT name, kind, config, ciphertext FROM source_credentials")).one()
    assert (row.name, row.kind, row.config["api_url"]) == ("binance", "binance", server.base_url)
    assert SECRET.encode() not in bytes(row.ciphertext) and KEY.encode() not in bytes(row.ciphertext)
    tested = CliRunner().invoke(app, ["source", "test", "--entity", "acme"])
    assert tested.exit_code == 0, tested.output
    assert "binance: OK" in tested.output and "USDT" in tested.output and SECRET not in tested.output
    synced = CliRunner().invoke(app, ["source", "sync", "--entity", "acme"])
    assert synced.exit_code == 0, synced.output
    assert "binance: succeeded" in synced.output
    listed = CliRunner().invoke(app, ["source", "list", "--entity", "acme"])
    assert "succeeded" in listed.output and SECRET not in listed.output
    tested = CliRunner().invoke(app, ["source", "test", "--entity", "acme", "--json"])
    assert tested.exit_code == 0, tested.output
    found = json.loads(tested.stdout)
    assert [(f["source"], f["ok"], f["error"]) for f in found] == [("binance", True, None)]
    assert "USDT" in json.dumps(found[0]["balances"]) and SECRET not in tested.stdout
    resynced = CliRunner().invoke(app, ["source", "sync", "--entity", "acme", "--json"])
    assert resynced.exit_code == 0, resynced.output
    [result] = json.loads(resynced.stdout)
    assert (result["source"], result["kind"], result["status"], result["errors"]) == ("binance", "binance", "succeeded", [])
    assert all(isinstance(n, int) for n in result["records_inserted"].values()) and result["records_inserted"]
    assert result["calls"] > 0 and SECRET not in resynced.stdout
    # a key that later gains a trading permission is refused before the next run
    server.state.keys[KEY][1]["enableFutures"] = True
    again = CliRunner().invoke(app, ["source", "sync", "--entity", "acme"])
    assert again.exit_code == 1 and "Enable Futures" in " ".join(again.output.split())


def priced(engine) -> None:
    """A price for every asset of the history before it starts (the account's own USDT trades price them after, USDT
    is pegged): without one, the deposits of the first day are unpriced and so are the closes."""
    with engine.begin() as conn:
        write_demo_prices(conn, resolve_entity(conn, "acme"), FIRST, ("BTC", "ETH", "BNB", "XRP", "DOGE"))


def test_the_account_closes_every_day_with_zero_breaks_with_20_percent_of_calls_failing(engine, server, tmp_path,
                                                                                       reference):
    assert cli_add(server, tmp_path, "acme").exit_code == 0
    priced(engine)
    server.state.failure_rate = 0.2
    run = close_days(["acme"], FIRST, LAST, instance=dg.DagsterInstance.ephemeral())  # source_sync syncs first
    assert run.success, run.error
    faults = dict(server.state.faults)
    with engine.connect() as conn:
        entity_id = conn.execute(sa.text("SELECT id FROM entities WHERE name = 'acme'")).scalar()
        assert staging_digest(conn, entity_id) == reference
        breaks = list_breaks(conn, entity_id, FIRST, LAST)
        statuses = dict(conn.execute(sa.text(
            "SELECT status, count(*) FROM closes WHERE entity_id = :e GROUP BY 1"), dict(e=entity_id)).all())
        checked = dict(conn.execute(sa.text(
            """SELECT a.account_type || coalesce(nullif(':' || a.sub_account, ':'), ''), count(*) FROM positions p
               JOIN accounts a ON a.id = p.account_id
               WHERE p.reported_quantity IS NOT NULL AND a.entity_id = :e GROUP BY 1"""), dict(e=entity_id)).all())
        final = dict(conn.execute(sa.text(
            """SELECT a.account_type || ':' || coalesce(a.sub_account, '') || ':' || s.symbol, p.computed_quantity
               FROM positions p JOIN accounts a ON a.id = p.account_id JOIN assets s ON s.id = p.asset_id
               WHERE p.date = :d AND a.entity_id = :e"""), dict(d=LAST, e=entity_id)).all())
        sync_status = conn.execute(sa.text("SELECT last_sync_status FROM source_credentials")).scalar()
    assert sum(faults.values()) >= 10 and {"429", "5xx", "timeout"} <= set(faults)
    assert sync_status == "succeeded"
    assert breaks == []
    assert statuses == {"closed": (LAST - FIRST).days + 1}
    # reported every day: the master's account types and the managed sub-account from Binance's daily snapshots, the
    # other sub-account and the funding wallet rolled back from their run-time balances
    assert set(checked) == {"spot", "margin", "margin_loan", "futures", "funding", "spot:desk_virtual@northwind.example",
                            "spot:ops_virtual@northwind.example"}
    assert min(checked.values()) >= (LAST - FIRST).days
    history = server.state.history
    expected = {f"{kind.lower()}::{asset}": qty for kind, held in history.balances.items() for asset, qty in held.items()}
    expected |= {f"margin_loan::{asset}": -(borrowed + interest) for asset, (borrowed, interest) in history.margin_debt.items()}
    expected |= {f"spot:{email}:{asset}": qty for email, held in history.sub_balances.items() for asset, qty in held.items()}
    assert {"FUNDING", "MARGIN"} <= set(history.balances) and len(history.sub_balances) == 2
    assert {k: v for k, v in final.items() if k in expected} == expected


def test_a_killed_sync_rerun_gives_identical_staging(engine, server, tmp_path, database_url, reference):
    assert cli_add(server, tmp_path, "acme").exit_code == 0
    with engine.connect() as conn:
        entity_id = conn.execute(sa.text("SELECT id FROM entities WHERE name = 'acme'")).scalar()
    server.state.delay_seconds = 0.02  # a slow exchange: the run lasts a few seconds
    child = multiprocessing.get_context("fork").Process(target=_sync_in_child, args=(database_url, "acme"))
    child.start()
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            with engine.connect() as conn:
                staged = conn.execute(sa.text("SELECT count(*) FROM raw_records WHERE entity_id = :e"),
                                      dict(e=entity_id)).scalar()
            if staged > 0:
                break
            time.sleep(0.01)
        os.kill(child.pid, signal.SIGKILL)  # no cleanup, no rollback handler: the process just stops
        child.join(10)
    finally:
        if child.is_alive():
            child.kill()
    with engine.connect() as conn:
        partial = staging_digest(conn, entity_id)
    assert 0 < partial["record_count"] < reference["record_count"], "the kill must land mid-run"
    server.state.delay_seconds = 0.0
    results = sync_entity_sources(engine, get_entity(engine, "acme"))
    assert [r.status for r in results] == ["succeeded"]
    with engine.connect() as conn:
        assert staging_digest(conn, entity_id) == reference


def _sync_in_child(database_url: str, entity_name: str) -> None:
    """The sync a killed process was running (a forked process with its own database connection)."""
    from warehouse.db import normalize_url

    engine = sa.create_engine(normalize_url(database_url))
    sync_entity_sources(engine, get_entity(engine, entity_name))


def get_entity(engine, name: str):
    with engine.begin() as conn:
        return get_or_create_entity(conn, name)


def test_418_stops_at_once_and_is_recorded(engine, server):
    with engine.begin() as conn:
        entity = get_or_create_entity(conn, "acme")
    add_source(engine, entity, "binance", "binance", {"api_key": KEY, "api_secret": SECRET},
               {**FAST, "api_url": server.base_url})
    server.state.banned = True
    before = sum(server.state.calls.values())
    [result] = sync_entity_sources(engine, entity)
    assert result.status == "unavailable" and "418" in result.message and "without retrying" in result.message
    assert sum(server.state.calls.values()) - before == 1
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT last_sync_status FROM source_credentials")).scalar() == "unavailable"
        outages = conn.execute(sa.text("SELECT min(date), max(date), min(reason) FROM source_outages")).one()
    # nothing was read since 2026-01-01: every day from there to today may be incomplete
    assert outages[0] == FIRST and outages[1] >= date.today() - timedelta(days=1)
    assert "source 'binance' unavailable" in outages[2] and "418" in outages[2]


def test_a_source_that_stays_down_makes_the_close_partial_and_says_which(engine, server, tmp_path):
    assert cli_add(server, tmp_path, "acme").exit_code == 0
    priced(engine)
    day = FIRST + timedelta(days=9)
    server.state.failure_rate, server.state.failure_kinds = 1.0, ("5xx",)  # down for every retry
    run = close_days(["acme"], day, day, instance=dg.DagsterInstance.ephemeral())
    assert run.success, run.error  # the close goes on with what is staged ...
    with engine.connect() as conn:
        close = conn.execute(sa.text("SELECT status, message FROM closes WHERE date = :d"), dict(d=day)).one()
        status = conn.execute(sa.text("SELECT last_sync_status FROM source_credentials")).scalar()
    assert status == "unavailable"
    assert close.status == "partial"  # ... and says the day is incomplete, naming the source, never 'closed' empty
    assert "source down: binance" in close.message and "source 'binance' unavailable" in close.message
    assert "did not answer" in close.message
    server.state.failure_rate = 0.0  # the exchange is back: the next run re-reads those days and closes them
    run = close_days(["acme"], FIRST, day, instance=dg.DagsterInstance.ephemeral())
    assert run.success, run.error
    with engine.connect() as conn:
        statuses = dict(conn.execute(sa.text("SELECT status, count(*) FROM closes GROUP BY 1")).all())
        left = conn.execute(sa.text("SELECT count(*) FROM source_outages")).scalar()
    assert (statuses, left) == ({"closed": 10}, 0)


def test_a_wrong_secret_is_an_access_error_without_retries(server):
    exchange = make_client(ApiCredentials(KEY, "not-the-secret"), options(server))
    before = sum(server.state.calls.values())
    with pytest.raises(Exception) as caught:
        call_exchange(exchange, "apiRestrictions", exchange.sapiGetAccountApiRestrictions, policy=FAST_RETRY)
    assert type(caught.value).__name__ == "SourceAccessError" and "refused the API key" in str(caught.value)
    assert "not-the-secret" not in str(caught.value)
    assert sum(server.state.calls.values()) - before == 1


def test_clock_skew_minus_1021_resyncs_and_succeeds(server):
    server.state.clock_offset_ms = -30_000  # the exchange's clock is 30 s behind ours
    exchange = make_client(ApiCredentials(KEY, SECRET), options(server))
    restrictions = call_exchange(exchange, "apiRestrictions", exchange.sapiGetAccountApiRestrictions, policy=FAST_RETRY)
    assert restrictions["enableReading"] is True
    assert server.state.faults["-1021 (clock)"] == 1
    assert abs(exchange.options["timeDifference"] - 30_000) < 2_000


def test_429_waits_for_retry_after_and_5xx_timeouts_are_retried(server):
    exchange = make_client(ApiCredentials(KEY, SECRET), options(server))
    exchange.timeout = 300
    server.state.retry_after = "1"
    server.state.next_faults = ["429", "5xx", "timeout"]
    started = time.monotonic()
    body = call_exchange(exchange, "time", exchange.publicGetTime, policy=FAST_RETRY)
    assert "serverTime" in body
    assert time.monotonic() - started >= 1.0
    assert dict(server.state.faults) == {"429": 1, "5xx": 1, "timeout": 1}
    server.state.failure_rate, server.state.failure_kinds = 1.0, ("5xx",)
    with pytest.raises(Exception) as caught:
        call_exchange(exchange, "time", exchange.publicGetTime, policy=RetryPolicy(attempts=3, initial_seconds=0.01))
    assert type(caught.value).__name__ == "SourceUnavailable" and "after 3 attempts" in str(caught.value)

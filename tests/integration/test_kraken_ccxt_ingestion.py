"""Any ccxt exchange, proven on Kraken: the real ccxt.kraken against the local Kraken server (API-Sign verified,
nonces checked), the generic connector staging Kraken's own records in real PostgreSQL, the `coinfrs source` CLI,
and the daily close (Dagster in-process, source_sync first) with the ledger's running balance as reported positions."""

from __future__ import annotations

import base64
import hashlib
import json
import multiprocessing
import os
import signal
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from ingestion.ccxt.client import CcxtOptions, exchange_id_of, make_client
from ingestion.ccxt.sync import CcxtSync
from ingestion.ccxt.client import RetryPolicy
from ingestion.sources import add_source, sync_entity_sources
from orchestration.cli import app
from orchestration.close_runner import close_days
from tests.integration.manual_prices import price_known_assets
from tests.servers.kraken_history import generate_history
from tests.servers.kraken_server import KrakenServer, KrakenState
from transforms.mappers import StagedRecord, map_record
from warehouse.entities import get_or_create_entity
from warehouse.numbers import D
from warehouse.reports import list_breaks

FIRST, LAST = date(2026, 1, 1), date(2026, 3, 31)
KEY, SECRET = "kraken-read-only-key", base64.b64encode(b"kraken-test-secret-0123456789abcdef").decode()
MASTER_KEY = base64.b64encode(bytes(range(32))).decode()
FAST = {"since": "2026-01-01", "rate_limit_ms": "0.05", "timeout_ms": "300", "retry_attempts": "10",
        "retry_initial_seconds": "0.01", "retry_max_seconds": "0.05"}
SYMBOL = {"XXBT": "BTC", "XETH": "ETH", "ZUSD": "USD", "DOT": "DOT"}


@pytest.fixture(scope="module")
def history():
    return generate_history(FIRST, LAST)


@pytest.fixture()
def server(history):
    state = KrakenState(history)
    state.add_key(KEY, SECRET)
    state.add_key("trading-key", SECRET, "trade", "withdraw")
    srv = KrakenServer(state).start()
    yield srv
    srv.stop()


@pytest.fixture(autouse=True)
def master_key(monkeypatch):
    monkeypatch.setenv("COINFRS_ENCRYPTION_KEY", MASTER_KEY)


def options(server: KrakenServer) -> CcxtOptions:
    return CcxtOptions(api_url=server.base_url, since=datetime(2026, 1, 1, tzinfo=timezone.utc), rate_limit_ms=0.05,
                       timeout_ms=2000, retry=RetryPolicy(attempts=10, initial_seconds=0.01, max_seconds=0.05))


def staging_digest(conn: sa.Connection, entity_id: int) -> dict:
    records = conn.execute(sa.text(
        "SELECT stream, source_raw_id, payload_hash FROM raw_records WHERE entity_id = :e ORDER BY 1, 2, 3"),
        dict(e=entity_id)).all()
    snapshots = conn.execute(sa.text(
        """SELECT snapshot_time, balances::text, payload_hash FROM raw_balance_snapshots
           WHERE entity_id = :e AND payload->>'method' IS NULL ORDER BY 1, 2, 3"""), dict(e=entity_id)).all()
    return {"records": hashlib.sha256(repr(records).encode()).hexdigest(), "record_count": len(records),
            "snapshots": hashlib.sha256(repr(snapshots).encode()).hexdigest(), "snapshot_count": len(snapshots)}


@pytest.fixture(scope="module")
def reference(database_url, history) -> dict:
    """What one uninterrupted sync without faults stages."""
    from warehouse.db import get_engine

    state = KrakenState(history)
    state.add_key(KEY, SECRET)
    srv = KrakenServer(state).start()
    engine = get_engine(database_url)
    with engine.begin() as conn:
        entity = get_or_create_entity(conn, "kraken-reference")
    CcxtSync(engine, entity.id, "kraken", make_client("kraken", KEY, SECRET, options(srv)), options(srv)).run()
    srv.stop()
    with engine.connect() as conn:
        return staging_digest(conn, entity.id)


def cli_add(server: KrakenServer, tmp_path: Path, entity: str, kind: str = "kraken", key: str = KEY):
    path = tmp_path / "kraken.json"
    path.write_text(json.dumps({"api_key": key, "api_secret": SECRET}))
    args = ["source", "add", kind, "--entity", entity, "--create", "--credentials-file", str(path), "--api-url", server.base_url]
    for k, v in FAST.items():
        args += ["--since", v] if k == "since" else ["--set", f"{k}={v}"]
    return CliRunner().invoke(app, args)


def entity_id(engine, name: str) -> int:
    with engine.begin() as conn:
        return get_or_create_entity(conn, name).id


def test_sync_stages_kraken_records_exactly_and_a_rerun_changes_nothing(engine, server, history, reference):
    eid = entity_id(engine, "acme")
    exchange = make_client("kraken", KEY, SECRET, options(server))
    stats = CcxtSync(engine, eid, "kraken", exchange, options(server)).run()
    with engine.connect() as conn:
        counts = dict(conn.execute(sa.text("SELECT stream, count(*) FROM raw_records GROUP BY 1")).all())
        ledger = conn.execute(sa.text(
            "SELECT source_raw_id, payload FROM raw_records WHERE stream = 'ledger' ORDER BY id LIMIT 1")).one()
        first = staging_digest(conn, eid)
        runtime = conn.execute(sa.text(
            "SELECT balances FROM raw_balance_snapshots WHERE payload->>'method' = 'fetch_balance'")).scalar()
    assert counts == {"ledger": len(history.ledger), "trades": len(history.trades), "deposits": len(history.deposits),
                      "withdrawals": len(history.withdrawals)}
    ledger_id = ledger.source_raw_id.split("|", 1)[1]
    assert ledger.payload == {**history.ledger[ledger_id], "id": ledger_id}  # Kraken's exact strings (+ ccxt's id)
    assert runtime == {SYMBOL[a]: f"{v:.10f}" for a, v in history.balances.items()}  # text, never a float
    assert stats.calls > 0 and first == reference
    calls_before = sum(server.state.calls.values())
    CcxtSync(engine, eid, "kraken", make_client("kraken", KEY, SECRET, options(server)), options(server)).run()
    with engine.connect() as conn:
        assert staging_digest(conn, eid) == first
    assert sum(server.state.calls.values()) - calls_before < calls_before / 2  # incremental: only the last window


def test_ledger_entries_map_to_exact_legs():
    info = {"refid": "TQ2ABC-DEF", "time": 1767300000.1234, "type": "trade", "subtype": "", "aclass": "currency",
            "asset": "ZUSD", "amount": "-1234.5678900000", "fee": "3.2098700000", "balance": "99.0000000000",
            "id": "L1ABC-DEFGH-IJKLMN"}
    record = StagedRecord(1, "kraken", "ledger", "kraken", "kraken|L1ABC-DEFGH-IJKLMN", None, info)
    legs = map_record(record)
    assert [(leg.asset, leg.quantity, leg.kind) for leg in legs] == [
        ("USD", D("-1234.56789"), "sell"), ("USD", D("-3.20987"), "fee")]
    withdrawal = map_record(StagedRecord(2, "kraken", "ledger", "kraken", "kraken|L2", None,
                                         {**info, "type": "withdrawal", "asset": "XXBT", "amount": "-0.5", "fee": "0.00015"}))
    assert [(leg.asset, leg.quantity, leg.kind) for leg in withdrawal] == [
        ("BTC", D("-0.5"), "withdrawal"), ("BTC", D("-0.00015"), "fee")]
    assert map_record(StagedRecord(3, "kraken", "trades", "kraken", "kraken|T1", None, {"pair": "XXBTZUSD"})) == []
    with pytest.raises(ValueError, match="L3.*cannot be read.*amount='abc'"):
        map_record(StagedRecord(4, "kraken", "ledger", "kraken", "kraken|L3", None, {**info, "amount": "abc"}))


def test_cli_refuses_a_trading_key_and_accepts_a_read_only_one(engine, server, tmp_path, history):
    refused = cli_add(server, tmp_path, "acme", key="trading-key")
    assert refused.exit_code == 1
    message = " ".join(refused.output.split())
    assert "not read-only" in message and "Create & Modify Orders" in message and "Withdraw Funds" in message
    assert SECRET not in refused.output
    added = cli_add(server, tmp_path, "acme", kind="ccxt.kraken")
    assert added.exit_code == 0, added.output
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT name, kind, ciphertext FROM source_credentials")).one()
    assert (row.name, row.kind) == ("ccxt.kraken", "ccxt.kraken") and SECRET.encode() not in bytes(row.ciphertext)
    tested = CliRunner().invoke(app, ["source", "test", "--entity", "acme"])
    assert tested.exit_code == 0, tested.output
    shown = " ".join(tested.output.split())
    assert "ccxt.kraken: OK — read-only key (probed: cannot trade, cannot withdraw); 4 markets" in shown and f"BTC {history.balances['XXBT']:.10f}" in shown and "4 markets" in shown
    synced = CliRunner().invoke(app, ["source", "sync", "--entity", "acme"])
    assert synced.exit_code == 0 and "ccxt.kraken: succeeded" in synced.output, synced.output
    unknown = CliRunner().invoke(app, ["source", "add", "ccxt.nosuchexchange", "--entity", "acme"])
    assert unknown.exit_code == 1 and "ccxt has no exchange 'nosuchexchange'" in unknown.output


def test_the_kraken_account_closes_every_day_with_zero_breaks_with_20_percent_of_calls_failing(engine, server, tmp_path,
                                                                                              history, reference):
    assert cli_add(server, tmp_path, "acme").exit_code == 0
    price_known_assets(engine, "acme", FIRST - timedelta(days=1))
    server.state.failure_rate = 0.2
    run = close_days(["acme"], FIRST, LAST, instance=dg.DagsterInstance.ephemeral())
    assert run.success, run.error
    with engine.connect() as conn:
        eid = conn.execute(sa.text("SELECT id FROM entities WHERE name = 'acme'")).scalar()
        assert staging_digest(conn, eid) == reference
        breaks = list_breaks(conn, eid, FIRST, LAST)
        statuses = dict(conn.execute(sa.text(
            "SELECT status, count(*) FROM closes WHERE entity_id = :e GROUP BY 1"), dict(e=eid)).all())
        unpriced = conn.execute(sa.text(
            "SELECT DISTINCT s.symbol, m.what FROM pnl_missing_prices m JOIN assets s ON s.id = m.asset_id")).all()
        checked = conn.execute(sa.text(
            """SELECT count(DISTINCT p.date) FROM positions p JOIN accounts a ON a.id = p.account_id
               WHERE p.reported_quantity IS NOT NULL AND a.entity_id = :e"""), dict(e=eid)).scalar()
        final = dict(conn.execute(sa.text(
            """SELECT s.symbol, p.computed_quantity FROM positions p JOIN accounts a ON a.id = p.account_id
               JOIN assets s ON s.id = p.asset_id WHERE p.date = :d AND a.entity_id = :e"""), dict(d=LAST, e=eid)).all())
    assert sum(server.state.faults.values()) >= 10 and {"rate", "5xx", "timeout"} <= set(server.state.faults)
    assert breaks == []
    assert statuses == {"closed": (LAST - FIRST).days + 1}, unpriced
    assert checked == (LAST - FIRST).days + 1
    assert final == {SYMBOL[a]: v for a, v in history.balances.items()}


def test_a_source_down_after_retries_makes_the_close_partial_naming_it(engine, server, tmp_path):
    assert cli_add(server, tmp_path, "acme").exit_code == 0
    server.state.failure_rate, server.state.failure_kinds = 1.0, ("5xx",)
    run = close_days(["acme"], date(2026, 1, 1), date(2026, 1, 3), instance=dg.DagsterInstance.ephemeral())
    assert run.success, run.error
    with engine.connect() as conn:
        closes = conn.execute(sa.text("SELECT status, message FROM closes ORDER BY date")).all()
        sync = conn.execute(sa.text("SELECT last_sync_status, last_sync_message FROM source_credentials")).one()
    assert sync.last_sync_status == "unavailable" and "after 10 attempts" in sync.last_sync_message
    assert [c.status for c in closes] == ["partial"] * 3
    assert all("source down: kraken" in c.message for c in closes)
    server.state.failure_rate = 0.0  # back up: the next sync clears the outages it recorded
    [result] = sync_entity_sources(engine, get_entity(engine, "acme"))
    assert result.status == "succeeded"
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM source_outages")).scalar() == 0


def test_a_killed_sync_rerun_gives_identical_staging(engine, server, tmp_path, database_url, reference):
    assert cli_add(server, tmp_path, "acme").exit_code == 0
    eid = entity_id(engine, "acme")
    server.state.delay_seconds = 0.03
    child = multiprocessing.get_context("fork").Process(target=_sync_in_child, args=(database_url, "acme"))
    child.start()
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            with engine.connect() as conn:
                if conn.execute(sa.text("SELECT count(*) FROM raw_records WHERE entity_id = :e"), dict(e=eid)).scalar():
                    break
            time.sleep(0.01)
        os.kill(child.pid, signal.SIGKILL)
        child.join(10)
    finally:
        if child.is_alive():
            child.kill()
    with engine.connect() as conn:
        partial = staging_digest(conn, eid)
    assert 0 < partial["record_count"] < reference["record_count"], "the kill must land mid-run"
    server.state.delay_seconds = 0.0
    assert [r.status for r in sync_entity_sources(engine, get_entity(engine, "acme"))] == ["succeeded"]
    with engine.connect() as conn:
        assert staging_digest(conn, eid) == reference


def _sync_in_child(database_url: str, entity_name: str) -> None:
    from warehouse.db import normalize_url

    engine = sa.create_engine(normalize_url(database_url))
    sync_entity_sources(engine, get_entity(engine, entity_name))


def get_entity(engine, name: str):
    with engine.begin() as conn:
        return get_or_create_entity(conn, name)


def test_a_wrong_secret_is_refused_without_retries(engine, server):
    eid = entity_id(engine, "acme")
    with pytest.raises(Exception) as caught:
        add_source(engine, get_entity(engine, "acme"), "kraken", "kraken",
                   {"api_key": KEY, "api_secret": base64.b64encode(b"wrong").decode()},
                   {**FAST, "api_url": server.base_url})
    assert "EAPI:Invalid signature" in str(caught.value)
    assert server.state.calls["/0/private/BalanceEx"] == 1 and eid


def test_streams_the_exchange_does_not_have_are_skipped_and_binance_keeps_its_connector(engine, server):
    exchange = make_client("kraken", KEY, SECRET, options(server))
    exchange.has = {**exchange.has, "fetchDeposits": False}
    sync = CcxtSync(engine, entity_id(engine, "acme"), "kraken", exchange, options(server))
    sync.sync_stream("deposits")
    assert sync.stats.skipped_streams == ["deposits"] and not server.state.calls
    with pytest.raises(ValueError, match="binance has its own connector"):
        exchange_id_of("ccxt.binance")

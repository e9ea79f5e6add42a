"""Circuit breakers per source against the local Binance server failing, then recovering: open after N consecutive
failed syncs (no call reaches the exchange while open, the days are outages and the close says why), a half-open
probe after the cool-down (only one process probes), closed again on success; the state is in the database, shown by
``coinfrs source list --json``."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone

import dagster as dg
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from ingestion.breakers import admit_sync, breaker_states
from ingestion.sources import sync_entity_sources
from ingestion.retry import BreakerPolicy, BreakerState, breaker_admits, breaker_after
from orchestration.cli import app
from orchestration.close_runner import close_days
from samples.servers.binance_history import generate_history
from samples.servers.binance_server import BinanceServer, ServerState
from warehouse.entities import resolve_entity

FIRST, LAST = date(2026, 1, 1), date(2026, 1, 3)
KEY, SECRET = "breaker-key", "breaker-secret-0123456789"
MASTER_KEY = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="


@pytest.fixture()
def server(monkeypatch):
    monkeypatch.setenv("COINFRS_ENCRYPTION_KEY", MASTER_KEY)
    state = ServerState(generate_history(FIRST, LAST))
    state.add_key(KEY, SECRET)
    srv = BinanceServer(state).start()
    yield srv
    srv.stop()


def add(server: BinanceServer, tmp_path) -> None:
    credentials = tmp_path / "binance.json"
    credentials.write_text(json.dumps({"api_key": KEY, "api_secret": SECRET}))
    result = CliRunner().invoke(app, [
        "source", "add", "binance", "--entity", "acme", "--create", "--credentials-file", str(credentials), "--api-url",
        server.base_url, "--since", str(FIRST), "--set", f"until={LAST}", "--set", "rate_limit_ms=0.05",
        "--set", "retry_attempts=2", "--set", "retry_initial_seconds=0.01", "--set", "retry_max_seconds=0.02"])
    assert result.exit_code == 0, result.output


def sync(engine):
    with engine.connect() as conn:
        entity = resolve_entity(conn, "acme")
    [result] = sync_entity_sources(engine, entity)
    with engine.connect() as conn:
        return result, breaker_states(conn, entity.id)["binance"]


def test_the_breaker_opens_skips_the_source_probes_after_the_cool_down_and_closes_on_success(
        engine, server, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("COINFRS_BREAKER_FAILURES", "2")
    monkeypatch.setenv("COINFRS_BREAKER_COOLDOWN_SECONDS", "3600")
    add(server, tmp_path)
    server.state.failure_rate, server.state.failure_kinds = 1.0, ("5xx",)  # the exchange is down

    first, breaker = sync(engine)
    assert first.status == "unavailable" and (breaker["state"], breaker["consecutive_failures"]) == ("closed", 1)
    second, breaker = sync(engine)
    assert second.status == "unavailable" and (breaker["state"], breaker["consecutive_failures"]) == ("open", 2)
    assert "circuit breaker now open since" in second.message

    calls = sum(server.state.calls.values())
    skipped, breaker = sync(engine)  # open and cooling down: the exchange is not called at all
    assert skipped.status == "circuit_open" and sum(server.state.calls.values()) == calls
    assert "circuit breaker open since" in skipped.message and "next probe after" in skipped.message
    listed = json.loads(CliRunner().invoke(app, ["source", "list", "--entity", "acme", "--json"]).output)
    assert listed[0]["circuit_breaker"]["state"] == "open" and listed[0]["last_sync_status"] == "circuit_open"

    run = close_days(["acme"], LAST, LAST, instance=dg.DagsterInstance.ephemeral())  # its sync is skipped too
    assert run.success, run.error
    with engine.connect() as conn:
        close = conn.execute(sa.text("SELECT status, message FROM closes WHERE date = :d"), dict(d=LAST)).one()
    assert close.status == "partial" and "circuit breaker open since" in close.message, close.message
    assert sum(server.state.calls.values()) == calls

    monkeypatch.setenv("COINFRS_BREAKER_COOLDOWN_SECONDS", "0")  # cooled down: the next sync probes
    probe, breaker = sync(engine)  # still down: the probe fails and the breaker opens again
    assert probe.status == "unavailable" and breaker["state"] == "open" and breaker["consecutive_failures"] == 3
    assert sum(server.state.calls.values()) > calls

    server.state.failure_rate = 0.0  # the exchange is back
    recovered, breaker = sync(engine)
    assert recovered.status == "succeeded"
    assert (breaker["state"], breaker["consecutive_failures"]) == ("closed", 0)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM source_outages")).scalar() == 0


def test_only_one_process_probes_a_half_open_breaker(engine, server, tmp_path, monkeypatch) -> None:
    add(server, tmp_path)
    policy = BreakerPolicy(failure_threshold=1, cool_down_seconds=60)
    with engine.begin() as conn:
        source_id = conn.execute(sa.text("SELECT id FROM source_credentials")).scalar()
        opened = datetime.now(timezone.utc) - timedelta(seconds=61)
        conn.execute(sa.text("INSERT INTO source_breakers (source_id, state, consecutive_failures, opened_at)"
                             " VALUES (:s, 'open', 1, :o)"), dict(s=source_id, o=opened))
    with engine.begin() as first:
        assert admit_sync(first, source_id, policy).action == "probe"
    with engine.begin() as second:  # another process, while the probe runs
        assert admit_sync(second, source_id, policy).action == "skip"


def test_the_rules() -> None:
    policy = BreakerPolicy(failure_threshold=3, cool_down_seconds=10)
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    state = BreakerState()
    for n in (1, 2):
        state = breaker_after(state, False, now, policy, "down")
        assert (state.state, state.consecutive_failures) == ("closed", n)
    state = breaker_after(state, False, now, policy, "down")
    assert state.state == "open" and state.opened_at == now
    assert breaker_admits(state, now + timedelta(seconds=9), policy) == "skip"
    assert breaker_admits(state, now + timedelta(seconds=10), policy) == "probe"
    assert breaker_after(BreakerState("half_open", 3, now, now), False, now, policy).state == "open"
    assert breaker_after(BreakerState("half_open", 3, now, now), True, now, policy) == BreakerState()
    with pytest.raises(ValueError, match="COINFRS_BREAKER_FAILURES"):
        import os
        os.environ["COINFRS_BREAKER_FAILURES"] = "three"
        try:
            BreakerPolicy.from_env()
        finally:
            del os.environ["COINFRS_BREAKER_FAILURES"]

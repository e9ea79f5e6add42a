"""Binance ingestion end to end: the real ccxt.binance against the local Binance server (signatures verified),
staging in real PostgreSQL, the canonical build and the daily close run by Dagster in-process."""

from __future__ import annotations

import hashlib
from datetime import date, datetime, timezone

import dagster as dg
import pytest
import sqlalchemy as sa

from ingestion.exchanges.binance import ApiCredentials, BinanceOptions, sync_binance
from ingestion.exchanges.resilience import RetryPolicy, SourceAccessError, SourceUnavailable
from orchestration.close_runner import close_days
from tests.servers.binance_history import generate_history
from tests.servers.binance_server import BinanceServer, ServerState
from warehouse.entities import get_or_create_entity
from warehouse.reports import list_breaks

FIRST, LAST = date(2026, 1, 1), date(2026, 3, 31)
KEY, SECRET = "test-read-only-key", "test-secret-0123456789"
FAST_RETRY = RetryPolicy(attempts=8, initial_seconds=0.01, max_seconds=0.05)


def options(server: BinanceServer, **kw) -> BinanceOptions:
    return BinanceOptions(api_url=server.base_url, since=datetime(2026, 1, 1, tzinfo=timezone.utc), rate_limit_ms=0.05,
                          timeout_ms=kw.pop("timeout_ms", 2000), retry=kw.pop("retry", FAST_RETRY), **kw)


@pytest.fixture(scope="module")
def history():
    return generate_history(FIRST, LAST)


@pytest.fixture()
def server(history):
    state = ServerState(history)
    state.add_key(KEY, SECRET)
    srv = BinanceServer(state).start()
    yield srv
    srv.stop()


def staging_digest(conn: sa.Connection, entity_id: int) -> dict[str, str]:
    records = conn.execute(sa.text(
        "SELECT stream, source_raw_id, payload_hash FROM raw_records WHERE entity_id = :e ORDER BY 1, 2, 3"),
        dict(e=entity_id)).all()
    snapshots = conn.execute(sa.text(
        """SELECT account_type, snapshot_time, payload_hash FROM raw_balance_snapshots
           WHERE entity_id = :e AND payload->>'endpoint' IS NULL ORDER BY 1, 2, 3"""), dict(e=entity_id)).all()
    dupes = conn.execute(sa.text(
        "SELECT count(*) - count(DISTINCT (stream, source_raw_id)) FROM raw_records WHERE entity_id = :e"),
        dict(e=entity_id)).scalar()
    return {"records": hashlib.sha256(repr(records).encode()).hexdigest(), "record_count": str(len(records)),
            "snapshots": hashlib.sha256(repr(snapshots).encode()).hexdigest(), "snapshot_count": str(len(snapshots)),
            "versions_beyond_one": str(dupes)}


def test_sync_stages_every_stream_exactly(engine, server, history):
    with engine.begin() as conn:
        entity = get_or_create_entity(conn, "acme")
    stats = sync_binance(engine, entity.id, "binance", ApiCredentials(KEY, SECRET), options(server))
    with engine.connect() as conn:
        counts = dict(conn.execute(sa.text("SELECT stream, count(*) FROM raw_records GROUP BY 1")).all())
        trade = conn.execute(sa.text(
            "SELECT source_raw_id, payload FROM raw_records WHERE stream = 'trades' ORDER BY id LIMIT 1")).one()
        first = digest = staging_digest(conn, entity.id)
    assert counts == {"trades": sum(len(t) for t in history.trades.values()), "deposits": len(history.deposits),
                      "withdrawals": len(history.withdrawals), "transfers": len(history.transfers),
                      "futures_income": len(history.income)}
    assert sorted(stats.symbols) == ["BNB/USDT", "BTC/USDT", "ETH/BTC", "ETH/USDT"]
    raw = next(t for trades in history.trades.values() for t in trades
               if f"binance|{t['symbol'][:3]}" in trade.source_raw_id and t["id"] == trade.payload["id"])
    assert trade.payload == raw  # Binance's record, exact strings
    # a second run fetches only the overlap and changes nothing
    sync_binance(engine, entity.id, "binance", ApiCredentials(KEY, SECRET), options(server))
    with engine.connect() as conn:
        digest = staging_digest(conn, entity.id)
    assert digest == first and digest["versions_beyond_one"] == "0"


def test_the_generated_account_closes_every_day_with_zero_breaks(engine, server, history):
    with engine.begin() as conn:
        entity = get_or_create_entity(conn, "acme")
    sync_binance(engine, entity.id, "binance", ApiCredentials(KEY, SECRET), options(server))
    run = close_days(["acme"], FIRST, LAST, instance=dg.DagsterInstance.ephemeral())
    assert run.success, run.error
    with engine.connect() as conn:
        breaks = list_breaks(conn, entity.id, FIRST, LAST)
        statuses = dict(conn.execute(sa.text("SELECT status, count(*) FROM closes GROUP BY 1")).all())
        checked = dict(conn.execute(sa.text(
            """SELECT a.account_type, count(*) FROM positions p JOIN accounts a ON a.id = p.account_id
               WHERE p.reported_quantity IS NOT NULL GROUP BY 1""")).all())
        final = dict(conn.execute(sa.text(
            """SELECT a.account_type || ':' || s.symbol, p.computed_quantity FROM positions p
               JOIN accounts a ON a.id = p.account_id JOIN assets s ON s.id = p.asset_id WHERE p.date = :d"""),
            dict(d=LAST)).all())
    assert breaks == []
    assert statuses == {"closed": (LAST - FIRST).days + 1}
    assert set(checked) == {"spot", "margin", "futures"} and min(checked.values()) > 80
    expected = {f"{kind.lower()}:{asset}": qty for kind, held in history.balances.items() for asset, qty in held.items()}
    assert {k: v for k, v in final.items() if k in expected} == expected

"""The response cache against the real PostgreSQL: the same answer again while nothing changed, a fresh one as
soon as anything is written to the warehouse (not elsewhere on the server), and never before the key and the
entity are checked. With the snapshot watch
(``api.snapshots``), keys and answers are checked against the last poll: a write or a revocation shows within
a poll interval."""

from __future__ import annotations

import time
from decimal import Decimal

import sqlalchemy as sa
from fastapi.testclient import TestClient

from api.main import create_app
from api.security import revoke_api_key
from api.snapshots import SnapshotWatch
from tests.integration.test_api import DAY, T0, Seed, auth
from warehouse.schema import positions

PARAMS = {"as_of": DAY.isoformat()}


def _position(seed: Seed, computed: str) -> None:
    with seed.engine.begin() as conn:
        conn.execute(sa.delete(positions).where(positions.c.entity_id == seed.a))
        conn.execute(sa.insert(positions).values(
            entity_id=seed.a, account_id=seed.spot, asset_id=seed.asset["BTC"], date=DAY,
            computed_quantity=Decimal(computed), reported_quantity=Decimal(computed), reported_at=T0,
            close_price_usd=Decimal("61000.5"), price_at=T0))


def test_an_unchanged_database_serves_the_cached_answer_with_a_fresh_meta(engine: sa.Engine) -> None:
    seed = Seed(engine)
    _position(seed, "0.25")
    app = create_app(rate_limit_per_minute=0)
    client = TestClient(app)
    first = client.get("/api/v1/positions", params=PARAMS, headers=auth(seed.key_a))
    for _ in range(3):  # any write on the server (autovacuum's ANALYZE, say) would start a new snapshot
        second = client.get("/api/v1/positions", params=PARAMS, headers=auth(seed.key_a))
        if app.state.response_cache.stats()["hits"]:
            break
    assert first.status_code == second.status_code == 200
    assert first.json()["data"] == second.json()["data"] and first.json()["data"][0]["computed"] == "0.25"
    assert first.json()["meta"]["request_id"] != second.json()["meta"]["request_id"]
    assert second.headers["X-Request-ID"] == second.json()["meta"]["request_id"]
    assert {k: v for k, v in first.json()["meta"].items() if k not in ("request_id", "timestamp")} == \
        {k: v for k, v in second.json()["meta"].items() if k not in ("request_id", "timestamp")}
    assert app.state.response_cache.stats()["hits"] >= 1


def test_a_write_is_served_at_once(engine: sa.Engine) -> None:
    seed = Seed(engine)
    _position(seed, "0.25")
    app = create_app(rate_limit_per_minute=0)
    client = TestClient(app)
    assert client.get("/api/v1/positions", params=PARAMS, headers=auth(seed.key_a)).json()["data"][0]["computed"] \
        == "0.25"
    _position(seed, "0.5")  # a close rewrites the day
    again = client.get("/api/v1/positions", params=PARAMS, headers=auth(seed.key_a))
    assert again.json()["data"][0]["computed"] == "0.5"
    assert app.state.response_cache.stats()["hits"] == 0


def test_the_key_and_the_entity_are_checked_before_the_cache(engine: sa.Engine) -> None:
    seed = Seed(engine)
    _position(seed, "0.25")
    client = TestClient(create_app(rate_limit_per_minute=0))
    url = "/api/v1/positions"
    assert client.get(url, params={**PARAMS, "entity": "acme-fund"}, headers=auth(seed.key_a)).status_code == 200
    other = client.get(url, params={**PARAMS, "entity": "acme-fund"}, headers=auth(seed.key_b))
    assert other.status_code == 404 and "0.25" not in other.text
    with engine.begin() as conn:
        revoke_api_key(conn, seed.key_a)
    assert client.get(url, params={**PARAMS, "entity": "acme-fund"}, headers=auth(seed.key_a)).status_code == 401


def test_no_cache_when_turned_off(engine: sa.Engine) -> None:
    seed = Seed(engine)
    _position(seed, "0.25")
    app = create_app(rate_limit_per_minute=0, cache_mb=0)
    client = TestClient(app)
    for _ in range(2):
        assert client.get("/api/v1/positions", params=PARAMS, headers=auth(seed.key_a)).status_code == 200
    assert app.state.response_cache.stats() == {"entries": 0, "bytes": 0, "hits": 0, "misses": 0}


def test_an_export_of_a_cached_url_is_an_export(engine: sa.Engine) -> None:
    """The format may come from the Accept header: the same URL asked as JSON, then as CSV, is a CSV file."""
    seed = Seed(engine)
    _position(seed, "0.25")
    client = TestClient(create_app(rate_limit_per_minute=0))
    assert client.get("/api/v1/positions", params=PARAMS, headers=auth(seed.key_a)).status_code == 200
    assert client.get("/api/v1/positions", params=PARAMS, headers=auth(seed.key_a)).headers["X-Cache"] in ("hit", "miss")
    csv = client.get("/api/v1/positions", params=PARAMS, headers={**auth(seed.key_a), "Accept": "text/csv"})
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    assert "X-Cache" not in csv.headers and "0.25" in csv.text


POLL_MS = 50


def _until(predicate, timeout: float = 5.0) -> float:
    """Seconds until ``predicate()`` holds (polled every 10 ms); fails after ``timeout``."""
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout, "timed out"
        time.sleep(0.01)
    return time.monotonic() - started


def test_with_the_watch_keys_and_answers_come_from_memory_until_a_write(engine: sa.Engine) -> None:
    seed = Seed(engine)
    _position(seed, "0.25")
    app = create_app(rate_limit_per_minute=0, snapshot_poll_ms=POLL_MS)
    client = TestClient(app)

    def computed() -> str:
        resp = client.get("/api/v1/positions", params=PARAMS, headers=auth(seed.key_a))
        assert resp.status_code == 200, resp.text
        return resp.json()["data"][0]["computed"]

    _until(lambda: app.state.snapshot_watch.current() is not None)  # the watch has polled once
    assert computed() == "0.25"
    _until(lambda: computed() == "0.25" and app.state.response_cache.stats()["hits"] > 0)
    _position(seed, "0.5")
    waited = _until(lambda: computed() == "0.5")  # the next poll sees the write
    assert waited < 1.0
    with engine.begin() as conn:
        revoke_api_key(conn, seed.key_a)
    _until(lambda: client.get("/api/v1/positions", params=PARAMS, headers=auth(seed.key_a)).status_code == 401,
           timeout=1.0)


def test_the_watch_reports_only_fresh_snapshots(engine: sa.Engine) -> None:
    """A watch on a server that answers reports its data version; on one that does not, none (so every key and answer is
    checked in the database); and it stops polling when no request asks."""
    watch = SnapshotWatch(lambda: engine, POLL_MS / 1000, idle_after=0.5)
    watch.current()  # the first request starts it
    _until(lambda: watch.current() is not None)
    writes, writers = watch.current().split(":")  # the sequence of writes, then the transactions writing now
    assert int(writes) >= 1 and writers == ""
    _until(lambda: not watch.polling, timeout=3.0)  # idle: no more polls
    down = SnapshotWatch(lambda: sa.create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none"), POLL_MS / 1000,
                         idle_after=0.5)
    for _ in range(5):
        assert down.current() is None
        time.sleep(POLL_MS / 1000)


def test_writes_elsewhere_on_the_server_keep_the_cache_a_write_to_legs_empties_it(engine: sa.Engine,
                                                                                  database_url: str) -> None:
    """The cache's validity is the warehouse's data version (migration 0031), not the server's snapshot: Dagster's
    storage in another database of the same server writes events all the time, and must not empty it."""
    seed = Seed(engine)
    _position(seed, "0.25")
    client = TestClient(create_app(rate_limit_per_minute=0))  # the tests' watch is off: a version read per request

    def served() -> str:
        resp = client.get("/api/v1/positions", params=PARAMS, headers=auth(seed.key_a))
        assert resp.status_code == 200, resp.text
        return resp.headers["X-Cache"]

    assert served() == "miss"
    assert served() == "hit"
    server = sa.engine.make_url(database_url)
    other = f"{server.database}_elsewhere"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{other}"'))
        elsewhere = sa.create_engine(server.set(database=other))
        with elsewhere.begin() as conn:  # as Dagster's event log would, in its own database
            conn.execute(sa.text("CREATE TABLE event_logs (id bigserial PRIMARY KEY, event text)"))
            conn.execute(sa.text("INSERT INTO event_logs (event) SELECT 'STEP_SUCCESS' FROM generate_series(1, 50)"))
        with elsewhere.begin() as conn:
            conn.execute(sa.text("UPDATE event_logs SET event = 'ASSET_MATERIALIZATION'"))
        elsewhere.dispose()
        assert served() == "hit"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{other}" WITH (FORCE)'))
        admin.dispose()
    with engine.begin() as conn:  # a new leg of another entity: the warehouse changed, every answer goes
        seed.leg(conn, seed.b, seed.b_spot, "BTC", "2", "deposit", T0, run=seed.run_b)
    assert served() == "miss"
    assert served() == "hit"
    with engine.connect() as conn:  # a write that rolls back also ends a writer: a miss, never a wrong answer
        with conn.begin() as tx:
            conn.execute(sa.text("UPDATE transactions SET usd_value = usd_value WHERE entity_id = :e"), {"e": seed.b})
            tx.rollback()
    assert served() == "miss"


def test_the_data_version_counts_a_writer_until_it_ends(engine: sa.Engine) -> None:
    """Between a write and its commit the version names the writer; the commit changes it again: an answer computed
    before the commit is never valid after it."""
    version = sa.text("SELECT coinfrs_data_version()")
    with engine.connect() as reader:
        before = reader.execute(version).scalar_one()
        with engine.connect() as writer:
            with writer.begin():
                writer.execute(sa.text("UPDATE entities SET name = name"))
                during = reader.execute(version).scalar_one()
                assert during != before and during.split(":")[1] != ""  # the open writer is named
            after = reader.execute(version).scalar_one()
        assert after not in (before, during) and after.split(":")[1] == ""
        assert reader.execute(version).scalar_one() == after  # reading it writes nothing


def test_every_warehouse_table_and_no_other_table_notes_its_writes(engine: sa.Engine, database_url: str) -> None:
    """Each table of ``warehouse.schema`` has the data-version trigger; a table of someone else in the same database
    (Dagster's storage, should it share it) gets none, even after a migration run."""
    from warehouse.db import get_owner_engine
    from warehouse.migrate import upgrade
    from warehouse.schema import metadata

    owner = get_owner_engine(database_url)
    with owner.begin() as conn:
        conn.execute(sa.text("CREATE TABLE IF NOT EXISTS dagster_event_logs (id bigserial PRIMARY KEY, event text)"))
    try:
        upgrade(database_url)  # nothing to migrate; the end of the run places the triggers
        with owner.connect() as conn:
            tracked = set(conn.execute(sa.text(
                "SELECT c.relname FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid "
                "WHERE g.tgname = 'coinfrs_data_written'")).scalars())
            assert tracked == {t.name for t in metadata.sorted_tables}
        version = sa.text("SELECT coinfrs_data_version()")
        with owner.connect() as conn:
            before = conn.execute(version).scalar_one()
        with owner.begin() as conn:
            conn.execute(sa.text("INSERT INTO dagster_event_logs (event) VALUES ('STEP_SUCCESS')"))
        with owner.connect() as conn:
            assert conn.execute(version).scalar_one() == before
    finally:
        with owner.begin() as conn:
            conn.execute(sa.text("DROP TABLE IF EXISTS dagster_event_logs"))

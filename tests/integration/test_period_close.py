"""The period close against the real PostgreSQL: lock a month or every day through a date with who and why, the
rules that refuse a lock (naming each day), unlock through the database guard, preparer/reviewer sign-offs voided
by an unlock, the append-only audit log, two locks at once, the CLI and the API routes."""

from __future__ import annotations

import json
import threading
import time
from datetime import date, timedelta
from decimal import Decimal

import dagster as dg
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from orchestration.cli import app
from orchestration.close_runner import close_days
from reconciliation.close import CloseError, lock_close
from reconciliation.periods import (Period, PeriodError, audit_log, lock_period, parse_month, sign_off,
                                    unlock_period)
from tests.integration.recon_ledgers import Row, changed, funded, stage, ts
from warehouse.entities import get_or_create_entity, resolve_entity
from warehouse.schema import closes

JAN = parse_month("2026-01")


def _closes(conn, entity_id: int, first: date, last: date, **by_day: tuple[str, str | None]) -> None:
    """A close record for every day of [first, last]: ``closed`` unless ``by_day`` says (status, message)."""
    rows = []
    day = first
    while day <= last:
        status, message = by_day.get(f"d{day.day}", ("closed", None))
        rows.append({"entity_id": entity_id, "date": day, "status": status, "legs": 1, "positions": 1, "breaks": 0,
                     "unmatched_transfers": 0, "realized_gain_universal": Decimal("0"),
                     "realized_gain_account": Decimal("0"), "message": message})
        day += timedelta(days=1)
    conn.execute(sa.insert(closes), rows)


def _entity(engine, name: str, first: date = date(2026, 1, 1), last: date = date(2026, 1, 31), **by_day):
    with engine.begin() as conn:
        entity = get_or_create_entity(conn, name)
        _closes(conn, entity.id, first, last, **by_day)
    return entity


def _locked_days(conn, entity) -> list[date]:
    return list(conn.execute(sa.text("SELECT date FROM closes WHERE entity_id = :e AND locked ORDER BY date"),
                             dict(e=entity.id)).scalars())


def _audit(conn, entity) -> list[tuple]:
    return [(e["action"], e["actor"], e["period"], e["details"].get("role")) for e in audit_log(conn, entity).items]


def test_a_period_is_locked_only_if_every_day_can_be_and_the_refusal_names_each_day(engine) -> None:
    entity = _entity(engine, "strict", last=date(2026, 1, 30),  # no close for the 31st
                     d3=("partial", "source down: kraken (HTTP 503)"), d5=("unpriced", "no price: FOO"),
                     d6=("stale", "input changed on 2026-01-02"), d7=("failed", "step reconciliation failed"),
                     d8=("blocked", "blocked since 2026-01-07"), d9=("weird", None))
    with engine.begin() as conn:
        with pytest.raises(PeriodError) as refused:
            lock_period(conn, entity, JAN, by="alice", reason="January")
    message = str(refused.value)
    assert message.startswith("cannot lock strict 2026-01 (2026-01-01..2026-01-31)")
    for expected in ("2026-01-03 is partial (source down: kraken (HTTP 503))", "2026-01-05 is unpriced (no price: FOO)",
                     "2026-01-06 is stale", "2026-01-07 failed (step reconciliation failed)", "2026-01-08 is blocked",
                     "2026-01-09 has status 'weird'", "no close for 2026-01-31"):
        assert expected in message, (expected, message)
    with engine.connect() as conn:  # nothing written
        assert _locked_days(conn, entity) == [] and _audit(conn, entity) == []
        assert conn.execute(sa.text("SELECT count(*) FROM period_locks")).scalar_one() == 0

    with engine.begin() as conn, pytest.raises(PeriodError, match="--by is required"):
        lock_period(conn, entity, Period("day", date(2026, 1, 1), date(2026, 1, 1)), by="  ", reason="x")
    with engine.begin() as conn, pytest.raises(PeriodError, match="--reason is required"):
        lock_period(conn, entity, Period("day", date(2026, 1, 1), date(2026, 1, 1)), by="alice", reason="")
    with pytest.raises(PeriodError, match="not a month"):
        parse_month("2026-13")


def test_lock_sign_off_unlock_relock_and_the_audit_log(engine) -> None:
    entity = _entity(engine, "acme")
    with engine.begin() as conn:
        lock = lock_period(conn, entity, JAN, by="alice", reason="January books closed")
    assert (lock.period, lock.first_day, lock.last_day, lock.state) == ("2026-01", date(2026, 1, 1), date(2026, 1, 31), "locked")
    with engine.connect() as conn:
        assert len(_locked_days(conn, entity)) == 31
    with engine.begin() as conn, pytest.raises(PeriodError, match=r"2026-01-01 is already locked \(period 2026-01, by alice"):
        lock_period(conn, entity, JAN, by="bob", reason="again")
    with engine.begin() as conn, pytest.raises(PeriodError, match="every close of acme through 2026-01-31 is already locked"):
        lock_period(conn, entity, Period("through", None, date(2026, 1, 31)), by="bob", reason="again")

    # sign-offs: the preparer first, then someone else as reviewer; one valid sign-off per role
    with engine.begin() as conn, pytest.raises(PeriodError, match="no preparer sign-off yet"):
        sign_off(conn, entity, JAN, role="reviewer", by="bob")
    with engine.begin() as conn:
        assert sign_off(conn, entity, JAN, role="preparer", by="alice", note="tied out").state == "prepared"
    with engine.begin() as conn, pytest.raises(PeriodError, match="someone other than the preparer"):
        sign_off(conn, entity, JAN, role="reviewer", by=" ALICE ")
    with engine.begin() as conn, pytest.raises(PeriodError, match="already signed off as preparer by alice"):
        sign_off(conn, entity, JAN, role="preparer", by="carol")
    with engine.begin() as conn:
        reviewed = sign_off(conn, entity, JAN, role="reviewer", by="bob")
    assert reviewed.state == "reviewed" and [s.signed_by for s in reviewed.signoffs] == ["alice", "bob"]
    with engine.begin() as conn, pytest.raises(PeriodError, match="no locked period 2026-02"):
        sign_off(conn, entity, parse_month("2026-02"), role="preparer", by="alice")

    # unlock: who and why; every day released; the sign-offs void, kept
    with engine.begin() as conn:
        unlocked = unlock_period(conn, entity, Period("day", date(2026, 1, 15), date(2026, 1, 15)), by="carol",
                                 reason="late Kraken statement")
    assert (unlocked.state, unlocked.unlocked_by, unlocked.unlock_reason) == ("unlocked", "carol", "late Kraken statement")
    assert [s.voided_at is not None for s in unlocked.signoffs] == [True, True]
    assert unlocked.signoffs[0].void_reason == "period unlocked by carol: late Kraken statement"
    with engine.connect() as conn:
        assert _locked_days(conn, entity) == []
    with engine.begin() as conn, pytest.raises(PeriodError, match="no locked period 2026-01"):
        unlock_period(conn, entity, JAN, by="carol", reason="twice")

    # locked again: a new period lock, which needs its own sign-offs
    with engine.begin() as conn:
        again = lock_period(conn, entity, JAN, by="alice", reason="January restated")
        assert again.id != lock.id and again.state == "locked" and again.signoffs == ()
        assert sign_off(conn, entity, JAN, role="preparer", by="dave").state == "prepared"
    with engine.connect() as conn:
        assert _audit(conn, entity) == [
            ("lock", "alice", "2026-01", None), ("signoff", "alice", "2026-01", "preparer"),
            ("signoff", "bob", "2026-01", "reviewer"), ("unlock", "carol", "2026-01", None),
            ("void", "carol", "2026-01", "preparer"), ("void", "carol", "2026-01", "reviewer"),
            ("lock", "alice", "2026-01", None), ("signoff", "dave", "2026-01", "preparer")]
        entries = audit_log(conn, entity, action="unlock").items
        assert entries[0]["reason"] == "late Kraken statement" and entries[0]["details"]["days"] == 31
        # paginated oldest first, then nothing left
        page = audit_log(conn, entity, limit=5)
        rest = audit_log(conn, entity, limit=5, cursor=page.next_cursor)
        assert len(page.items) == 5 and len(rest.items) == 3 and rest.next_cursor is None
        assert audit_log(conn, entity, date_from=date(2026, 2, 1)).items == []


def test_the_database_keeps_locked_days_and_the_audit_log_as_they_are(engine) -> None:
    entity = _entity(engine, "guarded", last=date(2026, 1, 5))
    with engine.begin() as conn:
        lock = lock_period(conn, entity, Period("through", None, date(2026, 1, 5)), by="alice", reason="week one")
    assert (lock.period, lock.first_day) == ("through 2026-01-05", date(2026, 1, 1))
    unlock_sql = "UPDATE closes SET locked = false, locked_at = NULL WHERE entity_id = :e AND date = '2026-01-02'"
    with engine.begin() as conn, pytest.raises(sa.exc.DBAPIError, match="locked and never changes"):
        conn.execute(sa.text(unlock_sql), dict(e=entity.id))  # a plain write
    with engine.begin() as conn, pytest.raises(sa.exc.DBAPIError, match="locked and never changes"):
        # naming the period is not enough: it must be recorded as unlocked first
        conn.execute(sa.text("SELECT set_config('coinfrs.unlock_period', :p, true)"), dict(p=str(lock.id)))
        conn.execute(sa.text(unlock_sql), dict(e=entity.id))
    with engine.begin() as conn, pytest.raises(sa.exc.DBAPIError, match="locked and never changes"):
        # a recorded unlock releases the day, and changes nothing else on it
        conn.execute(sa.text("UPDATE period_locks SET unlocked_by = 'x', unlock_reason = 'y', unlocked_at = now() "
                             "WHERE id = :p"), dict(p=lock.id))
        conn.execute(sa.text("SELECT set_config('coinfrs.unlock_period', :p, true)"), dict(p=str(lock.id)))
        conn.execute(sa.text("UPDATE closes SET locked = false, locked_at = NULL, legs = 99 "
                             "WHERE entity_id = :e AND date = '2026-01-02'"), dict(e=entity.id))
    from warehouse.db import get_owner_engine

    owner = get_owner_engine(engine.url.render_as_string(hide_password=False))
    for statement in ("UPDATE close_audit_log SET actor = 'mallory'", "DELETE FROM close_audit_log",
                      "UPDATE period_locks SET locked_by = 'mallory'", "DELETE FROM period_locks"):
        # the trigger refuses even the owner (the application's role is refused earlier, by privileges:
        # tests/integration/test_database_guards.py)
        with owner.begin() as conn, pytest.raises(sa.exc.DBAPIError, match="never changes"):
            conn.execute(sa.text(statement))
    with engine.connect() as conn:
        assert len(_locked_days(conn, entity)) == 5 and _audit(conn, entity) == [("lock", "alice", "through 2026-01-05", None)]


def test_two_locks_at_once_one_wins_the_other_is_refused(engine) -> None:
    entity = _entity(engine, "race")
    holding, release = threading.Event(), threading.Event()
    outcomes: dict[str, object] = {}

    def first() -> None:  # locks January and holds its transaction open until told
        with engine.begin() as conn:
            outcomes["first"] = lock_period(conn, entity, JAN, by="alice", reason="first")
            holding.set()
            release.wait(10)

    def second() -> None:
        try:
            with engine.begin() as conn:
                outcomes["second"] = lock_period(conn, entity, Period("through", None, date(2026, 1, 20)),
                                                 by="bob", reason="second")
        except CloseError as exc:
            outcomes["second"] = exc
        outcomes["second_done_at"] = time.monotonic()

    a = threading.Thread(target=first)
    a.start()
    assert holding.wait(10)
    b = threading.Thread(target=second)
    b.start()
    time.sleep(0.5)
    assert "second" not in outcomes  # waiting on the first lock, not reading around it
    released_at = time.monotonic()
    release.set()
    a.join(10)
    b.join(10)
    assert outcomes["second_done_at"] >= released_at
    assert isinstance(outcomes["second"], PeriodError)
    assert "every close of race through 2026-01-20 is already locked" in str(outcomes["second"])
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM period_locks")).scalar_one() == 1
        assert _audit(conn, entity) == [("lock", "alice", "2026-01", None)]

    # started together (no hold): exactly one of two identical locks succeeds
    other = _entity(engine, "race2")
    barrier = threading.Barrier(2)
    results: list[object] = []

    def lock_feb() -> None:
        barrier.wait()
        try:
            with engine.begin() as conn:
                results.append(lock_period(conn, other, JAN, by="x", reason="same"))
        except CloseError as exc:
            results.append(exc)

    threads = [threading.Thread(target=lock_feb) for _ in range(2)]
    [t.start() for t in threads]
    [t.join(10) for t in threads]
    assert sorted(type(r).__name__ for r in results) == ["PeriodError", "PeriodLock"]
    with engine.connect() as conn:
        assert len(_locked_days(conn, other)) == 31
        assert [a[0] for a in _audit(conn, other)] == ["lock"]


def _trades() -> list[Row]:
    return funded() + [
        Row("B1", ts(1, "10:00"), "BUY", "BTC", "2", "Kraken", unit_price_usd="90000", fee_asset="USD", fee_amount="90"),
        Row("S1", ts(2, "11:00"), "SELL", "BTC", "0.5", "Kraken", unit_price_usd="95000", fee_asset="USD", fee_amount="20"),
        Row("B2", ts(3, "09:00"), "BUY", "BTC", "1", "Kraken", unit_price_usd="91000", fee_asset="USD", fee_amount="45"),
    ]


def _cli(*args: str) -> tuple[int, str]:
    """Exit code and output; a message is unwrapped (the console wraps long lines), JSON is printed as is."""
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output if "--json" in args else " ".join(result.output.split())


def test_cli_lock_unlock_reclose_relock_signoff_and_audit(engine) -> None:
    """Real closes: lock through a date, the close skips the locked days; unlocked, a re-close rewrites them."""
    instance = dg.DagsterInstance.ephemeral()
    truth = _trades()
    stage(engine, "cli-co", truth, truth, 3)
    assert close_days(["cli-co"], date(2026, 1, 1), date(2026, 1, 3), instance=instance).success

    code, output = _cli("close", "lock", "--entity", "cli-co", "--month", "2026-01")
    assert code == 1 and "--by and --reason are required" in output
    code, output = _cli("close", "lock", "--entity", "cli-co", "--month", "2026-01", "--by", "alice", "--reason", "x")
    assert code == 1 and "no close for 2026-01-04..2026-01-31" in output
    code, output = _cli("close", "lock", "--entity", "cli-co", "--through", "2026-01-03", "--by", "alice",
                        "--reason", "first three days", "--json")
    assert code == 0, output
    locked = json.loads(output)
    assert (locked["period"], locked["first_day"], locked["days"], locked["locked_by"], locked["state"]) == \
        ("through 2026-01-03", "2026-01-01", 3, "alice", "locked")
    assert locked["locked_at"].endswith("Z")
    code, output = _cli("close", "signoff", "--entity", "cli-co", "--through", "2026-01-03", "--role", "preparer",
                        "--by", "alice")
    assert code == 0 and "signed off cli-co through 2026-01-03" in output and "prepared" in output, output

    # a late sale of day 2: the locked days stay, it is booked as an adjustment on the first open day
    late = truth + [Row("S9", ts(2, "15:00"), "SELL", "BTC", "0.1", "Kraken", unit_price_usd="95000")]
    stage(engine, "cli-co", late, late, 4)
    assert close_days(["cli-co"], date(2026, 1, 1), date(2026, 1, 4), instance=instance).success
    with engine.connect() as conn:
        adjusted = conn.execute(sa.text("SELECT close_date FROM transactions WHERE is_adjustment")).scalars().all()
        legs_day2 = conn.execute(sa.text("SELECT legs FROM closes WHERE date = '2026-01-02'")).scalar_one()
    assert adjusted and set(adjusted) == {date(2026, 1, 4)}

    code, output = _cli("close", "unlock", "--entity", "cli-co", "--date", "2026-01-02", "--by", "carol",
                        "--reason", "restate the late sale on its day", "--json")
    assert code == 0, output
    unlocked = json.loads(output)
    assert unlocked["state"] == "unlocked" and unlocked["signoffs"][0]["valid"] is False
    assert close_days(["cli-co"], date(2026, 1, 1), date(2026, 1, 4), instance=instance).success
    with engine.connect() as conn:  # released: the re-close books the sale on its own day
        assert conn.execute(sa.text("SELECT count(*) FROM transactions WHERE is_adjustment")).scalar_one() == 0
        assert conn.execute(sa.text("SELECT legs FROM closes WHERE date = '2026-01-02'")).scalar_one() > legs_day2

    code, output = _cli("close", "lock", "--entity", "cli-co", "--through", "2026-01-04", "--by", "alice",
                        "--reason", "restated")
    assert code == 0 and "locked cli-co through 2026-01-04 (2026-01-01..2026-01-04, 4 days)" in output, output
    code, output = _cli("close", "lock", "--entity", "cli-co", "--date", "2026-01-04")  # the day form still works
    assert code == 1 and "2026-01-04 is already locked" in output
    code, output = _cli("close", "audit", "--entity", "cli-co", "--json")
    assert code == 0, output
    entries = json.loads(output)
    assert [(e["action"], e["actor"]) for e in entries] == [
        ("lock", "alice"), ("signoff", "alice"), ("unlock", "carol"), ("void", "carol"), ("lock", "alice")]
    assert entries[2]["reason"] == "restate the late sale on its day" and entries[2]["details"]["days"] == 3
    code, output = _cli("close", "periods", "--entity", "cli-co", "--json")
    assert code == 0 and [p["state"] for p in json.loads(output)] == ["unlocked", "locked"]
    code, output = _cli("close", "audit", "--entity", "cli-co")
    assert code == 0 and "cli-co: close audit log" in output


def test_a_day_locked_without_a_period_is_adopted_and_can_be_unlocked(engine) -> None:
    entity = _entity(engine, "legacy", last=date(2026, 1, 3))
    with engine.begin() as conn:  # as a lock written before periods existed
        conn.execute(sa.text("UPDATE closes SET locked = true, locked_at = now() WHERE entity_id = :e AND date = '2026-01-02'"),
                     dict(e=entity.id))
        assert lock_close(conn, entity, date(2026, 1, 1)).locked  # the old call: a one-day period, by "unknown"
    with engine.begin() as conn:
        released = unlock_period(conn, entity, Period("day", date(2026, 1, 2), date(2026, 1, 2)), by="carol", reason="redo")
    assert released.locked_by == "unknown" and "who and why not recorded" in released.lock_reason
    with engine.connect() as conn:
        assert _locked_days(conn, entity) == [date(2026, 1, 1)]
        assert [a[:2] for a in _audit(conn, entity)] == [("lock", "unknown"), ("lock", "unknown"), ("unlock", "carol")]


def test_api_serves_periods_to_a_read_key_and_the_audit_log_to_an_admin_key(engine) -> None:
    from api.main import create_app
    from api.security import create_api_key

    entity = _entity(engine, "api-co")
    other = _entity(engine, "not-mine")
    with engine.begin() as conn:
        lock_period(conn, entity, JAN, by="alice", reason="January")
        sign_off(conn, entity, JAN, role="preparer", by="alice")
        lock_period(conn, other, JAN, by="eve", reason="other entity")
        read = create_api_key(conn, entity.id, label="read")
        admin = create_api_key(conn, entity.id, label="admin", scope="admin")
    client = TestClient(create_app(rate_limit_per_minute=0))

    resp = client.get("/api/v1/close-periods", headers={"X-API-Key": read})
    assert resp.status_code == 200, resp.text
    [period] = resp.json()["data"]
    assert (period["period"], period["state"], period["locked_by"], period["signoffs"][0]["signed_by"]) == \
        ("2026-01", "prepared", "alice", "alice")
    assert period["locked_at"].endswith("Z") and resp.json()["meta"]["entity"] == "api-co"
    assert client.get("/api/v1/close-periods", params={"from": "2026-02-01"},
                      headers={"X-API-Key": read}).json()["data"] == []

    denied = client.get("/api/v1/close-audit", headers={"X-API-Key": read})
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "AUTHORIZATION_ERROR"
    resp = client.get("/api/v1/close-audit", params={"limit": 1}, headers={"X-API-Key": admin})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert [(e["action"], e["actor"]) for e in body["data"]] == [("lock", "alice")]
    more = client.get("/api/v1/close-audit", params={"limit": 1, "cursor": body["meta"]["next_cursor"]},
                      headers={"X-API-Key": admin}).json()
    assert [(e["action"], e["details"]["role"]) for e in more["data"]] == [("signoff", "preparer")]
    assert "eve" not in resp.text + json.dumps(more)  # another entity's log is not served
    bad = client.get("/api/v1/close-audit", params={"cursor": "nonsense"}, headers={"X-API-Key": admin})
    assert bad.status_code == 422 and bad.json()["error"]["details"][0]["field"] == "cursor"
    missing = client.get("/api/v1/close-audit", params={"entity": "not-mine"}, headers={"X-API-Key": admin})
    assert missing.status_code == 404


def test_migration_0021_gives_old_locks_a_period_and_downgrades_to_the_old_guard(database_url: str) -> None:
    import secrets

    from alembic import command
    from sqlalchemy.engine import make_url

    from warehouse.migrate import alembic_config, upgrade

    name = f"coinfrs_mig_{secrets.token_hex(4)}"
    admin = sa.create_engine(database_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = make_url(database_url).set(database=name).render_as_string(hide_password=False)
    engine = sa.create_engine(url)
    try:
        upgrade(url, "0020")
        with engine.begin() as conn:  # a day locked the old way, one open
            entity_id = conn.execute(sa.text("INSERT INTO entities (name) VALUES ('old') RETURNING id")).scalar_one()
            _closes(conn, entity_id, date(2026, 1, 1), date(2026, 1, 2))
            conn.execute(sa.text("UPDATE closes SET locked = true, locked_at = now() WHERE date = '2026-01-01'"))
        upgrade(url, "head")
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT period, first_day, last_day, locked_by FROM period_locks")).all() == [
                ("2026-01-01", date(2026, 1, 1), date(2026, 1, 1), "unknown")]
            assert conn.execute(sa.text("SELECT action, actor FROM close_audit_log")).all() == [("lock", "unknown")]
        command.downgrade(alembic_config(url), "0020")
        with engine.begin() as conn, pytest.raises(sa.exc.DBAPIError, match="locked and never changes"):
            conn.execute(sa.text("SELECT set_config('coinfrs.unlock_period', '1', true)"))
            conn.execute(sa.text("UPDATE closes SET locked = false, locked_at = NULL WHERE date = '2026-01-01'"))
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT to_regclass('period_locks')")).scalar() is None
        upgrade(url, "head")
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

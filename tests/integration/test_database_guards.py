"""Guards in the database (issue 18, migration 0026): each write is tried as the application's role and refused.

The application's sessions run as ``coinfrs_app`` and the API's as ``coinfrs_api`` (``warehouse/db.py``,
``api/deps.py``); the schema owner (the URL's user) only migrates and empties tables between tests. A sample fund
is staged and closed for three days; the first day is locked; then every path that could change staging or a
locked day is tried and must be refused, by the trigger (whoever writes) or by the role's privileges.
"""

from __future__ import annotations

from datetime import date

import dagster as dg
import pytest
import sqlalchemy as sa

from orchestration.close_runner import close_days
from tests.conftest import empty_database
from tests.integration.test_close_e2e import import_sample
from warehouse.db import get_engine, get_owner_engine
from warehouse.schema import metadata

LOCKED, OPEN = date(2026, 1, 1), date(2026, 1, 2)
REFUSED_BY_PRIVILEGE = "permission denied"
REFUSED_LOCKED = "is locked"
REFUSED_STAGING = "staging is append-only"


@pytest.fixture(scope="module")
def closed(database_url: str):
    """The sample fund closed for 1-3 January, 1 January locked; the application's engine and the owner's."""
    app = empty_database(database_url)
    entity_id = import_sample(app)
    run = close_days(["northwind"], LOCKED, date(2026, 1, 3), instance=dg.DagsterInstance.ephemeral())
    assert run.success, run.error
    owner = get_owner_engine(database_url)
    with owner.begin() as conn:
        conn.execute(sa.text("UPDATE closes SET locked = true, locked_at = now() WHERE entity_id = :e AND date = :d"),
                     dict(e=entity_id, d=LOCKED))
    return app, owner, entity_id


def _refused(engine: sa.Engine, statement: str, match: str, **params) -> None:
    with engine.begin() as conn, pytest.raises(sa.exc.DBAPIError, match=match):
        conn.execute(sa.text(statement), params)


def _one(engine: sa.Engine, query: str, **params):
    with engine.connect() as conn:
        return conn.execute(sa.text(query), params).scalar_one()


def test_the_application_and_the_api_run_as_least_privilege_roles(closed) -> None:
    from api.deps import api_engine_for

    app, owner, _ = closed
    with app.connect() as conn:
        who = conn.execute(sa.text("SELECT current_user, r.rolsuper, r.rolcreaterole, r.rolbypassrls FROM pg_roles r "
                                   "WHERE r.rolname = current_user")).one()
        assert tuple(who) == ("coinfrs_app", False, False, False)
        conn.execute(sa.text("RESET ROLE"))  # back to the session's default: the application's role, not the owner
        assert conn.execute(sa.text("SELECT current_user")).scalar_one() == "coinfrs_app"
    with api_engine_for(app).connect() as conn:
        assert conn.execute(sa.text("SELECT current_user")).scalar_one() == "coinfrs_api"
    # the role owns nothing: no table, no schema, no function
    assert _one(app, "SELECT count(*) FROM pg_class WHERE relowner = 'coinfrs_app'::regrole") == 0
    assert _one(owner, "SELECT current_user") != "coinfrs_app"


def test_staging_is_append_only_for_the_application_and_for_the_owner(closed) -> None:
    app, owner, entity_id = closed
    raw_id = _one(app, "SELECT min(id) FROM raw_records WHERE entity_id = :e", e=entity_id)
    before = _one(owner, "SELECT payload::text FROM raw_records WHERE id = :r", r=raw_id)
    tamper = "UPDATE raw_records SET payload = jsonb_set(payload, '{quantity}', '\"999\"') WHERE id = :r"
    _refused(app, tamper, REFUSED_BY_PRIVILEGE, r=raw_id)
    _refused(owner, tamper, REFUSED_STAGING, r=raw_id)  # the trigger holds even for the owner
    _refused(app, "DELETE FROM raw_records WHERE id = :r", REFUSED_BY_PRIVILEGE, r=raw_id)
    _refused(owner, "DELETE FROM raw_records WHERE id = :r", REFUSED_STAGING, r=raw_id)
    _refused(app, "UPDATE raw_balance_snapshots SET balances = '{}'::jsonb", REFUSED_BY_PRIVILEGE)
    _refused(owner, "UPDATE raw_balance_snapshots SET balances = '{}'::jsonb", REFUSED_STAGING)
    _refused(app, "DELETE FROM raw_balance_snapshots", REFUSED_BY_PRIVILEGE)
    _refused(app, "DELETE FROM ingestion_runs", REFUSED_BY_PRIVILEGE)
    _refused(app, "UPDATE ingestion_runs SET file_hash = 'x'", REFUSED_BY_PRIVILEGE)
    _refused(owner, "UPDATE ingestion_runs SET file_hash = 'x'", REFUSED_STAGING)
    for table in ("raw_records", "raw_balance_snapshots", "ingestion_runs"):
        _refused(app, f"TRUNCATE {table} CASCADE", REFUSED_BY_PRIVILEGE)
    assert _one(owner, "SELECT payload::text FROM raw_records WHERE id = :r", r=raw_id) == before
    # what the application does to staging still works: a reorg marks records orphaned; a run records its end
    with app.begin() as conn:
        conn.execute(sa.text("UPDATE raw_records SET processing_status = 'orphaned' WHERE id = :r"), dict(r=raw_id))
        conn.execute(sa.text("UPDATE ingestion_runs SET status = status, finished_at = finished_at"))
        conn.rollback()


def test_a_locked_day_is_closed_to_every_write_path(closed) -> None:
    app, owner, entity_id = closed
    p = dict(e=entity_id, locked=LOCKED, open=OPEN)
    leg = _one(app, "SELECT min(id) FROM transactions WHERE entity_id = :e AND close_date = :open", **p)
    # a leg moved INTO the locked day (its old day is open: the 0002 guard saw nothing wrong)
    _refused(app, "UPDATE transactions SET close_date = :locked, ts = ts - interval '1 day' WHERE id = :leg",
             REFUSED_LOCKED, leg=leg, **p)
    _refused(app, "UPDATE events SET close_date = :locked WHERE entity_id = :e AND close_date = :open",
             REFUSED_LOCKED, **p)
    # the locked day's own rows, table by table
    _refused(app, "UPDATE transactions SET quantity = quantity * 2 WHERE entity_id = :e AND close_date = :locked",
             REFUSED_LOCKED, **p)
    _refused(app, "DELETE FROM events WHERE entity_id = :e AND close_date = :locked", REFUSED_LOCKED, **p)
    disposal = _one(app, "SELECT min(d.id) FROM pnl_disposals d JOIN pnl_disposal_lots l ON l.disposal_id = d.id "
                         "WHERE d.entity_id = :e AND d.date = :locked", **p)
    assert disposal is not None, "the sample's first day has disposals with lots"
    _refused(app, "UPDATE pnl_disposal_lots SET cost_basis = 0 WHERE disposal_id = :d", REFUSED_LOCKED, d=disposal)
    _refused(app, "DELETE FROM pnl_disposal_lots WHERE disposal_id = :d", REFUSED_LOCKED, d=disposal)
    _refused(app, "INSERT INTO pnl_disposal_lots SELECT * FROM pnl_disposal_lots WHERE disposal_id = :d",
             REFUSED_LOCKED, d=disposal)
    _refused(app, "UPDATE pnl_daily SET realized_gain = 0 WHERE entity_id = :e AND date = :locked", REFUSED_LOCKED, **p)
    with app.begin() as conn, pytest.raises(sa.exc.DBAPIError, match=REFUSED_LOCKED):
        conn.execute(sa.text(  # a difference written on the open day, then moved into the locked one
            """INSERT INTO completeness_differences (entity_id, date, account_id, asset_id, previous_reported,
                                                     legs_sum, reported, reported_at, difference, tolerance)
               SELECT entity_id, :open, account_id, asset_id, 0, 0, 1, now(), 1, 0 FROM transactions WHERE id = :leg"""),
            dict(leg=leg, **p))
        conn.execute(sa.text("UPDATE completeness_differences SET date = :locked WHERE entity_id = :e AND date = :open"), p)
    _refused(app, "UPDATE closes SET legs = 0 WHERE entity_id = :e AND date = :locked", "locked and never changes", **p)
    # TRUNCATE fires no trigger through CASCADE: refused by privilege on every table
    for table in ("transactions", "pnl_disposals", "pnl_disposal_lots", "closes", "entities"):
        _refused(app, f"TRUNCATE {table} CASCADE", REFUSED_BY_PRIVILEGE)
    # and the role cannot switch the guards off
    _refused(app, "ALTER TABLE transactions DISABLE TRIGGER ALL", "must be owner")
    _refused(app, "SET session_replication_role = replica", "permission denied")
    _refused(app, "DROP TRIGGER coinfrs_locked_transactions_update_into ON transactions", "must be owner")
    _refused(app, "CREATE TABLE sneaky (x int)", REFUSED_BY_PRIVILEGE)
    # the open day is still the application's to rebuild
    with app.begin() as conn:
        conn.execute(sa.text("UPDATE transactions SET quantity = quantity WHERE entity_id = :e AND close_date = :open"), p)


def test_the_audit_log_is_append_only_and_the_api_reads_only(closed) -> None:
    from api.deps import api_engine_for

    app, _, entity_id = closed
    _refused(app, "UPDATE close_audit_log SET actor = 'mallory'", REFUSED_BY_PRIVILEGE)
    _refused(app, "DELETE FROM close_audit_log", REFUSED_BY_PRIVILEGE)
    api = api_engine_for(app)
    assert _one(api, "SELECT count(*) FROM transactions WHERE entity_id = :e", e=entity_id) > 0
    with api.connect() as conn:  # read-only sessions, and a read-only role beneath them
        conn.execute(sa.text("SET default_transaction_read_only = off"))
        for statement in ("INSERT INTO entities (name) VALUES ('api-wrote-this')", "DELETE FROM api_keys",
                          "UPDATE api_keys SET revoked_at = NULL", "SELECT * FROM source_credentials"):
            with pytest.raises(sa.exc.DBAPIError, match=REFUSED_BY_PRIVILEGE):
                conn.execute(sa.text(statement))
        conn.invalidate()  # the session setting above stays with the connection: never back into the shared pool


def test_every_table_has_the_privileges_of_its_layer(closed) -> None:
    """A table added by a later migration gets the defaults: DML for the application, SELECT for the API, no
    TRUNCATE for either; staging and the audit log are append-only."""
    _, owner, _ = closed
    append_only = {"raw_records", "raw_balance_snapshots", "ingestion_runs", "close_audit_log"}
    with owner.connect() as conn:
        for table in metadata.sorted_tables:
            def has(role: str, privilege: str) -> bool:
                return conn.execute(sa.text("SELECT has_table_privilege(:r, :t, :p)"),
                                    dict(r=role, t=table.name, p=privilege)).scalar_one()

            assert not has("coinfrs_app", "TRUNCATE") and not has("coinfrs_api", "TRUNCATE"), table.name
            assert has("coinfrs_app", "SELECT") and has("coinfrs_app", "INSERT"), table.name
            assert has("coinfrs_app", "DELETE") == (table.name not in append_only), table.name
            for privilege in ("INSERT", "UPDATE", "DELETE"):
                assert not has("coinfrs_api", privilege), (table.name, privilege)
            assert has("coinfrs_api", "SELECT") == (table.name != "source_credentials"), table.name


def test_the_close_provenance_shows_a_leg_tampered_with_by_the_owner(closed) -> None:
    """Someone who can bypass every guard (the owner, triggers off for their transaction) edits a stored leg and a
    disposal's lots of the locked day; the figures stored at the close do not move, yet the provenance says what
    changed. Undoing the edit makes it unchanged again."""
    from reconciliation.report import verify_close
    from warehouse.entities import resolve_entity

    app, owner, entity_id = closed
    with app.connect() as conn:
        entity = resolve_entity(conn, str(entity_id))
        before = verify_close(conn, entity, LOCKED)
    assert before["unchanged"] and before["changed"] == []
    leg = _one(app, "SELECT min(id) FROM transactions WHERE entity_id = :e AND close_date = :d AND kind = 'buy'",
               e=entity_id, d=LOCKED)
    disposal = _one(app, "SELECT min(d.id) FROM pnl_disposals d JOIN pnl_disposal_lots l ON l.disposal_id = d.id "
                         "WHERE d.entity_id = :e AND d.date = :d", e=entity_id, d=LOCKED)

    def tamper(sign: str) -> None:
        with owner.begin() as conn:
            conn.execute(sa.text("SET LOCAL session_replication_role = replica"))  # a superuser's way past triggers
            conn.execute(sa.text(f"UPDATE transactions SET quantity = quantity {sign} 1 WHERE id = :l"), dict(l=leg))
            conn.execute(sa.text(f"UPDATE pnl_disposal_lots SET cost_basis = cost_basis {sign} 1 WHERE disposal_id = :d"),
                         dict(d=disposal))

    tamper("+")
    try:
        with app.connect() as conn:
            after = verify_close(conn, entity, LOCKED)
        assert not after["unchanged"]
        assert after["changed"] == ["inputs.legs", "outputs.pnl_disposals"]
        assert after["current_hash"] == after["stored_hash"]  # the stored figures alone would not have shown it
    finally:
        tamper("-")
    with app.connect() as conn:
        assert verify_close(conn, entity, LOCKED)["unchanged"]

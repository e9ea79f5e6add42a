"""``raw_records``' references to ``entities`` and ``ingestion_runs`` (migration 0032): checked once per statement by a
trigger instead of a per-row foreign key, with the foreign key's guarantees: a missing entity or run refuses the
statement (SQLSTATE 23503, the constraint's name and key), the referenced rows are locked so a concurrent DELETE
waits, and a referenced entity or run cannot be deleted."""

from __future__ import annotations

import threading
import uuid

import psycopg
import pytest
import sqlalchemy as sa

from tests.conftest import empty_database
from warehouse.db import get_owner_engine

INSERT = """INSERT INTO raw_records (entity_id, source, account, stream, source_raw_id, payload, payload_hash,
                                     ingestion_run_id)
            SELECT :entity, 'csv', 'main', 'ledger', 'r' || g, '{}'::jsonb, 'h' || g, :run
            FROM generate_series(1, :rows) g"""


@pytest.fixture()
def owner(database_url: str):
    empty_database(database_url)
    return get_owner_engine(database_url)


def _entity_and_run(conn, name: str) -> tuple[int, uuid.UUID]:
    entity = conn.execute(sa.text("INSERT INTO entities (name) VALUES (:n) RETURNING id"), dict(n=name)).scalar_one()
    run = uuid.uuid4()
    conn.execute(sa.text("INSERT INTO ingestion_runs (id, entity_id, source, stream, status) "
                         "VALUES (:r, :e, 'csv', 'ledger', 'finished')"), dict(r=run, e=entity))
    return entity, run


def _violation(excinfo: pytest.ExceptionInfo) -> psycopg.errors.ForeignKeyViolation:
    cause = excinfo.value.orig
    assert isinstance(cause, psycopg.errors.ForeignKeyViolation), cause
    return cause


def test_rows_of_a_missing_entity_or_run_are_refused_whole(owner) -> None:
    with owner.begin() as conn:
        entity, run = _entity_and_run(conn, "refs-fund")
    with owner.begin() as conn, pytest.raises(sa.exc.IntegrityError) as excinfo:
        conn.execute(sa.text(INSERT), dict(entity=entity + 1000, run=run, rows=3))
    error = _violation(excinfo)
    assert error.diag.constraint_name == "fk_raw_records_entity_id_entities"
    assert error.diag.message_detail == f'Key (entity_id)=({entity + 1000}) is not present in table "entities".'
    missing_run = uuid.uuid4()
    with owner.begin() as conn, pytest.raises(sa.exc.IntegrityError) as excinfo:
        conn.execute(sa.text(INSERT), dict(entity=entity, run=missing_run, rows=3))
    error = _violation(excinfo)
    assert error.diag.constraint_name == "fk_raw_records_ingestion_run_id_ingestion_runs"
    assert str(missing_run) in error.diag.message_detail
    with owner.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM raw_records")).scalar_one() == 0  # nothing landed
    with owner.begin() as conn:
        conn.execute(sa.text(INSERT), dict(entity=entity, run=run, rows=3))
        assert conn.execute(sa.text("SELECT count(*) FROM raw_records")).scalar_one() == 3


def test_a_referenced_entity_cannot_be_deleted_nor_a_run_truncated_away(owner) -> None:
    with owner.begin() as conn:
        entity, run = _entity_and_run(conn, "refs-used")
        conn.execute(sa.text(INSERT), dict(entity=entity, run=run, rows=2))
        # records of an entity staged under another entity's run: the entity itself has no run to hold it
        other = conn.execute(sa.text("INSERT INTO entities (name) VALUES ('refs-other') RETURNING id")).scalar_one()
        conn.execute(sa.text(INSERT.replace("'r' || g", "'o' || g")), dict(entity=other, run=run, rows=1))
        spare = conn.execute(sa.text("INSERT INTO entities (name) VALUES ('refs-spare') RETURNING id")).scalar_one()
    # a run is staging: append-only before any reference is looked at (0026); the reference check stands behind it
    for statement in ("DELETE FROM ingestion_runs WHERE id = :r", "UPDATE ingestion_runs SET id = gen_random_uuid() "
                                                                   "WHERE id = :r"):
        with owner.begin() as conn, pytest.raises(sa.exc.DBAPIError, match="append-only"):
            conn.execute(sa.text(statement), dict(r=run))
    with owner.begin() as conn, pytest.raises(sa.exc.IntegrityError) as excinfo:
        conn.execute(sa.text("DELETE FROM entities WHERE id = :e"), dict(e=other))
    error = _violation(excinfo)
    assert error.diag.constraint_name == "fk_raw_records_entity_id_entities"
    assert error.diag.message_detail == f'Key (id)=({other}) is still referenced from table "raw_records".'
    with owner.begin() as conn, pytest.raises(sa.exc.NotSupportedError, match="raw_records"):
        conn.execute(sa.text("TRUNCATE ingestion_runs CASCADE"))
    with owner.begin() as conn:  # an unreferenced entity goes; a TRUNCATE naming raw_records too goes
        conn.execute(sa.text("DELETE FROM entities WHERE id = :e"), dict(e=spare))
    with owner.begin() as conn:
        conn.execute(sa.text("TRUNCATE raw_records, ingestion_runs CASCADE"))
        assert conn.execute(sa.text("SELECT count(*) FROM raw_records")).scalar_one() == 0


def test_a_concurrent_delete_waits_for_the_inserting_transaction_then_is_refused(owner) -> None:
    with owner.begin() as conn:
        _, run = _entity_and_run(conn, "refs-race-runs")
        entity = conn.execute(sa.text("INSERT INTO entities (name) VALUES ('refs-race') RETURNING id")).scalar_one()
    inserting = owner.connect()
    transaction = inserting.begin()
    inserting.execute(sa.text(INSERT), dict(entity=entity, run=run, rows=5))  # not committed yet
    outcome: dict[str, object] = {}

    def delete_entity() -> None:
        try:
            with owner.begin() as conn:
                conn.execute(sa.text("SET LOCAL lock_timeout = '5s'"))
                conn.execute(sa.text("DELETE FROM entities WHERE id = :e"), dict(e=entity))
            outcome["result"] = "deleted"
        except sa.exc.DBAPIError as exc:
            outcome["result"] = type(exc.orig).__name__

    deleter = threading.Thread(target=delete_entity)
    deleter.start()
    deleter.join(timeout=1.0)
    assert deleter.is_alive(), f"the DELETE did not wait for the inserting transaction: {outcome}"
    transaction.commit()
    inserting.close()
    deleter.join(timeout=10)
    assert outcome["result"] == "ForeignKeyViolation"
    with owner.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM raw_records WHERE entity_id = :e"),
                            dict(e=entity)).scalar_one() == 5

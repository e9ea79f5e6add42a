"""The shared staging writers, stream cursors and the mapper registry, against real PostgreSQL."""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal

import pytest
import sqlalchemy as sa

from ingestion.staging import (BalanceSnapshotIn, RawRecordIn, load_cursor, start_run, write_balance_snapshots,
                               write_cursor, write_raw_records)
from transforms.canonical import build_canonical
from transforms.ledger_mapping import LegDraft
from transforms.mappers import StagedRecord, map_record, register_mapper, registered_streams
from warehouse.entities import get_or_create_entity

SOURCE, STREAM = "testsource", "movements"


def _map_movement(record: StagedRecord) -> list[LegDraft]:
    """A toy source: each record is one signed movement of one asset in one account."""
    p = record.payload
    return [LegDraft(0, record.account, "spot", "", p["coin"], Decimal(p["change"]), p["kind"], None, None, None)]


register_mapper(SOURCE, STREAM, _map_movement)


def _record(raw_id: str, change: str, when: datetime, kind: str = "deposit") -> RawRecordIn:
    return RawRecordIn(account="toy-1", source_raw_id=raw_id, occurred_at=when,
                       payload={"id": raw_id, "coin": "btc", "change": change, "kind": kind})


def test_staging_is_append_only_and_versions_a_changed_record(engine):
    day = datetime(2026, 1, 5, 12, tzinfo=timezone.utc)
    with engine.begin() as conn:
        entity = get_or_create_entity(conn, "toy")
        run = start_run(conn, entity.id, SOURCE, STREAM)
        assert write_raw_records(conn, entity.id, SOURCE, STREAM, [_record("a", "1.5", day), _record("b", "2", day)], run) == 2
        assert write_raw_records(conn, entity.id, SOURCE, STREAM, [_record("a", "1.5", day)], run) == 0
        assert write_raw_records(conn, entity.id, SOURCE, STREAM, [_record("a", "1.25", day)], run) == 1
        versions = conn.execute(sa.text(
            "SELECT payload->>'change' FROM raw_records WHERE source_raw_id = 'a' ORDER BY id")).scalars().all()
    assert versions == ["1.5", "1.25"]


def test_cursor_is_stored_per_stream_and_moves_with_its_transaction(engine):
    with engine.begin() as conn:
        entity = get_or_create_entity(conn, "toy")
        assert load_cursor(conn, entity.id, SOURCE, "toy-1", STREAM) is None
        write_cursor(conn, entity.id, SOURCE, "toy-1", STREAM, {"from_id": 10})
    with pytest.raises(RuntimeError):
        with engine.begin() as conn:
            write_cursor(conn, entity.id, SOURCE, "toy-1", STREAM, {"from_id": 99})
            raise RuntimeError("the staging write failed: the cursor must not move")
    with engine.begin() as conn:
        assert load_cursor(conn, entity.id, SOURCE, "toy-1", STREAM) == {"from_id": 10}
        assert load_cursor(conn, entity.id, SOURCE, "toy-2", STREAM) is None


def test_canonical_build_maps_every_registered_stream_with_the_latest_version(engine):
    day = datetime(2026, 1, 5, 12, tzinfo=timezone.utc)
    with engine.begin() as conn:
        entity = get_or_create_entity(conn, "toy")
        run = start_run(conn, entity.id, SOURCE, STREAM)
        write_raw_records(conn, entity.id, SOURCE, STREAM, [_record("a", "1.5", day), _record("b", "-0.5", day, "withdrawal")], run)
        write_raw_records(conn, entity.id, SOURCE, STREAM, [_record("a", "1.25", day)], run)
        write_balance_snapshots(conn, entity.id, SOURCE, [BalanceSnapshotIn(
            "toy-1", "spot", "", datetime(2026, 1, 6, tzinfo=timezone.utc), {"BTC": "0.75"}, {"raw": True})], run)
        stats = build_canonical(conn, entity, date(2026, 1, 5), date(2026, 1, 5))
        legs = conn.execute(sa.text(
            """SELECT l.quantity, l.kind, l.group_id, a.symbol, ac.source, ac.account_type FROM transactions l
               JOIN assets a ON a.id = l.asset_id JOIN accounts ac ON ac.id = l.account_id ORDER BY l.id""")).all()
        position = conn.execute(sa.text("SELECT computed_quantity, reported_quantity FROM positions")).one()
    assert (SOURCE, STREAM) in registered_streams() and ("csv", "ledger") in registered_streams()
    assert stats.legs == 2
    assert [(l.quantity, l.kind, l.symbol, l.source, l.account_type) for l in legs] == [
        (Decimal("-0.5"), "withdrawal", "BTC", SOURCE, "spot"), (Decimal("1.25"), "deposit", "BTC", SOURCE, "spot")]
    assert all(l.group_id.startswith(f"{SOURCE}:") for l in legs)
    assert position.computed_quantity == Decimal("0.75") == position.reported_quantity


def test_a_mapper_breaking_the_leg_contract_is_refused():
    record = StagedRecord(7, "bad", "s", "acct", "x", None, {})
    register_mapper("bad", "s", lambda r: [LegDraft(10, "acct", "spot", "", "BTC", Decimal(1), "deposit", None, None, None)])
    with pytest.raises(ValueError, match="leg index 10"):
        map_record(record)
    with pytest.raises(ValueError, match="already registered"):
        register_mapper("bad", "s", _map_movement)

"""Manual classification (issue 12): an unclassified leg blocks its day until a person classifies it, with who, when
and why; the classification survives rebuilds, refuses a kind that contradicts the leg's sign, and the next close
books the leg by its new kind."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal

import dagster as dg
import sqlalchemy as sa
from typer.testing import CliRunner

from ingestion.csv_files import CsvFile
from ingestion.exchange_exports import import_binance_export
from orchestration.cli import app
from orchestration.close_runner import close_days
from tests.integration.test_events_db import EXPORT
from warehouse.entities import get_or_create_entity

FIRST, LAST = date(2024, 3, 1), date(2024, 3, 4)


def _statuses(engine: sa.Engine, entity_id: int) -> dict[date, str]:
    with engine.connect() as conn:
        return dict(conn.execute(sa.text("SELECT date, status FROM closes WHERE entity_id = :e"), dict(e=entity_id)).all())


def test_an_unclassified_leg_blocks_until_classified_then_the_close_books_it(engine) -> None:
    with engine.begin() as conn:
        entity = get_or_create_entity(conn, "classy")
        import_binance_export(conn, entity.id, CsvFile("export.csv", EXPORT))
    first = close_days(["classy"], FIRST, LAST, instance=dg.DagsterInstance.ephemeral())
    assert not first.success and "canonical_expectations" in (first.error or "")  # the unclassified leg: an error
    with engine.begin() as conn:  # market prices for the assets the canonical build registered
        for symbol, price in (("EUR", "1.1"), ("BTC", "40000"), ("USDT", "1")):
            assert conn.execute(sa.text(
                "INSERT INTO prices (entity_id, asset_id, ts, price_usd, source, resolution)"
                " SELECT :e, id, '2024-03-01T00:00:00Z', CAST(:p AS numeric), 'manual', 'day' FROM assets WHERE symbol = :s"),
                dict(e=entity.id, p=price, s=symbol)).rowcount == 1
    with engine.connect() as conn:
        leg = conn.execute(sa.text("SELECT id FROM transactions WHERE entity_id = :e AND kind = 'unclassified'"),
                           dict(e=entity.id)).scalar_one()
    runner = CliRunner()
    refused = runner.invoke(app, ["classify", "--entity", "classy", "--leg", str(leg), "--kind", "withdrawal",
                                  "--by", "alice", "--reason", "test"])
    assert refused.exit_code == 1 and "must go the other way" in refused.output, refused.output
    done = runner.invoke(app, ["classify", "--entity", "classy", "--leg", str(leg), "--kind", "income", "--by", "alice",
                               "--reason", "Binance promo credit: other income", "--json"])
    assert done.exit_code == 0, done.output
    recorded = json.loads(done.output)
    assert (recorded["mapped_kind"], recorded["kind"], recorded["classified_by"], recorded["date"]) == (
        "unclassified", "income", "alice", "2024-03-03")
    assert _statuses(engine, entity.id)[date(2024, 3, 3)] == "failed"  # not fresh: the next close starts there

    second = close_days(["classy"], LAST, LAST, instance=dg.DagsterInstance.ephemeral())
    assert second.success, second.error
    assert second.start == FIRST  # recomputed from the earliest day that was not fresh
    assert set(_statuses(engine, entity.id).values()) <= {"closed", "breaks"}
    with engine.connect() as conn:
        kind, event = conn.execute(sa.text(
            "SELECT t.kind, e.event_type FROM transactions t JOIN events e ON e.entity_id = t.entity_id"
            " AND e.group_id = t.group_id WHERE t.id = :id"), dict(id=leg)).one()
        lot = conn.execute(sa.text(
            "SELECT quantity, cost_basis FROM pnl_open_lots WHERE lot_leg_id = :id AND method = 'fifo'"
            " AND pool = 'universal' AND date = :d"), dict(id=leg, d=date(2024, 3, 3))).one()
    assert (kind, event) == ("income", "income")
    assert (lot.quantity, lot.cost_basis) == (Decimal("0.01"), Decimal("400"))  # income at fair value: 0.01 x 40,000
    listed = runner.invoke(app, ["classify", "list", "--entity", "classy", "--json"])
    assert listed.exit_code == 0 and json.loads(listed.output)[0]["reason"] == "Binance promo credit: other income"

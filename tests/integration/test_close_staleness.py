"""Fresh forward (issue 13): late data for a locked day, closes of sub-ranges, and what every view then shows.

The scenario of the issue, on the sample fund: close 2026-01-01..20, lock 2026-01-10, a late ledger row for the locked
day (and the corrected balances from the next day on) arrives, the accountant closes 2026-01-10..11 only. The days
after must say `stale` (not `closed` with figures that leave the adjustment out), refuse to lock, and the next close
of a later day must recompute them: no spurious break, a roll-forward that ties out through the API, single-day
and final tables equal to those of one clean close of the same
inputs."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from api.main import create_app
from api.security import create_api_key
from ingestion.csv_files import CsvFile, import_csv
from orchestration.close_runner import close_days
from orchestration.definitions import daily_close_schedule
from assets.resources import ENTITIES_TAG, WarehouseResource
from reconciliation.close import CloseError, lock_close
from reconciliation.staleness import earliest_stale_day, mark_stale
from tests.integration.test_close_concurrency import _reset
from tests.integration.test_close_e2e import content_digest
from warehouse.entities import resolve_entity
from warehouse.reports import list_breaks

LOCKED = date(2026, 1, 10)
FIRST, LAST = date(2026, 1, 1), date(2026, 1, 20)
LEDGER_HEADER = ("id,timestamp,action,asset,quantity,unit_price_usd,fee_asset,fee_amount,quote_asset,quote_quantity,"
                 "account,tx_hash,external_id,notes\n")


def _late_inputs(engine: sa.Engine, entity_id: int, tmp_path: Path) -> None:
    """A 150 USD income on Kraken on the locked day, and Kraken's USD balances from the next day on that include it."""
    ledger = tmp_path / "late-ledger.csv"
    ledger.write_text(LEDGER_HEADER + "late-150,2026-01-10T15:00:00Z,INCOME,USD,150,1,,,,,Kraken,,late-150,"
                                      "interest credited late\n", encoding="utf-8")
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            """SELECT s.snapshot_time, s.balances FROM raw_balance_snapshots s
               WHERE s.entity_id = :e AND s.account = 'Kraken' AND s.balances ? 'USD'
                 AND s.snapshot_time > '2026-01-11T00:00:00Z' ORDER BY s.snapshot_time"""), dict(e=entity_id)).all()
    assert rows, "the sample reports Kraken USD balances"
    lines = []
    for r in rows:  # the whole snapshot again, USD 150 higher
        when = r.snapshot_time.isoformat().replace("+00:00", "Z")
        for asset, quantity in sorted(r.balances.items()):
            shown = Decimal(quantity) + 150 if asset == "USD" else Decimal(quantity)
            lines.append(f"{when},Kraken,spot,,{asset},{shown}\n")
    balances = tmp_path / "late-balances.csv"
    balances.write_text("timestamp,account,account_type,sub_account,asset,quantity\n" + "".join(lines), encoding="utf-8")
    with engine.begin() as conn:
        import_csv(conn, entity_id, "ledger", CsvFile.from_path(ledger))
        import_csv(conn, entity_id, "balances", CsvFile.from_path(balances))


def _statuses(engine: sa.Engine, entity_id: int) -> dict[date, str]:
    with engine.connect() as conn:
        return dict(conn.execute(sa.text("SELECT date, status FROM closes WHERE entity_id = :e ORDER BY date"),
                                 dict(e=entity_id)).all())


def _close(start: date, end: date) -> None:
    run = close_days(["northwind"], start, end, instance=dg.DagsterInstance.ephemeral())
    assert run.success, run.error


@pytest.fixture(scope="module")
def clean_digest(database_url: str, tmp_path_factory) -> dict[str, str]:
    """One clean close of the final inputs, with 2026-01-10 locked before the late data (so it is an adjustment)."""
    from warehouse.db import get_engine

    engine = get_engine(database_url)
    entity_id = _reset(engine)
    _close(FIRST, LAST)
    with engine.begin() as conn:
        lock_close(conn, resolve_entity(conn, "northwind"), LOCKED)
    _late_inputs(engine, entity_id, tmp_path_factory.mktemp("clean"))
    _close(FIRST, LAST)
    with engine.connect() as conn:
        return content_digest(conn)


def test_late_data_for_a_locked_day_leaves_later_days_stale_until_they_are_closed_again(
        database_url, clean_digest, tmp_path) -> None:
    from warehouse.db import get_engine

    engine = get_engine(database_url)
    entity_id = _reset(engine)
    _close(FIRST, LAST)
    with engine.begin() as conn:
        northwind = resolve_entity(conn, "northwind")
        lock_close(conn, northwind, LOCKED)
    with engine.connect() as conn:
        breaks_before = [(b["date"], b["account"], b["asset"], b["difference"]) for b in list_breaks(conn, entity_id, FIRST, LAST)]

    _late_inputs(engine, entity_id, tmp_path)
    statuses = _statuses(engine, entity_id)
    assert statuses[LOCKED - date.resolution] != "stale" and statuses[LOCKED] != "stale"  # a locked day never changes
    assert {statuses[d] for d in statuses if d > LOCKED} == {"stale"}
    with engine.connect() as conn:
        assert earliest_stale_day(conn, entity_id) == date(2026, 1, 11)
        message = conn.execute(sa.text("SELECT message FROM closes WHERE entity_id = :e AND date = '2026-01-15'"),
                               dict(e=entity_id)).scalar_one()
    assert "new or changed manual/csv_rows record" in message or "record(s)" in message, message
    with engine.begin() as conn, pytest.raises(CloseError, match="is stale"):
        lock_close(conn, northwind, date(2026, 1, 12))

    # the accountant closes the locked day and the next only: the days after stay stale, they are not `closed`
    _close(LOCKED, date(2026, 1, 11))
    statuses = _statuses(engine, entity_id)
    assert statuses[date(2026, 1, 11)] != "stale"
    assert {statuses[d] for d in statuses if d > date(2026, 1, 11)} == {"stale"}

    # the daily schedule closes the previous day from the earliest stale day
    with dg.build_schedule_context(scheduled_execution_time=__import__("datetime").datetime(2026, 1, 21, 1, 0),
                                   instance=dg.DagsterInstance.local_temp(),
                                   resources={"warehouse": WarehouseResource(database_url=database_url)}) as context:
        [request] = daily_close_schedule(context)
    from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

    assert (request.tags[ENTITIES_TAG], request.tags[ASSET_PARTITION_RANGE_START_TAG],
            request.tags[ASSET_PARTITION_RANGE_END_TAG]) == (str(entity_id), "2026-01-12|northwind", "2026-01-20|northwind")
    assert request.tags["coinfrs/entity_names"] == "northwind"

    # meanwhile the roll-forward over stale days is a clear 409, not figures that do not tie
    with engine.begin() as conn:
        key = create_api_key(conn, [entity_id], label="staleness")
    client = TestClient(create_app(rate_limit_per_minute=0))
    headers = {"X-API-Key": key}
    resp = client.get("/api/v1/pnl/rollforward", params={"from": "2026-01-01", "to": "2026-01-20"}, headers=headers)
    assert resp.status_code == 409, resp.text
    assert resp.json()["error"]["code"] == "CONFLICT"
    assert "2026-01-12..2026-01-20 (9 days) is stale" in resp.json()["error"]["message"]

    # a close of the last day recomputes every stale day before it
    _close(LAST, LAST)
    statuses = _statuses(engine, entity_id)
    assert "stale" not in statuses.values()
    with engine.connect() as conn:
        breaks_after = [(b["date"], b["account"], b["asset"], b["difference"]) for b in list_breaks(conn, entity_id, FIRST, LAST)]
        assert content_digest(conn) == clean_digest
    assert breaks_after == breaks_before  # no spurious break from the adjustment

    # every view reads the same closed state: the roll-forward ties out through the API
    resp = client.get("/api/v1/pnl/rollforward", params={"from": "2026-01-01", "to": "2026-01-20"}, headers=headers)
    assert resp.status_code == 200, resp.text
    # a single-day list shows the day's adjustment legs (timestamped on the locked day, booked on this one)
    usd_kraken = client.get("/api/v1/transactions", headers=headers,
                            params={"from": "2026-01-11", "to": "2026-01-11", "account": "Kraken", "asset": "USD"})
    assert usd_kraken.status_code == 200, usd_kraken.text
    assert any(leg.get("is_adjustment") and leg["quantity"] == "150" for leg in usd_kraken.json()["data"]), \
        usd_kraken.json()["data"]


def test_each_input_writer_marks_the_days_it_affects(database_url, tmp_path) -> None:
    from transforms.pnl import write_book_period
    from reconciliation.blocking import ReconPolicy, write_policy, load_policy

    from warehouse.db import get_engine

    engine = get_engine(database_url)
    entity_id = _reset(engine)
    _close(FIRST, date(2026, 1, 5))
    assert "stale" not in _statuses(engine, entity_id).values()
    with engine.begin() as conn:
        write_book_period(conn, entity_id, "hifo", "universal", date(2026, 1, 4))
    statuses = _statuses(engine, entity_id)
    assert [d.day for d, s in statuses.items() if s == "stale"] == [4, 5]
    _close(date(2026, 1, 5), date(2026, 1, 5))  # recomputes from the 4th
    assert "stale" not in _statuses(engine, entity_id).values()
    with engine.begin() as conn:
        write_policy(conn, entity_id, load_policy(conn, entity_id))
    assert set(_statuses(engine, entity_id).values()) == {"stale"}
    with engine.begin() as conn:  # an import that changes nothing marks nothing
        conn.execute(sa.text("UPDATE closes SET status = 'closed' WHERE entity_id = :e"), dict(e=entity_id))
        from tests.integration.test_close_e2e import SAMPLE

        assert import_csv(conn, entity_id, "ledger", CsvFile.from_path(SAMPLE / "ledger.csv")).inserted == 0
    assert "stale" not in _statuses(engine, entity_id).values()
    with engine.begin() as conn:
        assert mark_stale(conn, entity_id, date(2026, 1, 3), "test") == 3

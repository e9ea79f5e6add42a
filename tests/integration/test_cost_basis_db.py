"""Cost-basis books against real PostgreSQL: the sample fund's canonical ledger, stored books,
incremental restarts, locked days, the roll-forward, and the CLI commands."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from ingestion.csv_files import CsvFile, import_csv
from orchestration.cli import app
from reconciliation.close import lock_close, write_closes
from transforms.canonical import build_canonical
from transforms.cost_basis import compute_book
from transforms.ledger_books import map_ledger_files
from transforms.pnl import CONFIGURED, build_pnl, write_book_period
from transforms.pnl_reports import compare_books, list_open_lots, realized_summary, rollforward
from warehouse.entities import get_or_create_entity
from tests.conftest import truncate_all

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "fund"
FIRST, LAST = date(2026, 1, 1), date(2026, 3, 1)
MID = date(2026, 2, 1)
BOOK_ROWS = {
    "pnl_disposals": "date, leg_id, kind, quantity, proceeds, cost_basis, realized_gain, short_term_gain, long_term_gain,"
                     " shortfall_quantity",
    "pnl_daily": "date, pool_account_id, asset_id, quantity, cost_basis, realized_gain, acquired_basis, disposed_basis,"
                 " transferred_in_basis, transferred_out_basis, shortfall_quantity",
    "pnl_open_lots": "date, seq, pool_account_id, asset_id, lot_leg_id, acquired_at, quantity, cost_basis, flagged",
}


BOOK_TABLES = ("pnl_disposal_lots", "pnl_disposals", "pnl_daily", "pnl_open_lots", "pnl_book_states", "pnl_books", "closes")


@pytest.fixture(scope="module")
def canonical_sample(database_url: str):
    """The sample fund staged and built into canonical legs once for the module."""
    from warehouse.db import get_engine

    truncate_all(database_url)  # as the owner: the application's role may not TRUNCATE
    engine = get_engine(database_url)
    with engine.begin() as conn:
        entity = get_or_create_entity(conn, "northwind")
        import_csv(conn, entity.id, "ledger", CsvFile.from_path(SAMPLE / "ledger.csv"))
        import_csv(conn, entity.id, "balances", CsvFile.from_path(SAMPLE / "balances.csv"))
        build_canonical(conn, entity, FIRST, LAST)
    return engine, entity


@pytest.fixture()
def sample(canonical_sample):
    """Each test starts without books, closes or book settings (TRUNCATE: locked closes cannot be deleted)."""
    engine, entity = canonical_sample
    truncate_all(engine.url.render_as_string(hide_password=False), list(BOOK_TABLES), options="")
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM prices WHERE source = 'manual'"))
    return engine, entity


def book_rows(conn: sa.Connection, ident: tuple[str, str], start: date, end: date) -> dict[str, list]:
    params = dict(m=ident[0], p=ident[1], s=start, t=end)
    return {table: conn.execute(sa.text(f"SELECT {cols} FROM {table} WHERE method = :m AND pool = :p"
                                        f" AND date BETWEEN :s AND :t ORDER BY {cols}"), params).all()
            for table, cols in BOOK_ROWS.items()}


def test_stored_books_agree_with_the_engine_on_the_ledger_file(sample) -> None:
    engine, entity = sample
    with engine.begin() as conn:
        stats = build_pnl(conn, entity, FIRST, LAST)
    assert all(day is None for day in stats.restarted_from.values())  # nothing stored yet: from the first leg
    mapped = map_ledger_files([CsvFile.from_path(SAMPLE / "ledger.csv")])
    with engine.connect() as conn:
        for method, pool in (("fifo", "universal"), ("fifo", "account")):
            stored = realized_summary(conn, entity, FIRST, LAST, method, pool)
            in_memory = sum((d.realized_gain for d in compute_book(mapped.legs, method=method, pool=pool).disposals),
                            Decimal(0))
            assert Decimal(stored["realized_gain"]) == in_memory, pool
            assert stored["disposals"] > 900
        configured = realized_summary(conn, entity, FIRST, LAST, "configured")  # default book: fifo universal
        assert {k: v for k, v in configured.items() if k not in ("method", "pool")} == {
            k: v for k, v in realized_summary(conn, entity, FIRST, LAST).items() if k not in ("method", "pool")}
        hifo = realized_summary(conn, entity, FIRST, LAST, "hifo", "account")  # not stored: computed on demand
        assert Decimal(hifo["realized_gain"]) == sum(
            (d.realized_gain for d in compute_book(mapped.legs, method="hifo", pool="account").disposals), Decimal(0))


def test_a_new_day_restarts_from_the_stored_state_and_matches_a_full_recompute(sample) -> None:
    engine, entity = sample
    with engine.begin() as conn:
        write_book_period(conn, entity.id, "hifo", "account", MID)
        build_pnl(conn, entity, FIRST, MID + timedelta(days=2))
    for offset in (3, 4, 5):
        day = MID + timedelta(days=offset)
        with engine.begin() as conn:
            stats = build_pnl(conn, entity, day, day)
        assert set(stats.restarted_from.values()) == {day - timedelta(days=1)}
    end = MID + timedelta(days=5)
    with engine.connect() as conn:
        incremental = {ident: book_rows(conn, ident, FIRST, end) for ident in (CONFIGURED, ("fifo", "account"))}
    with engine.begin() as conn:
        full = build_pnl(conn, entity, FIRST, end, incremental=False)
        assert set(full.restarted_from.values()) == {None}
        for ident, rows in incremental.items():
            assert book_rows(conn, ident, FIRST, end) == rows, ident
            assert rows["pnl_disposals"] and rows["pnl_open_lots"]
        methods = {d.method for d in full.books[CONFIGURED].disposals}
    assert methods == {"fifo", "hifo"}  # fifo:universal before MID, hifo:account from MID


def test_changed_inputs_invalidate_the_stored_state(sample) -> None:
    engine, entity = sample
    with engine.begin() as conn:
        build_pnl(conn, entity, FIRST, MID)
        btc = conn.execute(sa.text("SELECT id FROM assets WHERE symbol = 'BTC'")).scalar_one()
        conn.execute(sa.text("INSERT INTO prices (entity_id, asset_id, ts, price_usd, source, resolution)"
                             " VALUES (:e, :a, :t, 1, 'manual', 'day')"),
                     dict(e=entity.id, a=btc, t=datetime(2026, 1, 10, tzinfo=timezone.utc)))
        stats = build_pnl(conn, entity, MID + timedelta(days=1), MID + timedelta(days=1))
        assert set(stats.restarted_from.values()) == {None}
        again = build_pnl(conn, entity, MID + timedelta(days=2), MID + timedelta(days=2))
        assert set(again.restarted_from.values()) == {MID + timedelta(days=1)}
        # a transfer of an earlier day matched later (the row keeps the out-leg's day) invalidates the states after it
        conn.execute(sa.text("UPDATE transfers SET status = 'unmatched_out', in_leg_id = NULL WHERE id = ("
                             " SELECT min(id) FROM transfers WHERE entity_id = :e AND status = 'matched' AND close_date < :d)"),
                     dict(e=entity.id, d=MID))
        stats = build_pnl(conn, entity, MID + timedelta(days=3), MID + timedelta(days=3))
    assert set(stats.restarted_from.values()) == {None}


def test_rollforward_ties_out_and_open_lots_are_stored(sample) -> None:
    engine, entity = sample
    with engine.begin() as conn:
        write_book_period(conn, entity.id, "average", "account", MID)
        build_pnl(conn, entity, FIRST, date(2026, 2, 15))
    with engine.connect() as conn:
        rows = rollforward(conn, entity.id, date(2026, 1, 15), date(2026, 2, 15))
        lots = list_open_lots(conn, entity.id, date(2026, 2, 15))
        fifo_rows = rollforward(conn, entity.id, FIRST, date(2026, 2, 15), "fifo", "account")
    assert rows and lots and fifo_rows
    assert sum(Decimal(r["closing_basis"]) for r in rows) == sum(Decimal(l["cost_basis"]) for l in lots)
    # the pool change on MID shows as transfers between the universal pool and the account pools
    assert any(r["pool_account_id"] == 0 and r["transferred_out_quantity"] != "0" for r in rows)
    assert sum(Decimal(r["transferred_in_basis"]) for r in rows) >= sum(
        Decimal(r["transferred_out_basis"]) for r in rows if r["pool_account_id"] == 0)


def test_locked_days_never_change_and_book_changes_cannot_reach_back(sample) -> None:
    engine, entity = sample
    locked_day = date(2026, 1, 5)
    with engine.begin() as conn:
        build_pnl(conn, entity, FIRST, date(2026, 1, 10))
        write_closes(conn, entity, FIRST, date(2026, 1, 10), run_id=None)
        lock_close(conn, entity, locked_day)
    with engine.connect() as conn:
        before = book_rows(conn, CONFIGURED, locked_day, locked_day)
    with engine.begin() as conn:
        with pytest.raises(ValueError, match="locked"):
            write_book_period(conn, entity.id, "lifo", "universal", date(2026, 1, 3))
        write_book_period(conn, entity.id, "lifo", "universal", date(2026, 1, 6))
        build_pnl(conn, entity, FIRST, date(2026, 1, 10))
    with engine.connect() as conn:
        assert book_rows(conn, CONFIGURED, locked_day, locked_day) == before
        closes = conn.execute(sa.text("SELECT date, book FROM closes WHERE entity_id = :e ORDER BY date"),
                              dict(e=entity.id)).all()
    assert {c.book for c in closes} == {"fifo:universal"}  # closes written before the change keep their book


def test_compare_reports_each_book_and_the_difference_per_disposal(sample) -> None:
    engine, entity = sample
    with engine.connect() as conn:
        report = compare_books(conn, entity, [("fifo", "universal"), ("hifo", "account")], FIRST, LAST)
    fifo, hifo = report["books"]
    assert Decimal(hifo["difference"]) == Decimal(hifo["realized_gain"]) - Decimal(fifo["realized_gain"])
    assert sum(Decimal(d["difference"]["hifo:account"]) for d in report["disposals"]) == Decimal(hifo["difference"])
    assert any(d["difference"]["hifo:account"] != "0" for d in report["disposals"])
    assert all(d["asset"] and d["account"] for d in report["disposals"])


def test_cli_book_set_realized_compare_and_compute(sample) -> None:
    engine, entity = sample
    runner = CliRunner()
    result = runner.invoke(app, ["pnl", "book", "set", "--entity", "northwind", "--method", "lofo", "--pool", "account",
                                 "--from", "2026-02-01"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["pnl", "book", "show", "--entity", "northwind", "--json"])
    assert json.loads(result.stdout)["periods"] == [{"from": None, "method": "fifo", "pool": "universal"},
                                                    {"from": "2026-02-01", "method": "lofo", "pool": "account"}]
    bad = runner.invoke(app, ["pnl", "book", "set", "--entity", "northwind", "--method", "wac", "--pool", "account"])
    assert bad.exit_code == 1 and "unknown cost-basis method 'wac'" in bad.output
    result = runner.invoke(app, ["pnl", "realized", "--entity", "northwind", "--from", "2026-01-01", "--to", "2026-03-01",
                                 "--method", "lifo", "--pool", "account", "--json"])
    realized = json.loads(result.stdout)
    assert (realized["method"], realized["pool"]) == ("lifo", "account") and realized["disposals"] > 900
    result = runner.invoke(app, ["pnl", "compare", "--entity", "northwind", "--books", "fifo:universal,configured",
                                 "--from", "2026-01-01", "--to", "2026-03-01", "--json"])
    assert [b["book"] for b in json.loads(result.stdout)["books"]] == ["fifo:universal", "configured"]
    result = runner.invoke(app, ["pnl", "compute", "--ledger", str(SAMPLE / "ledger.csv"), "--method", "lifo",
                                 "--pool", "account", "--json"])
    computed = json.loads(result.stdout)
    assert set(computed) >= set(realized) | {"seconds"}
    assert {k: computed[k] for k in ("realized_gain", "disposals", "proceeds")} == {
        k: realized[k] for k in ("realized_gain", "disposals", "proceeds")}


def test_api_compare_lots_rollforward_and_shortfalls(sample) -> None:
    from fastapi.testclient import TestClient

    from api.main import create_app
    from api.security import create_api_key

    engine, entity = sample
    with engine.begin() as conn:
        write_book_period(conn, entity.id, "hifo", "account", date(2026, 1, 10))
        build_pnl(conn, entity, FIRST, date(2026, 1, 20))
        key = create_api_key(conn, entity.id, label="cost basis tests")
    client = TestClient(create_app(rate_limit_per_minute=0))
    headers = {"X-API-Key": key}
    resp = client.get("/api/v1/pnl/compare", headers=headers,
                      params={"books": "fifo:universal,configured", "from": "2026-01-01", "to": "2026-01-20"})
    assert resp.status_code == 200, resp.text
    data = resp.json()["data"]
    assert [b["book"] for b in data["books"]] == ["fifo:universal", "configured"]
    assert data["books"][1]["schedule"] == "fifo:universal -> hifo:account from 2026-01-10"
    with engine.connect() as conn:
        stored = realized_summary(conn, entity, FIRST, date(2026, 1, 20), "configured")
    assert data["books"][1]["realized_gain"] == stored["realized_gain"]  # on demand == what the close stored
    resp = client.get("/api/v1/pnl/realized", headers=headers,
                      params={"from": "2026-01-01", "to": "2026-01-20", "method": "configured"})
    assert resp.status_code == 200 and resp.json()["data"]["realized_gain"] == stored["realized_gain"]
    resp = client.get("/api/v1/pnl/lots", headers=headers, params={"as_of": "2026-01-20"})
    lots = resp.json()["data"]
    assert resp.status_code == 200 and lots and all(isinstance(l["cost_basis"], str) for l in lots)
    resp = client.get("/api/v1/pnl/rollforward", headers=headers, params={"from": "2026-01-05", "to": "2026-01-20"})
    rows = resp.json()["data"]
    assert resp.status_code == 200 and rows
    assert sum(Decimal(r["closing_basis"]) for r in rows) == sum(Decimal(l["cost_basis"]) for l in lots)
    resp = client.get("/api/v1/pnl/shortfalls", headers=headers, params={"from": "2026-01-01", "to": "2026-01-20"})
    assert resp.status_code == 200 and resp.json()["meta"]["count"] == len(resp.json()["data"])
    resp = client.get("/api/v1/pnl/realized/breakdown", headers=headers,
                      params={"from": "2026-01-01", "to": "2026-01-20", "by": "month"})
    assert resp.status_code == 200 and [r["month"] for r in resp.json()["data"]] == ["2026-01"]
    assert resp.json()["data"][0]["realized_gain"] == stored["realized_gain"]
    resp = client.get("/api/v1/pnl/lots", headers=headers, params={"as_of": "2026-01-20", "method": "hifo", "pool": "account"})
    assert resp.status_code == 400 and resp.json()["error"]["details"][0]["field"] == "method"
    resp = client.get("/api/v1/pnl/compare", headers=headers,
                      params={"books": "fifo:wallet", "from": "2026-01-01", "to": "2026-01-20"})
    # the OpenAPI states the books pattern (method:pool): an unknown pool breaks the schema of `books` (api/contract.py)
    assert resp.status_code == 400 and resp.json()["error"]["details"][0]["field"] == "books"


def test_realized_breakdowns_add_up_to_the_summary(sample) -> None:
    from transforms.pnl_reports import realized_breakdown

    engine, entity = sample
    with engine.begin() as conn:
        build_pnl(conn, entity, FIRST, date(2026, 1, 31))
    with engine.connect() as conn:
        for method, pool in (("fifo", "account"), ("lofo", "universal")):
            total = Decimal(realized_summary(conn, entity, FIRST, date(2026, 1, 31), method, pool)["realized_gain"])
            for by in ("asset", "account", "term", "month", "day"):
                rows, _ = realized_breakdown(conn, entity, FIRST, date(2026, 1, 31), by, method, pool)
                assert sum(Decimal(r["realized_gain"]) for r in rows) == total, (method, by)
            assert len(realized_breakdown(conn, entity, FIRST, date(2026, 1, 31), "asset", method, pool)[0]) > 1


def test_the_close_records_the_configured_book_beside_the_fifo_reference_books(sample) -> None:
    engine, entity = sample
    end = date(2026, 1, 12)
    with engine.begin() as conn:
        write_book_period(conn, entity.id, "lifo", "account", date(2026, 1, 6))
        build_pnl(conn, entity, FIRST, end)
        write_closes(conn, entity, FIRST, end, run_id=None)
    with engine.connect() as conn:
        closes = conn.execute(sa.text("SELECT date, book, realized_gain_book, realized_gain_universal, shortfalls"
                                      " FROM closes WHERE entity_id = :e ORDER BY date"), dict(e=entity.id)).all()
        assert [c.book for c in closes] == ["fifo:universal"] * 5 + ["lifo:account"] * 7
        for c in closes:
            configured = realized_summary(conn, entity, c.date, c.date, "configured")
            fifo = realized_summary(conn, entity, c.date, c.date, "fifo", "universal")
            assert (c.realized_gain_book, c.realized_gain_universal) == (
                Decimal(configured["realized_gain"]), Decimal(fifo["realized_gain"])), c.date
            assert c.shortfalls == 0
        assert any(c.realized_gain_book != c.realized_gain_universal for c in closes if c.date >= date(2026, 1, 6))


def test_cli_lots_rollforward_and_breakdown(sample) -> None:
    engine, entity = sample
    with engine.begin() as conn:
        build_pnl(conn, entity, FIRST, date(2026, 1, 10))
    runner = CliRunner()
    lots = json.loads(runner.invoke(app, ["pnl", "lots", "-e", "northwind", "--date", "2026-01-10", "--json"]).stdout)
    rows = json.loads(runner.invoke(app, ["pnl", "rollforward", "-e", "northwind", "--from", "2026-01-02",
                                          "--to", "2026-01-10", "--json"]).stdout)
    assert lots and sum(Decimal(l["cost_basis"]) for l in lots) == sum(Decimal(r["closing_basis"]) for r in rows)
    by_asset = json.loads(runner.invoke(app, ["pnl", "breakdown", "-e", "northwind", "--from", "2026-01-01",
                                              "--to", "2026-01-10", "--by", "asset", "--json"]).stdout)["rows"]
    with engine.connect() as conn:
        total = realized_summary(conn, entity, FIRST, date(2026, 1, 10), "configured")["realized_gain"]
    assert sum(Decimal(r["realized_gain"]) for r in by_asset) == Decimal(total)
    bad = runner.invoke(app, ["pnl", "lots", "-e", "northwind", "--date", "2026-01-10", "--method", "hifo", "--pool",
                              "account"])
    assert bad.exit_code == 1 and "not stored by the close" in bad.output
    bad = runner.invoke(app, ["pnl", "breakdown", "-e", "northwind", "--from", "2026-01-01", "--to", "2026-01-10",
                              "--by", "week"])
    assert bad.exit_code == 1 and "--by" in bad.output

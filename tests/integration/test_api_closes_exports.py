"""Closes with the close table's newer columns (partial, configured book, shortfalls, sources down), and the
CSV/XLSX exports of closes, breaks and expectation results, against the real PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from fastapi.testclient import TestClient
from openpyxl import load_workbook

from tests.integration.test_api import DAY, T0, Seed, assert_error, auth, client, floats_in, seed  # noqa: F401 (fixtures)
from warehouse.schema import breaks, closes, expectation_results, source_outages

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _csv(resp: Any) -> list[dict[str, str]]:
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/csv")
    assert "attachment" in resp.headers["content-disposition"]
    return list(csv.DictReader(io.StringIO(resp.text)))


def _close(entity_id: int, day: Any, status: str, **figures: Any) -> dict[str, Any]:
    base = {"entity_id": entity_id, "date": day, "status": status, "legs": 1, "positions": 2, "breaks": 0,
            "unmatched_transfers": 0, "realized_gain_universal": Decimal("0"), "realized_gain_account": Decimal("0"),
            "unrealized_gain_universal": None, "book": "fifo:universal", "realized_gain_book": Decimal("0"),
            "shortfalls": 0, "message": None, "locked": False, "locked_at": None}
    return {**base, **figures}


def _seed_closes(seed: Seed) -> None:
    with seed.engine.begin() as conn:
        conn.execute(sa.insert(closes), [
            _close(seed.a, DAY, "closed", legs=3, realized_gain_universal=Decimal("0.1"),
                   realized_gain_account=Decimal("0.10"), unrealized_gain_universal=Decimal("-2.000000000000000001"),
                   book="hifo:account", realized_gain_book=Decimal("0.300000000000000001"), shortfalls=1,
                   locked=True, locked_at=T0),
            _close(seed.a, DAY + timedelta(1), "partial", message="source down: binance/trades (HTTP 503)"),
            _close(seed.b, DAY, "partial", realized_gain_book=Decimal("9"), book="lifo:universal"),
        ])
        conn.execute(sa.insert(source_outages), [
            {"entity_id": seed.a, "source": "binance", "stream": "trades", "date": DAY + timedelta(1),
             "reason": "HTTP 503"},
            {"entity_id": seed.b, "source": "kraken", "stream": "*", "date": DAY, "reason": "b's secret outage"},
        ])


def test_closes_serve_book_shortfalls_and_why_a_close_is_partial(client: TestClient, seed: Seed) -> None:
    _seed_closes(seed)
    h = auth(seed.key_a)
    resp = client.get("/api/v1/closes", headers=h)
    assert resp.status_code == 200, resp.text
    assert floats_in(resp.text) == [] and "secret outage" not in resp.text
    first, second = resp.json()["data"]
    assert (first["status"], first["book"], first["realized_gain_book"], first["shortfalls"]) == (
        "closed", "hifo:account", "0.300000000000000001", 1)
    assert first["unrealized_gain_universal"] == "-2.000000000000000001" and first["sources_down"] == []
    assert second["status"] == "partial"
    assert second["sources_down"] == [{"source": "binance", "stream": "trades", "reason": "HTTP 503"}]
    detail = client.get("/api/v1/closes/2024-03-02", headers=h).json()["data"]
    assert detail["status"] == "partial" and detail["book"] == "fifo:universal"
    assert detail["sources_down"][0]["source"] == "binance"
    # the OpenAPI document names every status, with an example
    schema = client.get("/openapi.json").json()["components"]["schemas"]["CloseOut"]
    assert schema["properties"]["status"]["enum"] == ["closed", "breaks", "unpriced", "blocked", "partial", "failed"]
    assert schema["examples"][0]["status"] == "partial"
    assert {"book", "realized_gain_book", "shortfalls", "missing_prices", "sources_down"} <= set(schema["properties"])


def test_closes_export_csv_and_xlsx_with_exact_decimals(client: TestClient, seed: Seed) -> None:
    _seed_closes(seed)
    h = auth(seed.key_a)
    rows = _csv(client.get("/api/v1/closes", headers=h, params={"format": "csv", "from": "2024-03-01",
                                                                 "to": "2024-03-31"}))
    assert [r["date"] for r in rows] == ["2024-03-01", "2024-03-02"]
    assert rows[0]["realized_gain_book"] == "0.300000000000000001"
    assert rows[0]["unrealized_gain_universal"] == "-2.000000000000000001"  # a number: no formula guard
    assert json.loads(rows[1]["sources_down"]) == [{"source": "binance", "stream": "trades", "reason": "HTTP 503"}]
    resp = client.get("/api/v1/closes", headers={**h, "Accept": XLSX})
    assert resp.status_code == 200 and resp.headers["content-type"] == XLSX
    table = [list(r) for r in load_workbook(io.BytesIO(resp.content), read_only=True).active.iter_rows(values_only=True)]
    header = table[0]
    assert header[:2] == ["date", "status"] and len(table) == 3
    # money is a number cell (Excel sums it; a number cell holds 16 significant digits, the CSV and JSON keep the
    # exact decimal), counts are integers
    book = table[1][header.index("realized_gain_book")]
    assert isinstance(book, float) and book == 0.3
    assert isinstance(table[1][header.index("legs")], int) and table[1][header.index("status")] == "closed"
    too_long = client.get("/api/v1/closes", headers=h, params={"from": "2023-01-01", "to": "2024-12-31",
                                                                "format": "csv"})
    body = assert_error(too_long, 422, "VALIDATION_ERROR")
    assert "366 days" in body["error"]["message"]


def test_breaks_and_results_export_with_the_same_filters(client: TestClient, seed: Seed) -> None:
    with seed.engine.begin() as conn:
        leg = seed.leg(conn, seed.a, seed.spot, "BTC", "0.5", "deposit", T0)
        for day, diff in ((DAY, "-0.000000000000000001"), (DAY + timedelta(1), "0.2")):
            conn.execute(sa.insert(breaks).values(
                entity_id=seed.a, date=day, account_id=seed.spot, asset_id=seed.asset["BTC"],
                previous_reported=Decimal("1"), previous_reported_at=T0 - timedelta(1), legs_sum=Decimal("0.5"),
                expected=Decimal("1.5"), reported=Decimal("1.5") + Decimal(diff), reported_at=T0,
                difference=Decimal(diff), tolerance=Decimal("0"), leg_ids=[leg]))
        conn.execute(sa.insert(expectation_results), [
            {"entity_id": seed.a, "date": DAY, "suite": "staging.raw", "expectation": "no_duplicates",
             "severity": "error", "success": False, "observed_value": {"duplicates": 2},
             "failing_rows": [{"raw_record_id": 7}]},
            {"entity_id": seed.a, "date": DAY, "suite": "canonical.completeness", "expectation": "balances_tie",
             "severity": "warn", "success": True, "observed_value": None, "failing_rows": []},
        ])
    h = auth(seed.key_a)
    params = {"from": "2024-03-01", "to": "2024-03-31"}
    as_json = client.get("/api/v1/reconciliation/breaks", headers=h, params=params).json()["data"]
    rows = _csv(client.get("/api/v1/reconciliation/breaks", headers=h, params={**params, "format": "csv"}))
    assert [r["difference"] for r in rows] == [b["difference"] for b in as_json] == ["-0.000000000000000001", "0.2"]
    assert json.loads(rows[0]["leg_ids"]) == [leg]
    one_day = _csv(client.get("/api/v1/reconciliation/breaks", headers={**h, "Accept": "text/csv"},
                              params={"date": "2024-03-02"}))
    assert [r["date"] for r in one_day] == ["2024-03-02"]
    results = _csv(client.get("/api/v1/reconciliation/results", headers=h,
                              params={"date": "2024-03-01", "format": "csv", "suite": "staging.raw"}))
    assert [(r["suite"], r["success"], r["severity"]) for r in results] == [("staging.raw", "false", "error")]
    assert json.loads(results[0]["failing_rows"]) == [{"raw_record_id": 7}]
    xlsx = client.get("/api/v1/reconciliation/results", headers=h, params={"date": "2024-03-01", "format": "xlsx"})
    assert xlsx.status_code == 200 and xlsx.content[:2] == b"PK"
    too_long = client.get("/api/v1/reconciliation/breaks", headers=h, params={"from": "2023-01-01", "to": "2024-12-31"})
    assert "366 days" in assert_error(too_long, 422, "VALIDATION_ERROR")["error"]["message"]


def test_every_route_with_a_range_refuses_one_too_long(client: TestClient, seed: Seed) -> None:
    h = auth(seed.key_a)
    too_long = {"from": "2023-01-01", "to": "2024-12-31"}
    for path in ("/api/v1/pnl/realized", "/api/v1/pnl/realized/breakdown", "/api/v1/journal-entries",
                 "/api/v1/reconciliation/results", "/api/v1/reconciliation/localise", "/api/v1/closes",
                 "/api/v1/transactions"):
        body = assert_error(client.get(path, headers=h, params=too_long), 422, "VALIDATION_ERROR")
        assert "731 days" in body["error"]["message"] and "366 days" in body["error"]["message"], path
        assert body["error"]["details"][0]["field"] == "to"
    # the key is checked first: no key is a 401 whatever the range
    assert_error(client.get("/api/v1/pnl/realized", params=too_long), 401, "AUTHENTICATION_ERROR")
    ok = client.get("/api/v1/pnl/realized", headers=h, params={"from": "2024-01-01", "to": "2024-12-31"})
    assert ok.status_code == 200, ok.text
    rows = _csv(client.get("/api/v1/reconciliation/localise", headers=h,
                           params={"from": "2024-03-01", "to": "2024-03-31", "format": "csv"}))
    assert rows == []

"""``GET /api/v1/pnl/disposals``: every disposal of a book with the lots it consumed, worked by hand.

Two buys of 1 BTC (at 10,000 then 20,000 USD), then a sale of 1.5 BTC for 45,000 and one of 0.25 for 8,000:
- FIFO takes the whole first lot and half the second: cost 10,000 + 10,000, gain 25,000; then 0.25 of the
  second lot: cost 5,000, gain 3,000.
- LIFO takes the whole second lot and half the first: cost 20,000 + 5,000, gain 20,000; then 0.25 of the first
  lot: cost 2,500, gain 5,500.
"""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import sqlalchemy as sa
from fastapi.testclient import TestClient

from api.main import create_app
from tests.integration.test_api import DAY, T0, Seed, auth
from transforms.pnl import build_pnl
from transforms.pnl_disposals import _computed_row, _names, list_disposals
from transforms.pnl_reports import compute_book_from_db
from warehouse.entities import resolve_entity

SPAN = {"from": (DAY - timedelta(days=2)).isoformat(), "to": DAY.isoformat()}


def _ledger(engine: sa.Engine) -> tuple[Seed, int, int]:
    seed = Seed(engine)
    with engine.begin() as conn:
        first = seed.leg(conn, seed.a, seed.spot, "BTC", "1", "buy", T0 - timedelta(days=2), usd_value="10000")
        second = seed.leg(conn, seed.a, seed.spot, "BTC", "1", "buy", T0 - timedelta(days=1), usd_value="20000")
        seed.leg(conn, seed.a, seed.spot, "BTC", "-1.5", "sell", T0, usd_value="45000")
        seed.leg(conn, seed.a, seed.spot, "BTC", "-0.25", "sell", T0 + timedelta(hours=1), usd_value="8000")
        build_pnl(conn, resolve_entity(conn, seed.a), DAY - timedelta(days=2), DAY)
    return seed, first, second


def _lots(disposal: dict) -> list[tuple]:
    return [(lot["lot_leg_id"], lot["quantity"], lot["cost_basis"], lot["term"]) for lot in disposal["lots"]]


def test_a_stored_book_lists_each_disposal_with_its_lots_page_by_page(engine: sa.Engine) -> None:
    seed, first, second = _ledger(engine)
    client = TestClient(create_app(rate_limit_per_minute=0))
    resp = client.get("/api/v1/pnl/disposals", params={**SPAN, "method": "fifo", "limit": 1}, headers=auth(seed.key_a))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    [sale] = body["data"]
    assert (sale["quantity"], sale["proceeds"], sale["cost_basis"], sale["realized_gain"], sale["short_term_gain"]) \
        == ("1.5", "45000", "20000", "25000", "25000")
    assert _lots(sale) == [(first, "1", "10000", "short"), (second, "0.5", "10000", "short")]
    assert (sale["account"], sale["asset"], sale["currency"], body["meta"]["method"]) == \
        ("binance", "BTC", "USD", "fifo")
    page = client.get("/api/v1/pnl/disposals", params={**SPAN, "method": "fifo", "limit": 1,
                                                       "cursor": body["meta"]["next_cursor"]}, headers=auth(seed.key_a))
    [later] = page.json()["data"]
    assert (later["quantity"], later["cost_basis"], later["realized_gain"]) == ("0.25", "5000", "3000")
    assert _lots(later) == [(second, "0.25", "5000", "short")]
    assert page.json()["meta"]["next_cursor"] is None


def test_another_method_is_computed_on_demand(engine: sa.Engine) -> None:
    seed, first, second = _ledger(engine)
    client = TestClient(create_app(rate_limit_per_minute=0))
    resp = client.get("/api/v1/pnl/disposals", params={**SPAN, "method": "lifo"}, headers=auth(seed.key_a))
    assert resp.status_code == 200, resp.text
    sale, later = resp.json()["data"]
    assert (sale["cost_basis"], sale["realized_gain"]) == ("25000", "20000")
    assert _lots(sale) == [(first, "0.5", "5000", "short"), (second, "1", "20000", "short")]
    assert (later["cost_basis"], later["realized_gain"]) == ("2500", "5500")
    assert resp.json()["meta"]["method"] == "lifo"


def test_the_stored_book_is_what_the_engine_computes(engine: sa.Engine) -> None:
    seed, _, _ = _ledger(engine)
    with engine.connect() as conn:
        entity = resolve_entity(conn, seed.a)
        stored, _, _ = list_disposals(conn, entity, DAY - timedelta(days=2), DAY, "fifo", "universal", limit=None)
        book, _ = compute_book_from_db(conn, entity, ("fifo", "universal"), DAY)
        computed = [_computed_row(d, _names(conn, seed.a)) for d in sorted(book.disposals, key=lambda d: (d.ts, d.leg_id))]
    assert [{k: v for k, v in row.items() if k != "currency"} for row in stored] == computed


def test_export_has_a_row_per_matched_lot_and_filters_apply(engine: sa.Engine) -> None:
    seed, first, second = _ledger(engine)
    client = TestClient(create_app(rate_limit_per_minute=0))
    resp = client.get("/api/v1/pnl/disposals", params={**SPAN, "method": "fifo", "format": "csv"},
                      headers=auth(seed.key_a))
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(resp.text)))
    assert [(r["quantity"], r["lot_leg_id"], r["lot_quantity"], r["lot_cost_basis"]) for r in rows] == [
        ("1.5", str(first), "1", "10000"), ("1.5", str(second), "0.5", "10000"), ("0.25", str(second), "0.25", "5000")]
    other = client.get("/api/v1/pnl/disposals", params={**SPAN, "method": "fifo", "account": "ledger-wallet"},
                       headers=auth(seed.key_a))
    assert other.status_code == 200 and other.json()["data"] == []
    unknown = client.get("/api/v1/pnl/disposals", params={**SPAN, "asset": "NOPE"}, headers=auth(seed.key_a))
    assert unknown.status_code == 404 and unknown.json()["error"]["details"][0]["field"] == "asset"

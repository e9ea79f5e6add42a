"""GET /api/v1/classifications and /classifications/unclassified: the legs no rule understood (with their raw
records) and the manual classifications with who, when and why; the envelope, entity access (another entity's key
sees nothing of them) and a date range that is required."""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa
from fastapi.testclient import TestClient

from api.main import create_app
from api.security import create_api_key
from ingestion.csv_files import CsvFile
from ingestion.exchange_exports import import_binance_export
from tests.integration.test_api import assert_error, auth
from transforms.canonical import build_canonical
from transforms.classifications import classify_leg
from warehouse.entities import get_or_create_entity

EXPORT = """User_ID,UTC_Time,Account,Operation,Coin,Change,Remark
1,2024-03-01 08:00:00,Spot,Deposit,BTC,1,
1,2024-03-02 08:00:00,Spot,Some New Binance Operation,BTC,0.01,promo
1,2024-03-03 08:00:00,Spot,Another Unknown Operation,USDT,5,
"""
FIRST, LAST = date(2024, 3, 1), date(2024, 3, 3)


def test_unclassified_legs_and_classifications_are_served_to_their_entity_only(engine) -> None:
    with engine.begin() as conn:
        entity = get_or_create_entity(conn, "acme")
        other = get_or_create_entity(conn, "beta")
        import_binance_export(conn, entity.id, CsvFile("export.csv", EXPORT))
        build_canonical(conn, entity, FIRST, LAST)
        legs = dict(conn.execute(sa.text(
            "SELECT s.symbol, t.id FROM transactions t JOIN assets s ON s.id = t.asset_id WHERE t.kind = 'unclassified'")).all())
        classify_leg(conn, entity, legs["BTC"], "airdrop", by="jane@acme", reason="Binance promo distribution")
        key, other_key = create_api_key(conn, entity.id, label="a"), create_api_key(conn, other.id, label="b")
    client = TestClient(create_app(rate_limit_per_minute=0))
    window = {"from": "2024-03-01", "to": "2024-03-03"}

    body = client.get("/api/v1/classifications/unclassified", headers=auth(key), params=window).json()
    assert body["success"] is True and body["meta"]["count"] == 2
    # classified but not rebuilt yet: both legs are still unclassified in the canonical layer
    assert [(l["date"], l["asset"], l["quantity"], l["raw_record"]["Operation"]) for l in body["data"]] == [
        ("2024-03-02", "BTC", "0.01", "Some New Binance Operation"),
        ("2024-03-03", "USDT", "5", "Another Unknown Operation")]

    with engine.begin() as conn:
        build_canonical(conn, entity, FIRST, LAST)  # the classification applies
    # (another URL than before the rebuild: answers may be a snapshot poll behind a write, docs/api.md)
    left = client.get("/api/v1/classifications/unclassified", headers=auth(key),
                      params={"from": "2024-03-02", "to": "2024-03-03"}).json()["data"]
    assert [l["asset"] for l in left] == ["USDT"] and isinstance(left[0]["leg_id"], int)

    [made] = client.get("/api/v1/classifications", headers=auth(key)).json()["data"]
    assert (made["mapped_kind"], made["kind"], made["classified_by"], made["reason"], made["date"]) == (
        "unclassified", "airdrop", "jane@acme", "Binance promo distribution", "2024-03-02")
    assert made["leg_ids"] == [legs["BTC"]] and made["classified_at"]

    # entity access: the other entity's key sees none of it (and cannot name this entity)
    assert client.get("/api/v1/classifications", headers=auth(other_key)).json()["data"] == []
    assert client.get("/api/v1/classifications/unclassified", headers=auth(other_key), params=window).json()["data"] == []
    assert_error(client.get("/api/v1/classifications", headers=auth(other_key), params={"entity": "acme"}), 404,
                 "NOT_FOUND")
    assert_error(client.get("/api/v1/classifications/unclassified", headers=auth(key), params={"from": "2024-03-01"}),
                 422, "VALIDATION_ERROR")  # each parameter valid, the combination not (api/contract.py)
    assert_error(client.get("/api/v1/classifications"), 401, "AUTHENTICATION_ERROR")
    csv = client.get("/api/v1/classifications", headers=auth(key), params={"format": "csv"})
    assert csv.status_code == 200 and "jane@acme" in csv.text

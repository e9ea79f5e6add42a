"""The inbox sensor isolates each file (issue 18, item 2): files that cannot be imported (other encodings, NUL,
fields too long, a wrong header) move to failed/ with their errors named by line and field, and every good file
dropped in the same tick is staged, moved to processed/ and gets its close request; a file gone before it is read
and a warehouse that cannot be reached are reported as values, never as a failed tick."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from assets.resources import ENTITIES_TAG, WarehouseResource
from ingestion.inbox import InboxFile, process_inbox_file
from orchestration.definitions import inbox_sensor
from warehouse.entities import create_entity
from warehouse.settings import get_settings

HEADER = "id,timestamp,action,asset,quantity,unit_price_usd,fee_asset,fee_amount,quote_asset,quote_quantity,account,tx_hash,external_id,notes\n"


@pytest.fixture()
def inbox(tmp_path, monkeypatch):
    monkeypatch.setenv("COINFRS_INBOX_DIR", str(tmp_path / "inbox"))
    get_settings.cache_clear()
    yield tmp_path / "inbox"
    get_settings.cache_clear()


def drop(inbox: Path, entity: str, kind: str, name: str, data: bytes, age: int) -> Path:
    path = inbox / entity / kind / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, (1_700_000_000 + age, 1_700_000_000 + age))  # the inbox takes files oldest first
    return path


def test_bad_files_go_to_failed_and_every_good_file_gets_its_close_request(engine, database_url, inbox):
    with engine.begin() as conn:  # the inbox imports into existing entities only (test_entities.py)
        create_entity(conn, "acme")
        create_entity(conn, "beta")
    good_acme = drop(inbox, "acme", "ledger", "a.csv", (HEADER + "a1,2026-01-03T10:00:00Z,BUY,BTC,0.5,40000,,,,,Kraken,,,\n"
                                                        ).encode(), 5)
    bad = {  # dropped between the good files, so a bad one that stopped the tick would cost a later good one
        "latin1.csv": ((HEADER + "b1,2026-01-04T10:00:00Z,BUY,BTC,1,1,,,,,Kraken,,,Zürich\n").encode("latin-1"),
                       "line 2, field 'notes': the file is not UTF-8"),
        "nul.csv": ((HEADER + "b2,2026-01-04T10:00:00Z,BUY,BTC,1,1,,,,,Kr\x00aken,,,\n").encode(),
                    "line 2, field 'account': contains a NUL byte"),
        "long-id.csv": ((HEADER + "語" * 3000 + ",2026-01-04T10:00:00Z,BUY,BTC,1,1,,,,,Kraken,,,\n").encode(),
                        "line 2, field 'id': is 3,000 characters long"),
        "huge.csv": ((HEADER + "b3,2026-01-04T10:00:00Z,BUY,BTC,1,1,,,,,Kraken,,," + "n" * 200_000 + "\n").encode(),
                     "line 2, field 'notes': unreadable CSV: field larger than field limit"),
        "header.csv": (b"when,what\n2026-01-04,x\n", "line 1: header lacks column(s) timestamp, action"),
    }
    for age, (name, (data, _)) in enumerate(bad.items(), start=10):
        drop(inbox, "acme", "ledger", name, data, age)
    good_beta = drop(inbox, "beta", "ledger", "b.csv", (HEADER + "b1,2026-01-06T10:00:00Z,SELL,ETH,1,3000,,,,,Cold,,,\n"
                                                        ).encode(), 30)
    with dg.build_sensor_context(instance=dg.DagsterInstance.ephemeral(),
                                 resources={"warehouse": WarehouseResource(database_url=database_url)}) as context:
        requests = inbox_sensor(context)
    with engine.connect() as conn:
        ids = dict(conn.execute(sa.text("SELECT name, id FROM entities")).all())
        staged = dict(conn.execute(sa.text("SELECT e.name, count(*) FROM raw_records r JOIN entities e ON e.id = r.entity_id "
                                           "GROUP BY e.name")).all())
    assert staged == {"acme": 1, "beta": 1}
    windows = {r.tags[ENTITIES_TAG]: (r.tags[ASSET_PARTITION_RANGE_START_TAG], r.tags[ASSET_PARTITION_RANGE_END_TAG])
               for r in requests}
    assert windows == {str(ids["acme"]): ("2026-01-03|acme", "2026-01-03|acme"),
                       str(ids["beta"]): ("2026-01-06|beta", "2026-01-06|beta")}
    for path in (good_acme, good_beta):
        assert not path.exists() and (path.parent / "processed" / path.name).exists()
    failed = inbox / "acme" / "ledger" / "failed"
    for name, (_, expected) in bad.items():
        assert not (failed.parent / name).exists() and (failed / name).exists()
        errors = (failed / f"{name}.errors.txt").read_text(encoding="utf-8")
        assert errors.startswith(f"{name}: ") and expected in errors, errors


def test_a_vanished_file_and_an_unreachable_warehouse_are_values_not_exceptions(engine, database_url, tmp_path):
    with engine.begin() as conn:
        create_entity(conn, "acme")
    gone = InboxFile(tmp_path / "inbox" / "acme" / "ledger" / "gone.csv", "acme", "ledger")
    outcome = process_inbox_file(engine, gone)
    assert outcome.result is None and "gone before it was read" in outcome.error
    waiting = drop(tmp_path / "inbox", "acme", "ledger", "waiting.csv",
                   (HEADER + "a1,2026-01-03T10:00:00Z,BUY,BTC,0.5,40000,,,,,Kraken,,,\n").encode(), 1)
    down = sa.create_engine("postgresql+psycopg://postgres@127.0.0.1:1/postgres")  # nothing listens on port 1
    outcome = process_inbox_file(down, InboxFile(waiting, "acme", "ledger"))
    assert outcome.result is None and "left in the inbox, the warehouse cannot be reached" in outcome.error
    assert waiting.exists()  # imported on a later tick, once the warehouse is back
    outcome = process_inbox_file(engine, InboxFile(waiting, "acme", "ledger"))
    assert outcome.error is None and outcome.result.inserted == 1

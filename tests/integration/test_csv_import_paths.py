"""The two ways a ledger CSV reaches staging, against real PostgreSQL: straight into raw_records by COPY (a file
with nothing staged yet), and through a temporary table when a row is staged already (an import again, a row twice
in the file, a UTF-16 file). Both stage the same records, skip the same ones and refuse with the same errors as
the in-memory reader; two imports of one file at once stage it once."""

from __future__ import annotations

import json
import threading
import time

import pytest
import sqlalchemy as sa

from ingestion.csv_files import CsvFile, CsvImportError, import_csv, read_ledger_csv
from tests.integration.test_import_mutations import mutants
from warehouse.entities import get_or_create_entity

HEADER = "id,timestamp,action,asset,quantity,unit_price_usd,fee_asset,fee_amount,quote_asset,quote_quantity,account,tx_hash,external_id,notes\n"
ROWS = [
    "r1,2024-01-01T00:00:37Z,SELL,ETH,0.24328959,,USD,0.75,USD,16098.5,main,,,note 1\n",
    "r2,2024-01-01T00:01:14Z,TRANSFER_IN,SOL,12,,,,,,cold,0x9f2c,,\n",
    "r3,2024-01-02T10:00:00+01:00,BUY,BTC,0.5,40000,USD,20,,,Kraken,,,Zürich desk\n",
    ",2024-01-03T00:00:00Z,INCOME,DOT,3,5.125,,,,,main,,,\n",
]


def write(tmp_path, name: str, text: str, encoding: str = "utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return CsvFile.from_path(path)


def staged(engine) -> list[sa.Row]:
    with engine.connect() as conn:
        return conn.execute(sa.text(
            "SELECT r.source_raw_id, r.account, r.payload, r.payload_hash, r.occurred_at, r.line_number, r.file_name, "
            "r.file_hash, r.source, r.stream, i.rows_seen, i.rows_inserted, i.status FROM raw_records r "
            "JOIN ingestion_runs i ON i.id = r.ingestion_run_id ORDER BY r.id")).all()


def load(engine, entity: str, file: CsvFile):
    with engine.begin() as conn:
        return import_csv(conn, get_or_create_entity(conn, entity).id, "ledger", file)


def test_a_new_file_is_staged_as_the_reader_reads_it_and_again_changes_nothing(engine, tmp_path):
    file = write(tmp_path, "ledger.csv", HEADER + "".join(ROWS))
    result = load(engine, "paths", file)
    assert (result.rows, result.inserted) == (4, 4)
    rows = staged(engine)
    expected = read_ledger_csv(file)
    assert [(r.source_raw_id, r.account, r.payload, r.payload_hash, r.occurred_at, r.line_number) for r in rows] == [
        (e.source_raw_id, e.account, json.loads(json.dumps(e.payload)), e.payload_hash, e.occurred_at, e.line)
        for e in expected]
    assert {(r.file_name, r.file_hash, r.source, r.stream, r.rows_seen, r.rows_inserted, r.status) for r in rows} == {
        ("ledger.csv", file.file_hash, "csv", "ledger", 4, 4, "succeeded")}
    assert rows[3].source_raw_id == f"sha256:{rows[3].payload_hash}"
    assert (result.first_day, result.last_day) == (expected[0].occurred_at, expected[3].occurred_at)

    again = load(engine, "paths", file)  # every row staged already: through the temporary table
    assert (again.rows, again.inserted) == (4, 0)
    assert len(staged(engine)) == 4

    changed = write(tmp_path, "ledger-2.csv", HEADER + ROWS[0].replace("0.75", "0.8") + "".join(ROWS[1:])
                    + "r5,2024-01-04T00:00:00Z,FEE,ETH,0.01,,,,,,main,,,\n")
    newer = load(engine, "paths", changed)
    assert (newer.rows, newer.inserted) == (5, 2)  # a new version of r1 and the new r5
    assert [r.source_raw_id for r in staged(engine)][4:] == ["r1", "r5"]


def test_a_row_twice_in_a_new_file_is_one_record(engine, tmp_path):
    file = write(tmp_path, "twice.csv", HEADER + ROWS[0] + ROWS[1] + ROWS[0] + ROWS[3] + ROWS[3])
    result = load(engine, "twice", file)
    assert (result.rows, result.inserted) == (3, 3)
    assert [(r.source_raw_id, r.line_number) for r in staged(engine)] == [
        ("r1", 2), ("r2", 3), (f"sha256:{staged(engine)[2].payload_hash}", 5)]


@pytest.mark.parametrize("staged_before", [False, True], ids=["new file", "rows staged already"])
def test_an_id_given_twice_with_different_content_is_refused_the_same_way_on_both_paths(engine, tmp_path, staged_before):
    if staged_before:
        load(engine, "conflict", write(tmp_path, "first.csv", HEADER + "".join(ROWS)))
    before = (len(staged(engine)), _runs(engine))
    text = HEADER + "".join(ROWS) + ROWS[1].replace(",12,", ",13,") + "r9,2024-01-05T00:00:00Z,BUY,BTC,-1,1,,,,,main,,,\n"
    file = write(tmp_path, "conflict.csv", text)
    with pytest.raises(CsvImportError) as refused:
        load(engine, "conflict", file)
    with pytest.raises(CsvImportError) as reference:
        read_ledger_csv(file)
    assert [(e.line, e.field) for e in refused.value.errors] == [(6, "id"), (7, "quantity")]
    assert refused.value.errors == reference.value.errors
    assert "already used on line 3" in str(refused.value)
    assert (len(staged(engine)), _runs(engine)) == before  # nothing landed, no run recorded


def _runs(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT count(*) FROM ingestion_runs")).scalar_one()


@pytest.mark.parametrize("encoding", ["utf-16", "utf-8-sig"])
def test_a_file_with_a_bom_is_staged_with_the_hash_of_its_text(engine, tmp_path, encoding):
    utf8 = write(tmp_path, "a.csv", HEADER + "".join(ROWS))
    other = write(tmp_path, "b.csv", HEADER + "".join(ROWS), encoding)
    result = load(engine, "bom", other)
    assert (result.rows, result.inserted) == (4, 4)
    assert {r.file_hash for r in staged(engine)} == {utf8.file_hash}
    assert load(engine, "bom", utf8).inserted == 0  # the same records


def test_the_loader_refuses_and_accepts_exactly_as_the_reader_does(engine, tmp_path):
    """The mutated ledger files of the mutation test: the streaming loader (both paths: the entity has the good
    rows staged already for every other file) and the in-memory reader agree on every error and every record."""
    with engine.begin() as conn:
        entities = [get_or_create_entity(conn, "fresh").id, get_or_create_entity(conn, "seasoned").id]
    checked = 0
    for mutant in [m for m in mutants() if m.kind == "ledger"][::3]:
        path = tmp_path / mutant.name
        path.write_bytes(mutant.data)
        file = CsvFile.from_path(path)
        try:
            expected: list | CsvImportError = read_ledger_csv(file)
        except CsvImportError as exc:
            expected = exc
        entity = entities[checked % 2]
        with engine.connect() as conn:
            try:
                with conn.begin() as transaction:
                    result = import_csv(conn, entity, "ledger", file)
                    if entity == entities[0]:
                        transaction.rollback()  # "fresh" never keeps anything: always straight into raw_records
            except CsvImportError as exc:
                assert isinstance(expected, CsvImportError), (mutant.how, exc)
                assert (exc.errors, exc.total) == (expected.errors, expected.total), mutant.how
            else:
                assert not isinstance(expected, CsvImportError), (mutant.how, expected)
                assert result.rows == len(expected), mutant.how
        checked += 1
    assert checked > 150


def test_two_imports_of_one_file_at_once_stage_it_once(engine, tmp_path):
    file = write(tmp_path, "once.csv", HEADER + "".join(ROWS))
    with engine.begin() as conn:
        entity = get_or_create_entity(conn, "at-once").id
    first = engine.connect()
    transaction = first.begin()
    assert import_csv(first, entity, "ledger", file).inserted == 4  # not committed yet
    results = []
    second = threading.Thread(target=lambda: results.append(load(engine, "at-once", CsvFile.from_path(file.path))))
    second.start()
    deadline, waiting = time.monotonic() + 60, 0
    with engine.connect() as watch:  # the second import waits on the first one's rows
        while not waiting and time.monotonic() < deadline:
            time.sleep(0.05)
            waiting = watch.execute(sa.text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                            "AND datname = current_database()")).scalar_one()
    assert waiting
    transaction.commit()
    first.close()
    second.join(60)
    assert [(r.rows, r.inserted) for r in results] == [(4, 0)]
    assert len(staged(engine)) == 4

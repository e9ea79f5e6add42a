"""Entity management (issue 17, item 7) against real PostgreSQL: `coinfrs entity list/create/rename/archive`, names
that match in any case, "did you mean" on a miss, imports that never create an entity by accident, closes and
imports refused for an archived entity, and a daily schedule that skips it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from assets.resources import ENTITIES_TAG, WarehouseResource, entities_for_tags
from ingestion.inbox import InboxFile, process_inbox_file
from orchestration.cli import app
from orchestration.definitions import daily_close_schedule
from warehouse.entities import (EntityArchived, EntityNameError, archive_entity, create_entity, find_entity, list_entities,
                                rename_entity, resolve_entity)

ROOT = Path(__file__).resolve().parents[2]
LEDGER = textwrap.dedent("""\
    id,timestamp,action,asset,quantity,unit_price_usd,fee_asset,fee_amount,quote_asset,quote_quantity,account,tx_hash,external_id,notes
    t1,2026-01-03T10:00:00Z,BUY,BTC,0.5,40000,,,,,Kraken,,,
    """)


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def error_line(output: str) -> str:
    """The refusal, as a terminal of any width shows it: one line."""
    return " ".join(output.split())


def counts(engine) -> tuple[int, int]:
    with engine.connect() as conn:
        return (conn.execute(sa.text("SELECT count(*) FROM entities")).scalar_one(),
                conn.execute(sa.text("SELECT count(*) FROM raw_records")).scalar_one())


def test_create_list_rename_archive_through_the_command_line(engine) -> None:
    assert cli("entity", "create", "--entity", "Acme Fund", "--timezone", "Europe/Zurich")[0] == 0
    code, output = cli("entity", "create", "--entity", "beta", "--json")
    assert code == 0 and json.loads(output)["name"] == "beta"
    code, output = cli("entity", "create", "--entity", "ACME FUND")  # the same name in another case
    assert code == 1 and "the name 'ACME FUND' is taken by entity 'Acme Fund' (id 1)" in error_line(output)
    code, output = cli("entity", "create", "--entity", "x", "--timezone", "Mars/Olympus")
    assert code == 1 and "unknown timezone 'Mars/Olympus'" in output
    assert cli("entity", "create", "--entity", "a/b")[0] == 1
    assert counts(engine)[0] == 2  # nothing of the refused ones was written

    code, output = cli("entity", "list", "--json")
    rows = json.loads(output)
    assert [(r["id"], r["name"], r["timezone"], r["archived"], r["latest_close"]) for r in rows] == [
        (1, "Acme Fund", "Europe/Zurich", False, None), (2, "beta", "UTC", False, None)]

    # any case finds it; a rename keeps id and data, a change of case alone is a rename too
    code, output = cli("entity", "rename", "--entity", "acme fund", "--to", "Acme Capital")
    assert code == 0 and "renamed 'Acme Fund' to 'Acme Capital' (id 1)" in output
    assert "inbox/Acme Capital/" in error_line(output)
    assert cli("entity", "rename", "--entity", "acme capital", "--to", "ACME Capital")[0] == 0
    code, output = cli("entity", "rename", "--entity", "beta", "--to", "acme capital")
    assert code == 1 and "is taken by entity 'ACME Capital' (id 1)" in error_line(output)
    code, output = cli("entity", "rename", "--entity", "bta", "--to", "gamma")
    assert code == 1 and "no entity named or numbered 'bta' (did you mean 'beta'?)" in error_line(output)

    # archive: gone from the list (and the schedule), still shown and readable; idempotent; undone by unarchive
    code, output = cli("entity", "archive", "--entity", "BETA")
    assert code == 0 and "archived beta (id 2)" in output
    code, output = cli("entity", "archive", "--entity", "2")
    assert code == 0 and "already archived" in output
    assert [r["name"] for r in json.loads(cli("entity", "list", "--json")[1])] == ["ACME Capital"]
    every = json.loads(cli("entity", "list", "--json", "--all")[1])
    assert [(r["name"], r["archived"]) for r in every] == [("ACME Capital", False), ("beta", True)]
    assert every[1]["archived_at"].startswith(str(datetime.now(timezone.utc).year))
    assert "archived since" in error_line(cli("entity", "show", "--entity", "beta")[1])
    assert "latest close none; archived" in error_line(cli("entity", "list", "--all")[1])
    assert json.loads(cli("entity", "show", "--entity", "beta", "--json")[1])["archived"] is True
    assert "active again" in cli("entity", "unarchive", "--entity", "beta")[1]
    assert [r["name"] for r in json.loads(cli("entity", "list", "--json")[1])] == ["ACME Capital", "beta"]


def test_import_csv_refuses_an_unknown_entity_unless_told_to_create_it(engine, tmp_path) -> None:
    path = tmp_path / "ledger.csv"
    path.write_text(LEDGER, encoding="utf-8")
    with engine.begin() as conn:
        create_entity(conn, "northwind")
    code, output = cli("import-csv", str(path), "--entity", "nortwind")
    assert code == 1
    assert error_line(output) == ("error: no entity named or numbered 'nortwind' (did you mean 'northwind'?); nothing "
                                  "was written (add --create to create an entity 'nortwind')")
    assert counts(engine) == (1, 0)
    code, output = cli("import-csv", str(path), "--entity", "NorthWind")  # any case is the same entity
    assert code == 0 and "entity northwind" in error_line(output)
    code, output = cli("import-csv", str(path), "--entity", "acme", "--create", "--entity-timezone", "Asia/Tokyo")
    assert code == 0 and "1 rows, 1 new" in error_line(output)
    with engine.connect() as conn:
        assert resolve_entity(conn, "ACME").timezone == "Asia/Tokyo"
    assert counts(engine) == (2, 2)
    # --create of an existing name (another case) imports into it: it never makes a second entity
    assert cli("import-csv", str(path), "--entity", "Acme", "--create")[0] == 0
    assert counts(engine)[0] == 2
    with engine.begin() as conn:
        archive_entity(conn, "acme")
    for extra in ((), ("--create",)):
        code, output = cli("import-csv", str(path), "--entity", "acme", *extra)
        assert code == 1 and "entity 'acme' is archived (since" in error_line(output)
        assert "coinfrs entity unarchive --entity acme" in error_line(output)
    assert counts(engine) == (2, 2)


def test_sources_and_wallets_name_an_existing_entity_or_say_create(engine) -> None:
    wallet = ["wallet", "add", "--chain", "polygon", "--address", "0x" + "ab" * 20, "--rpc-url", "http://127.0.0.1:1/x"]
    code, output = cli(*wallet, "--entity", "treasury")
    assert code == 1 and "add --create to create an entity 'treasury'" in error_line(output)
    assert counts(engine)[0] == 0
    assert cli(*wallet, "--entity", "treasury", "--create")[0] == 0
    assert cli(*wallet, "--entity", "TREASURY")[0] == 0  # the same entity, the same wallet
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM chain_wallets")).scalar_one() == 1
    with engine.begin() as conn:
        archive_entity(conn, "treasury")
    code, output = cli("wallet", "sync", "--entity", "treasury")
    assert code == 1 and "is archived" in output
    code, output = cli("wallet", "list", "--entity", "treasury")  # reading what is stored stays allowed
    assert code == 0 and "ab" * 20 in output.lower()
    code, output = cli("source", "sync", "--entity", "treasury")
    assert code == 1 and "is archived" in output


def test_close_names_a_typo_in_one_line_and_refuses_an_archived_entity(engine, database_url, tmp_path) -> None:
    with engine.begin() as conn:
        create_entity(conn, "northwind")
        create_entity(conn, "old-fund")
        archive_entity(conn, "old-fund")
    code, output = cli("close", "--entity", "northwnd", "--date", "2026-01-05")
    assert code == 1
    assert output.strip() == "error: no entity named or numbered 'northwnd' (did you mean 'northwind'?)"
    code, output = cli("close", "--entity", "OLD-FUND", "--date", "2026-01-05")
    assert code == 1 and error_line(output).startswith("error: entity 'old-fund' is archived (since")
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM closes")).scalar_one() == 0
    code, output = cli("close", "list", "--entity", "old-fund", "--from", "2026-01-01", "--to", "2026-01-02", "--json")
    assert code == 0 and json.loads(output) == []  # what is stored stays readable
    # and as a user runs it: a real process, its exit code, one line on stderr
    env = {**os.environ, "DATABASE_URL": database_url, "COINFRS_DATA_DIR": str(tmp_path), "PYTHONPATH": str(ROOT),
           "COLUMNS": "200"}
    done = subprocess.run([sys.executable, "-m", "orchestration.cli", "close", "--entity", "Northwnd", "--date",
                           "2026-01-05"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "Traceback" not in done.stdout + done.stderr
    assert done.stderr.strip().splitlines() == [
        "error: no entity named or numbered 'Northwnd' (did you mean 'northwind'?)"]


def test_the_daily_schedule_closes_active_entities_only(engine, database_url, tmp_path) -> None:
    with engine.begin() as conn:
        ids = {name: create_entity(conn, name).id for name in ("acme", "beta", "gamma")}
        archive_entity(conn, "beta")
        assert [e.name for e in list_entities(conn)] == ["acme", "gamma"]
        assert [e.name for e in list_entities(conn, include_archived=True)] == ["acme", "beta", "gamma"]
    with dg.build_schedule_context(instance=dg.DagsterInstance.local_temp(str(tmp_path)),
                                   resources={"warehouse": WarehouseResource(database_url=database_url)},
                                   scheduled_execution_time=datetime(2026, 3, 2, 1, 0, tzinfo=timezone.utc)) as context:
        requests = daily_close_schedule(context)
    assert sorted(r.tags[ENTITIES_TAG] for r in requests) == sorted([str(ids["acme"]), str(ids["gamma"])])
    assert {r.run_key for r in requests} == {f"daily:{ids['acme']}:2026-03-01", f"daily:{ids['gamma']}:2026-03-01"}
    # a run launched by hand with the archived entity's tag is refused by the run's resource, naming it
    warehouse = WarehouseResource(database_url=database_url)
    assert [e.name for e in entities_for_tags({ENTITIES_TAG: str(ids["acme"])}, warehouse)] == ["acme"]
    with pytest.raises(EntityArchived, match="beta"):
        entities_for_tags({ENTITIES_TAG: str(ids["beta"])}, warehouse)


def test_the_inbox_never_creates_an_entity_from_a_mistyped_directory(engine, tmp_path) -> None:
    with engine.begin() as conn:
        create_entity(conn, "acme")
        create_entity(conn, "old-fund")
        archive_entity(conn, "old-fund")

    def drop(directory: str, name: str) -> InboxFile:
        path = tmp_path / "inbox" / directory / "ledger" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(LEDGER, encoding="utf-8")
        return InboxFile(path, directory, "ledger")

    typo = drop("acmee", "jan.csv")
    outcome = process_inbox_file(engine, typo)
    assert outcome.result is None and not typo.path.exists()
    errors = (typo.path.parent / "failed" / "jan.csv.errors.txt").read_text(encoding="utf-8")
    assert errors.startswith("jan.csv: not imported: no entity named or numbered 'acmee' (did you mean 'acme'?)")
    assert "coinfrs entity create --entity acmee" in errors and "COINFRS_INBOX_CREATE_ENTITIES=true" in errors
    archived = drop("old-fund", "jan.csv")
    outcome = process_inbox_file(engine, archived)
    assert "entity 'old-fund' is archived" in outcome.error and (archived.path.parent / "failed" / "jan.csv").exists()
    assert counts(engine) == (2, 0)
    # the directory's name in any case is the entity's
    outcome = process_inbox_file(engine, drop("ACME", "jan.csv"))
    assert outcome.error is None and outcome.entity_name == "acme" and outcome.result.inserted == 1
    # only when the setting says so does a new directory create its entity
    outcome = process_inbox_file(engine, drop("new-fund", "jan.csv"), create_entities=True)
    assert outcome.error is None and outcome.entity_name == "new-fund"
    assert counts(engine) == (3, 2)


def test_two_creates_of_one_name_at_once_make_one_entity(engine) -> None:
    first = engine.connect()
    transaction = first.begin()
    create_entity(first, "Twin")  # not committed yet: the second create waits on the unique index
    outcome: list[object] = []

    def second() -> None:
        with engine.begin() as conn:
            try:
                outcome.append(create_entity(conn, "twin"))
            except EntityNameError as exc:
                outcome.append(exc)

    thread = threading.Thread(target=second)
    thread.start()
    thread.join(0.5)
    assert thread.is_alive()  # blocked behind the first transaction
    transaction.commit()
    first.close()
    thread.join(10)
    assert isinstance(outcome[0], EntityNameError) and "taken by entity 'Twin'" in str(outcome[0])
    with engine.connect() as conn:
        assert [e.name for e in list_entities(conn)] == ["Twin"]
        assert find_entity(conn, "TWIN").name == "Twin" and find_entity(conn, "1").name == "Twin"
        with pytest.raises(EntityNameError, match="taken"):
            rename_entity(conn, create_entity(conn, "other").id, "tWIN")


def test_migration_0030_refuses_names_that_differ_only_in_case(database_url: str) -> None:
    import secrets

    from alembic import command
    from sqlalchemy.engine import make_url

    from warehouse.migrate import MigrationRefused, alembic_config, upgrade

    name = f"coinfrs_mig_{secrets.token_hex(4)}"
    admin = sa.create_engine(database_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = make_url(database_url).set(database=name).render_as_string(hide_password=False)
    engine = sa.create_engine(url)
    try:
        upgrade(url, "0029")
        with engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO entities (name) VALUES ('Acme'), ('beta'), ('acme'), ('ACME'), "
                                 "('Beta'), ('gamma')"))
        with pytest.raises(MigrationRefused) as refused:
            upgrade(url, "head")
        message = str(refused.value)
        assert "'Acme' (id 1), 'acme' (id 3), 'ACME' (id 4); 'beta' (id 2), 'Beta' (id 5)" in message
        assert "nothing was changed" in message and "gamma" not in message
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one() == "0029"
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE entities SET name = name || '-' || id WHERE id IN (3, 4, 5)"))
        upgrade(url, "head")
        with engine.connect() as conn, pytest.raises(sa.exc.IntegrityError):
            conn.execute(sa.text("INSERT INTO entities (name) VALUES ('GAMMA')"))
        command.downgrade(alembic_config(url), "0029")
        with engine.connect() as conn:
            columns = {c["name"] for c in sa.inspect(conn).get_columns("entities")}
        assert "archived_at" not in columns
        upgrade(url, "head")
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_a_bare_number_names_an_id_never_an_entity(engine) -> None:
    """A bare number names an id, so no entity may be called one (and an id still resolves)."""
    with engine.begin() as conn:
        acme = create_entity(conn, "acme")
        with pytest.raises(EntityNameError, match="bare number"):
            create_entity(conn, "2026")
        assert resolve_entity(conn, str(acme.id)) == acme and resolve_entity(conn, acme.id) == acme

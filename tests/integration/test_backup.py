"""Backups (issue 18, item 6): create, verify (a restore drill into a scratch database), restore; the CLI.

The sample fund is staged and closed for two days; a backup is made with a file-based Dagster instance; the drill
restores it into a scratch database and recomputes every close there; a damaged file, or a manifest whose close
hashes do not match what the dump holds, is caught; a restore brings back the warehouse as it was (a row written
after the backup disappears) and the Dagster files.
"""

from __future__ import annotations

import json
from datetime import date

import dagster as dg
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from orchestration.cli import app as cli
from orchestration.close_runner import close_days
from tests.conftest import empty_database
from tests.integration.test_close_e2e import import_sample
from warehouse.backup import BackupError, create_backup, restore_backup, verify_backup


@pytest.fixture(scope="module")
def closed(database_url: str):
    engine = empty_database(database_url)
    import_sample(engine)
    run = close_days(["northwind"], date(2026, 1, 1), date(2026, 1, 2), instance=dg.DagsterInstance.ephemeral())
    assert run.success, run.error
    return engine


def _dagster_home(path):
    home = path / "dagster_home"
    (home / "storage").mkdir(parents=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n", encoding="utf-8")
    (home / "storage" / "runs.db").write_bytes(b"run storage")
    return home


def test_create_verify_and_what_verify_catches(closed, database_url, tmp_path) -> None:
    home = _dagster_home(tmp_path)
    out = tmp_path / "backup"
    manifest = create_backup(out, dagster_home=home)
    assert sorted(manifest["files"]) == ["dagster_home.tar.gz", "warehouse.dump"]
    assert len(manifest["closes"]) == 2 and manifest["rows"]["transactions"] > 0
    assert manifest["not_included"] == ["COINFRS_ENCRYPTION_KEY"]
    with pytest.raises(BackupError, match="not empty"):
        create_backup(out, dagster_home=home)

    report = verify_backup(out)
    assert report["ok"] and report["closes_checked"] == 2 and report["closes_mismatched"] == []
    with sa.create_engine(database_url).connect() as conn:  # the scratch database is gone
        assert conn.execute(sa.text("SELECT count(*) FROM pg_database WHERE datname = :n"),
                            dict(n=report["scratch_database"])).scalar_one() == 0

    # a manifest that does not describe the dump: the drill says which close differs
    key = sorted(manifest["closes"])[0]
    edited = json.loads((out / "manifest.json").read_text())
    edited["closes"][key]["output_hash"] = "0" * 64
    (out / "manifest.json").write_text(json.dumps(edited))
    report = verify_backup(out)
    assert not report["ok"] and report["closes_mismatched"] == [key]

    # a damaged dump never reaches the server
    with (out / "warehouse.dump").open("ab") as handle:
        handle.write(b"\0")
    with pytest.raises(BackupError, match="warehouse.dump: checksum differs"):
        verify_backup(out)


def test_restore_drill_brings_back_the_warehouse_and_the_dagster_files(closed, tmp_path) -> None:
    from warehouse.db import get_engine, get_owner_engine

    home = _dagster_home(tmp_path)
    out = tmp_path / "backup"
    manifest = create_backup(out, dagster_home=home)
    with closed.begin() as conn:  # written after the backup
        conn.execute(sa.text("INSERT INTO entities (name) VALUES ('after-the-backup')"))
    version = sa.text("SELECT coinfrs_data_version()")
    with closed.connect() as conn:
        seen = {conn.execute(version).scalar_one()}  # what an API saw after the backup
    (home / "storage" / "runs.db").write_bytes(b"lost")
    for engine in (get_engine(), get_owner_engine()):
        engine.dispose()
    report = restore_backup(out, dagster_home=home)
    assert report["ok"] and report["closes"] == 2 and report["dagster"] == "files"
    with closed.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM entities WHERE name = 'after-the-backup'")).scalar_one() == 0
        assert conn.execute(sa.text("SELECT count(*) FROM transactions")).scalar_one() == manifest["rows"]["transactions"]
        assert conn.execute(sa.text("SELECT current_user")).scalar_one() == "coinfrs_app"  # grants came back too
        # the restore set the data version's sequence back; it moved on to one no API has seen (migration 0031)
        restored_version = conn.execute(version).scalar_one()
    assert restored_version not in seen and int(restored_version.split(":")[0]) > int(next(iter(seen)).split(":")[0])
    assert (home / "storage" / "runs.db").read_bytes() == b"run storage"


def test_cli_backup_create_verify_restore(closed, tmp_path) -> None:
    runner = CliRunner()
    home = _dagster_home(tmp_path)
    out = tmp_path / "nightly"
    done = runner.invoke(cli, ["backup", "create", "--out", str(out), "--dagster-home", str(home), "--json"])
    assert done.exit_code == 0, done.output
    created = json.loads(done.stdout)
    assert created["ok"] and created["closes"] == 2 and "COINFRS_ENCRYPTION_KEY" in created["reminder"]
    done = runner.invoke(cli, ["backup", "verify", str(out), "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["closes_checked"] == 2
    done = runner.invoke(cli, ["backup", "restore", str(out)])
    assert done.exit_code == 1 and "--yes" in done.output
    done = runner.invoke(cli, ["backup", "verify", str(tmp_path / "nowhere")])
    assert done.exit_code == 1 and "no manifest.json" in done.output and "Traceback" not in done.output

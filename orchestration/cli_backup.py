"""`coinfrs backup create|verify|restore`: backups of the warehouse and the Dagster storage (``warehouse/backup.py``).

Exit codes: 0 done; 1 refused or failed (one line naming what and how to fix it); 3 ``verify`` restored the backup
but a close's outputs or a table's row count differ from the manifest.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

backup_app = typer.Typer(help="Back up, verify and restore the warehouse and the Dagster storage.",
                         no_args_is_help=True)
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]
DirArg = Annotated[Path, typer.Argument(help="The backup directory.", file_okay=False)]
DagsterOpt = Annotated[Optional[Path], typer.Option("--dagster-home", help="The Dagster instance directory "
                                                    "(default: DAGSTER_HOME, else the CLI's own).")]
MISMATCH = 3


def _cli():
    from orchestration import cli

    return cli


def _dagster_home(given: Path | None) -> Path:
    if given is not None:
        return given
    from orchestration.instance import dagster_home

    return dagster_home()


def _run(action):
    import sqlalchemy as sa

    from warehouse.backup import BackupError

    try:
        return action()
    except BackupError as exc:
        raise _cli()._fail(str(exc)) from None
    except sa.exc.OperationalError as exc:
        raise _cli()._fail(f"the database is unavailable: {str(exc.orig).strip().splitlines()[0]}") from None
    except OSError as exc:
        raise _cli()._fail(f"{exc.filename or 'file'}: {exc.strerror}") from None


@backup_app.command("create")
def backup_create(
    out: Annotated[Path, typer.Option("--out", help="A new (or empty) directory for the backup.", file_okay=False)],
    dagster_home: DagsterOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Dump the warehouse (pg_dump custom format) and the Dagster storage, with a checksum manifest."""
    from warehouse.backup import KEY_REMINDER, create_backup

    manifest = _run(lambda: create_backup(out, dagster_home=_dagster_home(dagster_home)))
    if as_json:
        print(json.dumps({"ok": True, "backup": str(out), "files": manifest["files"], "revision": manifest["revision"],
                          "closes": len(manifest["closes"]), "dagster": manifest["dagster"]["storage"],
                          "reminder": KEY_REMINDER}))
        return
    size = sum(f["bytes"] for f in manifest["files"].values())
    console = _cli().console
    console.print(f"backup {out}: {', '.join(sorted(manifest['files']))} ({size:,} bytes), revision "
                  f"{manifest['revision']}, {len(manifest['closes'])} closes, Dagster storage "
                  f"{manifest['dagster']['storage']}", highlight=False, markup=False)
    console.print(f"reminder: {KEY_REMINDER}", highlight=False, markup=False)


@backup_app.command("verify")
def backup_verify(directory: DirArg, as_json: JsonOpt = False) -> None:
    """Restore drill: check the checksums, restore into a scratch database, recompute every close's outputs there and
    compare them with the hashes in the manifest (the scratch database is dropped afterwards)."""
    from warehouse.backup import verify_backup

    report = _run(lambda: verify_backup(directory))
    if as_json:
        print(json.dumps(report))
    else:
        state = "verified" if report["ok"] else "DIFFERS"
        detail = "; ".join(filter(None, [
            f"closes differing: {', '.join(report['closes_mismatched'])}" if report["closes_mismatched"] else "",
            f"row counts differing: {', '.join(report['tables_with_other_row_counts'])}"
            if report["tables_with_other_row_counts"] else ""]))
        _cli().console.print(f"backup {directory} {state}: checksums ok, restored into a scratch database, "
                             f"{report['closes_checked']} closes recomputed" + (f"; {detail}" if detail else ""),
                             highlight=False, markup=False)
    if not report["ok"]:
        raise typer.Exit(MISMATCH)


@backup_app.command("restore")
def backup_restore(
    directory: DirArg,
    yes: Annotated[bool, typer.Option("--yes", help="Confirm: the warehouse database is replaced by the backup.")] = False,
    dagster_home: DagsterOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Replace the warehouse (and the Dagster storage) with a backup, after checking its checksums."""
    from warehouse.backup import KEY_REMINDER, restore_backup

    if not yes:
        raise _cli()._fail("restore replaces the warehouse database with the backup: run it again with --yes")
    report = _run(lambda: restore_backup(directory, dagster_home=_dagster_home(dagster_home)))
    if as_json:
        print(json.dumps({**report, "reminder": KEY_REMINDER}))
    else:
        console = _cli().console
        console.print(f"restored {directory} into {report['database']}: revision {report['revision']}, "
                      f"{report['closes']} closes, Dagster storage {report['dagster']}", highlight=False, markup=False)
        console.print(f"reminder: {KEY_REMINDER}", highlight=False, markup=False)
    if not report["ok"]:
        raise typer.Exit(MISMATCH)

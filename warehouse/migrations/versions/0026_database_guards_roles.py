"""Guards in the database (issue 18): staging append-only, locked days closed to every write path,
least-privilege roles for the application and the read API.

- Staging is append-only. ``raw_records``: a row never changes except its ``processing_status`` (a reorg marks
  records ``orphaned``) and is never deleted; ``raw_balance_snapshots`` never changes; ``ingestion_runs`` records
  only its own bookkeeping (status, finish time, row counts) and is never deleted. Refused by row triggers (for
  every role, the owner included) and by privileges (the application role has no UPDATE of any other column and
  no DELETE).
- Locked days: the guards of migration 0002 checked the rows an UPDATE left, not where they went; an UPDATE that
  moves a row INTO a locked day is now refused too, on every guarded table. The per-day derived tables no
  migration guarded are guarded the same way: ``events``, ``pnl_disposal_lots`` (its day is its disposal's), and
  UPDATE of ``completeness_differences`` (0010 guarded INSERT and DELETE). TRUNCATE fires no row or statement trigger through CASCADE, so it is refused through
  privileges: no role but the owner has TRUNCATE on any table.
- Roles (cluster-wide, created once, never with LOGIN; the owner's sessions switch to them,
  ``warehouse/db.py``): ``coinfrs_app`` (the CLI, Dagster, sensors) has SELECT/INSERT/UPDATE/DELETE on what it
  writes, minus the staging and audit restrictions above, no TRUNCATE, no DDL (it owns nothing, so it cannot
  ALTER or disable a trigger), and is not a superuser (``session_replication_role`` is refused);
  ``coinfrs_api`` (the read API) has SELECT only, and none on ``source_credentials``. Tables created by later
  migrations get the same grants by default privileges.
- ``close_provenance.digests``: SHA-256 per part of a closed day's inputs and derived rows, so tampering shows.

Revision ID: 0026
Revises: 0025
"""

from typing import Sequence, Union

from alembic import op

revision: str = "0026"
down_revision: Union[str, Sequence[str], None] = "0025"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

APP_ROLE = "coinfrs_app"
API_ROLE = "coinfrs_api"

# tables guarded since 0002/0003/0005/0018 (a statement guard ``coinfrs_guard_<table>_new`` exists): they get
# the INTO-a-locked-day check on UPDATE
GUARDED_BEFORE = ("transactions", "transfers", "positions", "breaks", "recon_results", "pnl_disposals", "pnl_daily",
                  "pnl_open_lots", "pnl_book_states", "expectation_results", "close_provenance", "pnl_missing_prices")
# per-day derived tables not guarded before (table -> its day column); completeness_differences (0010) was guarded
# on INSERT and DELETE only
GUARDED_NEW = {"events": "close_date", "completeness_differences": "date"}

# staging: table -> the columns a row may still change (none: the row never changes)
STAGING = {
    "raw_records": ("processing_status",),
    "raw_balance_snapshots": (),
    "ingestion_runs": ("finished_at", "rows_seen", "rows_inserted", "status"),
}
# written once by the application: INSERT and SELECT only
APPEND_ONLY = ("close_audit_log",)


def _day_guard(table: str, column: str, rows: str) -> str:
    """The 0002 statement guard (``coinfrs_guard_<table>_<rows>``): any row of ``<rows>_rows`` on a locked day."""
    return f"""
CREATE OR REPLACE FUNCTION coinfrs_guard_{table}_{rows}() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE hit record;
BEGIN
    SELECT r.entity_id, r.{column} AS day INTO hit
    FROM {rows}_rows r JOIN closes c ON c.entity_id = r.entity_id AND c.date = r.{column} AND c.locked
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'close day % of entity % is locked: {table} rows of a locked day never change', hit.day, hit.entity_id
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;
"""


_LOTS_GUARD = """
CREATE OR REPLACE FUNCTION coinfrs_guard_pnl_disposal_lots_{rows}() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE hit record;
BEGIN
    SELECT d.entity_id, d.date AS day INTO hit
    FROM {rows}_rows r JOIN pnl_disposals d ON d.id = r.disposal_id
    JOIN closes c ON c.entity_id = d.entity_id AND c.date = d.date AND c.locked
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'close day % of entity % is locked: pnl_disposal_lots rows of a locked day never change', hit.day, hit.entity_id
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;
"""


def _statement_triggers(table: str, *, insert: bool, delete: bool = True) -> None:
    if insert:
        op.execute(f"""CREATE TRIGGER coinfrs_locked_{table}_insert AFTER INSERT ON {table}
                       REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION coinfrs_guard_{table}_new()""")
    if insert or not delete:
        op.execute(f"""CREATE TRIGGER coinfrs_locked_{table}_update AFTER UPDATE ON {table}
                       REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION coinfrs_guard_{table}_old()""")
    if insert:
        op.execute(f"""CREATE TRIGGER coinfrs_locked_{table}_delete AFTER DELETE ON {table}
                       REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION coinfrs_guard_{table}_old()""")
    # the day a row is moved to: an UPDATE may not write into a locked day either
    op.execute(f"""CREATE TRIGGER coinfrs_locked_{table}_update_into AFTER UPDATE ON {table}
                   REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION coinfrs_guard_{table}_new()""")


_STAGING_GUARD = """
CREATE OR REPLACE FUNCTION coinfrs_guard_staging() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE mutable text[] := coalesce(TG_ARGV, '{}');  -- the columns a row may still change
BEGIN
    IF TG_OP = 'UPDATE' AND (to_jsonb(NEW) - mutable) = (to_jsonb(OLD) - mutable) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION '% of % refused: staging is append-only (an exact copy of what the source sent never changes)',
        lower(TG_OP), TG_TABLE_NAME USING ERRCODE = 'check_violation';
END $$;
"""


def create_role_sql(role: str) -> str:
    """Create ``role`` once per cluster (concurrent migrations of other databases may race: tolerated). Also used
    by a restore into a server that lacks the roles (``warehouse/backup.py``)."""
    return f"""
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') THEN
        CREATE ROLE {role} NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
END $$"""


def _roles() -> None:
    for role in (APP_ROLE, API_ROLE):
        op.execute(create_role_sql(role))
    # the owner's sessions switch to the roles (SET ROLE): a superuser may; anyone else must be a member
    op.execute(f"""
DO $$ BEGIN
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        EXECUTE format('GRANT {APP_ROLE}, {API_ROLE} TO %I', current_user);
    ELSE
        -- who holds an entity's close lock, and since when (warehouse/locks.py reads pg_stat_activity)
        GRANT pg_read_all_stats TO {APP_ROLE};
    END IF;
END $$""")


def grant_statements() -> list[str]:
    """The privileges of the roles, as statements (idempotent). Also run after a restore (``warehouse/backup.py``):
    a dump's ACLs do not take back what ALTER DEFAULT PRIVILEGES gave tables recreated by the restore."""
    statements: list[str] = []
    roles = f"{APP_ROLE}, {API_ROLE}"
    statements.append(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {roles}")
    statements.append(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {roles}")
    statements.append(f"GRANT USAGE ON SCHEMA public TO {roles}")
    # the application: DML on everything it writes, never TRUNCATE, never DDL
    statements.append(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {APP_ROLE}")
    statements.append(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {APP_ROLE}")
    statements.append(f"REVOKE INSERT, UPDATE, DELETE ON alembic_version FROM {APP_ROLE}")
    for table, mutable in STAGING.items():
        statements.append(f"REVOKE UPDATE, DELETE ON {table} FROM {APP_ROLE}")
        if mutable:
            statements.append(f"GRANT UPDATE ({', '.join(mutable)}) ON {table} TO {APP_ROLE}")
    for table in APPEND_ONLY:
        statements.append(f"REVOKE UPDATE, DELETE ON {table} FROM {APP_ROLE}")
    # the read API: SELECT only, and never the stored exchange secrets
    statements.append(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {API_ROLE}")
    statements.append(f"REVOKE SELECT ON source_credentials FROM {API_ROLE}")
    # ... but its health, for GET /metrics: the columns that hold no secret (never key_id, nonce, ciphertext, config)
    statements.append(f"GRANT SELECT (id, entity_id, name, kind, enabled, created_at, updated_at, last_sync_at, "
                      f"last_sync_status, last_sync_message) ON source_credentials TO {API_ROLE}")
    # tables of later migrations (created by the same owner) get the same defaults
    statements.append(f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {APP_ROLE}")
    statements.append(f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO {APP_ROLE}")
    statements.append(f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO {API_ROLE}")
    return statements


def _grants() -> None:
    for statement in grant_statements():
        op.execute(statement)


def upgrade() -> None:
    # the close's provenance: a digest per part of the day's inputs and derived rows (reconciliation/report.py)
    op.execute("ALTER TABLE close_provenance ADD COLUMN digests jsonb")
    for table in GUARDED_BEFORE:
        _statement_triggers(table, insert=False)
    for table, column in GUARDED_NEW.items():
        op.execute(_day_guard(table, column, "new"))
        op.execute(_day_guard(table, column, "old"))
        # completeness_differences keeps its own INSERT and DELETE triggers (0010); it gains the UPDATE ones
        _statement_triggers(table, insert=table == "events", delete=table == "events")
    op.execute(_LOTS_GUARD.format(rows="new"))
    op.execute(_LOTS_GUARD.format(rows="old"))
    _statement_triggers("pnl_disposal_lots", insert=True)
    op.execute(_STAGING_GUARD)
    for table, mutable in STAGING.items():
        args = ", ".join(f"'{c}'" for c in mutable)
        op.execute(f"""CREATE TRIGGER coinfrs_append_only_{table} BEFORE UPDATE OR DELETE ON {table}
                       FOR EACH ROW EXECUTE FUNCTION coinfrs_guard_staging({args})""")
    _roles()
    _grants()


def downgrade() -> None:
    roles = f"{APP_ROLE}, {API_ROLE}"
    op.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE ALL ON TABLES FROM {roles}")
    op.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE ALL ON SEQUENCES FROM {roles}")
    op.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {roles}")
    op.execute(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {roles}")
    op.execute(f"REVOKE USAGE ON SCHEMA public FROM {roles}")
    # the roles are the cluster's (other databases may use them): kept
    for table in STAGING:
        op.execute(f"DROP TRIGGER IF EXISTS coinfrs_append_only_{table} ON {table}")
    op.execute("DROP FUNCTION IF EXISTS coinfrs_guard_staging()")
    for table in ("events", "pnl_disposal_lots"):
        for action in ("insert", "update", "delete", "update_into"):
            op.execute(f"DROP TRIGGER IF EXISTS coinfrs_locked_{table}_{action} ON {table}")
    for table in ("completeness_differences",):
        for action in ("update", "update_into"):
            op.execute(f"DROP TRIGGER IF EXISTS coinfrs_locked_{table}_{action} ON {table}")
    for table in (*GUARDED_NEW, "pnl_disposal_lots"):
        op.execute(f"DROP FUNCTION IF EXISTS coinfrs_guard_{table}_new()")
        op.execute(f"DROP FUNCTION IF EXISTS coinfrs_guard_{table}_old()")
    for table in GUARDED_BEFORE:
        op.execute(f"DROP TRIGGER IF EXISTS coinfrs_locked_{table}_update_into ON {table}")
    op.execute("ALTER TABLE close_provenance DROP COLUMN digests")

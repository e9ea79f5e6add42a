"""The read API's data version, its indexes, and logins for the least-privilege roles (issues 17 and 18).

- **Data version** (``coinfrs_data_version()``): what the API's response cache and key cache are valid for
  (``api/snapshots.py``). It changes when a transaction that wrote to a warehouse table of THIS database commits
  (or rolls back), and never for writes elsewhere on the server (Dagster's storage in another database, other
  databases): ``pg_current_snapshot()``, used before, is the whole cluster's. Every table of the warehouse gets a
  statement trigger ``coinfrs_data_written`` (AFTER INSERT, UPDATE, DELETE, TRUNCATE) that first takes a shared
  transaction-level advisory lock (``DATA_LOCK_CLASS``, ``DATA_LOCK_KEY``) and then bumps the sequence
  ``coinfrs_data_writes``. The version is the sequence's value followed by the virtual transaction ids holding
  that lock, read in that order: a writer's lock is seen from its first write until it has ended (PostgreSQL
  releases transaction locks after the commit is visible), and a writer that came and went between two reads
  moved the sequence. The triggers are placed by ``coinfrs_track_writes(names)``, which
  ``warehouse/migrations/env.py`` runs with the tables of ``warehouse.schema`` at the end of every migration: tables
  of later migrations get one too, tables that are not the warehouse's (Dagster's storage if it shares the schema)
  never.
- **Indexes** of the API's hot reads (``benchmarks/bench_api.py``): see ``INDEXES``.
- **``pnl_disposal_days``**: per entity, book and day, the sums and counts of ``pnl_disposals`` that the realized
  PnL summary serves, kept exact by statement triggers on ``pnl_disposals`` (INSERT adds the new rows' sums, DELETE
  subtracts the old rows', UPDATE both, TRUNCATE empties it): a 30-day summary reads 30 rows, not every disposal.
- **Logins**: ``coinfrs_app`` and ``coinfrs_api`` may LOGIN, with no password. Under password authentication (any
  deployment) a role without a password cannot log in; the operator sets one with ``coinfrs db
  set-role-password`` (docker compose does it from the environment), and the services connect with
  ``COINFRS_APP_DATABASE_URL`` / ``COINFRS_API_DATABASE_URL`` (docs/operations.md). No password is in the repo.

Revision ID: 0031
Revises: 0030
"""

from typing import Sequence, Union

from alembic import op

revision: str = "0031"
down_revision: Union[str, Sequence[str], None] = "0030"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

DATA_LOCK_CLASS = 0x44617461  # "Data"; warehouse/locks.py's close locks use another class
DATA_LOCK_KEY = 1
TRIGGER = "coinfrs_data_written"
ROLES = ("coinfrs_app", "coinfrs_api")

INDEXES: dict[str, str] = {
    # a transactions page bounds ts below by the first adjustment leg of the range (warehouse/reports.py): found in
    # this small index instead of by reading every leg of the range (28,000 heap rows for 30 days of 1M legs)
    "ix_transactions_adjustments": "ON transactions (entity_id, close_date, ts) WHERE is_adjustment",
}
"""index name -> its definition."""

_FUNCTIONS = f"""
CREATE SEQUENCE coinfrs_data_writes;

CREATE FUNCTION coinfrs_note_write() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public AS $$
BEGIN
    -- the lock first, then the sequence: whoever reads the sequence after this write reads the lock after it too
    PERFORM pg_advisory_xact_lock_shared({DATA_LOCK_CLASS}, {DATA_LOCK_KEY});
    PERFORM nextval('public.coinfrs_data_writes');
    RETURN NULL;
END $$;

CREATE FUNCTION coinfrs_data_version() RETURNS text LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, public AS $$
DECLARE
    writes bigint;
    writers text;
BEGIN
    -- the sequence first, then the writers (two statements, in this order): see the module's docstring
    SELECT last_value INTO writes FROM public.coinfrs_data_writes;
    SELECT string_agg(virtualtransaction, ',' ORDER BY virtualtransaction) INTO writers
    FROM pg_locks
    WHERE locktype = 'advisory' AND classid = {DATA_LOCK_CLASS} AND objid = {DATA_LOCK_KEY} AND objsubid = 2
      AND database = (SELECT oid FROM pg_database WHERE datname = current_database());
    RETURN writes::text || ':' || coalesce(writers, '');
END $$;

CREATE FUNCTION coinfrs_track_writes(tables text[]) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    t record;
    added integer := 0;
BEGIN
    FOR t IN SELECT c.relname FROM pg_class c
             WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p') AND c.relname = ANY(tables)
               AND NOT EXISTS (SELECT 1 FROM pg_trigger g WHERE g.tgrelid = c.oid AND g.tgname = '{TRIGGER}')
    LOOP
        EXECUTE format('CREATE TRIGGER {TRIGGER} AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON public.%I '
                       'FOR EACH STATEMENT EXECUTE FUNCTION coinfrs_note_write()', t.relname);
        added := added + 1;
    END LOOP;
    RETURN added;
END $$;
REVOKE EXECUTE ON FUNCTION coinfrs_track_writes(text[]) FROM PUBLIC;
"""


_LOGINS = f"""
DO $$ BEGIN
    ALTER ROLE {ROLES[0]} LOGIN;
    ALTER ROLE {ROLES[1]} LOGIN;
EXCEPTION WHEN insufficient_privilege THEN
    RAISE WARNING 'coinfrs: % (the roles keep switching from DATABASE_URL; a role that may ALTER them runs '
                  '`coinfrs db set-role-password`)', SQLERRM;
END $$"""
"""LOGIN without a password: nothing to keep secret here. Under password authentication nobody can log in as a role
that has no password; ``coinfrs db set-role-password`` (``warehouse/roles.py``) sets one."""


_FIGURES = ("proceeds", "cost_basis", "realized_gain", "short_term_gain", "long_term_gain")
_KEY = "entity_id, method, pool, date"


def _fold(rows: str, sign: str) -> str:
    """Add (``sign`` '+') or subtract ('-') the per-day sums of the transition table ``rows``."""
    sums = ", ".join(f"{sign}sum({f})" for f in _FIGURES)
    updates = ", ".join(f"{c} = d.{c} + excluded.{c}" for c in
                        ("disposals", "fee_disposals", "shortfall_quantity_disposals", *_FIGURES))
    return f"""
        INSERT INTO public.pnl_disposal_days AS d ({_KEY}, disposals, fee_disposals, shortfall_quantity_disposals,
                                                  {", ".join(_FIGURES)})
        SELECT {_KEY}, {sign}count(*), {sign}count(*) FILTER (WHERE kind = 'fee'),
               {sign}count(*) FILTER (WHERE shortfall_quantity > 0), {sums}
        FROM {rows} GROUP BY {_KEY}
        ON CONFLICT ({_KEY}) DO UPDATE SET {updates};"""


_DISPOSAL_DAYS = f"""
CREATE TABLE pnl_disposal_days (
    entity_id bigint NOT NULL,
    method text NOT NULL,
    pool text NOT NULL,
    date date NOT NULL,
    disposals bigint NOT NULL,
    fee_disposals bigint NOT NULL,
    shortfall_quantity_disposals bigint NOT NULL,
    {", ".join(f"{f} numeric NOT NULL" for f in _FIGURES)},
    CONSTRAINT pk_pnl_disposal_days PRIMARY KEY ({_KEY})
);
COMMENT ON TABLE pnl_disposal_days IS 'Derived from pnl_disposals by its triggers (migration 0027): never written directly';

CREATE FUNCTION coinfrs_pnl_disposal_days() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        DELETE FROM public.pnl_disposal_days;
        RETURN NULL;
    END IF;
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        {_fold("old_rows", "-")}
        DELETE FROM public.pnl_disposal_days d USING (SELECT DISTINCT {_KEY} FROM old_rows) k
        WHERE (d.entity_id, d.method, d.pool, d.date) = (k.entity_id, k.method, k.pool, k.date) AND d.disposals = 0;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        {_fold("new_rows", "+")}
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER coinfrs_pnl_disposal_days_insert AFTER INSERT ON pnl_disposals
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION coinfrs_pnl_disposal_days();
CREATE TRIGGER coinfrs_pnl_disposal_days_update AFTER UPDATE ON pnl_disposals
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION coinfrs_pnl_disposal_days();
CREATE TRIGGER coinfrs_pnl_disposal_days_delete AFTER DELETE ON pnl_disposals
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION coinfrs_pnl_disposal_days();
CREATE TRIGGER coinfrs_pnl_disposal_days_truncate AFTER TRUNCATE ON pnl_disposals
    FOR EACH STATEMENT EXECUTE FUNCTION coinfrs_pnl_disposal_days();

INSERT INTO pnl_disposal_days ({_KEY}, disposals, fee_disposals, shortfall_quantity_disposals, {", ".join(_FIGURES)})
SELECT {_KEY}, count(*), count(*) FILTER (WHERE kind = 'fee'), count(*) FILTER (WHERE shortfall_quantity > 0),
       {", ".join(f"sum({f})" for f in _FIGURES)}
FROM pnl_disposals GROUP BY {_KEY};
"""


def upgrade() -> None:
    op.execute(_FUNCTIONS)
    op.execute(_DISPOSAL_DAYS)
    op.execute(_LOGINS)
    # the triggers themselves: warehouse/migrations/env.py calls coinfrs_track_writes(<the warehouse's tables>) at
    # the end of every migration run, this one included
    for name, definition in INDEXES.items():
        op.execute(f"CREATE INDEX IF NOT EXISTS {name} {definition}")


def downgrade() -> None:
    for name in INDEXES:
        op.execute(f"DROP INDEX IF EXISTS {name}")
    op.execute(f"""
DO $$ DECLARE t record; BEGIN
    FOR t IN SELECT c.relname FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid
             WHERE g.tgname = '{TRIGGER}' AND c.relnamespace = 'public'::regnamespace LOOP
        EXECUTE format('DROP TRIGGER {TRIGGER} ON public.%I', t.relname);
    END LOOP;
END $$""")
    for action in ("insert", "update", "delete", "truncate"):
        op.execute(f"DROP TRIGGER IF EXISTS coinfrs_pnl_disposal_days_{action} ON pnl_disposals")
    op.execute("DROP TABLE IF EXISTS pnl_disposal_days")
    op.execute("DROP FUNCTION IF EXISTS coinfrs_pnl_disposal_days()")
    op.execute("DROP FUNCTION IF EXISTS coinfrs_track_writes(text[])")
    op.execute("DROP FUNCTION IF EXISTS coinfrs_data_version()")
    op.execute("DROP FUNCTION IF EXISTS coinfrs_note_write()")
    op.execute("DROP SEQUENCE IF EXISTS coinfrs_data_writes")
    # the roles' LOGIN is the cluster's (other databases may use it, with their passwords): kept, as 0026 keeps the
    # roles

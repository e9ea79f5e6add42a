"""``raw_records``' references checked once per statement, not once per row (issue 18, item 1: import speed).

A CSV import COPies hundreds of thousands of rows into ``raw_records`` in a few statements, every row of one
statement with the same entity and ingestion run. Its two foreign keys (``entity_id`` → ``entities``,
``ingestion_run_id`` → ``ingestion_runs``) made PostgreSQL run one referential-integrity query per row and key:
28 % of the server's CPU in a 50 MB import (``benchmarks/bench_import.py``, ``perf`` on the backend).

They are replaced by one statement-level trigger with the same guarantees, checked at the end of each INSERT
statement over the distinct keys of its new rows (a transition table):

- every ``entity_id`` and ``ingestion_run_id`` of the new rows must exist; else the statement fails with
  SQLSTATE 23503 (``foreign_key_violation``) and the message PostgreSQL gives for the constraint it replaces
  (same constraint name, same ``Key (...)=(...) is not present in table ...`` detail);
- the referenced rows are locked ``FOR KEY SHARE``, as the foreign key's own check does, so a concurrent DELETE
  of an entity or run waits for the inserting transaction, and then finds its rows;
- on the referenced side, a DELETE of an entity or a run that staged records, or an UPDATE of its id, fails with
  23503 as ``NO ACTION`` did (``raw_records`` is append-only (0026) and its rows are never re-pointed: an UPDATE of
  either column is refused there already). The entity side finds them by the natural key's index (entity first);
  the run side scans ``raw_records``: only the schema owner may delete a run (the application and API roles have
  no DELETE on ``ingestion_runs``, 0026), and an index on the run would cost every staged row more than the
  foreign key saved. A TRUNCATE of either table that leaves rows in ``raw_records`` is refused, as with the
  foreign key (``TRUNCATE ... CASCADE`` no longer reaches ``raw_records`` by itself: name it too).

Revision ID: 0032
Revises: 0031
"""

from typing import Sequence, Union

from alembic import op

revision: str = "0032"
down_revision: Union[str, Sequence[str], None] = "0031"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

REFERENCES = {  # constraint name: (column, referenced table)
    "fk_raw_records_entity_id_entities": ("entity_id", "entities"),
    "fk_raw_records_ingestion_run_id_ingestion_runs": ("ingestion_run_id", "ingestion_runs"),
}

_CHECK_ONE = """
    -- the referenced rows, locked as a foreign key's check locks them: a concurrent DELETE waits for us
    PERFORM 1 FROM {table} WHERE id IN (SELECT DISTINCT {column} FROM new_rows) FOR KEY SHARE;
    SELECT n.{column}::text INTO missing FROM (SELECT DISTINCT {column} FROM new_rows) n
    WHERE NOT EXISTS (SELECT 1 FROM {table} r WHERE r.id = n.{column}) LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'insert or update on table "raw_records" violates foreign key constraint "{name}"'
            USING ERRCODE = 'foreign_key_violation', CONSTRAINT = '{name}', TABLE = 'raw_records', COLUMN = '{column}',
                  DETAIL = format('Key ({column})=(%s) is not present in table "{table}".', missing);
    END IF;"""

_CHECK_NEW = f"""
CREATE OR REPLACE FUNCTION coinfrs_raw_records_references() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE missing text;
BEGIN{"".join(_CHECK_ONE.format(name=name, column=column, table=table) for name, (column, table) in REFERENCES.items())}
    RETURN NULL;
END $$;
"""

_CHECK_REFERENCED = """
CREATE OR REPLACE FUNCTION coinfrs_raw_records_referenced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE column_name text := TG_ARGV[0]; constraint_name text := TG_ARGV[1]; still boolean;
BEGIN
    IF TG_OP = 'TRUNCATE' THEN  -- after every table of the statement was emptied: raw_records must be one of them
        IF EXISTS (SELECT 1 FROM raw_records) THEN
            RAISE EXCEPTION 'cannot truncate a table referenced in a foreign key constraint'
                USING ERRCODE = 'feature_not_supported', TABLE = TG_TABLE_NAME,
                      DETAIL = format('Table "raw_records" references "%s".', TG_TABLE_NAME),
                      HINT = 'Truncate table "raw_records" at the same time, or use TRUNCATE ... CASCADE.';
        END IF;
        RETURN NULL;
    END IF;
    IF TG_OP = 'UPDATE' AND NEW.id = OLD.id THEN
        RETURN NULL;
    END IF;
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM raw_records WHERE %I = $1)', column_name) INTO still USING OLD.id;
    IF still THEN
        RAISE EXCEPTION 'update or delete on table "%" violates foreign key constraint "%" on table "raw_records"',
                        TG_TABLE_NAME, constraint_name
            USING ERRCODE = 'foreign_key_violation', CONSTRAINT = constraint_name, TABLE = TG_TABLE_NAME,
                  DETAIL = format('Key (id)=(%s) is still referenced from table "raw_records".', OLD.id);
    END IF;
    RETURN NULL;
END $$;
"""


def upgrade() -> None:
    for name in REFERENCES:
        op.execute(f"ALTER TABLE raw_records DROP CONSTRAINT {name}")
    op.execute(_CHECK_NEW)
    op.execute(_CHECK_REFERENCED)
    op.execute("""CREATE TRIGGER coinfrs_raw_records_references AFTER INSERT ON raw_records
                  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
                  EXECUTE FUNCTION coinfrs_raw_records_references()""")
    for name, (column, table) in REFERENCES.items():
        op.execute(f"""CREATE TRIGGER coinfrs_raw_records_referenced AFTER DELETE OR UPDATE OF id ON {table}
                       FOR EACH ROW EXECUTE FUNCTION coinfrs_raw_records_referenced('{column}', '{name}')""")
        op.execute(f"""CREATE TRIGGER coinfrs_raw_records_referenced_truncate AFTER TRUNCATE ON {table}
                       FOR EACH STATEMENT EXECUTE FUNCTION coinfrs_raw_records_referenced('{column}', '{name}')""")


def downgrade() -> None:
    for name, (column, table) in REFERENCES.items():
        op.execute(f"DROP TRIGGER IF EXISTS coinfrs_raw_records_referenced ON {table}")
        op.execute(f"DROP TRIGGER IF EXISTS coinfrs_raw_records_referenced_truncate ON {table}")
    op.execute("DROP TRIGGER IF EXISTS coinfrs_raw_records_references ON raw_records")
    op.execute("DROP FUNCTION IF EXISTS coinfrs_raw_records_referenced()")
    op.execute("DROP FUNCTION IF EXISTS coinfrs_raw_records_references()")
    for name, (column, table) in REFERENCES.items():
        op.execute(f"ALTER TABLE raw_records ADD CONSTRAINT {name} FOREIGN KEY ({column}) REFERENCES {table} (id)")

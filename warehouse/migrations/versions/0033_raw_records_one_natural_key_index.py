"""``raw_records``' natural key leads with (entity_id, stream, source_raw_id), and the index of those three goes (issue
18, item 1: import speed).

The unique constraint ``uq_raw_records_natural_key`` was (entity_id, source, account, stream, source_raw_id,
payload_hash) and beside it ``ix_raw_records_entity_stream_raw_id`` indexed (entity_id, stream, source_raw_id): two
B-trees written for every staged row. The constraint is now (entity_id, stream, source_raw_id, source, account,
payload_hash): the same columns, so the same rows are unique (and ``ON CONFLICT ON CONSTRAINT`` still names it),
and its first three columns serve every lookup the dropped index served. On a 50 MB ledger COPY
(``benchmarks/bench_import.py``, embedded PostgreSQL 18) the index cost about 1.5 s of the server's ~9 s.

Reads by (entity_id, source, account) without the stream (a Binance account's staged records, late movements) use
``ix_raw_records_entity_account_ingested`` (entity_id, account, ...) instead of the old constraint's prefix.

Revision ID: 0033
Revises: 0032
"""

from typing import Sequence, Union

from alembic import op

revision: str = "0033"
down_revision: Union[str, Sequence[str], None] = "0032"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

NEW_ORDER = "entity_id, stream, source_raw_id, source, account, payload_hash"
OLD_ORDER = "entity_id, source, account, stream, source_raw_id, payload_hash"


def upgrade() -> None:
    op.execute("ALTER TABLE raw_records DROP CONSTRAINT uq_raw_records_natural_key")
    op.execute(f"ALTER TABLE raw_records ADD CONSTRAINT uq_raw_records_natural_key UNIQUE ({NEW_ORDER})")
    op.execute("DROP INDEX ix_raw_records_entity_stream_raw_id")


def downgrade() -> None:
    op.execute("CREATE INDEX ix_raw_records_entity_stream_raw_id ON raw_records (entity_id, stream, source_raw_id)")
    op.execute("ALTER TABLE raw_records DROP CONSTRAINT uq_raw_records_natural_key")
    op.execute(f"ALTER TABLE raw_records ADD CONSTRAINT uq_raw_records_natural_key UNIQUE ({OLD_ORDER})")

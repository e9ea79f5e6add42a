"""The event layer's closed vocabulary: a CHECK on transactions.kind and the events table.

``transactions.kind`` may only hold a kind of the vocabulary (transforms/events.py, docs/cost-basis.md).
Kinds outside it left by older mappers (``other``; ``borrow``/``repay``/``interest`` booked on a loan account)
are renamed first; the canonical layer is rebuilt from staging at the next close of each day anyway.
``events``: one row per event (the legs sharing a ``group_id``): its type, time and, for a trade, the one
value it was booked at and how it was found (``valued_by``).

Revision ID: 0017
Revises: 0016
"""

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: Union[str, Sequence[str], None] = "0016"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

# frozen copy of transforms.events.KIND_VALUES / EVENT_VALUES at this revision (a test checks they agree)
KINDS = ("buy", "sell", "fee", "income", "staking_reward", "airdrop", "interest", "rebate", "mining", "spend",
         "deposit", "withdrawal", "transfer_in", "transfer_out", "borrow", "repay", "liability", "interest_expense",
         "realized_pnl", "funding", "opening_balance", "adjustment", "spam", "unclassified")
EVENTS = ("trade", "fee", "income", "spend", "external_deposit", "external_withdrawal", "internal_transfer",
          "internal_move", "loan_draw", "loan_repayment", "interest_expense", "derivatives_settlement",
          "opening_balance", "adjustment", "spam", "unclassified")


def _in(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{v}'" for v in values)


def upgrade() -> None:
    # Older kinds: the loan account's side of a borrow, repay or accrued interest is a liability movement.
    op.execute("""UPDATE transactions t SET kind = 'liability' FROM accounts a
                  WHERE a.id = t.account_id AND a.account_type = 'margin_loan' AND t.kind IN ('borrow', 'repay', 'interest')""")
    op.execute(f"UPDATE transactions SET kind = 'unclassified' WHERE NOT (kind IN ({_in(KINDS)}))")
    op.create_check_constraint(op.f("ck_transactions_kind"), "transactions", f"kind IN ({_in(KINDS)})")
    op.create_table(
        "events",
        sa.Column("entity_id", sa.BigInteger, sa.ForeignKey("entities.id"), nullable=False),
        sa.Column("group_id", sa.Text, nullable=False),
        sa.Column("event_type", sa.Text, nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("close_date", sa.Date, nullable=False),
        sa.Column("legs", sa.Integer, nullable=False),
        sa.Column("raw_record_ids", sa.ARRAY(sa.BigInteger), nullable=False),
        sa.Column("valued_by", sa.Text),
        sa.Column("value_usd", sa.Numeric()),
        sa.Column("price_asset_id", sa.BigInteger, sa.ForeignKey("assets.id")),
        sa.Column("unit_price_usd", sa.Numeric()),
        sa.PrimaryKeyConstraint("entity_id", "group_id", name=op.f("pk_events")),
        sa.CheckConstraint(f"event_type IN ({_in(EVENTS)})", name=op.f("ck_events_event_type")),
    )
    op.create_index("ix_events_entity_date", "events", ["entity_id", "close_date"])


def downgrade() -> None:
    op.drop_index("ix_events_entity_date", table_name="events")
    op.drop_table("events")
    op.drop_constraint(op.f("ck_transactions_kind"), "transactions", type_="check")

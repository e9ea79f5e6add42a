"""Stable breaks with a history: a break keeps its row (and id) across re-closes, is ``resolved`` (with the
reason) when a re-close no longer finds it, and every change of it is an event in ``break_events``.

- ``breaks``: ``seen_at`` (the last close that found it), ``resolved_at``, ``resolution`` (adjustment |
  corrected_record | late_data | recomputed) and ``resolution_detail``; ``status`` is one of open, acknowledged,
  adjusted, resolved.
- ``break_events``: who/what/when of every change (opened, changed, reopened, acknowledged, adjusted, resolved),
  with the status and difference before and after. Existing breaks get their ``opened`` event and the events of
  their recorded actions (``break_actions``).

Revision ID: 0020
Revises: 0019
"""

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: Union[str, Sequence[str], None] = "0019"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

TS = sa.DateTime(timezone=True)
STATUSES = "status IN ('open', 'acknowledged', 'adjusted', 'resolved')"
RESOLUTIONS = "resolution IS NULL OR resolution IN ('adjustment', 'corrected_record', 'late_data', 'recomputed')"
EVENTS = "event IN ('opened', 'changed', 'reopened', 'acknowledged', 'adjusted', 'resolved')"


def upgrade() -> None:
    op.add_column("breaks", sa.Column("seen_at", TS, server_default=sa.text("now()"), nullable=False,
                                      comment="when a close last found this break"))
    op.add_column("breaks", sa.Column("resolved_at", TS, nullable=True))
    op.add_column("breaks", sa.Column("resolution", sa.Text(), nullable=True,
                                      comment="why it went away: adjustment | corrected_record | late_data | recomputed"))
    op.add_column("breaks", sa.Column("resolution_detail", sa.Text(), nullable=True,
                                      comment="the record, action or figure behind the resolution"))
    op.create_check_constraint(op.f("ck_breaks_status"), "breaks", STATUSES)
    op.create_check_constraint(op.f("ck_breaks_resolution"), "breaks", RESOLUTIONS)
    op.create_table(
        "break_events",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("break_id", sa.BigInteger(), nullable=False),
        sa.Column("entity_id", sa.BigInteger(), nullable=False),
        sa.Column("date", sa.Date(), nullable=False, comment="the break's day"),
        sa.Column("event", sa.Text(), nullable=False,
                  comment="opened | changed | reopened | acknowledged | adjusted | resolved"),
        sa.Column("previous_status", sa.Text(), nullable=True),
        sa.Column("status", sa.Text(), nullable=False, comment="the break's status after the event"),
        sa.Column("previous_difference", sa.Numeric(), nullable=True),
        sa.Column("difference", sa.Numeric(), nullable=True, comment="null once resolved: no difference left"),
        sa.Column("actor", sa.Text(), nullable=False, comment="who: a person, or 'close' for a close run"),
        sa.Column("reason", sa.Text(), nullable=False, comment="what and why"),
        sa.Column("run_id", sa.Text(), nullable=True),
        sa.Column("created_at", TS, server_default=sa.text("now()"), nullable=False, comment="when"),
        sa.ForeignKeyConstraint(["break_id"], ["breaks.id"], name=op.f("fk_break_events_break_id_breaks"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["entity_id"], ["entities.id"], name=op.f("fk_break_events_entity_id_entities")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_break_events")),
        sa.CheckConstraint(EVENTS, name=op.f("ck_break_events_event")),
        comment="the history of every break: who, what, when, the difference before and after",
    )
    op.create_index("ix_break_events_break_id", "break_events", ["break_id", "id"])
    op.create_index("ix_break_events_entity_date", "break_events", ["entity_id", "date"])
    op.execute("""
        INSERT INTO break_events (break_id, entity_id, date, event, previous_status, status, previous_difference,
                                  difference, actor, reason, run_id, created_at)
        SELECT b.id, b.entity_id, b.date, 'opened', NULL, 'open', NULL, b.difference, 'close',
               'found by the close: reported differs from previous reported + legs of the day', b.run_id, b.created_at
        FROM breaks b
        UNION ALL
        SELECT b.id, b.entity_id, b.date, CASE x.action WHEN 'adjust' THEN 'adjusted' ELSE 'acknowledged' END, 'open',
               CASE x.action WHEN 'adjust' THEN 'adjusted' ELSE 'acknowledged' END, x.difference, x.difference,
               x.actor, x.reason, NULL, x.created_at
        FROM break_actions x JOIN breaks b ON b.entity_id = x.entity_id AND b.date = x.date
                                          AND b.account_id = x.account_id AND b.asset_id = x.asset_id
        ORDER BY 12""")


def downgrade() -> None:
    op.drop_index("ix_break_events_entity_date", table_name="break_events")
    op.drop_index("ix_break_events_break_id", table_name="break_events")
    op.drop_table("break_events")
    op.drop_constraint(op.f("ck_breaks_resolution"), "breaks", type_="check")
    op.drop_constraint(op.f("ck_breaks_status"), "breaks", type_="check")
    op.execute("DELETE FROM breaks WHERE status = 'resolved'"
               " AND NOT EXISTS (SELECT 1 FROM closes c WHERE c.entity_id = breaks.entity_id AND c.date = breaks.date"
               " AND c.locked)")
    op.drop_column("breaks", "resolution_detail")
    op.drop_column("breaks", "resolution")
    op.drop_column("breaks", "resolved_at")
    op.drop_column("breaks", "seen_at")

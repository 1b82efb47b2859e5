"""The statistics reports: the alert article of a form, and indexes for the periods' counts.

Revision ID: 0009
Revises: 0008
A column added (empty on the rows a ledger holds: their forms named no article the reports
knew of) and indexes: every row is kept.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

INDEXES = (
    ("ix_messages_created", "messages", ["created_at"]),
    ("ix_events_kind_at", "events", ["kind", "at"]),
    ("ix_deadlines_due", "deadlines", ["kind", "due"]),
    ("ix_deadlines_opened", "deadlines", ["kind", "opened_at"]),
)


def upgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("alert_article", sa.String(4)))
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns)


def downgrade() -> None:
    for name, table, _ in reversed(INDEXES):
        op.drop_index(name, table_name=table)
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("alert_article")

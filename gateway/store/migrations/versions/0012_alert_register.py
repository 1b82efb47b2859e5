"""The alert register's own state: the desk that follows an alert and its status.

Revision ID: 0012
Revises: 0011
A table added, empty: the register's alerts and exchanges are read from the search index and
the messages a ledger already holds, so nothing is back-filled; and a partial index over the
search index's alert entries (built from those a ledger holds), for the newest first.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

# The alert register's index entries (as ledger.py's ALERT_ENTRIES, written out: a revision
# stays as it shipped).
ALERT_ENTRIES = "kind = 'reference' AND role IN ('sis-alert', 'interpol-notice')"


def upgrade() -> None:
    op.create_table(
        "alert_register",
        sa.Column("alert", sa.String(64), primary_key=True),
        sa.Column("register", sa.String(32), nullable=False),
        sa.Column("desk", sa.String(32)),
        sa.Column("status", sa.String(8), nullable=False, server_default="active"),
        sa.Column("told_by", sa.Integer, sa.ForeignKey("messages.id")),
        sa.Column("changed_by", sa.String(40), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
    )

    op.create_index(
        "ix_search_entries_alerts",
        "search_entries",
        ["kind", "id"],
        sqlite_where=sa.text(ALERT_ENTRIES),
        postgresql_where=sa.text(ALERT_ENTRIES),
    )


def downgrade() -> None:
    op.drop_index("ix_search_entries_alerts", table_name="search_entries")
    op.drop_table("alert_register")

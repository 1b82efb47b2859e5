"""The console's worklist indexes: received messages newest first by ledger id, of one desk and
of every desk.

Revision ID: 0003
Revises: 0002
Indexes only: a ledger holding data keeps every row.
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_messages_desk_id", "messages", ["direction", "desk", "id"])
    op.create_index("ix_messages_direction_id", "messages", ["direction", "id"])


def downgrade() -> None:
    op.drop_index("ix_messages_direction_id", table_name="messages")
    op.drop_index("ix_messages_desk_id", table_name="messages")

"""Reply deadlines that wait for a clarification: since when one is paused, and how long it has
waited in all.

Revision ID: 0006
Revises: 0003
Columns only added: a ledger holding data keeps every row, and each deadline it holds has never
been paused (no ``paused_at``, 0 seconds). The new state ``paused`` is a value of the existing
``state`` column.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deadlines") as batch:
        batch.add_column(sa.Column("paused_at", sa.DateTime(timezone=True)))
        batch.add_column(
            sa.Column("paused_seconds", sa.Integer(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("deadlines") as batch:
        batch.drop_column("paused_seconds")
        batch.drop_column("paused_at")

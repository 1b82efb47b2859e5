"""The cross-check's hits gathered per earlier case: one row for the earlier messages of one
case (and desk) that hold a value, rather than one for each.

Revision ID: 0017
Revises: 0016
A hit gains how many earlier messages it stands for, the first of them, the case they were in
and the index key they hold (what a purge of one of them finds it by). The hits a ledger holds
stand for one message each: their first is their latest, their key unknown (a purge finds them
by their messages, as before).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("crosscheck_hits") as batch:
        batch.add_column(sa.Column("messages", sa.Integer(), nullable=False, server_default="1"))
        batch.add_column(sa.Column("earlier_first", sa.Integer()))
        batch.add_column(sa.Column("earlier_case_id", sa.Integer()))
        batch.add_column(sa.Column("key", sa.String(255)))
    op.execute("UPDATE crosscheck_hits SET earlier_first = earlier_id")
    with op.batch_alter_table("crosscheck_hits") as batch:
        batch.alter_column("earlier_first", existing_type=sa.Integer(), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("crosscheck_hits") as batch:
        batch.drop_column("key")
        batch.drop_column("earlier_case_id")
        batch.drop_column("earlier_first")
        batch.drop_column("messages")

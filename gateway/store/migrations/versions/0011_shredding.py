"""Shredding at the end of retention: when a message was shredded, and the digests of its copies.

Revision ID: 0011
Revises: 0010
A column added (empty: no message of a ledger that upgrades has been shredded; those purged
before are shredded again by the next run, which finds what the purge of that time left) and a
table added: every row is kept.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("shredded_at", sa.DateTime(timezone=True)))
    op.create_table(
        "shredded_copies",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("message_id", sa.Integer(), sa.ForeignKey("messages.id"), nullable=False),
        sa.Column("place", sa.String(16), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("message_id", "place", "name", name="uq_shredded_copy"),
    )


def downgrade() -> None:
    op.drop_table("shredded_copies")
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("shredded_at")

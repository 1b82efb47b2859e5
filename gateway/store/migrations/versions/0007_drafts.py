"""The console's drafts: forms a user began composing and kept, per user and desk.

Revision ID: 0007
Revises: 0003
A table only added: a ledger holding data keeps every row; no table of 0003 changes.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "drafts",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("user_name", sa.String(32), nullable=False),
        sa.Column("desk", sa.String(32), nullable=False),
        sa.Column("form", sa.String(32), nullable=False),
        sa.Column("partner", sa.String(32), nullable=False),
        sa.Column("reply_to", sa.Integer(), sa.ForeignKey("messages.id")),
        sa.Column("field_values", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_drafts_user_desk", "drafts", ["user_name", "desk", "id"])


def downgrade() -> None:
    op.drop_index("ix_drafts_user_desk", table_name="drafts")
    op.drop_table("drafts")

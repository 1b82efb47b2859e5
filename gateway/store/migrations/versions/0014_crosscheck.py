"""The cross-check at arrival: the earlier exchanges an arriving message had something in
common with, and the index its exact look-ups walk.

Revision ID: 0014
Revises: 0012
The table is only added: the messages a ledger holds were delivered before it, and keep no
hits. The index on the search entries' (kind, key) becomes one on (kind, key, born,
message_id): the search's exact look-ups use its first two columns as before, and the
cross-check reads the most recent entries of one key (and date of birth) by walking its end,
however many messages hold that key.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "crosscheck_hits",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("message_id", sa.Integer(), sa.ForeignKey("messages.id"), nullable=False),
        sa.Column("earlier_id", sa.Integer(), sa.ForeignKey("messages.id"), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("shown", sa.String(255), nullable=False),
        sa.Column("born", sa.String(10)),
        sa.Column("earlier_direction", sa.String(8), nullable=False),
        sa.Column("earlier_partner", sa.String(32), nullable=False),
        sa.Column("earlier_desk", sa.String(32)),
        sa.Column("earlier_form", sa.String(32), nullable=False),
        sa.Column("earlier_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_crosscheck_hits_message", "crosscheck_hits", ["message_id"])
    op.create_index("ix_crosscheck_hits_earlier", "crosscheck_hits", ["earlier_id"])
    op.create_index(
        "ix_search_entries_kind_key_born",
        "search_entries",
        ["kind", "key", "born", "message_id"],
    )
    op.drop_index("ix_search_entries_kind_key", table_name="search_entries")


def downgrade() -> None:
    op.create_index("ix_search_entries_kind_key", "search_entries", ["kind", "key"])
    op.drop_index("ix_search_entries_kind_key_born", table_name="search_entries")
    op.drop_index("ix_crosscheck_hits_earlier", table_name="crosscheck_hits")
    op.drop_index("ix_crosscheck_hits_message", table_name="crosscheck_hits")
    op.drop_table("crosscheck_hits")

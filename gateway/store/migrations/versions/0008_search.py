"""The search index: an entry per entity a message carries, with its trigram index; and the
searches' terms, for auditors.

Revision ID: 0008
Revises: 0007
Tables only added (filled by `gateway index rebuild` for the messages already stored): the
entries, the distinct name parts and which entries hold them; on SQLite two FTS5 trigram tables
(name parts; other keys), their triggers and a vocabulary table, on PostgreSQL pg_trgm and two
GiST indexes where the extension can be installed (gateway.store.search_ddl says what happens
where it cannot).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from gateway.store import search_ddl

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "search_entries",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("message_id", sa.Integer(), sa.ForeignKey("messages.id"), nullable=False),
        sa.Column("direction", sa.String(8), nullable=False),
        sa.Column("partner", sa.String(32), nullable=False),
        sa.Column("desk", sa.String(32)),
        sa.Column("form", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("shown", sa.String(255), nullable=False),
        sa.Column("folded", sa.String(255), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("born", sa.String(10)),
        sa.Column("country", sa.String(32)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_search_entries_kind_key", "search_entries", ["kind", "key"])
    op.create_index("ix_search_entries_message", "search_entries", ["message_id"])
    op.create_table(
        "search_parts",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("part", sa.String(64), nullable=False),
        sa.Column("sound", sa.String(64), nullable=False),
    )
    op.create_index("ix_search_parts_part", "search_parts", ["part"], unique=True)
    op.create_index("ix_search_parts_sound", "search_parts", ["sound"])
    op.create_table(
        "search_entry_parts",
        sa.Column("part_id", sa.Integer(), sa.ForeignKey("search_parts.id"), primary_key=True),
        sa.Column("entry_id", sa.Integer(), sa.ForeignKey("search_entries.id"), primary_key=True),
    )
    op.create_index("ix_search_entry_parts_entry", "search_entry_parts", ["entry_id"])
    search_ddl.create(op.get_bind())
    op.create_table(
        "search_requests",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("user_name", sa.String(40), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("purpose", sa.String(32), nullable=False),
        sa.Column("case_reference", sa.String(64)),
        sa.Column("reason", sa.String(200)),
        sa.Column("terms", sa.Text(), nullable=False),
        sa.Column("hits", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
    )
    op.create_index("ix_search_requests_at", "search_requests", ["at"])


def downgrade() -> None:
    op.drop_index("ix_search_requests_at", table_name="search_requests")
    op.drop_table("search_requests")
    search_ddl.drop(op.get_bind())
    op.drop_index("ix_search_entry_parts_entry", table_name="search_entry_parts")
    op.drop_table("search_entry_parts")
    op.drop_index("ix_search_parts_sound", table_name="search_parts")
    op.drop_index("ix_search_parts_part", table_name="search_parts")
    op.drop_table("search_parts")
    op.drop_index("ix_search_entries_message", table_name="search_entries")
    op.drop_index("ix_search_entries_kind_key", table_name="search_entries")
    op.drop_table("search_entries")

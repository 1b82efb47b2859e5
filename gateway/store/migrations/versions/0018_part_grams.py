"""PostgreSQL's name parts found by a (trigram, part id) table instead of a GiST index.

Revision ID: 0018
Revises: 0017
PostgreSQL: the table search_part_grams (a B-tree on (trigram, part id)) made and filled from
the name parts held, and the parts' GiST index (pg_trgm) dropped: a search counts the parts of
a name part's trigrams and reads those of the rarest, as SQLite does with its FTS5 table.
SQLite: nothing changes. Nothing else of what a ledger holds changes.
"""

from __future__ import annotations

from alembic import op

from gateway.store import search_ddl

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    search_ddl.add_part_grams(op.get_bind())


def downgrade() -> None:
    search_ddl.drop_part_grams(op.get_bind())

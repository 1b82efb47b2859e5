"""SQLite's count of the name parts holding each trigram, kept by triggers.

Revision ID: 0020
Revises: 0019
SQLite: the table search_gram_counts (trigram, how many parts hold it) made with the triggers
that keep it as name parts are added and deleted, and filled from the parts held: a search
reads a part's trigram counts from it instead of counting each trigram's postings in the FTS5
table. PostgreSQL: nothing changes (its trigram table's B-tree counts). Nothing else of what a
ledger holds changes.
"""

from __future__ import annotations

from alembic import op

from gateway.store import search_ddl

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    search_ddl.add_gram_counts(op.get_bind())


def downgrade() -> None:
    search_ddl.drop_gram_counts(op.get_bind())

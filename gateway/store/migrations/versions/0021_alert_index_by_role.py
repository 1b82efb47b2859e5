"""The alert register's partial index, its predicate on the role alone.

Revision ID: 0021
Revises: 0020
ix_search_entries_alerts made again with the predicate ``role IN ('sis-alert',
'interpol-notice')`` instead of ``kind = 'reference' AND role IN (...)``. SQLite weighs a
partial index for every statement on search_entries, and a predicate on ``kind`` made it read
the bound value of each statement's ``kind = ?`` to decide: such a statement (the cross-check's
walks, a search's look-ups) was prepared again at every execution. The register's statements
keep ``kind = 'reference'`` (the index's first column): an Object whose free-text Type carries
one of these roles adds an entry to the index, never to the register. Nothing a ledger holds
changes.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None

# The predicates, written out: a revision stays as it shipped.
BEFORE = "kind = 'reference' AND role IN ('sis-alert', 'interpol-notice')"
AFTER = "role IN ('sis-alert', 'interpol-notice')"


def _index(predicate: str) -> None:
    op.drop_index("ix_search_entries_alerts", table_name="search_entries")
    op.create_index(
        "ix_search_entries_alerts",
        "search_entries",
        ["kind", "id"],
        sqlite_where=sa.text(predicate),
        postgresql_where=sa.text(predicate),
    )


def upgrade() -> None:
    _index(AFTER)


def downgrade() -> None:
    _index(BEFORE)

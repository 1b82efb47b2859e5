"""The grouping's look-up table: each grouping reference of each message with its case's state.

Revision ID: 0016
Revises: 0015
One table added and filled, in the upgrade, from what the ledger holds: every SIS alert,
Interpol notice and national case reference entry of the search index (not of receipts), with
the case its message is in and that case's status (``none``: in no case). Nothing else changes.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

# As gateway.store.case_refs fills it (frozen here: a revision does not follow later code).
_FILL = (
    "INSERT INTO case_references (message_id, role, key, partner, state, case_id)"
    " SELECT DISTINCT s.message_id, s.role, s.key,"
    " CASE WHEN s.role IN ('national-case') THEN s.partner ELSE '' END AS partner,"
    " COALESCE(c.status, 'none'), m.case_id"
    " FROM search_entries s"
    " LEFT JOIN case_members m ON m.message_id = s.message_id"
    " LEFT JOIN cases c ON c.id = m.case_id"
    " WHERE s.kind = 'reference' AND s.role IN ('sis-alert', 'interpol-notice', 'national-case')"
    " AND s.form <> 'ACK' AND s.key <> ''"
)


def upgrade() -> None:
    op.create_table(
        "case_references",
        sa.Column("message_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("partner", sa.String(length=32), nullable=False),
        sa.Column("state", sa.String(length=8), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=True),
        sa.CheckConstraint("state IN ('open', 'closed', 'none')", name="ck_case_reference_state"),
        sa.ForeignKeyConstraint(["message_id"], ["messages.id"]),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"]),
        sa.PrimaryKeyConstraint("message_id", "role", "key"),
    )
    op.create_index(
        "ix_case_references_lookup",
        "case_references",
        ["role", "key", "partner", "state", "case_id", "message_id"],
    )
    op.create_index("ix_case_references_case", "case_references", ["case_id"])
    op.execute(_FILL)


def downgrade() -> None:
    op.drop_index("ix_case_references_case", table_name="case_references")
    op.drop_index("ix_case_references_lookup", table_name="case_references")
    op.drop_table("case_references")

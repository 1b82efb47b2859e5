"""The earlier messages each cross-check hit gathered: what the retention purge of one of them
counts the hit down by, whatever case the message is in by then.

Revision ID: 0019
Revises: 0018
A hit standing for several earlier messages of a case (revision 0017) recorded the case, the
first and the latest, and a purge found it by the case the purged message was in at purge
time: after a merge or a move it missed the hit, or counted down one that had not gathered the
message. The hits a ledger holds get the messages of their case as it stands now (the best it
knows: what a purge went by until now) that hold their key, from the first to the latest.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

_GATHERED = """
INSERT INTO crosscheck_gathered (hit_id, message_id)
SELECT DISTINCT h.id, e.message_id
FROM crosscheck_hits h
JOIN search_entries e
  ON e.kind = h.kind AND e.key = h.key
 AND (e.born = h.born OR (e.born IS NULL AND h.born IS NULL))
 AND e.message_id BETWEEN h.earlier_first AND h.earlier_id
 AND (e.desk = h.earlier_desk OR (e.desk IS NULL AND h.earlier_desk IS NULL))
JOIN case_members m ON m.message_id = e.message_id AND m.case_id = h.earlier_case_id
WHERE h.messages > 1
"""


def upgrade() -> None:
    op.create_table(
        "crosscheck_gathered",
        sa.Column(
            "hit_id",
            sa.Integer(),
            sa.ForeignKey("crosscheck_hits.id"),
            primary_key=True,
            autoincrement=False,
        ),
        sa.Column(
            "message_id",
            sa.Integer(),
            sa.ForeignKey("messages.id"),
            primary_key=True,
            autoincrement=False,
        ),
    )
    op.create_index("ix_crosscheck_gathered_message", "crosscheck_gathered", ["message_id"])
    op.execute(_GATHERED)


def downgrade() -> None:
    op.drop_index("ix_crosscheck_gathered_message", table_name="crosscheck_gathered")
    op.drop_table("crosscheck_gathered")

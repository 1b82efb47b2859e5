"""The ledger as it stood when schema migrations began: messages, events, deadlines, the audit
chain, job runs, sequences, refusals and quarantine notices.

Revision ID: 0001
Revises: (none)
A ledger made before migrations (by ``metadata.create_all``) holds exactly these tables:
``gateway db upgrade`` stamps it with this revision instead of running it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# What a ledger made before migrations must hold to be stamped as this revision.
TABLES = (
    "messages",
    "events",
    "deadlines",
    "audit",
    "job_runs",
    "sequences",
    "refusals",
    "quarantine_notices",
)


def _when(name: str, *, nullable: bool = True) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "messages",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("direction", sa.String(8), nullable=False),
        sa.Column("partner", sa.String(32), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("form", sa.String(32), nullable=False),
        sa.Column("reference", sa.String(32), nullable=False),
        sa.Column("in_reply_to", sa.String(32)),
        sa.Column("message_id", sa.String(255), nullable=False),
        sa.Column("priority", sa.String(8), nullable=False),
        sa.Column("content_sha256", sa.String(64), nullable=False),
        sa.Column("raw_sha256", sa.String(64), nullable=False),
        sa.Column("spool_key", sa.String(64)),
        sa.Column("desk", sa.String(32)),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("signer", sa.String(64)),
        _when("signed_at"),
        _when("created_at", nullable=False),
        _when("updated_at", nullable=False),
        sa.UniqueConstraint("direction", "partner", "reference", name="uq_message_reference"),
        sa.CheckConstraint("direction IN ('inbound', 'outbound')", name="ck_message_direction"),
    )
    op.create_index("ix_messages_state", "messages", ["direction", "state"])
    op.create_index("ix_messages_message_id", "messages", ["message_id"])
    op.create_index("ix_messages_reference", "messages", ["reference"])
    op.create_index("ix_messages_spool_key", "messages", ["spool_key"])
    op.create_index("ix_messages_in_reply_to", "messages", ["partner", "in_reply_to"])

    op.create_table(
        "events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("message_id", sa.Integer(), sa.ForeignKey("messages.id"), nullable=False),
        _when("at", nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("detail", sa.String(500), nullable=False),
    )
    op.create_index("ix_events_message", "events", ["message_id", "id"])

    op.create_table(
        "deadlines",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("message_id", sa.Integer(), sa.ForeignKey("messages.id"), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("owed_by", sa.String(16), nullable=False),
        _when("opened_at", nullable=False),
        _when("due", nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        _when("closed_at"),
        sa.Column("close_reason", sa.String(200)),
        sa.Column("reminders_sent", sa.Integer(), nullable=False),
        sa.Column("escalations", sa.Integer(), nullable=False),
        sa.Column("resends", sa.Integer(), nullable=False),
        _when("next_action_at"),
        sa.UniqueConstraint("message_id", "kind", name="uq_deadline_kind"),
    )
    op.create_index("ix_deadlines_next", "deadlines", ["state", "next_action_at"])

    op.create_table(
        "audit",
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=False),
        _when("at", nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("partner", sa.String(32), nullable=False),
        sa.Column("form", sa.String(32), nullable=False),
        sa.Column("reference", sa.String(64), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("reason", sa.String(300), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )

    op.create_table(
        "job_runs",
        sa.Column("job", sa.String(32), primary_key=True),
        sa.Column("slot", sa.String(64), primary_key=True),
        _when("claimed_at", nullable=False),
        sa.Column("node", sa.String(64), nullable=False),
        sa.Column("outcome", sa.String(200), nullable=False),
    )

    op.create_table(
        "sequences",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("value", sa.Integer(), nullable=False),
    )

    op.create_table(
        "refusals",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        _when("at", nullable=False),
        sa.Column("partner", sa.String(32), nullable=False),
        sa.Column("raw_sha256", sa.String(64), nullable=False),
        sa.Column("smtp_code", sa.Integer(), nullable=False),
        sa.Column("enhanced", sa.String(16), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("reply", sa.String(500), nullable=False),
        _when("notified"),
    )
    op.create_index("ix_refusals_pending", "refusals", ["notified", "partner", "at"])
    op.create_index("ix_refusals_at", "refusals", ["at"])

    op.create_table(
        "quarantine_notices",
        sa.Column("direction", sa.String(8), primary_key=True),
        sa.Column("spool_key", sa.String(64), primary_key=True),
        sa.Column("releases", sa.Integer(), primary_key=True, autoincrement=False),
        _when("seen_at", nullable=False),
        _when("notified"),
    )


def downgrade() -> None:
    for table in reversed(TABLES):
        op.drop_table(table)

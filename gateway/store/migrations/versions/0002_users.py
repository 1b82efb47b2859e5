"""The console's and the API's users, API keys and sessions.

Revision ID: 0002
Revises: 0001
Tables only added: a ledger holding data keeps every row; no table of 0001 changes.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _when(name: str, *, nullable: bool = True) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(32), nullable=False, unique=True),
        sa.Column("display_name", sa.String(100), nullable=False),
        sa.Column("roles", sa.String(100), nullable=False),
        sa.Column("desks", sa.String(500), nullable=False),
        sa.Column("password_hash", sa.String(200), nullable=False),
        sa.Column("totp_secret", sa.String(200)),
        sa.Column("totp_last_step", sa.Integer()),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("failed_logins", sa.Integer(), nullable=False),
        _when("locked_until"),
        _when("last_login_at"),
        _when("created_at", nullable=False),
        _when("updated_at", nullable=False),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(32), nullable=False, unique=True),
        sa.Column("key_sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("roles", sa.String(100), nullable=False),
        sa.Column("desks", sa.String(500), nullable=False),
        _when("created_at", nullable=False),
        _when("last_used_at"),
        _when("revoked_at"),
    )
    op.create_table(
        "sessions",
        sa.Column("token_sha256", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=False),
        _when("created_at", nullable=False),
        _when("last_seen_at", nullable=False),
        _when("expires_at", nullable=False),
    )
    op.create_index("ix_sessions_user", "sessions", ["user_id"])
    op.create_index("ix_sessions_expires", "sessions", ["expires_at"])


def downgrade() -> None:
    op.drop_table("sessions")
    op.drop_table("api_keys")
    op.drop_table("users")

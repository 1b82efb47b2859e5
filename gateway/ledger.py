"""The ledger: messages, their events, deadlines and the audit chain, in SQLite or PostgreSQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    CheckConstraint,
    Column,
    DateTime,
    Engine,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    create_engine,
    event,
)

metadata = MetaData()

DIRECTIONS = ("inbound", "outbound")
INBOUND_STATES = ("received", "delivered", "answered")
OUTBOUND_STATES = (
    "queued",
    "sent",
    "acknowledged",
    "answered",
    "rejected",
    "failed",
    "unacknowledged",
)

messages = Table(
    "messages",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("direction", String(8), nullable=False),
    Column("partner", String(32), nullable=False),
    Column("channel", String(16), nullable=False),
    Column("form", String(32), nullable=False),
    Column("reference", String(32), nullable=False),
    Column("in_reply_to", String(32)),
    Column("message_id", String(255), nullable=False),
    Column("priority", String(8), nullable=False),
    # SHA-256 of the signed content (what a receipt quotes) and of the raw message as it came.
    Column("content_sha256", String(64), nullable=False),
    Column("raw_sha256", String(64), nullable=False),
    Column("spool_key", String(64)),
    Column("desk", String(32)),
    Column("state", String(16), nullable=False),
    # The verdict on the signature, recorded at receipt: a later key expiry must not change it.
    Column("signer", String(64)),
    Column("signed_at", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("direction", "partner", "reference", name="uq_message_reference"),
    CheckConstraint(f"direction IN {DIRECTIONS!r}", name="ck_message_direction"),
)
Index("ix_messages_state", messages.c.direction, messages.c.state)
Index("ix_messages_message_id", messages.c.message_id)

events = Table(
    "events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("message_id", Integer, ForeignKey("messages.id"), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("kind", String(32), nullable=False),
    # Codes, references, digests only: never a payload or personal data.
    Column("detail", String(500), nullable=False, default=""),
)
Index("ix_events_message", events.c.message_id, events.c.id)

deadlines = Table(
    "deadlines",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("message_id", Integer, ForeignKey("messages.id"), nullable=False),
    Column("kind", String(16), nullable=False),  # receipt | reply
    Column("owed_by", String(16), nullable=False),  # partner | desk
    Column("opened_at", DateTime(timezone=True), nullable=False),
    Column("due", DateTime(timezone=True), nullable=False),
    Column("state", String(16), nullable=False),  # open | met | missed | closed
    Column("closed_at", DateTime(timezone=True)),
    Column("close_reason", String(200)),
    Column("reminders_sent", Integer, nullable=False, default=0),
    Column("escalations", Integer, nullable=False, default=0),
    # The next instant a sweep has something to do for this deadline: the sweep's index.
    Column("next_action_at", DateTime(timezone=True)),
    UniqueConstraint("message_id", "kind", name="uq_deadline_kind"),
)
Index("ix_deadlines_next", deadlines.c.state, deadlines.c.next_action_at)

audit = Table(
    "audit",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("partner", String(32), nullable=False, default=""),
    Column("form", String(32), nullable=False, default=""),
    Column("reference", String(64), nullable=False, default=""),
    Column("digest", String(64), nullable=False, default=""),
    Column("reason", String(300), nullable=False, default=""),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)

sequences = Table(
    "sequences",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("value", Integer, nullable=False),
)


def make_engine(url: str, **options: Any) -> Engine:
    """An engine for the ledger. SQLite: WAL journal, synchronous=FULL, foreign keys on."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30}, **options)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(connection: Any, _record: Any) -> None:
            cursor = connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True, **options)


def create_schema(engine: Engine) -> None:
    metadata.create_all(engine)

"""The ledger's side of shredding: the digests of a message's deleted copies, its drafts deleted,
its row marked as a stub, and (SQLite) the trigram indexes and the write-ahead log cleared."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, delete, func, select, update
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect

from gateway.store import search_ddl
from gateway.store.ledger import deadlines, drafts, messages, shredded_copies
from gateway.store.states import DeadlineState
from gateway.store.unit import Transaction

# The deadlines that keep a message: something is still owed on it.
_OPEN = (DeadlineState.OPEN.value, DeadlineState.PAUSED.value)


@dataclass(frozen=True, order=True)
class Copy:
    """One file a message left, as the ledger keeps it once deleted."""

    place: str  # inbound-spool, outbound-spool, desk, dovecot, outbox
    name: str  # the folder and file name under that place (ids and references only)
    sha256: str
    size: int


def open_deadlines(tx: Transaction, message_id: int) -> int:
    """How many deadlines of the message are open or paused."""
    return int(
        tx.connection.execute(
            select(func.count())
            .select_from(deadlines)
            .where(deadlines.c.message_id == message_id, deadlines.c.state.in_(_OPEN))
        ).scalar_one()
    )


def record_in(tx: Transaction, message_id: int, copies: Sequence[Copy], now: datetime) -> None:
    """Keep the digests of copies about to be deleted; those kept already stay as they were
    (a shredding interrupted and done again finds some of its files gone)."""
    if not copies:
        return
    dialect = pg_dialect if tx.dialect == "postgresql" else sqlite_dialect
    tx.connection.execute(
        dialect.insert(shredded_copies).on_conflict_do_nothing(
            index_elements=["message_id", "place", "name"]
        ),
        [
            {
                "message_id": message_id,
                "place": copy.place,
                "name": copy.name[:255],
                "sha256": copy.sha256,
                "size": copy.size,
                "at": now,
            }
            for copy in copies
        ],
    )


def copies_of(tx: Transaction, message_id: int) -> list[Copy]:
    """The copies of the message recorded as shredded, by place and name."""
    rows = tx.connection.execute(
        select(
            shredded_copies.c.place,
            shredded_copies.c.name,
            shredded_copies.c.sha256,
            shredded_copies.c.size,
        ).where(shredded_copies.c.message_id == message_id)
    ).all()
    return sorted(Copy(row[0], row[1], row[2], int(row[3])) for row in rows)


def manifest_digest(message_digests: Sequence[str], copies: Sequence[Copy]) -> str:
    """SHA-256 of what the stub keeps: the message's own digests, then each copy's place, name,
    digest and size, one line each, sorted. The audit chain's line carries it."""
    lines = [*message_digests, *(f"{c.place} {c.name} {c.sha256} {c.size}" for c in sorted(copies))]
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()


def delete_drafts_in(tx: Transaction, message_id: int) -> int:
    """Delete the drafts of replies to the message (their values hold personal data)."""
    result = tx.connection.execute(delete(drafts).where(drafts.c.reply_to == message_id))
    return int(result.rowcount or 0)


def count_drafts(tx: Transaction, message_id: int) -> int:
    return int(
        tx.connection.execute(
            select(func.count()).select_from(drafts).where(drafts.c.reply_to == message_id)
        ).scalar_one()
    )


def mark_in(tx: Transaction, message_id: int, now: datetime) -> bool:
    """The message's row is a stub from now on; False when it was already (another run
    finished it first)."""
    result = tx.connection.execute(
        update(messages)
        .where(messages.c.id == message_id, messages.c.shredded_at.is_(None))
        .values(shredded_at=now)
    )
    return bool(result.rowcount)


def clear_sqlite(engine: Engine) -> bool:
    """SQLite: merge the trigram indexes' segments (a deleted key's trigrams stay in the old ones
    until then) and write the log back into the file and truncate it (the log holds the pages
    as they were before). True when the log was truncated; False when a reader kept it
    (the next run does it again), and on PostgreSQL, where there is nothing of this kind to do.
    Freed pages are zeroed as they are freed: every connection sets ``secure_delete``."""
    if engine.dialect.name != "sqlite":
        return False
    with engine.begin() as connection:
        for table in (search_ddl.PARTS_FTS, search_ddl.IDS_FTS):
            # Our table names; FTS5 takes its commands as an insert into a column of its name.
            connection.exec_driver_sql(f"INSERT INTO {table}({table}) VALUES ('optimize')")  # noqa: S608
    with engine.connect() as connection:
        busy = connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").one()[0]
        connection.commit()
    return not busy

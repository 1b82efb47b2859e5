"""The claims on received messages: who holds one and since when, taken by a conditional write so
that of two concurrent claims exactly one wins (on SQLite and PostgreSQL), released, handed over,
closed; and the first time a message was opened (seen).

Every write is a compare-and-set on the message's row in ``claims``: a claim only where nobody
holds it, a release, a hand-over or a close only where the holder is still the one the caller
read. On PostgreSQL the second of two concurrent updates waits for the first to commit and then
finds its condition false; on SQLite the write lock (BEGIN IMMEDIATE) serialises them. What the
changes mean (who may make them, the audit entries) is gateway.service.claims's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite

from gateway.store.ledger import as_utc, claims
from gateway.store.unit import Transaction


class WorkState(StrEnum):
    """Where a received message stands on its desk, as the worklist shows it."""

    NEW = "new"  # nobody has opened it
    SEEN = "seen"  # opened, held by nobody
    CLAIMED = "claimed"  # held by a handler
    ANSWERED = "answered"  # our reply went out (the reply deadline met)
    CLOSED = "closed"  # closed on the desk


def work_state(
    message_state: str,
    reply_state: str | None,
    *,
    holder: str | None,
    seen_at: datetime | None,
    closed_at: datetime | None,
) -> WorkState:
    """The desk's state of a message: closed, then answered, claimed, seen, new."""
    if closed_at is not None:
        return WorkState.CLOSED
    if message_state == "answered" or reply_state == "met":
        return WorkState.ANSWERED
    if holder is not None:
        return WorkState.CLAIMED
    if seen_at is not None:
        return WorkState.SEEN
    return WorkState.NEW


@dataclass(frozen=True)
class Claim:
    """The desk's work on one message, as stored (instants in UTC)."""

    message_id: int
    holder: str | None
    since: datetime | None
    seen_at: datetime | None
    closed_at: datetime | None
    closed_by: str | None


def get(tx: Transaction, message_id: int) -> Claim | None:
    row = tx.connection.execute(select(claims).where(claims.c.message_id == message_id)).first()
    return None if row is None else _claim(row._mapping)


def take_in(tx: Transaction, message_id: int, user: str, now: datetime) -> bool:
    """Claim the message for ``user`` if nobody holds it and it is not closed: True when this
    call took it, False otherwise (the caller reads who holds it)."""
    _ensure_row(tx, message_id, now)
    taken = tx.connection.execute(
        update(claims)
        .where(
            claims.c.message_id == message_id,
            claims.c.holder.is_(None),
            claims.c.closed_at.is_(None),
        )
        .values(holder=user, since=now, updated_at=now)
    ).rowcount
    return bool(taken)


def release_in(tx: Transaction, message_id: int, holder: str, now: datetime) -> bool:
    """Nobody holds it any more, if ``holder`` still did; False otherwise."""
    return _move(tx, message_id, holder, now, holder=None, since=None)


def hand_over_in(tx: Transaction, message_id: int, holder: str, to: str, now: datetime) -> bool:
    """``to`` holds it from now, if ``holder`` still did; False otherwise."""
    return _move(tx, message_id, holder, now, holder=to, since=now)


def close_in(
    tx: Transaction, message_id: int, holder: str | None, user: str, now: datetime
) -> bool:
    """Closed by ``user`` (and held by nobody), if ``holder`` (None: nobody) still held it and it
    was open; False otherwise."""
    _ensure_row(tx, message_id, now)
    return _move(
        tx, message_id, holder, now, holder=None, since=None, closed_at=now, closed_by=user
    )


def mark_seen_in(tx: Transaction, message_id: int, now: datetime) -> None:
    """The first time the message was opened, kept (later views change nothing)."""
    _ensure_row(tx, message_id, now)
    tx.connection.execute(
        update(claims)
        .where(claims.c.message_id == message_id, claims.c.seen_at.is_(None))
        .values(seen_at=now)
    )


def _move(
    tx: Transaction, message_id: int, expected: str | None, now: datetime, **values: Any
) -> bool:
    held = claims.c.holder.is_(None) if expected is None else claims.c.holder == expected
    moved = tx.connection.execute(
        update(claims)
        .where(claims.c.message_id == message_id, held, claims.c.closed_at.is_(None))
        .values(updated_at=now, **values)
    ).rowcount
    return bool(moved)


def _ensure_row(tx: Transaction, message_id: int, now: datetime) -> None:
    """The message's row, made if missing; a concurrent maker's row is left as it is."""
    dialect = postgresql if tx.dialect == "postgresql" else sqlite
    tx.connection.execute(
        dialect.insert(claims)
        .values(message_id=message_id, updated_at=now)
        .on_conflict_do_nothing(index_elements=[claims.c.message_id])
    )


def _claim(row: Any) -> Claim:
    def instant(value: datetime | None) -> datetime | None:
        return None if value is None else as_utc(value)

    return Claim(
        message_id=int(row["message_id"]),
        holder=row["holder"],
        since=instant(row["since"]),
        seen_at=instant(row["seen_at"]),
        closed_at=instant(row["closed_at"]),
        closed_by=row["closed_by"],
    )

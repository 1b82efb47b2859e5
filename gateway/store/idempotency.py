"""The API's idempotency keys: the row of a key read, and written inside the transaction that
queues its form; a key taken meanwhile by a concurrent request is told apart (KeyTaken); the
keys older than their retention deleted."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError

from gateway.store.ledger import as_utc, idempotency_keys
from gateway.store.unit import Transaction


class KeyTaken(Exception):
    """Another request stored this idempotency key first (its transaction committed while ours
    ran). The caller's transaction must roll back; the stored row then says what to answer."""


@dataclass(frozen=True)
class StoredKey:
    owner: str
    idempotency_key: str
    body_sha256: str
    message_id: int
    answer: str  # the first answer's JSON
    created_at: datetime


def stored(tx: Transaction, owner: str, key: str) -> StoredKey | None:
    row = (
        tx.connection.execute(
            select(idempotency_keys).where(
                idempotency_keys.c.owner == owner, idempotency_keys.c.idempotency_key == key
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        return None
    return StoredKey(
        owner=row["owner"],
        idempotency_key=row["idempotency_key"],
        body_sha256=row["body_sha256"],
        message_id=int(row["message_id"]),
        answer=row["answer"],
        created_at=as_utc(row["created_at"]),
    )


def store_in(
    tx: Transaction,
    *,
    owner: str,
    key: str,
    body_sha256: str,
    message_id: int,
    answer: str,
    now: datetime,
) -> None:
    """Write the key in the caller's transaction (the one that queues its form). KeyTaken when
    the key is stored already: a concurrent request with it committed first (on PostgreSQL the
    insert waits for that request's transaction, then fails on the unique constraint)."""
    if stored(tx, owner, key) is not None:
        raise KeyTaken(key)
    try:
        tx.connection.execute(
            insert(idempotency_keys).values(
                owner=owner,
                idempotency_key=key,
                body_sha256=body_sha256,
                message_id=message_id,
                answer=answer,
                created_at=now,
            )
        )
    except IntegrityError:
        raise KeyTaken(key) from None


def purge_before(tx: Transaction, cutoff: datetime) -> int:
    """Delete the keys stored before ``cutoff``; how many. A retry with a deleted key is a new
    request (the form it queued stays queued and recorded: only the key's row goes)."""
    return int(
        tx.connection.execute(
            delete(idempotency_keys).where(idempotency_keys.c.created_at < cutoff)
        ).rowcount
    )

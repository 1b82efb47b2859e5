"""The one way to the bytes of an accepted message: the node's spool or the ledger's table.

With ``[store] bodies = "spool"`` (the one-node default) a received message's raw bytes and
verified entity are the payload of its inbound spool item; with ``"database"`` they are a row
of ``message_bodies``, committed in the transaction of the message's ledger row (see
``groupcommit.py``), so that any node on the same PostgreSQL can hand it off. Every reader (the
hand-off, the console's message view and attachments, the index rebuild) asks ``Bodies.read``;
the retention purge asks ``Bodies.forget_in``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import delete, func, insert, select

from gateway.store.ledger import Ledger, message_bodies
from gateway.store.spool import Spool, SpoolItem
from gateway.store.unit import Transaction

SPOOL = "spool"
DATABASE = "database"


@dataclass(frozen=True)
class Spooled:
    """An accepted message's bytes, split into their two parts: the raw message as received
    (our proof of what the partner sent) and the verified entity (what the desk is given)."""

    raw: bytes
    entity: bytes

    @classmethod
    def of(cls, item: SpoolItem) -> Spooled:
        """From an inbound spool item: its payload, ``raw_length`` bytes of raw first."""
        return cls.split(item.payload(), int(item.meta["raw_length"]))

    @classmethod
    def split(cls, payload: bytes, raw_length: int) -> Spooled:
        if not 0 <= raw_length <= len(payload):
            raise ValueError(f"a raw length of {raw_length} in a body of {len(payload)} bytes")
        return cls(payload[:raw_length], payload[raw_length:])


@dataclass(frozen=True)
class NewBody:
    """The bytes of a message to store with its ledger row: raw then entity, and the raw's
    length."""

    payload: bytes
    raw_length: int


def body_rows(ids: Sequence[int], bodies: Sequence[NewBody | None]) -> list[dict[str, object]]:
    """The ``message_bodies`` rows for messages just recorded (None: a body kept elsewhere)."""
    return [
        {
            "message_id": message_id,
            "bytes": body.payload,
            "sha256": hashlib.sha256(body.payload).hexdigest(),
            "raw_length": body.raw_length,
        }
        for message_id, body in zip(ids, bodies, strict=True)
        if body is not None
    ]


def add_in(tx: Transaction, rows: Sequence[dict[str, object]]) -> None:
    """Insert body rows in the caller's transaction (the group commit's)."""
    if rows:
        tx.connection.execute(insert(message_bodies), list(rows))


def read_rows_in(tx: Transaction, ids: Sequence[int]) -> dict[int, Spooled]:
    """The stored bodies of these messages, checked against their digests; a row whose bytes
    no longer match is left out (read as missing, never handed on altered)."""
    if not ids:
        return {}
    found: dict[int, Spooled] = {}
    rows = tx.connection.execute(
        select(
            message_bodies.c.message_id,
            message_bodies.c.bytes,
            message_bodies.c.sha256,
            message_bodies.c.raw_length,
        ).where(message_bodies.c.message_id.in_(list(ids)))
    )
    for row in rows:
        payload = bytes(row.bytes)
        if hashlib.sha256(payload).hexdigest() != row.sha256:
            continue
        found[int(row.message_id)] = Spooled.split(payload, int(row.raw_length))
    return found


class Bodies:
    """Reads and forgets the bodies of accepted messages, wherever the configuration keeps
    them."""

    def __init__(self, where: str, ledger: Ledger, spool: Spool) -> None:
        if where not in (SPOOL, DATABASE):
            raise ValueError(f"bodies are kept in the spool or the database, not {where!r}")
        self.where = where
        self.ledger = ledger
        self.spool = spool

    @property
    def in_database(self) -> bool:
        return self.where == DATABASE

    def read(self, message_id: int, spool_key: str | None) -> Spooled:
        """The body of a received message; KeyError when it is kept nowhere any more (purged,
        or never stored), ValueError when what is kept cannot be read."""
        if self.in_database:
            with self.ledger.reading() as tx:
                found = read_rows_in(tx, [message_id])
            if message_id in found:
                return found[message_id]
        if spool_key is None:
            raise KeyError(message_id)
        return Spooled.of(self.spool.get(spool_key))  # bodies from before the switch too


def measured_in(tx: Transaction, message_id: int) -> tuple[str, int] | None:
    """The SHA-256 and size of a message's body in the ledger (for the shredding stub); None
    when it was kept in a spool."""
    row = tx.connection.execute(
        select(message_bodies.c.sha256, func.length(message_bodies.c.bytes)).where(
            message_bodies.c.message_id == message_id
        )
    ).first()
    return None if row is None else (str(row[0]), int(row[1]))


def forget_in(tx: Transaction, message_id: int) -> int:
    """Delete a message's body from the ledger (the retention purge), in the caller's
    transaction; how many rows went (0 when it was kept in a spool)."""
    gone = tx.connection.execute(
        delete(message_bodies).where(message_bodies.c.message_id == message_id)
    )
    return int(gone.rowcount or 0)

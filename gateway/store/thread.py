"""A message's thread: the messages related to it by InReplyTo, both ways and step by step (the
request it answers, the replies to it, theirs...), as the reply matching links them: a reply names
the Reference of a message exchanged with the same partner. Metadata only; receipts are left out
(a receipt is an event of the message it acknowledges, not a message of the thread)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, select

from gateway.store.ledger import as_utc, messages
from gateway.store.unit import Transaction

LIMIT = 50  # messages in one thread at most: a thread is a conversation, not a ledger


@dataclass(frozen=True)
class ThreadItem:
    id: int
    direction: str
    partner: str
    form: str
    reference: str
    in_reply_to: str | None
    desk: str | None
    state: str
    at: datetime


_COLUMNS = (
    messages.c.id,
    messages.c.direction,
    messages.c.partner,
    messages.c.form,
    messages.c.reference,
    messages.c.in_reply_to,
    messages.c.desk,
    messages.c.state,
    messages.c.created_at,
)


def related(
    tx: Transaction, message_id: int, *, leave_out_form: str | None = None, limit: int = LIMIT
) -> list[ThreadItem]:
    """The thread of ``message_id`` (itself included), oldest first; at most ``limit``
    messages. Each step is one read by the indexes on (partner, reference) and (partner,
    in_reply_to), for every message found at the step before."""
    first = _read(tx, messages.c.id == message_id, leave_out_form)
    found = {item.id: item for item in first}
    frontier = list(first)
    while frontier and len(found) < limit:
        partner = frontier[0].partner  # one partner: a reply names a message of its own partner
        references = sorted({item.reference for item in frontier})
        asked = sorted({item.in_reply_to for item in frontier if item.in_reply_to})
        # Two reads, each by its own index: an OR of both let the database walk every message
        # of the partner.
        step = _read(
            tx,
            (messages.c.partner == partner) & messages.c.in_reply_to.in_(references),
            leave_out_form,
        )
        if asked:
            step += _read(
                tx,
                (messages.c.reference.in_(asked)) & (messages.c.partner == partner),
                leave_out_form,
            )
        frontier = list({item.id: item for item in step if item.id not in found}.values())
        for item in frontier:
            found[item.id] = item
    return sorted(found.values(), key=lambda item: (item.at, item.id))[:limit]


def _read(
    tx: Transaction, condition: ColumnElement[bool], leave_out_form: str | None
) -> list[ThreadItem]:
    # No ORDER BY (the caller sorts what it found): with one, SQLite preferred walking the whole
    # table in id order to a lookup by the index and a sort of a few rows.
    query = select(*_COLUMNS).where(condition).limit(LIMIT)
    if leave_out_form:
        query = query.where(messages.c.form != leave_out_form)
    return [
        ThreadItem(
            id=row.id,
            direction=row.direction,
            partner=row.partner,
            form=row.form,
            reference=row.reference,
            in_reply_to=row.in_reply_to,
            desk=row.desk,
            state=row.state,
            at=as_utc(row.created_at),
        )
        for row in tx.connection.execute(query).all()
    ]

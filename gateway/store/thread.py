"""A message's thread: the messages related to it by InReplyTo, both ways and step by step (the
request it answers, the replies to it, theirs...), as the reply matching links them: a reply names
the Reference of a message exchanged with the same partner. Metadata only; receipts are left out
(a receipt is an event of the message it acknowledges, not a message of the thread)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, bindparam, select, text

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
        step = _replies(tx, partner, references, leave_out_form)
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


# The replies to messages, by the index on (partner, in_reply_to). On SQLite the index is named:
# most messages answer nothing, so SQLite's statistics (ANALYZE) count every NULL as one value and
# call the index useless, and it read the whole table instead (40 ms at 100 k messages);
# SQLAlchemy writes no table hint for SQLite, hence the text.
_REPLIES_SQLITE = (
    text(
        "SELECT id, direction, partner, form, reference, in_reply_to, desk, state, created_at "
        "FROM messages INDEXED BY ix_messages_in_reply_to "
        "WHERE partner = :partner AND in_reply_to IN :references AND form != :leave_out "
        "LIMIT :limit"
    )
    .bindparams(bindparam("references", expanding=True))
    .columns(*_COLUMNS)
)


def _replies(
    tx: Transaction, partner: str, references: list[str], leave_out_form: str | None
) -> list[ThreadItem]:
    if tx.dialect != "sqlite":
        condition = (messages.c.partner == partner) & messages.c.in_reply_to.in_(references)
        return _read(tx, condition, leave_out_form)
    rows = tx.connection.execute(
        _REPLIES_SQLITE,
        {
            "partner": partner,
            "references": references,
            "leave_out": leave_out_form or "",
            "limit": LIMIT,
        },
    ).all()
    return [_item(row) for row in rows]


def _read(
    tx: Transaction,
    condition: ColumnElement[bool],
    leave_out_form: str | None,
) -> list[ThreadItem]:
    # No ORDER BY (the caller sorts what it found): with one, SQLite preferred walking the whole
    # table in id order to a lookup by the index and a sort of a few rows.
    query = select(*_COLUMNS).where(condition).limit(LIMIT)
    if leave_out_form:
        query = query.where(messages.c.form != leave_out_form)
    return [_item(row) for row in tx.connection.execute(query).all()]


def _item(row: Any) -> ThreadItem:
    return ThreadItem(
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

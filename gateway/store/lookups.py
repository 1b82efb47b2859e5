"""Reads of messages by what the trackers, the desks and the commands know of them: a partner's
Reference, a spool key, an origin file, a Reference still free, the inbox of a desk."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sqlalchemy import select

from gateway.store.ledger import MessageRow, as_utc, deadlines, events, message_of, messages
from gateway.store.states import OutboundState
from gateway.store.unit import Transaction


def message_id(tx: Transaction, direction: str, partner: str, reference: str) -> int | None:
    """The ledger id of the message with this (direction, partner, Reference), if recorded."""
    found = tx.connection.execute(
        select(messages.c.id).where(
            messages.c.direction == direction,
            messages.c.partner == partner,
            messages.c.reference == reference,
        )
    ).scalar()
    return int(found) if found is not None else None


def answer_id(
    tx: Transaction, direction: str, partner: str, form: str, in_reply_to: str
) -> int | None:
    """The ledger id of the ``form`` message of ``direction`` exchanged with ``partner`` in reply
    to its Reference ``in_reply_to`` (a receipt we made for a message, say)."""
    found = tx.connection.execute(
        select(messages.c.id).where(
            messages.c.direction == direction,
            messages.c.form == form,
            messages.c.partner == partner,
            messages.c.in_reply_to == in_reply_to,
        )
    ).scalar()
    return int(found) if found is not None else None


def answer_ids(
    tx: Transaction, direction: str, form: str, asked: Collection[tuple[str, str]]
) -> dict[tuple[str, str], int]:
    """answer_id for many (partner, Reference) pairs in one query: {pair: ledger id} for the
    pairs answered (the first answer recorded, should there be several)."""
    if not asked:
        return {}
    rows = tx.connection.execute(
        select(messages.c.id, messages.c.partner, messages.c.in_reply_to)
        .where(
            messages.c.direction == direction,
            messages.c.form == form,
            messages.c.in_reply_to.in_(sorted({reference for _, reference in asked})),
        )
        .order_by(messages.c.id)
    ).all()
    wanted = set(asked)
    found: dict[tuple[str, str], int] = {}
    for ledger_id, partner, reference in rows:
        pair = (str(partner), str(reference))
        if pair in wanted and pair not in found:
            found[pair] = int(ledger_id)
    return found


def reference_taken(tx: Transaction, direction: str, reference: str) -> bool:
    """Whether a message of ``direction`` carries this Reference, to whichever partner."""
    taken = tx.connection.execute(
        select(messages.c.id).where(
            messages.c.direction == direction, messages.c.reference == reference
        )
    ).first()
    return taken is not None


def spool_key_holder(tx: Transaction, spool_key: str, besides: int) -> str | None:
    """The Reference of another message than ``besides`` whose spooled item has this key."""
    other = tx.connection.execute(
        select(messages.c.reference).where(
            messages.c.spool_key == spool_key, messages.c.id != besides
        )
    ).first()
    return str(other.reference) if other is not None else None


def queued_from(tx: Transaction, origin: str) -> str | None:
    """The Reference of the outbound message whose first event names the file ``origin`` (the
    outbox writes it there), if one was queued from it."""
    found = tx.connection.execute(
        select(messages.c.reference)
        .select_from(messages.join(events, events.c.message_id == messages.c.id))
        .where(
            messages.c.direction == "outbound",
            events.c.kind == OutboundState.QUEUED,  # the event of its first state
            events.c.detail.endswith(origin),
        )
    ).first()
    return str(found.reference) if found is not None else None


def deadline_due(tx: Transaction, message_id: int, kind: str) -> datetime | None:
    """When the ``kind`` (receipt | reply) deadline of the message is due, if it has one."""
    due = tx.connection.execute(
        select(deadlines.c.due).where(
            deadlines.c.message_id == message_id, deadlines.c.kind == kind
        )
    ).scalar()
    return as_utc(due) if due is not None else None


def deadlines_due(tx: Transaction, message_ids: Collection[int], kind: str) -> dict[int, datetime]:
    """deadline_due for many messages in one query: {ledger id: due} for those that have one."""
    if not message_ids:
        return {}
    rows = tx.connection.execute(
        select(deadlines.c.message_id, deadlines.c.due).where(
            deadlines.c.message_id.in_(sorted(set(message_ids))), deadlines.c.kind == kind
        )
    ).all()
    return {int(message_id): as_utc(due) for message_id, due in rows}


def received(
    tx: Transaction, *, desk: str | None = None, leave_out_form: str | None = None
) -> list[tuple[MessageRow, datetime | None]]:
    """The inbound messages, newest first, each with the instant its reply is due (if owed);
    with ``desk``, only that desk's; with ``leave_out_form``, without that form's messages."""
    query = (
        select(messages, deadlines.c.due.label("reply_due"))
        .select_from(
            messages.outerjoin(
                deadlines, (deadlines.c.message_id == messages.c.id) & (deadlines.c.kind == "reply")
            )
        )
        .where(messages.c.direction == "inbound")
        .order_by(messages.c.created_at.desc(), messages.c.id.desc())
    )
    if desk:
        query = query.where(messages.c.desk == desk)
    if leave_out_form:
        query = query.where(messages.c.form != leave_out_form)
    found: list[tuple[MessageRow, datetime | None]] = []
    for row in tx.connection.execute(query).all():
        data = dict(row._mapping)
        due = data.pop("reply_due")
        found.append((message_of(data), as_utc(due) if due is not None else None))
    return found


def every_message(tx: Transaction) -> list[MessageRow]:
    """Every message the ledger holds, in the order recorded (for small ledgers: the demo)."""
    return [
        message_of(row._mapping)
        for row in tx.connection.execute(select(messages).order_by(messages.c.id)).all()
    ]

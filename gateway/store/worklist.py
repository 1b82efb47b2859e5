"""The console's and the API's reads of messages: a desk's worklist page by page (keyset on the
ledger id, newest first, never OFFSET) and the deadlines a message view shows."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Index, select

from gateway.store.ledger import as_utc, deadlines, messages
from gateway.store.unit import Transaction

# The worklist newest first (revision 0003): of one desk, and of every desk. Declared here rather
# than in ledger.py beside the table: only the console reads by them. Both are read in index
# order, so a page costs the same at 1 k and at 100 k messages (no sort of the whole desk).
WORKLIST_INDEX = Index("ix_messages_desk_id", messages.c.direction, messages.c.desk, messages.c.id)
RECEIVED_INDEX = Index("ix_messages_direction_id", messages.c.direction, messages.c.id)


@dataclass(frozen=True)
class WorkItem:
    """One line of a worklist: metadata only (the form's content is read by the message view).
    ``received_at`` is when the ledger recorded it: received, or queued for a message we send."""

    id: int
    direction: str
    received_at: datetime
    partner: str
    form: str
    reference: str
    priority: str
    state: str
    desk: str | None
    reply_due: datetime | None
    reply_state: str | None


@dataclass(frozen=True)
class ReplyDeadline:
    due: datetime
    state: str  # open | met | missed | closed
    owed_by: str  # desk | partner


def page(
    tx: Transaction,
    *,
    desks: Collection[str] | None,
    before: int | None = None,
    form: str | None = None,
    partner: str | None = None,
    state: str | None = None,
    leave_out_form: str | None = None,
    directions: Collection[str] = ("inbound",),
    limit: int = 50,
) -> list[WorkItem]:
    """At most ``limit`` messages of ``directions`` (received ones by default) of ``desks``
    (None: every desk, and those of none), newest first, with ids below ``before`` (the last id
    of the page before), with ``form``, ``partner`` and ``state`` when given, without
    ``leave_out_form``'s (receipts).

    Several desks (and directions) are read one by one, each in its index's order, and merged:
    an IN over desks would make the database sort every message of them."""
    found = [
        item
        for direction in sorted(directions)
        for desk in ([None] if desks is None else sorted(desks))
        for item in _page(
            tx,
            direction,
            desk,
            before,
            form=form,
            partner=partner,
            state=state,
            leave_out=leave_out_form,
            limit=limit,
        )
    ]
    return sorted(found, key=lambda item: item.id, reverse=True)[:limit]


def _page(
    tx: Transaction,
    direction: str,
    desk: str | None,
    before: int | None,
    *,
    form: str | None,
    partner: str | None,
    state: str | None,
    leave_out: str | None,
    limit: int,
) -> list[WorkItem]:
    query = (
        select(
            messages.c.id,
            messages.c.direction,
            messages.c.created_at,
            messages.c.partner,
            messages.c.form,
            messages.c.reference,
            messages.c.priority,
            messages.c.state,
            messages.c.desk,
            deadlines.c.due,
            deadlines.c.state.label("reply_state"),
        )
        .select_from(
            messages.outerjoin(
                deadlines, (deadlines.c.message_id == messages.c.id) & (deadlines.c.kind == "reply")
            )
        )
        .where(messages.c.direction == direction)
        .order_by(messages.c.id.desc())
        .limit(limit)
    )
    if desk is not None:
        query = query.where(messages.c.desk == desk)
    if before is not None:
        query = query.where(messages.c.id < before)
    if form:
        query = query.where(messages.c.form == form)
    if partner:
        query = query.where(messages.c.partner == partner)
    if state:
        query = query.where(messages.c.state == state)
    if leave_out:
        query = query.where(messages.c.form != leave_out)
    return [
        WorkItem(
            id=row.id,
            direction=row.direction,
            received_at=as_utc(row.created_at),
            partner=row.partner,
            form=row.form,
            reference=row.reference,
            priority=row.priority,
            state=row.state,
            desk=row.desk,
            reply_due=as_utc(row.due) if row.due is not None else None,
            reply_state=row.reply_state,
        )
        for row in tx.connection.execute(query).all()
    ]


@dataclass(frozen=True)
class MessageDeadline:
    kind: str  # receipt | reply
    due: datetime
    state: str  # open | met | missed | closed
    owed_by: str  # desk | partner


def deadlines_of(tx: Transaction, message_id: int) -> list[MessageDeadline]:
    """Every deadline of a message (its receipt's, its reply's), whatever its state."""
    rows = tx.connection.execute(
        select(deadlines.c.kind, deadlines.c.due, deadlines.c.state, deadlines.c.owed_by)
        .where(deadlines.c.message_id == message_id)
        .order_by(deadlines.c.id)
    ).all()
    return [MessageDeadline(row.kind, as_utc(row.due), row.state, row.owed_by) for row in rows]


def reply_deadline(tx: Transaction, message_id: int) -> ReplyDeadline | None:
    """The reply deadline of a message, whatever its state; None when no reply is owed."""
    row = tx.connection.execute(
        select(deadlines.c.due, deadlines.c.state, deadlines.c.owed_by).where(
            deadlines.c.message_id == message_id, deadlines.c.kind == "reply"
        )
    ).first()
    if row is None:
        return None
    return ReplyDeadline(due=as_utc(row.due), state=row.state, owed_by=row.owed_by)

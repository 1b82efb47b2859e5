"""The console's and the API's reads of messages: a desk's worklist page by page (keyset on the
ledger id, newest first, never OFFSET) with each message's claim, the deadlines a message view
shows, and the ledger's change token (whether anything a worklist shows may have changed)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Index, func, select

from gateway.store.claims import WorkState, work_state
from gateway.store.ledger import as_utc, audit, claims, deadlines, events, messages
from gateway.store.unit import Transaction

# The worklist newest first (revision 0003): of one desk, and of every desk. Declared here rather
# than in ledger.py beside the table: only the console reads by them. Both are read in index
# order, so a page costs the same at 1 k and at 100 k messages (no sort of the whole desk).
WORKLIST_INDEX = Index("ix_messages_desk_id", messages.c.direction, messages.c.desk, messages.c.id)
LATER = timedelta(days=1)  # a due instant after any due_by, for a message without a deadline
RECEIVED_INDEX = Index("ix_messages_direction_id", messages.c.direction, messages.c.id)


@dataclass(frozen=True)
class WorkItem:
    """One line of a worklist: metadata only (the form's content is read by the message view)."""

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
    holder: str | None = None
    since: datetime | None = None
    seen_at: datetime | None = None
    closed_at: datetime | None = None

    @property
    def work(self) -> WorkState:
        return work_state(
            self.state,
            self.reply_state,
            holder=self.holder,
            seen_at=self.seen_at,
            closed_at=self.closed_at,
        )


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
    priority: str | None = None,
    due_by: datetime | None = None,
    state: str | None = None,
    leave_out_form: str | None = None,
    directions: Collection[str] = ("inbound",),
    limit: int = 50,
) -> list[WorkItem]:
    """At most ``limit`` messages of ``directions`` (received ones by default) of ``desks``
    (None: every desk, and those of none), newest first, with ids below ``before`` (the last id
    of the page before), with ``form``, ``partner``, ``priority`` and ``state`` when given, with
    an open reply deadline due by ``due_by`` when given (overdue: ``due_by`` now), without
    ``leave_out_form``'s (receipts).

    Several desks (and directions) are read one by one, each in its index's order, and merged:
    an IN over desks would make the database sort every message of them."""
    wanted = Wanted(form, partner, priority, due_by, state, leave_out_form)
    found = [
        item
        for direction in sorted(directions)
        for desk in ([None] if desks is None else sorted(desks))
        for item in _page(tx, direction, desk, before=before, wanted=wanted, limit=limit)
    ]
    return sorted(found, key=lambda item: item.id, reverse=True)[:limit]


@dataclass(frozen=True)
class Wanted:
    """The filters of a page."""

    form: str | None
    partner: str | None
    priority: str | None
    due_by: datetime | None
    state: str | None
    leave_out: str | None


def _page(
    tx: Transaction,
    direction: str,
    desk: str | None,
    *,
    before: int | None,
    wanted: Wanted,
    limit: int,
) -> list[WorkItem]:
    # The claim and the deadline are joined to each message the index walk yields: the walk
    # stays in index order whatever the filters (a filter on the deadline is a LEFT JOIN's
    # condition tested on the row, never a reason to read the deadlines first and sort).
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
            claims.c.holder,
            claims.c.since,
            claims.c.seen_at,
            claims.c.closed_at,
        )
        .select_from(
            messages.outerjoin(
                deadlines, (deadlines.c.message_id == messages.c.id) & (deadlines.c.kind == "reply")
            ).outerjoin(claims, claims.c.message_id == messages.c.id)
        )
        .where(messages.c.direction == direction)
        .order_by(messages.c.id.desc())
        .limit(limit)
    )
    if desk is not None:
        query = query.where(messages.c.desk == desk)
    if before is not None:
        query = query.where(messages.c.id < before)
    if wanted.form:
        query = query.where(messages.c.form == wanted.form)
    if wanted.partner:
        query = query.where(messages.c.partner == wanted.partner)
    if wanted.priority:
        query = query.where(messages.c.priority == wanted.priority)
    if wanted.state:
        query = query.where(messages.c.state == wanted.state)
    if wanted.due_by is not None:
        query = query.where(*_due_by(tx, wanted.due_by))
    if wanted.leave_out:
        query = query.where(messages.c.form != wanted.leave_out)
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
            holder=row.holder,
            since=_instant(row.since),
            seen_at=_instant(row.seen_at),
            closed_at=_instant(row.closed_at),
        )
        for row in tx.connection.execute(query).all()
    ]


def change_token(tx: Transaction) -> str:
    """A token that changes whenever a worklist line may have: the newest event (a message
    recorded, a state moved, a claim taken, released, handed over or closed: each writes one)
    and the newest audit entry (a message opened: its view is logged there, and its first view
    makes it "seen"). Two primary-key maxima: an index lookup each, whatever the ledger holds."""
    row = tx.connection.execute(
        select(
            select(func.max(events.c.id)).scalar_subquery(),
            select(func.max(audit.c.seq)).scalar_subquery(),
        )
    ).one()
    return f"{row[0] or 0}.{row[1] or 0}"


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


def _due_by(tx: Transaction, instant: datetime) -> tuple[ColumnElement[bool], ...]:
    """An open reply deadline due by ``instant``. On SQLite written so that the join stays a
    LEFT JOIN: a plain test on the deadline's columns let SQLite's planner read every deadline
    first and sort them (it has no statistics of how many match). PostgreSQL's planner weighs
    both ways with its statistics (the index walk for a common match, the deadlines first for a
    rare one); the coalesce hid them from it and made it join and sort every message."""
    if tx.dialect == "sqlite":
        return (
            func.coalesce(deadlines.c.state, "") == "open",
            func.coalesce(deadlines.c.due, instant + LATER) <= instant,
        )
    return (deadlines.c.state == "open", deadlines.c.due <= instant)


def _instant(value: datetime | None) -> datetime | None:
    return None if value is None else as_utc(value)

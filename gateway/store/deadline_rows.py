"""The deadlines as the sweep and the commands see them: what is due, one due deadline claimed
with its message, its counters stored after an action, a reply deadline paused and resumed, the
open (and paused) ones listed or found by Reference.

Only the index (state, next_action_at) is read to find work, so a sweep costs what is due, not
what is open. ``claim_due`` takes the row for the caller's transaction: on PostgreSQL with
SELECT ... FOR UPDATE SKIP LOCKED, so that several gateways on one ledger never hold the same
deadline; on SQLite the transaction's write lock serialises the writers.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from gateway.store.ledger import as_utc, claims, deadlines, messages
from gateway.store.states import DEADLINE, DeadlineState, check_transition
from gateway.store.unit import Transaction

_OPEN = deadlines.c.state == DeadlineState.OPEN
# Not met, missed or closed: what is still owed, whether its clock runs or waits.
_PENDING = deadlines.c.state.in_((DeadlineState.OPEN, DeadlineState.PAUSED))
_WITH_MESSAGE = deadlines.join(messages, deadlines.c.message_id == messages.c.id)


@dataclass(frozen=True)
class DueDeadline:
    """An open deadline due now, with the message it belongs to (instants in UTC)."""

    id: int
    message_id: int
    kind: str
    owed_by: str
    opened_at: datetime
    due: datetime
    reminders_sent: int
    escalations: int
    resends: int
    next_action_at: datetime
    paused_seconds: int
    direction: str
    partner: str
    form: str
    reference: str
    priority: str
    desk: str | None
    spool_key: str | None
    message_state: str


@dataclass(frozen=True)
class Counters:
    """What a sweep step leaves in a deadline: its counters, due instant, next action, state."""

    reminders_sent: int
    escalations: int
    resends: int
    due: datetime
    next_action_at: datetime | None
    state: DeadlineState


@dataclass(frozen=True)
class OpenDeadlineOf:
    """An open deadline of a message found by its Reference."""

    kind: str
    message_id: int
    partner: str
    form: str


@dataclass(frozen=True)
class ListedDeadline:
    """An open deadline as `gateway deadlines` lists it."""

    reference: str
    form: str
    partner: str
    direction: str
    desk: str | None
    kind: str
    owed_by: str
    due: datetime
    state: str
    reminders_sent: int
    paused_at: datetime | None = None  # while paused: since when
    message_id: int = 0
    priority: str = ""
    escalations: int = 0
    holder: str | None = None  # who holds the message on its desk (gateway.store.claims)


@dataclass(frozen=True)
class Paused:
    """A reply deadline that stopped waiting for a reply and waits for a clarification."""

    deadline_id: int
    due: datetime  # as it stood when paused
    left: timedelta  # the time that was left (negative when already overdue)


@dataclass(frozen=True)
class Resumed:
    """A paused reply deadline running again: its new due instant, and how long it waited."""

    deadline_id: int
    due: datetime
    waited: timedelta


_DUE_COLUMNS = (
    deadlines.c.id,
    deadlines.c.message_id,
    deadlines.c.kind,
    deadlines.c.owed_by,
    deadlines.c.opened_at,
    deadlines.c.due,
    deadlines.c.reminders_sent,
    deadlines.c.escalations,
    deadlines.c.resends,
    deadlines.c.next_action_at,
    deadlines.c.paused_seconds,
    messages.c.direction,
    messages.c.partner,
    messages.c.form,
    messages.c.reference,
    messages.c.priority,
    messages.c.desk,
    messages.c.spool_key,
    messages.c.state.label("message_state"),
)


def next_due(tx: Transaction) -> datetime | None:
    """The earliest ``next_action_at`` of the open deadlines: when to sweep next."""
    found = tx.connection.execute(
        select(deadlines.c.next_action_at)
        .where(_OPEN, deadlines.c.next_action_at.is_not(None))
        .order_by(deadlines.c.next_action_at)
        .limit(1)
    ).scalar()
    return as_utc(found) if found is not None else None


def due_ids(tx: Transaction, now: datetime, limit: int) -> list[int]:
    """The ids of at most ``limit`` open deadlines due at ``now``, the earliest first."""
    return [
        int(found)
        for found in tx.connection.execute(
            select(deadlines.c.id)
            .where(_OPEN, deadlines.c.next_action_at <= now)
            .order_by(deadlines.c.next_action_at)
            .limit(limit)
        ).scalars()
    ]


def claim_due(tx: Transaction, deadline_id: int, now: datetime) -> DueDeadline | None:
    """The deadline with its message, held for ``tx`` while it is still open and due; None when
    it was handled or closed meanwhile, or another gateway holds it."""
    row = tx.connection.execute(
        select(*_DUE_COLUMNS)
        .select_from(_WITH_MESSAGE)
        .where(deadlines.c.id == deadline_id, _OPEN, deadlines.c.next_action_at <= now)
        .with_for_update(skip_locked=True, of=deadlines)
    ).first()
    if row is None:
        return None
    values: dict[str, Any] = dict(row._mapping)
    for key in ("opened_at", "due", "next_action_at"):
        values[key] = as_utc(values[key])
    return DueDeadline(**values)


def store_counters(
    tx: Transaction, held: DueDeadline, counters: Counters, closed_at: datetime
) -> bool:
    """Write a step's counters, due instant, next action and state, if nobody changed the row
    since ``held`` was read (a guarded UPDATE); a deadline that leaves ``open`` is closed at
    ``closed_at`` for want of a receipt. Returns whether the row was written."""
    values: dict[str, Any] = {
        "reminders_sent": counters.reminders_sent,
        "escalations": counters.escalations,
        "resends": counters.resends,
        "due": counters.due,
        "next_action_at": counters.next_action_at,
        "state": counters.state,
    }
    if counters.state != DeadlineState.OPEN:
        check_transition(DEADLINE, DeadlineState.OPEN, counters.state)
        values["closed_at"] = closed_at
        values["close_reason"] = "no receipt"
    stored = tx.connection.execute(
        update(deadlines)
        .where(
            deadlines.c.id == held.id,
            _OPEN,
            deadlines.c.reminders_sent == held.reminders_sent,
            deadlines.c.escalations == held.escalations,
            deadlines.c.resends == held.resends,
        )
        .values(**values)
    ).rowcount
    return bool(stored == 1)


def pause_in(tx: Transaction, message_id: int, kind: str, at: datetime) -> Paused | None:
    """Pause the open ``kind`` deadline of a message from ``at`` (a request for clarification of
    it was sent or received); None when it has none open (met, closed, already paused)."""
    check_transition(DEADLINE, DeadlineState.OPEN, DeadlineState.PAUSED)
    row = tx.connection.execute(
        select(deadlines.c.id, deadlines.c.due).where(
            deadlines.c.message_id == message_id, deadlines.c.kind == kind, _OPEN
        )
    ).first()
    if row is None:
        return None
    paused = tx.connection.execute(
        update(deadlines)
        .where(deadlines.c.id == row.id, _OPEN)
        .values(state=DeadlineState.PAUSED, paused_at=at)
    ).rowcount
    if paused != 1:
        return None
    due = as_utc(row.due)
    return Paused(int(row.id), due, due - at)


def resume_in(tx: Transaction, message_id: int, kind: str, now: datetime) -> Resumed | None:
    """Let the paused ``kind`` deadline of a message run again from ``now`` with the time it had
    left: its due instant and next action move on by the time it waited (a reminder or an
    escalation falls as far from the new due instant as it did from the old one); None when it
    is not paused."""
    check_transition(DEADLINE, DeadlineState.PAUSED, DeadlineState.OPEN)
    row = tx.connection.execute(
        select(
            deadlines.c.id,
            deadlines.c.due,
            deadlines.c.next_action_at,
            deadlines.c.paused_at,
            deadlines.c.paused_seconds,
        ).where(
            deadlines.c.message_id == message_id,
            deadlines.c.kind == kind,
            deadlines.c.state == DeadlineState.PAUSED,
        )
    ).first()
    if row is None:
        return None
    since = as_utc(row.paused_at) if row.paused_at is not None else now
    waited = max(now - since, timedelta(0))
    due = as_utc(row.due) + waited
    next_action_at = as_utc(row.next_action_at) + waited if row.next_action_at else None
    resumed = tx.connection.execute(
        update(deadlines)
        .where(deadlines.c.id == row.id, deadlines.c.state == DeadlineState.PAUSED)
        .values(
            state=DeadlineState.OPEN,
            due=due,
            next_action_at=next_action_at,
            paused_at=None,
            paused_seconds=int(row.paused_seconds) + int(waited.total_seconds()),
        )
    ).rowcount
    if resumed != 1:
        return None
    return Resumed(int(row.id), due, waited)


def open_of_reference(tx: Transaction, reference: str) -> list[OpenDeadlineOf]:
    """The open or paused deadlines of the messages with this Reference, in the order opened."""
    rows = tx.connection.execute(
        select(deadlines.c.kind, deadlines.c.message_id, messages.c.partner, messages.c.form)
        .select_from(_WITH_MESSAGE)
        .where(messages.c.reference == reference, _PENDING)
        .order_by(deadlines.c.id)
    ).all()
    return [OpenDeadlineOf(row.kind, int(row.message_id), row.partner, row.form) for row in rows]


def listed(
    tx: Transaction,
    *,
    due_by: datetime | None = None,
    desk: str | None = None,
    desks: Collection[str] | None = None,
    limit: int | None = None,
) -> list[ListedDeadline]:
    """The open and paused deadlines, the soonest due first (at most ``limit``); with ``due_by``,
    the open ones due by then (a paused one is never overdue); with ``desk``, those of that desk's
    messages; with ``desks``, those of these desks' (none when empty). Each with its message's
    holder."""
    query = (
        select(
            messages.c.reference,
            messages.c.form,
            messages.c.partner,
            messages.c.direction,
            messages.c.desk,
            deadlines.c.kind,
            deadlines.c.owed_by,
            deadlines.c.due,
            deadlines.c.state,
            deadlines.c.reminders_sent,
            deadlines.c.paused_at,
            deadlines.c.message_id,
            messages.c.priority,
            deadlines.c.escalations,
            claims.c.holder,
        )
        .select_from(_WITH_MESSAGE.outerjoin(claims, claims.c.message_id == deadlines.c.message_id))
        .where(_PENDING)
        .order_by(deadlines.c.due, deadlines.c.id)
    )
    if desks is not None:
        if not desks:
            return []
        query = query.where(messages.c.desk.in_(sorted(desks)))
    if limit is not None:
        query = query.limit(limit)
    if due_by is not None:
        query = query.where(_OPEN, deadlines.c.due <= due_by)
    if desk:
        query = query.where(messages.c.desk == desk)
    found = []
    for row in tx.connection.execute(query).all():
        values = dict(row._mapping)
        values["due"] = as_utc(values["due"])
        if values["paused_at"] is not None:
            values["paused_at"] = as_utc(values["paused_at"])
        found.append(ListedDeadline(**values))
    return found

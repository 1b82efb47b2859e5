"""Cases as the ledger stores them: open one, add and remove members, move members (merge), close,
reopen, change the desk, each with its timeline event; and the reads (by id or number, listed,
members with their messages, the timeline). What the changes mean and who may make them is
gateway.service.cases's; the automatic grouping is gateway.store.grouping's."""

from __future__ import annotations

import secrets
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, func, insert, select, text, update

from gateway.store import case_refs
from gateway.store.ledger import (
    MessageRow,
    as_utc,
    case_events,
    case_members,
    cases,
    message_of,
    messages,
)
from gateway.store.sqlite_insert import insert_rows
from gateway.store.unit import Transaction

OPEN, CLOSED = "open", "closed"
STATUSES = (OPEN, CLOSED)
# How a message came into its case.
REPLY_CHAIN = "reply-chain"
ALERT_REFERENCE = "alert-reference"
NATIONAL_REFERENCE = "national-reference"
BY_HAND = "by-hand"
GROUPER = "gateway"  # the actor of the automatic grouping
LIST_LIMIT = 500

_INSERT_CASE = insert(cases).returning(cases.c.id)
_INSERT_EVENT = insert(case_events)
_NUMBER = update(cases).where(cases.c.id == bindparam("case_id")).values(number=bindparam("num"))


@dataclass(frozen=True)
class Case:
    id: int
    number: str
    desk: str | None
    status: str
    title: str
    opened_at: datetime
    closed_at: datetime | None
    closed_by: str | None
    merged_into: int | None
    members: int = 0


@dataclass(frozen=True)
class Member:
    message_id: int
    how: str
    by: str
    at: datetime
    direction: str
    partner: str
    form: str
    reference: str
    desk: str | None
    created_at: datetime
    channel: str


@dataclass(frozen=True)
class CaseEvent:
    at: datetime
    kind: str
    actor: str
    reason: str
    message_id: int | None
    other_case: int | None


def number_of(case_id: int, opened_at: datetime) -> str:
    """The number users are shown: the year it was opened and its id (``C2026-000042``)."""
    return f"C{opened_at.year}-{case_id:06d}"


def open_in(
    tx: Transaction,
    *,
    desk: str | None,
    title: str,
    actor: str,
    reason: str,
    now: datetime,
) -> int:
    """A new open case; returns its id. Its timeline starts with ``opened``."""
    placeholder = f"new-{secrets.token_hex(8)}"  # unique until the id names it, below
    case_id = int(
        tx.connection.execute(
            _INSERT_CASE,
            {
                "number": placeholder,
                "desk": desk,
                "status": OPEN,
                "title": title[:100],
                "opened_at": now,
                "updated_at": now,
            },
        ).scalar_one()
    )
    tx.connection.execute(_NUMBER, {"case_id": case_id, "num": number_of(case_id, now)})
    event_in(tx, case_id, "opened", actor, reason, now=now)
    return case_id


def event_in(
    tx: Transaction,
    case_id: int,
    kind: str,
    actor: str,
    reason: str,
    *,
    now: datetime,
    message_id: int | None = None,
    other_case: int | None = None,
) -> None:
    tx.connection.execute(
        _INSERT_EVENT,
        {
            "case_id": case_id,
            "at": now,
            "kind": kind,
            "actor": actor[:40],
            "reason": reason[:200],
            "message_id": message_id,
            "other_case": other_case,
        },
    )


# On PostgreSQL a member and its "linked" event in one statement (one round trip, not two).
_LINK_PG = text(
    "WITH joined AS (INSERT INTO case_members (message_id, case_id, how, by_user, at) "
    "VALUES (:message_id, :case_id, :how, :by_user, :at) RETURNING message_id, case_id) "
    "INSERT INTO case_events (case_id, at, kind, actor, reason, message_id) "
    "SELECT case_id, :at, 'linked', :by_user, :reason, message_id FROM joined"
)


def link_in(
    tx: Transaction,
    case_id: int,
    members: Sequence[int],
    *,
    how: str,
    by: str,
    reason: str,
    now: datetime,
) -> None:
    """``members`` (each in no case) join the case, each with its "linked" event; their
    grouping references are the case's (gateway.store.case_refs)."""
    rows = [
        {
            "message_id": member,
            "case_id": case_id,
            "how": how,
            "by_user": by[:40],
            "at": now,
            "reason": reason[:200],
        }
        for member in members
    ]
    if not rows:
        return
    if tx.dialect == "postgresql":
        tx.connection.execute(_LINK_PG, rows if len(rows) > 1 else rows[0])
        case_refs.place_in(tx, members, case_id)  # after the members: a taken one fails first
        return
    insert_rows(
        tx,
        case_members,
        [
            {key: row[key] for key in ("message_id", "case_id", "how", "by_user", "at")}
            for row in rows
        ],
    )
    insert_rows(
        tx,
        case_events,
        [
            {
                "case_id": case_id,
                "at": now,
                "kind": "linked",
                "actor": row["by_user"],
                "reason": row["reason"],
                "message_id": row["message_id"],
                "other_case": None,
            }
            for row in rows
        ],
    )
    case_refs.place_in(tx, members, case_id)


def remove_member_in(tx: Transaction, case_id: int, message_id: int) -> bool:
    gone = tx.connection.execute(
        delete(case_members).where(
            case_members.c.case_id == case_id, case_members.c.message_id == message_id
        )
    ).rowcount
    if gone:
        case_refs.unplace_in(tx, message_id)
    return bool(gone)


def move_members_in(tx: Transaction, source: int, target: int) -> int:
    """Every member of ``source`` into ``target``; returns how many."""
    moved = tx.connection.execute(
        update(case_members).where(case_members.c.case_id == source).values(case_id=target)
    ).rowcount
    case_refs.move_in(tx, source, target)
    return int(moved)


def set_status_in(
    tx: Transaction,
    case_id: int,
    expected: str,
    status: str,
    now: datetime,
    *,
    by: str | None = None,
    merged_into: int | None = None,
) -> bool:
    """Compare-and-set of the status: False when the case was not ``expected`` any more."""
    closing = status == CLOSED
    moved = tx.connection.execute(
        update(cases)
        .where(cases.c.id == case_id, cases.c.status == expected)
        .values(
            status=status,
            closed_at=now if closing else None,
            closed_by=by if closing else None,
            merged_into=merged_into,
            updated_at=now,
        )
    ).rowcount
    if moved:
        case_refs.status_in(tx, case_id, status)
    return bool(moved)


def set_desk_in(tx: Transaction, case_id: int, desk: str, now: datetime) -> None:
    tx.connection.execute(
        update(cases).where(cases.c.id == case_id).values(desk=desk, updated_at=now)
    )


def case_of_message(tx: Transaction, message_id: int) -> int | None:
    found = tx.connection.execute(
        select(case_members.c.case_id).where(case_members.c.message_id == message_id)
    ).scalar()
    return None if found is None else int(found)


def cases_of_messages(tx: Transaction, message_ids: Collection[int]) -> dict[int, tuple[str, str]]:
    """The case number and status of each of these messages that is in a case (one read)."""
    if not message_ids:
        return {}
    rows = tx.connection.execute(
        select(case_members.c.message_id, cases.c.number, cases.c.status)
        .join(cases, cases.c.id == case_members.c.case_id)
        .where(case_members.c.message_id.in_(sorted(set(message_ids))))
    ).all()
    return {int(row.message_id): (str(row.number), str(row.status)) for row in rows}


def caseless_after(tx: Transaction, after: int, limit: int) -> list[MessageRow]:
    """At most ``limit`` messages with an id above ``after`` that are in no case, by id."""
    rows = tx.connection.execute(
        select(messages)
        .outerjoin(case_members, case_members.c.message_id == messages.c.id)
        .where(messages.c.id > after, case_members.c.case_id.is_(None))
        .order_by(messages.c.id)
        .limit(limit)
    ).all()
    return [message_of(row._mapping) for row in rows]


def get(tx: Transaction, case_id: int) -> Case | None:
    row = tx.connection.execute(select(cases).where(cases.c.id == case_id)).first()
    return None if row is None else _case(row._mapping, _count(tx, case_id))


def by_number(tx: Transaction, number: str) -> Case | None:
    row = tx.connection.execute(select(cases).where(cases.c.number == number)).first()
    return None if row is None else _case(row._mapping, _count(tx, int(row.id)))


def listed(
    tx: Transaction,
    *,
    desks: frozenset[str] | None = None,
    desk: str | None = None,
    status: str | None = None,
    limit: int = LIST_LIMIT,
) -> list[Case]:
    """Cases newest first, with their member counts; ``desks``: only those (None: every desk).
    Each listed case's members are counted in its own range of ix_case_members_case: a count
    of every case's members would read all the memberships the ledger holds, for each page."""
    counted = (
        select(func.count())
        .where(case_members.c.case_id == cases.c.id)
        .correlate(cases)
        .scalar_subquery()
    )
    query = select(cases, counted.label("members")).order_by(cases.c.id.desc()).limit(limit)
    if desks is not None:
        query = query.where(cases.c.desk.in_(sorted(desks)))
    if desk is not None:
        query = query.where(cases.c.desk == desk)
    if status is not None:
        query = query.where(cases.c.status == status)
    return [_case(row._mapping, int(row.members)) for row in tx.connection.execute(query)]


def members(tx: Transaction, case_id: int) -> list[Member]:
    """The case's messages, oldest first (metadata only)."""
    rows = tx.connection.execute(
        select(
            case_members.c.message_id,
            case_members.c.how,
            case_members.c.by_user,
            case_members.c.at,
            messages.c.direction,
            messages.c.partner,
            messages.c.form,
            messages.c.reference,
            messages.c.desk,
            messages.c.created_at,
            messages.c.channel,
        )
        .join(messages, messages.c.id == case_members.c.message_id)
        .where(case_members.c.case_id == case_id)
        .order_by(messages.c.created_at, messages.c.id)
    ).all()
    return [
        Member(
            message_id=int(row.message_id),
            how=row.how,
            by=row.by_user,
            at=as_utc(row.at),
            direction=row.direction,
            partner=row.partner,
            form=row.form,
            reference=row.reference,
            desk=row.desk,
            created_at=as_utc(row.created_at),
            channel=row.channel,
        )
        for row in rows
    ]


def timeline(tx: Transaction, case_id: int) -> list[CaseEvent]:
    rows = tx.connection.execute(
        select(case_events).where(case_events.c.case_id == case_id).order_by(case_events.c.id)
    ).all()
    return [
        CaseEvent(
            at=as_utc(row.at),
            kind=row.kind,
            actor=row.actor,
            reason=row.reason,
            message_id=row.message_id,
            other_case=row.other_case,
        )
        for row in rows
    ]


def _count(tx: Transaction, case_id: int) -> int:
    return int(
        tx.connection.execute(
            select(func.count()).where(case_members.c.case_id == case_id)
        ).scalar_one()
    )


def _case(row: Any, members_count: int) -> Case:
    closed = row["closed_at"]
    return Case(
        id=int(row["id"]),
        number=row["number"],
        desk=row["desk"],
        status=row["status"],
        title=row["title"],
        opened_at=as_utc(row["opened_at"]),
        closed_at=None if closed is None else as_utc(closed),
        closed_by=row["closed_by"],
        merged_into=row["merged_into"],
        members=members_count,
    )

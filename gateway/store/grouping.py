"""The automatic grouping of a message into a case, inside the transaction that records it.

Bounded cost, indexed exact lookups only, in this order:
1. a reply (InReplyTo) joins the case of the message it answers (same partner, either direction;
   a closed case is reopened); when that message is in no case, a case is opened for both;
2. else each SIS alert, Interpol notice or national case reference of the form (the search
   index's ``reference`` entries; a national reference counts with the same partner only), in
   the form's order, finds the lowest open case holding it, which the message joins;
3. else the messages in no case yet holding one of those references (the first reference that
   has any; at most CASELESS_LIMIT of them, the oldest) form a new case with it.
Steps 2 and 3 read one statement (gateway.store.case_refs.holders: per reference, one index
range for its open case and one for its messages in no case), whatever the number of holders.
A message related to nothing stays in no case (its references are recorded as held by a
message in none, for step 3 of the messages to come). A fault here never refuses the message:
the caller runs ``group_safely_in``: undone, logged, and `gateway cases regroup` catches up.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import bindparam, select

from gateway.core.vocabulary import RECEIPT_FORM
from gateway.store import case_refs, case_rows
from gateway.store.case_refs import REFERENCE_KIND
from gateway.store.case_rows import (
    ALERT_REFERENCE,
    CLOSED,
    GROUPER,
    NATIONAL_REFERENCE,
    OPEN,
    REPLY_CHAIN,
)
from gateway.store.ledger import case_members, cases, messages
from gateway.store.unit import Transaction, savepoint, say_to_sqlite

log = logging.getLogger("gateway.cases")

# The registers of references that group, and how a message grouped by each came in.
GROUPING_ROLES = {
    "sis-alert": ALERT_REFERENCE,
    "interpol-notice": ALERT_REFERENCE,
    "national-case": NATIONAL_REFERENCE,
}
CASELESS_LIMIT = 20  # messages in no case gathered into a new one at most


@dataclass(frozen=True)
class ToGroup:
    """What the grouping reads of a message just recorded."""

    id: int
    partner: str
    form: str
    reference: str
    in_reply_to: str | None
    desk: str | None
    references: Sequence[tuple[str, str]] = field(default=())  # (role, key) of its references


# The message a reply answers, with its case (if any): by the index on messages.reference.
_ANSWERED = (
    select(messages.c.id, messages.c.desk, messages.c.form, case_members.c.case_id, cases.c.status)
    .outerjoin(case_members, case_members.c.message_id == messages.c.id)
    .outerjoin(cases, cases.c.id == case_members.c.case_id)
    .where(
        messages.c.reference == bindparam("reference"),
        messages.c.partner == bindparam("partner"),
        messages.c.id != bindparam("self"),
        messages.c.form != RECEIPT_FORM,
    )
    .order_by(messages.c.id)
    .limit(1)
)


def grouping_references(entries: Sequence[tuple[str, str, str]]) -> list[tuple[str, str]]:
    """Of (kind, role, key) index entries, the (role, key) pairs that group, once each."""
    found = dict.fromkeys(
        (role, key)
        for kind, role, key in entries
        if kind == REFERENCE_KIND and role in GROUPING_ROLES and key
    )
    return list(found)


@dataclass(frozen=True)
class Decision:
    """What the reads decided: join ``case_id`` (reopening it if closed), or open a case with
    ``fellows`` (ids of messages in no case yet) and the message."""

    how: str
    reason: str
    case_id: int | None = None
    reopen: bool = False
    desk: str | None = None
    title: str = ""
    fellows: tuple[int, ...] = ()


def group_safely_in(tx: Transaction, message: ToGroup, now: datetime) -> int | None:
    """``group_in``, whose fault is logged (ledger id and error class only) and undone: the
    message stays in no case and the transaction goes on. A message with neither InReplyTo nor
    a grouping reference costs nothing. The writes run in a savepoint; so do the reads on
    PostgreSQL (where a failed statement aborts the transaction; on SQLite it does not, and a
    savepoint costs more than the reads)."""
    if message.form == RECEIPT_FORM or not (message.in_reply_to or message.references):
        return None
    try:
        if tx.dialect == "sqlite":
            decision = decide(tx, message)
            if decision is None:
                _in_none(tx, message)
                return None
            with _sqlite_savepoint(tx):
                return apply_in(tx, message, decision, now)
        with savepoint(tx, "grouping"):
            return group_in(tx, message, now)
    except Exception as error:
        log.error(
            "ledger %d not grouped into a case: %s (gateway cases regroup catches up)",
            message.id,
            type(error).__name__,
        )
        return None


@contextlib.contextmanager
def _sqlite_savepoint(tx: Transaction) -> Iterator[None]:
    """gateway.store.unit.savepoint, said to SQLite's own connection: the writer's connection is
    in autocommit mode (its BEGIN IMMEDIATE and COMMIT are the store's), and SQLAlchemy's
    execution path cost more than the two inserts it guards (about 40 us a statement)."""
    say_to_sqlite(tx.connection, "SAVEPOINT grouping")
    try:
        yield
    except BaseException:
        say_to_sqlite(tx.connection, "ROLLBACK TO SAVEPOINT grouping")
        say_to_sqlite(tx.connection, "RELEASE SAVEPOINT grouping")
        raise
    say_to_sqlite(tx.connection, "RELEASE SAVEPOINT grouping")


def group_in(tx: Transaction, message: ToGroup, now: datetime) -> int | None:
    """Put the message into its case, if it has one; returns the case's id or None."""
    decision = decide(tx, message)
    if decision is None:
        _in_none(tx, message)
        return None
    return apply_in(tx, message, decision, now)


def _in_none(tx: Transaction, message: ToGroup) -> None:
    """The message's references recorded as held by a message in no case (one statement)."""
    if message.references and message.form != RECEIPT_FORM:
        case_refs.place_in(tx, [message.id], None)


def decide(tx: Transaction, message: ToGroup) -> Decision | None:
    """Where the message belongs, by reads only; None: in no case."""
    if message.form == RECEIPT_FORM:
        return None
    if message.in_reply_to:
        found = _by_reply(tx, message)
        if found is not None:
            return found
    if message.references:
        return _by_references(tx, message)
    return None


def apply_in(tx: Transaction, message: ToGroup, decision: Decision, now: datetime) -> int:
    """The decision written: memberships, the case opened or reopened, timeline events."""
    if decision.case_id is not None:
        case_id = decision.case_id
        if decision.reopen and case_rows.set_status_in(tx, case_id, CLOSED, OPEN, now):
            case_rows.event_in(
                tx, case_id, "reopened", GROUPER, decision.reason, now=now, message_id=message.id
            )
    else:
        case_id = case_rows.open_in(
            tx,
            desk=decision.desk,
            title=decision.title,
            actor=GROUPER,
            reason=decision.reason,
            now=now,
        )
    case_rows.link_in(
        tx,
        case_id,
        [*decision.fellows, message.id],
        how=decision.how,
        by=GROUPER,
        reason=decision.reason,
        now=now,
    )
    return case_id


def _by_references(tx: Transaction, message: ToGroup) -> Decision | None:
    references = list(message.references)
    found = case_refs.holders(tx, references, message.partner, message.id, limit=CASELESS_LIMIT)
    for index, (role, _) in enumerate(references):  # the form's order: its first one leads
        open_cases = [held.case_id for held in found if held.reference_index == index]
        if case_id := min((case for case in open_cases if case is not None), default=None):
            return Decision(GROUPING_ROLES[role], f"same {role} reference", case_id)
    for index, (role, _) in enumerate(references):
        caseless = sorted(
            (held for held in found if held.reference_index == index and held.case_id is None),
            key=lambda held: held.message_id,
        )
        if caseless:
            first = caseless[0]
            return Decision(
                GROUPING_ROLES[role],
                f"same {role} reference",
                desk=first.desk or message.desk,
                title=f"{first.form} {first.reference}",
                fellows=tuple(held.message_id for held in caseless),
            )
    return None


def _by_reply(tx: Transaction, message: ToGroup) -> Decision | None:
    answered = tx.connection.execute(
        _ANSWERED,
        {"reference": message.in_reply_to, "partner": message.partner, "self": message.id},
    ).first()
    if answered is None:
        return None
    reason = f"reply to {message.in_reply_to}"
    if answered.case_id is not None:
        return Decision(
            REPLY_CHAIN, reason, int(answered.case_id), reopen=answered.status == CLOSED
        )
    return Decision(
        REPLY_CHAIN,
        reason,
        desk=answered.desk or message.desk,
        title=f"{answered.form} {message.in_reply_to}",
        fellows=(int(answered.id),),
    )

"""The automatic grouping of a message into a case, inside the transaction that records it.

Bounded cost, indexed exact lookups only, in this order:
1. a reply (InReplyTo) joins the case of the message it answers (same partner, either direction;
   a closed case is reopened); when that message is in no case, a case is opened for both;
2. else each SIS alert, Interpol notice or national case reference of the form (the search
   index's ``reference`` entries, by the index on (kind, key); a national reference counts with
   the same partner only) finds an open case holding it, which the message joins;
3. else messages holding one of those references and in no case yet form a new case with it.
A message related to nothing stays in no case. A fault here never refuses the message: the
caller runs ``group_in`` in a savepoint, logs, and `gateway cases regroup` catches up.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, bindparam, select

from gateway.core.vocabulary import RECEIPT_FORM
from gateway.store import case_rows
from gateway.store.case_rows import (
    ALERT_REFERENCE,
    CLOSED,
    GROUPER,
    NATIONAL_REFERENCE,
    OPEN,
    REPLY_CHAIN,
)
from gateway.store.ledger import case_members, cases, messages, search_entries
from gateway.store.unit import Transaction, savepoint

log = logging.getLogger("gateway.cases")

REFERENCE_KIND = "reference"  # gateway.forms.entities.REFERENCE
# The registers of references that group, and how a message grouped by each came in.
GROUPING_ROLES = {
    "sis-alert": ALERT_REFERENCE,
    "interpol-notice": ALERT_REFERENCE,
    "national-case": NATIONAL_REFERENCE,
}
PARTNER_BOUND = frozenset({"national-case"})  # national references are unique per country only
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


def _holding(*, partner_bound: bool, in_case: bool) -> Select[Any]:
    """The statement for the messages holding a reference: in an open case (its id), or in none."""
    held = and_(
        search_entries.c.kind == REFERENCE_KIND,
        search_entries.c.key == bindparam("key"),
        search_entries.c.role == bindparam("role"),
        search_entries.c.message_id != bindparam("self"),
    )
    if partner_bound:
        held = and_(held, search_entries.c.partner == bindparam("partner"))
    if in_case:
        return (
            select(cases.c.id)
            .select_from(search_entries)
            .join(case_members, case_members.c.message_id == search_entries.c.message_id)
            .join(cases, cases.c.id == case_members.c.case_id)
            .where(held, cases.c.status == OPEN)
            .order_by(cases.c.id)
            .limit(1)
        )
    return (
        select(search_entries.c.message_id, messages.c.desk, messages.c.form, messages.c.reference)
        .join(messages, messages.c.id == search_entries.c.message_id)
        .outerjoin(case_members, case_members.c.message_id == search_entries.c.message_id)
        .where(held, case_members.c.case_id.is_(None), messages.c.form != RECEIPT_FORM)
        .order_by(search_entries.c.message_id)
        .limit(CASELESS_LIMIT)
    )


_OPEN_HOLDING = {bound: _holding(partner_bound=bound, in_case=True) for bound in (False, True)}
_CASELESS_HOLDING = {bound: _holding(partner_bound=bound, in_case=False) for bound in (False, True)}


def grouping_references(entries: Sequence[tuple[str, str, str]]) -> list[tuple[str, str]]:
    """Of (kind, role, key) index entries, the (role, key) pairs that group, once each."""
    found = dict.fromkeys(
        (role, key)
        for kind, role, key in entries
        if kind == REFERENCE_KIND and role in GROUPING_ROLES and key
    )
    return list(found)


def group_safely_in(tx: Transaction, message: ToGroup, now: datetime) -> int | None:
    """``group_in`` in a savepoint: a fault is logged (ledger id and error class only) and undone,
    the message stays in no case and the transaction goes on."""
    try:
        with savepoint(tx, "grouping"):
            return group_in(tx, message, now)
    except Exception as error:
        log.error(
            "ledger %d not grouped into a case: %s (gateway cases regroup catches up)",
            message.id,
            type(error).__name__,
        )
        return None


def group_in(tx: Transaction, message: ToGroup, now: datetime) -> int | None:
    """Put the message into its case, if it has one; returns the case's id or None."""
    if message.form == RECEIPT_FORM:
        return None
    if message.in_reply_to:
        joined = _by_reply(tx, message, now)
        if joined is not None:
            return joined
    for role, key in message.references:
        found = tx.connection.execute(
            _OPEN_HOLDING[role in PARTNER_BOUND],
            {"key": key, "role": role, "self": message.id, "partner": message.partner},
        ).scalar()
        if found is not None:
            how = GROUPING_ROLES[role]
            _join(tx, int(found), message.id, how, f"same {role} reference", now=now)
            return int(found)
    for role, key in message.references:
        rows = tx.connection.execute(
            _CASELESS_HOLDING[role in PARTNER_BOUND],
            {"key": key, "role": role, "self": message.id, "partner": message.partner},
        ).all()
        if rows:
            how = GROUPING_ROLES[role]
            first = rows[0]
            case_id = case_rows.open_in(
                tx,
                desk=first.desk or message.desk,
                title=f"{first.form} {first.reference}",
                actor=GROUPER,
                reason=f"messages with the same {role} reference",
                now=now,
            )
            reason = f"same {role} reference"
            for holder in dict.fromkeys(int(row.message_id) for row in rows):
                _join(tx, case_id, holder, how, reason, now=now)
            _join(tx, case_id, message.id, how, reason, now=now)
            return case_id
    return None


def _by_reply(tx: Transaction, message: ToGroup, now: datetime) -> int | None:
    answered = tx.connection.execute(
        _ANSWERED,
        {"reference": message.in_reply_to, "partner": message.partner, "self": message.id},
    ).first()
    if answered is None:
        return None
    reason = f"reply to {message.in_reply_to}"
    if answered.case_id is not None:
        case_id = int(answered.case_id)
        if answered.status == CLOSED and case_rows.set_status_in(tx, case_id, CLOSED, OPEN, now):
            case_rows.event_in(
                tx, case_id, "reopened", GROUPER, reason, now=now, message_id=message.id
            )
        _join(tx, case_id, message.id, REPLY_CHAIN, reason, now=now)
        return case_id
    case_id = case_rows.open_in(
        tx,
        desk=answered.desk or message.desk,
        title=f"{answered.form} {message.in_reply_to}",
        actor=GROUPER,
        reason=reason,
        now=now,
    )
    _join(tx, case_id, int(answered.id), REPLY_CHAIN, reason, now=now)
    _join(tx, case_id, message.id, REPLY_CHAIN, reason, now=now)
    return case_id


def _join(
    tx: Transaction, case_id: int, message_id: int, how: str, reason: str, *, now: datetime
) -> None:
    case_rows.add_member_in(tx, case_id, message_id, how, GROUPER, now=now)
    case_rows.event_in(tx, case_id, "linked", GROUPER, reason, now=now, message_id=message_id)

"""The grouping's look-up table (case_references): each grouping reference of each message with
the state of its case, kept with the membership and the case's status; and its two reads, the
open case holding a reference (one index probe) and the messages in no case holding it (one
bounded range of the same index).

A message's rows are copied from its search index entries (kind ``reference``, a grouping role,
not a receipt) when it is grouped, linked or left in no case by the grouping; unlinking, merging,
closing and reopening change their state; shredding and a rebuild of the search index remove
or make them again. The decisions are gateway.store.grouping's."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Integer, bindparam, select, text

from gateway.store.ledger import case_references, messages
from gateway.store.unit import Transaction

OPEN, NONE = "open", "none"  # states of a holder's case: open, closed, none (in no case)
REFERENCE_KIND = "reference"  # gateway.forms.entities.REFERENCE
# The registers of references that group (the roles of the search index's reference entries).
GROUPING_ROLE_NAMES = ("sis-alert", "interpol-notice", "national-case")
PARTNER_BOUND = frozenset({"national-case"})  # national references are unique per country only

# The rows of one message's grouping references, as its search index entries give them (the
# roles of GROUPING_ROLE_NAMES, the partner kept for those of PARTNER_BOUND, receipts: form
# ``ACK``, gateway.core.vocabulary.RECEIPT_FORM, left out), in ``case_id`` (its state read from
# the case) or in none (null).
_PLACE = text(
    "INSERT INTO case_references (message_id, role, key, partner, state, case_id)"
    " SELECT DISTINCT s.message_id, s.role, s.key,"
    " CASE WHEN s.role = 'national-case' THEN s.partner ELSE '' END,"
    " COALESCE((SELECT status FROM cases WHERE id = :case_id), 'none'), CAST(:case_id AS INTEGER)"
    " FROM search_entries s"
    " WHERE s.message_id = :message_id AND s.kind = 'reference'"
    " AND s.role IN ('sis-alert', 'interpol-notice', 'national-case')"
    " AND s.form <> 'ACK' AND s.key <> ''"
    " ON CONFLICT (message_id, role, key)"
    " DO UPDATE SET state = excluded.state, case_id = excluded.case_id"
).bindparams(bindparam("case_id", type_=Integer), bindparam("message_id", type_=Integer))
# Every message's rows, from the index and the membership (revision 0016 runs the same).
_REFILL = text(
    "INSERT INTO case_references (message_id, role, key, partner, state, case_id)"
    " SELECT DISTINCT s.message_id, s.role, s.key,"
    " CASE WHEN s.role = 'national-case' THEN s.partner ELSE '' END,"
    " COALESCE(c.status, 'none'), m.case_id"
    " FROM search_entries s"
    " LEFT JOIN case_members m ON m.message_id = s.message_id"
    " LEFT JOIN cases c ON c.id = m.case_id"
    " WHERE s.kind = 'reference'"
    " AND s.role IN ('sis-alert', 'interpol-notice', 'national-case')"
    " AND s.form <> 'ACK' AND s.key <> ''"
)
_UNPLACE = text(
    "UPDATE case_references SET state = 'none', case_id = NULL WHERE message_id = :message_id"
)
_MOVE = text(
    "UPDATE case_references SET case_id = :target,"
    " state = COALESCE((SELECT status FROM cases WHERE id = :target), 'none')"
    " WHERE case_id = :source"
)
_STATUS = text("UPDATE case_references SET state = :status WHERE case_id = :case_id")
_FORGET = text("DELETE FROM case_references WHERE message_id = :message_id")

_WHERE = (
    case_references.c.role == bindparam("role"),
    case_references.c.key == bindparam("key"),
    case_references.c.partner == bindparam("partner"),
    case_references.c.message_id != bindparam("self"),
)
# The lowest open case holding a reference: the first entry of one range of the index.
_OPEN_CASE = (
    select(case_references.c.case_id)
    .where(*_WHERE, case_references.c.state == OPEN)
    .order_by(case_references.c.case_id)
    .limit(1)
)
# The first messages in no case holding a reference, by id: (case_id null, message_id) is the
# order of the index within the range, so no more than ``limit`` entries are read.
_CASELESS = (
    select(
        case_references.c.message_id,
        messages.c.desk,
        messages.c.form,
        messages.c.reference,
    )
    .join(messages, messages.c.id == case_references.c.message_id)
    .where(*_WHERE, case_references.c.state == NONE)
    .order_by(case_references.c.case_id, case_references.c.message_id)
    .limit(bindparam("limit", type_=Integer))
)


@dataclass(frozen=True)
class Holder:
    """A message in no case holding a reference: what a new case around it is named after."""

    message_id: int
    desk: str | None
    form: str
    reference: str


def partner_of(role: str, partner: str) -> str:
    """The partner a reference of ``role`` is looked up with ('' unless partner-bound)."""
    return partner if role in PARTNER_BOUND else ""


def open_case(tx: Transaction, role: str, key: str, partner: str, self_id: int) -> int | None:
    """The lowest open case holding (role, key) by another message than ``self_id``."""
    found = tx.connection.execute(
        _OPEN_CASE,
        {"role": role, "key": key, "partner": partner_of(role, partner), "self": self_id},
    ).scalar()
    return None if found is None else int(found)


def caseless(
    tx: Transaction, role: str, key: str, partner: str, self_id: int, *, limit: int
) -> list[Holder]:
    """At most ``limit`` messages in no case (other than ``self_id``) holding (role, key), by id."""
    rows = tx.connection.execute(
        _CASELESS,
        {
            "role": role,
            "key": key,
            "partner": partner_of(role, partner),
            "self": self_id,
            "limit": limit,
        },
    ).all()
    return [Holder(int(row.message_id), row.desk, row.form, row.reference) for row in rows]


def place_in(tx: Transaction, message_ids: Sequence[int], case_id: int | None) -> None:
    """These messages' rows, made again from their index entries, in ``case_id`` (None: in no
    case), with the case's current status."""
    if not message_ids:
        return
    rows = [{"message_id": message_id, "case_id": case_id} for message_id in message_ids]
    tx.connection.execute(_PLACE, rows if len(rows) > 1 else rows[0])


def unplace_in(tx: Transaction, message_id: int) -> None:
    """The message left its case: its rows are in none."""
    tx.connection.execute(_UNPLACE, {"message_id": message_id})


def move_in(tx: Transaction, source: int, target: int) -> None:
    """The rows of ``source``'s members now ``target``'s, with its status."""
    tx.connection.execute(_MOVE, {"source": source, "target": target})


def status_in(tx: Transaction, case_id: int, status: str) -> None:
    """The case's status changed: its members' rows say so."""
    tx.connection.execute(_STATUS, {"status": status, "case_id": case_id})


def forget_in(tx: Transaction, message_id: int) -> None:
    """The message's index entries are gone (shredded): so are its rows."""
    tx.connection.execute(_FORGET, {"message_id": message_id})


def refill_in(tx: Transaction) -> int:
    """Every row made again from the search index and the membership (after a rebuild of the
    index); returns how many."""
    tx.connection.execute(case_references.delete())
    return int(tx.connection.execute(_REFILL).rowcount)

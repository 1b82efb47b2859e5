"""The grouping's look-up table (case_references): each grouping reference of each message with
the state of its case, kept with the membership and the case's status; and its two reads, the
open case holding a reference (one index probe) and the messages in no case holding it (one
bounded range of the same index).

A message's rows are copied from its search index entries (kind ``reference``, a grouping role,
not a receipt) when it is grouped, linked or left in no case by the grouping; unlinking, merging,
closing and reopening change their state; shredding and a rebuild of the search index remove
or make them again. The decisions are gateway.store.grouping's."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import CompoundSelect, Integer, bindparam, literal_column, select, text, union_all
from sqlalchemy.dialects import sqlite

from gateway.store.ledger import case_references, messages
from gateway.store.unit import Transaction, say_to_sqlite

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

SLOTS = 4  # references looked up by one statement (a message with more: one per SLOTS)


@functools.cache
def _holders(count: int) -> CompoundSelect[Any]:
    """For each of ``count`` references (role{n}, key{n}, partner{n}): the lowest open case
    holding it, and the first ``limit`` messages in no case holding it, by id; each one range
    of ix_case_references_lookup read from its start (no more entries than it returns), all in
    one statement (a round trip and an execution each cost more than these reads)."""
    parts = []
    for slot in range(count):
        for state, limit in ((OPEN, 1), (NONE, None)):
            part = (
                select(
                    literal_column(str(slot), Integer).label("slot"),
                    case_references.c.state,
                    case_references.c.case_id,
                    case_references.c.message_id,
                    messages.c.desk,
                    messages.c.form,
                    messages.c.reference,
                )
                .join(messages, messages.c.id == case_references.c.message_id)
                .where(
                    case_references.c.role == bindparam(f"role{slot}"),
                    case_references.c.key == bindparam(f"key{slot}"),
                    case_references.c.partner == bindparam(f"partner{slot}"),
                    case_references.c.state == state,
                    case_references.c.message_id != bindparam("self"),
                )
                # (case_id, message_id) is the index's order within the range (case_id is null
                # for the messages in no case, which come by id).
                .order_by(case_references.c.case_id, case_references.c.message_id)
                .limit(limit if limit is not None else bindparam("limit", type_=Integer))
                .subquery()
            )
            parts.append(select(part))
    return union_all(*parts)


@dataclass(frozen=True)
class Holder:
    """A message holding a reference: in the open case ``case_id``, or in none (None)."""

    reference_index: int  # which of the references looked up it holds
    case_id: int | None
    message_id: int
    desk: str | None
    form: str
    reference: str


def partner_of(role: str, partner: str) -> str:
    """The partner a reference of ``role`` is looked up with ('' unless partner-bound)."""
    return partner if role in PARTNER_BOUND else ""


def holders(
    tx: Transaction,
    references: Sequence[tuple[str, str]],
    partner: str,
    self_id: int,
    *,
    limit: int,
) -> list[Holder]:
    """Of each (role, key) of ``references`` held by other messages than ``self_id`` (of
    ``partner`` for a partner-bound one): the holder in the lowest open case, and the first
    ``limit`` holders in no case, by id. At most len(references) * (1 + limit) rows, read by
    one statement per SLOTS references."""
    found: list[Holder] = []
    for start in range(0, len(references), SLOTS):
        chunk = references[start : start + SLOTS]
        values: dict[str, object] = {"self": self_id, "limit": limit}
        for slot, (role, key) in enumerate(chunk):
            values |= {
                f"role{slot}": role,
                f"key{slot}": key,
                f"partner{slot}": partner_of(role, partner),
            }
        if tx.dialect == "sqlite":  # in every grouping: said to the driver, as place_in is
            sql, fixed = _holders_on_sqlite(len(chunk))
            rows = say_to_sqlite(tx.connection, sql, {**fixed, **values}).fetchall()
        else:
            rows = list(tx.connection.execute(_holders(len(chunk)), values))
        # (slot, state, case_id, message_id, desk, form, reference)
        found += [
            Holder(
                start + int(row[0]),
                None if row[1] == NONE else int(row[2]),
                int(row[3]),
                row[4],
                row[5],
                row[6],
            )
            for row in rows
        ]
    return found


@functools.cache
def _holders_on_sqlite(count: int) -> tuple[str, dict[str, object]]:
    """``_holders(count)`` as SQLite's own statement (its :named parameters), and the values
    SQLAlchemy binds for it itself (the states, the limits and offsets it renders as
    parameters). No column of it has a bind or result processor on SQLite (text and
    integers)."""
    compiled = _holders(count).compile(dialect=sqlite.dialect(paramstyle="named"))
    return str(compiled), dict(compiled.params)


def place_in(tx: Transaction, message_ids: Sequence[int], case_id: int | None) -> None:
    """These messages' rows, made again from their index entries, in ``case_id`` (None: in no
    case), with the case's current status. On SQLite the statement is said to the driver (its
    named parameters are SQLite's own)."""
    if not message_ids:
        return
    rows = [{"message_id": message_id, "case_id": case_id} for message_id in message_ids]
    if tx.dialect == "sqlite":  # in every grouping: SQLAlchemy's execution cost more than it
        say_to_sqlite(tx.connection, _PLACE.text, rows)
        return
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

"""The cross-check's record: the hits found for an arriving message written with its hand-off
(with the earlier messages each gathered), read for its message view, and deleted or counted
down with the retention purge of a message they describe."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Delete,
    Insert,
    Integer,
    Select,
    Update,
    and_,
    bindparam,
    case,
    delete,
    insert,
    literal_column,
    or_,
    select,
    union,
    update,
)

from gateway.store.crosscheck_walk import EarlierHit
from gateway.store.ledger import (
    as_utc,
    case_members,
    crosscheck_gathered,
    crosscheck_hits,
    search_entries,
)
from gateway.store.unit import Transaction

_OF_MESSAGE = (
    select(crosscheck_hits)
    .where(crosscheck_hits.c.message_id == bindparam("message_id"))
    .order_by(crosscheck_hits.c.id)
)


@functools.lru_cache(maxsize=64)
def _record(gathered: tuple[bool, ...]) -> Insert:
    """The hits of one message recorded as the index holds them, copied by the database from
    their entries, in the order found; those ``gathered`` with how many messages each stands
    for and the first of them (the others: one, their own); each with the case its message
    is in (plain parameters, not an expanding IN: rendered once per shape)."""
    entries = [bindparam(f"entry{number}", type_=Integer) for number in range(len(gathered))]
    several = [n for n, many in enumerate(gathered) if many]
    messages: ColumnElement[Any] = literal_column("1")
    first: ColumnElement[Any] = search_entries.c.message_id
    if several:
        messages = case(
            *((search_entries.c.id == entries[n], bindparam(f"messages{n}")) for n in several),
            else_=messages,
        )
        first = case(
            *((search_entries.c.id == entries[n], bindparam(f"first{n}")) for n in several),
            else_=first,
        )
    order = case(
        *((search_entries.c.id == entry, literal_column(str(n))) for n, entry in enumerate(entries))
    )
    return crosscheck_hits.insert().from_select(
        [
            "message_id",
            "earlier_id",
            "kind",
            "role",
            "shown",
            "born",
            "earlier_direction",
            "earlier_partner",
            "earlier_desk",
            "earlier_form",
            "earlier_at",
            "created_at",
            "messages",
            "earlier_first",
            "earlier_case_id",
            "key",
        ],
        select(
            bindparam("message_id", type_=crosscheck_hits.c.message_id.type),
            search_entries.c.message_id,
            search_entries.c.kind,
            search_entries.c.role,
            search_entries.c.shown,
            search_entries.c.born,
            search_entries.c.direction,
            search_entries.c.partner,
            search_entries.c.desk,
            search_entries.c.form,
            search_entries.c.created_at,
            bindparam("now", type_=crosscheck_hits.c.created_at.type),
            messages,
            first,
            case_members.c.case_id,
            search_entries.c.key,
        )
        .outerjoin(case_members, case_members.c.message_id == search_entries.c.message_id)
        .where(search_entries.c.id.in_(entries))
        .order_by(order),  # as found: the order a message view reads them back in
    )


def _gathering(born: bool) -> Select[Any]:
    """The earlier messages each hit of a message gathers (with or without a date of birth):
    those of its case and desk holding its key, from its first to its latest; a walk of
    ix_search_entries_kind_key_born a hit."""
    hits, entries = crosscheck_hits, search_entries
    return (
        select(hits.c.id, entries.c.message_id)
        .join_from(
            hits,
            entries,
            and_(
                entries.c.kind == hits.c.kind,
                entries.c.key == hits.c.key,
                entries.c.born == hits.c.born if born else entries.c.born.is_(None),
                entries.c.message_id >= hits.c.earlier_first,
                entries.c.message_id <= hits.c.earlier_id,
            ),
        )
        .join(
            case_members,
            and_(
                case_members.c.message_id == entries.c.message_id,
                case_members.c.case_id == hits.c.earlier_case_id,
            ),
        )
        .where(
            hits.c.message_id == bindparam("message_id"),
            hits.c.messages > 1,
            hits.c.born.is_not(None) if born else hits.c.born.is_(None),
            or_(
                entries.c.desk == hits.c.earlier_desk,
                and_(entries.c.desk.is_(None), hits.c.earlier_desk.is_(None)),
            ),
        )
    )


# What the hits of a message just recorded gather (a message holding a key twice: once).
_GATHER: Insert = insert(crosscheck_gathered).from_select(
    ["hit_id", "message_id"], union(_gathering(True), _gathering(False))
)


def add_in(
    tx: Transaction, hits_by_message: Sequence[tuple[int, Sequence[EarlierHit]]], now: datetime
) -> None:
    """Record the hits of these messages inside ``tx``, from the index entries they were found
    by (as they hold them now): one statement a message, and one more for a message with hits
    standing for several earlier messages, which records those messages."""
    for message_id, hits in hits_by_message:
        found = [hit for hit in hits if hit.entry]
        if not found:
            continue
        values: dict[str, object] = {"message_id": message_id, "now": now}
        for number, hit in enumerate(found):
            values[f"entry{number}"] = hit.entry
            if hit.messages > 1:  # only these bind their count and first
                values[f"messages{number}"] = hit.messages
                values[f"first{number}"] = hit.earlier_first
        gathered = tuple(hit.messages > 1 for hit in found)
        tx.connection.execute(_record(gathered), values)
        if any(gathered):
            tx.connection.execute(_GATHER, {"message_id": message_id})


def of_message(tx: Transaction, message_id: int) -> list[EarlierHit]:
    """The hits recorded for a message, in the order they were found."""
    rows = tx.connection.execute(_OF_MESSAGE, {"message_id": message_id}).all()
    return [
        EarlierHit(
            row.kind,
            row.role,
            row.shown,
            row.born,
            row.earlier_id,
            row.earlier_direction,
            row.earlier_partner,
            row.earlier_desk,
            row.earlier_form,
            as_utc(row.earlier_at),
            row.messages,
            row.earlier_first,
            row.earlier_case_id,
        )
        for row in rows
    ]


def delete_of_message_in(tx: Transaction, message_id: int) -> int:
    """Delete the hits of a message and those that describe it (its retention ended): a hit
    whose latest message it is goes; one that gathered it among earlier messages of its case
    counts one fewer, whatever case the message is in now (its record says which)."""
    values = {"gone": message_id}
    tx.connection.execute(_UNCOUNT, values)
    tx.connection.execute(_FORGET, values)
    return int(tx.connection.execute(_DELETE, values).rowcount or 0)


_GONE: BindParameter[int] = bindparam("gone", type_=Integer)
# The hits going with the purged message: its own, and those it is the latest of.
_GOING = or_(crosscheck_hits.c.message_id == _GONE, crosscheck_hits.c.earlier_id == _GONE)
# A hit that gathered the purged message among others and stays: one fewer.
_UNCOUNT: Update = (
    update(crosscheck_hits)
    .where(
        crosscheck_hits.c.id.in_(
            select(crosscheck_gathered.c.hit_id).where(crosscheck_gathered.c.message_id == _GONE)
        ),
        ~_GOING,
    )
    .values(messages=crosscheck_hits.c.messages - 1)
)
_FORGET: Delete = delete(crosscheck_gathered).where(
    or_(
        crosscheck_gathered.c.message_id == _GONE,
        crosscheck_gathered.c.hit_id.in_(select(crosscheck_hits.c.id).where(_GOING)),
    )
)
_DELETE: Delete = delete(crosscheck_hits).where(_GOING)

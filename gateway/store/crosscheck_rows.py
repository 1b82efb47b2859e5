"""The cross-check's record: the hits found for an arriving message written with its hand-off,
read for its message view, and deleted or counted down with the retention purge of a message
they describe."""

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
    Update,
    bindparam,
    case,
    delete,
    exists,
    literal_column,
    or_,
    select,
    update,
)

from gateway.store.crosscheck_walk import EarlierHit
from gateway.store.ledger import as_utc, case_members, crosscheck_hits, search_entries
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


def add_in(
    tx: Transaction, hits_by_message: Sequence[tuple[int, Sequence[EarlierHit]]], now: datetime
) -> None:
    """Record the hits of these messages inside ``tx``, from the index entries they were found
    by (as they hold them now): one statement a message."""
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
        tx.connection.execute(_record(tuple(hit.messages > 1 for hit in found)), values)


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
    whose latest message it is goes; one that counts it among earlier messages of its case
    counts one fewer. Run before its index entries go: they say which keys it held."""
    values = {"gone": message_id}
    tx.connection.execute(_UNCOUNT, values)
    return int(tx.connection.execute(_DELETE, values).rowcount or 0)


_GONE: BindParameter[int] = bindparam("gone", type_=Integer)
# A hit that counts the purged message among others (the same key, case, desk; between its
# first and its latest; recorded for a later message): one fewer. Its case as it is now.
_HELD = (
    exists()
    .where(
        search_entries.c.message_id == _GONE,
        search_entries.c.kind == crosscheck_hits.c.kind,
        search_entries.c.key == crosscheck_hits.c.key,
        or_(search_entries.c.born == crosscheck_hits.c.born, crosscheck_hits.c.born.is_(None)),
        search_entries.c.desk == crosscheck_hits.c.earlier_desk,
    )
    .correlate(crosscheck_hits)
)
_UNCOUNT: Update = (
    update(crosscheck_hits)
    .where(
        crosscheck_hits.c.messages > 1,
        crosscheck_hits.c.earlier_first <= _GONE,
        crosscheck_hits.c.earlier_id > _GONE,
        crosscheck_hits.c.earlier_case_id
        == select(case_members.c.case_id)
        .where(case_members.c.message_id == _GONE)
        .scalar_subquery(),
        _HELD,
    )
    .values(messages=crosscheck_hits.c.messages - 1)
)
_DELETE: Delete = delete(crosscheck_hits).where(
    or_(crosscheck_hits.c.message_id == _GONE, crosscheck_hits.c.earlier_id == _GONE)
)

"""The cross-check's hits: written with an arriving message's hand-off, read for its message
view, deleted with the retention purge of either message; the index keys of one message,
which the cross-check starts from, and the most recent earlier entries of one exact key."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeAlias

from sqlalchemy import (
    Insert,
    Integer,
    Row,
    Select,
    String,
    bindparam,
    case,
    delete,
    false,
    func,
    or_,
    select,
    type_coerce,
    union_all,
)

from gateway.store.ledger import as_utc, crosscheck_hits, search_entries
from gateway.store.unit import Transaction

_OF_MESSAGE = (
    select(crosscheck_hits)
    .where(crosscheck_hits.c.message_id == bindparam("message_id"))
    .order_by(crosscheck_hits.c.id)
)
_KEYS = select(search_entries.c.kind, search_entries.c.key, search_entries.c.born).where(
    search_entries.c.message_id == bindparam("message_id")
)
# What a hit shows of an index entry; the time as the driver gives it (SQLite: text, read by
# datetime.fromisoformat, many times cheaper than the DateTime type's own parsing).
_HIT_COLUMNS = (
    search_entries.c.id,
    search_entries.c.kind,
    search_entries.c.role,
    search_entries.c.shown,
    search_entries.c.born,
    search_entries.c.message_id,
    search_entries.c.direction,
    search_entries.c.partner,
    search_entries.c.desk,
    search_entries.c.form,
    type_coerce(search_entries.c.created_at, String).label("created_at"),
)


def _walk(number: int, born: bool) -> Select[Any]:
    """The most recent entries of key ``number`` (and its date of birth, or none) in messages
    recorded before one: a walk down the end of ix_search_entries_kind_key_born that reads the
    index alone (on SQLite the id is its rowid) and stops at the limit."""
    query = (
        select(
            search_entries.c.id,
            search_entries.c.message_id,
            search_entries.c.kind,
            search_entries.c.key,
        )
        .where(
            search_entries.c.kind == bindparam(f"kind{number}"),
            search_entries.c.key == bindparam(f"key{number}"),
            search_entries.c.message_id < bindparam("before"),
        )
        .order_by(search_entries.c.message_id.desc())
        .limit(bindparam("per_key"))
    )
    if born:
        return query.where(search_entries.c.born == bindparam(f"born{number}"))
    return query.where(search_entries.c.born.is_(None))


@functools.lru_cache(maxsize=256)
def _earlier(borns: tuple[bool, ...], last: tuple[str, ...]) -> Select[Any]:
    """Every key's walk in one statement, made once for each shape (which keys have a date of
    birth; the kinds that come last): one entry per earlier message and key, ranked, only the
    first ``most`` read whole."""
    walks = [_walk(number, born) for number, born in enumerate(borns)]
    every = (union_all(*(select(walk.subquery()) for walk in walks))).subquery("found")
    first = select(func.min(every.c.id)).group_by(every.c.message_id, every.c.kind, every.c.key)
    # Plain parameters, not an expanding IN: the statement is rendered once, not per call.
    later = [search_entries.c.kind == bindparam(f"last{n}", kind) for n, kind in enumerate(last)]
    rank = case((or_(false(), *later), 1), else_=0)
    return (
        select(*_HIT_COLUMNS)
        .where(search_entries.c.id.in_(first))
        .order_by(rank, search_entries.c.message_id.desc(), search_entries.c.id)
        .limit(bindparam("most"))
    )


@functools.lru_cache(maxsize=64)
def _record(count: int) -> Insert:
    """The hits of one message recorded as the index holds them, copied by the database from
    ``count`` entries (plain parameters, not an expanding IN: rendered once per count)."""
    entries = [bindparam(f"entry{number}", type_=Integer) for number in range(count)]
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
        ).where(search_entries.c.id.in_(entries)),
    )


# An index entry ``earlier`` read: its ``id``, ``message_id`` and what ``hit_of`` makes a hit of.
EarlierEntry: TypeAlias = Row[Any]


@dataclass(frozen=True)
class EarlierHit:
    """What an arriving message has in common with an earlier one (the same key): the earlier
    entry's kind, role and value as written (a person's date of birth), and the earlier
    message's place."""

    kind: str
    role: str
    shown: str
    born: str | None
    earlier_id: int
    earlier_direction: str
    earlier_partner: str
    earlier_desk: str | None
    earlier_form: str
    earlier_at: datetime
    # The index entry it was found by (0: read back from the record); not part of what it says.
    entry: int = field(default=0, compare=False)
    # The earlier message's case ("C2026-000042 (open)"), as it stands when the hit is shown.
    earlier_case: str | None = field(default=None, compare=False)


def keys_of(tx: Transaction, message_id: int) -> list[tuple[str, str, str | None]]:
    """(kind, key, date of birth) of the index entries written for a message at its
    acceptance."""
    rows = tx.connection.execute(_KEYS, {"message_id": message_id}).all()
    return [(str(row.kind), str(row.key), row.born) for row in rows]


def earlier(
    tx: Transaction,
    keys: Sequence[tuple[str, str, str | None]],
    *,
    before: int,
    per_key: int,
    most: int,
    last: Sequence[str] = (),
) -> Sequence[EarlierEntry]:
    """The entries of messages recorded before the message ``before`` that hold one of
    ``keys`` (kind, key, date of birth or None: entries without one): for each key its
    ``per_key`` most recent, one per earlier message and key, at most ``most`` of them: the
    kinds of ``last`` after the others, then the most recent first. Each with what
    ``hit_of`` makes a hit of."""
    if not keys:
        return []
    values: dict[str, object] = {"before": before, "per_key": per_key, "most": most}
    for number, (kind, key, born) in enumerate(keys):
        values.update({f"kind{number}": kind, f"key{number}": key, f"born{number}": born})
    statement = _earlier(tuple(born is not None for _, _, born in keys), tuple(sorted(last)))
    return list(tx.connection.execute(statement, values))


def hit_of(row: EarlierEntry) -> EarlierHit:
    """The hit an entry read by ``earlier`` makes: its value and its message's place."""
    entry, kind, role, shown, born, message_id, direction, partner, desk, form, at = tuple(row)
    return EarlierHit(
        kind=kind,
        role=role,
        shown=shown,
        born=born,
        earlier_id=message_id,
        earlier_direction=direction,
        earlier_partner=partner,
        earlier_desk=desk,
        earlier_form=form,
        earlier_at=as_utc(at if isinstance(at, datetime) else datetime.fromisoformat(at)),
        entry=entry,
    )


def add_in(
    tx: Transaction, hits_by_message: Sequence[tuple[int, Sequence[EarlierHit]]], now: datetime
) -> None:
    """Record the hits of these messages inside ``tx``, from the index entries they were found
    by (as they hold them now)."""
    for message_id, hits in hits_by_message:
        entries = [hit.entry for hit in hits if hit.entry]
        if entries:
            values: dict[str, object] = {"message_id": message_id, "now": now}
            values.update((f"entry{number}", entry) for number, entry in enumerate(entries))
            tx.connection.execute(_record(len(entries)), values)


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
        )
        for row in rows
    ]


def delete_of_message_in(tx: Transaction, message_id: int) -> int:
    """Delete the hits of a message and those that describe it (its retention ended)."""
    result = tx.connection.execute(
        delete(crosscheck_hits).where(
            or_(
                crosscheck_hits.c.message_id == message_id,
                crosscheck_hits.c.earlier_id == message_id,
            )
        )
    )
    return int(result.rowcount or 0)

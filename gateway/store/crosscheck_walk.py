"""The cross-check's walk: the index keys of the messages it starts from (a hand-off batch at
a time), and for each message the most recent earlier entries of each exact key, gathered per
earlier case and desk, with their cases, in one statement; what such an entry makes a hit of."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeAlias

from sqlalchemy import (
    Row,
    Select,
    String,
    and_,
    bindparam,
    case,
    false,
    func,
    or_,
    select,
    type_coerce,
    union_all,
)

from gateway.store.ledger import as_utc, case_members, cases, search_entries
from gateway.store.unit import Transaction

# Plain parameters, not an expanding IN: rendered once per number of messages.
_KEYS_PER_READ = 32  # messages' keys read by one statement (the hand-off's batch)


@functools.lru_cache(maxsize=_KEYS_PER_READ)
def _keys(count: int) -> Select[Any]:
    """The index keys of ``count`` messages, by message and then as written."""
    return (
        select(
            search_entries.c.message_id,
            search_entries.c.kind,
            search_entries.c.key,
            search_entries.c.born,
        )
        .where(search_entries.c.message_id.in_([bindparam(f"m{n}") for n in range(count)]))
        .order_by(search_entries.c.message_id, search_entries.c.id)
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
            search_entries.c.born,
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
    birth; the kinds that come last): one entry per earlier message, key and date of birth,
    gathered per key, date of birth, earlier case and desk (two persons of one name born on
    different days are two hits; an earlier message in no case stays alone), ranked; only the
    first ``most`` gatherings read whole, each by the entry of its latest message, with its
    count, its first message and its case as it stands."""
    walks = [_walk(number, born) for number, born in enumerate(borns)]
    found = (union_all(*(select(walk.subquery()) for walk in walks))).subquery("found")
    entries = (
        select(
            func.min(found.c.id).label("id"),
            found.c.message_id,
            found.c.kind,
            found.c.key,
            found.c.born,
        )
        .group_by(found.c.message_id, found.c.kind, found.c.key, found.c.born)
        .subquery("entries")
    )
    placed = (
        select(
            entries.c.id,
            entries.c.message_id,
            entries.c.kind,
            entries.c.key,
            entries.c.born,
            search_entries.c.desk,
            case_members.c.case_id,
        )
        .join_from(entries, search_entries, search_entries.c.id == entries.c.id)
        .outerjoin(case_members, case_members.c.message_id == entries.c.message_id)
        .cte("placed")
    )
    alone = case((placed.c.case_id.is_(None), placed.c.message_id), else_=0)
    gathered = (
        select(
            placed.c.kind,
            placed.c.key,
            placed.c.born,
            placed.c.case_id,
            func.max(placed.c.message_id).label("latest"),
            func.min(placed.c.message_id).label("first"),
            func.count().label("messages"),
        )
        .group_by(
            placed.c.kind, placed.c.key, placed.c.born, placed.c.case_id, placed.c.desk, alone
        )
        .subquery("gathered")
    )
    latest = placed.alias("latest")
    # Plain parameters, not an expanding IN: the statement is rendered once, not per call.
    later = [search_entries.c.kind == bindparam(f"last{n}", kind) for n, kind in enumerate(last)]
    rank = case((or_(false(), *later), 1), else_=0)
    return (
        select(
            *_HIT_COLUMNS,
            gathered.c.messages,
            gathered.c.first,
            gathered.c.case_id,
            gathered.c.key,
            cases.c.number,
            cases.c.status,
        )
        .select_from(gathered)
        .join(
            latest,
            and_(
                latest.c.message_id == gathered.c.latest,
                latest.c.kind == gathered.c.kind,
                latest.c.key == gathered.c.key,
                latest.c.born.is_not_distinct_from(gathered.c.born),
            ),
        )
        .join(search_entries, search_entries.c.id == latest.c.id)
        .outerjoin(cases, cases.c.id == gathered.c.case_id)
        .order_by(rank, gathered.c.latest.desc(), search_entries.c.id)
        .limit(bindparam("most"))
    )


EarlierEntry: TypeAlias = Row[Any]


@dataclass(frozen=True)
class EarlierHit:
    """What an arriving message has in common with earlier ones (the same key): the entry of
    the latest of them (its kind, role and value as written, a person's date of birth, its
    message's place), and how many earlier messages of the same case and desk hold the key
    (one, for a message in no case)."""

    kind: str
    role: str
    shown: str
    born: str | None
    earlier_id: int  # the latest of the messages
    earlier_direction: str
    earlier_partner: str
    earlier_desk: str | None
    earlier_form: str
    earlier_at: datetime
    messages: int = 1
    # The first of the messages (ledger id), the case they were in when the hit was found
    # and the index key they hold: what a purge of one of them finds the hit by.
    earlier_first: int = field(default=0, compare=False)
    earlier_case_id: int | None = field(default=None, compare=False)
    key: str | None = field(default=None, compare=False)
    # The index entry it was found by (0: read back from the record); not part of what it says.
    entry: int = field(default=0, compare=False)
    # The earlier message's case ("C2026-000042 (open)"), as it stands when the hit is shown.
    earlier_case: str | None = field(default=None, compare=False)


Key: TypeAlias = tuple[str, str, str | None]


def keys_of(tx: Transaction, message_ids: Sequence[int]) -> dict[int, list[Key]]:
    """(kind, key, date of birth) of the index entries written for each of these messages at
    its acceptance, by message (a message without any: not there); _KEYS_PER_READ messages a
    statement."""
    keys: dict[int, list[Key]] = {}
    for first in range(0, len(message_ids), _KEYS_PER_READ):
        some = message_ids[first : first + _KEYS_PER_READ]
        values = {f"m{number}": message_id for number, message_id in enumerate(some)}
        for message_id, kind, key, born in tx.connection.execute(_keys(len(some)), values):
            keys.setdefault(message_id, []).append((kind, key, born))
    return keys


def earlier(
    tx: Transaction,
    keys: Sequence[Key],
    *,
    before: int,
    per_key: int,
    most: int,
    last: Sequence[str] = (),
) -> Sequence[EarlierEntry]:
    """The entries of messages recorded before the message ``before`` that hold one of
    ``keys`` (kind, key, date of birth or None: entries without one): for each key its
    ``per_key`` most recent, one per earlier message and key, gathered per key, earlier case
    and desk, at most ``most`` gatherings: the kinds of ``last`` after the others, then the
    most recent first. Each with what ``hit_of`` makes a hit of."""
    if not keys:
        return []
    values: dict[str, object] = {"before": before, "per_key": per_key, "most": most}
    for number, (kind, key, born) in enumerate(keys):
        values.update({f"kind{number}": kind, f"key{number}": key, f"born{number}": born})
    statement = _earlier(tuple(born is not None for _, _, born in keys), tuple(sorted(last)))
    return tx.connection.execute(statement, values).all()


def hit_of(row: EarlierEntry) -> EarlierHit:
    """The hit an entry read by ``earlier`` makes: its value, its message's place, how many
    messages of its case hold it, and that case as it stands."""
    read: tuple[Any, ...] = tuple(row)
    entry, kind, role, shown, born, message_id, direction, partner, desk, form, at = read[:11]
    messages, first, case_id, key, number, status = read[11:]
    return EarlierHit(
        kind,
        role,
        shown,
        born,
        message_id,
        direction,
        partner,
        desk,
        form,
        as_utc(at if isinstance(at, datetime) else datetime.fromisoformat(at)),
        messages,
        first,
        case_id,
        key,
        entry,
        None if number is None else f"{number} ({status})",
    )

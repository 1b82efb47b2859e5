"""The cross-check's hits: written with an arriving message's hand-off, read for its message
view, deleted with the retention purge of either message; the index entries of one message,
which the cross-check starts from, the most recent earlier entries of one exact key, and the
hits the chosen ones make."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, delete, insert, or_, select

from gateway.store.ledger import as_utc, crosscheck_hits, search_entries
from gateway.store.unit import Transaction

_INSERT = insert(crosscheck_hits)
_OF_MESSAGE = (
    select(crosscheck_hits)
    .where(crosscheck_hits.c.message_id == bindparam("message_id"))
    .order_by(crosscheck_hits.c.id)
)
_KEYS = select(search_entries.c.kind, search_entries.c.key, search_entries.c.born).where(
    search_entries.c.message_id == bindparam("message_id")
)
# The most recent entries of one key (and date of birth, or none) in messages recorded before
# one: a walk down the end of ix_search_entries_kind_key_born, never longer than the limit,
# which reads the index alone on SQLite (its rowid is the entry's id).
_EARLIER = (
    select(search_entries.c.id, search_entries.c.message_id)
    .where(
        search_entries.c.kind == bindparam("kind"),
        search_entries.c.key == bindparam("key"),
        search_entries.c.message_id < bindparam("before"),
    )
    .order_by(search_entries.c.message_id.desc())
    .limit(bindparam("limit"))
)
_EARLIER_BORN = _EARLIER.where(search_entries.c.born == bindparam("born"))
_EARLIER_UNBORN = _EARLIER.where(search_entries.c.born.is_(None))
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
    search_entries.c.created_at,
)
_HITS = select(*_HIT_COLUMNS).where(search_entries.c.id.in_(bindparam("ids", expanding=True)))


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


def keys_of(tx: Transaction, message_id: int) -> list[tuple[str, str, str | None]]:
    """(kind, key, date of birth) of the index entries written for a message at its
    acceptance."""
    rows = tx.connection.execute(_KEYS, {"message_id": message_id}).all()
    return [(str(row.kind), str(row.key), row.born) for row in rows]


def earlier(
    tx: Transaction, kind: str, key: str, born: str | None, *, before: int, limit: int
) -> list[tuple[int, int]]:
    """(entry id, message id) of at most ``limit`` entries of ``kind`` with this ``key`` and
    date of birth (None: entries without one) in messages recorded before the message
    ``before``, the most recent first."""
    values: dict[str, object] = {"kind": kind, "key": key, "before": before, "limit": limit}
    if born is None:
        rows = tx.connection.execute(_EARLIER_UNBORN, values).all()
    else:
        rows = tx.connection.execute(_EARLIER_BORN, {**values, "born": born}).all()
    return [(int(row[0]), int(row[1])) for row in rows]


def hits_of_entries(tx: Transaction, entry_ids: Sequence[int]) -> dict[int, EarlierHit]:
    """The hit each of these index entries makes (the entry's value and its message's place),
    by entry id."""
    if not entry_ids:
        return {}
    rows = tx.connection.execute(_HITS, {"ids": list(entry_ids)}).all()
    return {
        int(row.id): EarlierHit(
            kind=row.kind,
            role=row.role,
            shown=row.shown,
            born=row.born,
            earlier_id=row.message_id,
            earlier_direction=row.direction,
            earlier_partner=row.partner,
            earlier_desk=row.desk,
            earlier_form=row.form,
            earlier_at=as_utc(row.created_at),
        )
        for row in rows
    }


def replace_in(
    tx: Transaction, hits_by_message: Sequence[tuple[int, Sequence[EarlierHit]]], now: datetime
) -> int:
    """Write the hits of these messages inside ``tx``, in place of any written before;
    returns how many."""
    ids = [message_id for message_id, _ in hits_by_message]
    if ids:
        tx.connection.execute(delete(crosscheck_hits).where(crosscheck_hits.c.message_id.in_(ids)))
    values = [
        {
            "message_id": message_id,
            "earlier_id": hit.earlier_id,
            "kind": hit.kind,
            "role": hit.role,
            "shown": hit.shown[:255],
            "born": hit.born,
            "earlier_direction": hit.earlier_direction,
            "earlier_partner": hit.earlier_partner,
            "earlier_desk": hit.earlier_desk,
            "earlier_form": hit.earlier_form,
            "earlier_at": hit.earlier_at,
            "created_at": now,
        }
        for message_id, hits in hits_by_message
        for hit in hits
    ]
    if values:
        tx.connection.execute(_INSERT, values)
    return len(values)


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

"""The search index's rows: written with a message, candidates read by trigram or exact key,
deleted with a message's retention, rebuilt."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, bindparam, delete, func, insert, select, text

from gateway.store import search_ddl
from gateway.store.ledger import MessageRow, as_utc, message_of, messages, search_entries
from gateway.store.unit import Transaction

PERSON = "person"
_INSERT = insert(search_entries)
# The nearest keys by trigram distance, found by walking a partial GiST index (the kind is
# written into the statement, as the index's predicate, so the planner can prove it applies).
_PG_CANDIDATES = (
    "SELECT id FROM search_entries WHERE kind {which}"
    ' ORDER BY key OPERATOR("{schema}".<->) :key LIMIT :limit'
)


@dataclass(frozen=True)
class IndexRow:
    """One entry as written: what gateway.search made of an entity."""

    kind: str
    role: str
    shown: str
    folded: str
    key: str
    born: str | None
    country: str | None


@dataclass(frozen=True)
class Where:
    """The message an entry comes from, and who may see it."""

    message_id: int
    direction: str
    partner: str
    desk: str | None
    form: str


@dataclass(frozen=True)
class Candidate:
    """An entry found for a search, with its message's place."""

    id: int
    row: IndexRow
    where: Where
    created_at: datetime


def add_in(tx: Transaction, where: Where, rows: Sequence[IndexRow], now: datetime) -> int:
    """Write the entries of one message inside ``tx``; returns how many."""
    return add_many_in(tx, [(where, rows)], now)


def add_many_in(
    tx: Transaction, messages_rows: Sequence[tuple[Where, Sequence[IndexRow]]], now: datetime
) -> int:
    """Write the entries of several messages inside ``tx`` in one statement; returns how
    many."""
    values = [
        {
            "message_id": where.message_id,
            "direction": where.direction,
            "partner": where.partner,
            "desk": where.desk,
            "form": where.form,
            "kind": row.kind,
            "role": row.role,
            "shown": row.shown[:255],
            "folded": row.folded[:255],
            "key": row.key[:255],
            "born": row.born,
            "country": row.country,
            "created_at": now,
        }
        for where, rows in messages_rows
        for row in rows
    ]
    if values:
        tx.connection.execute(_INSERT, values)
    return len(values)


def delete_of_message_in(tx: Transaction, message_id: int) -> int:
    """Delete a message's entries (its retention ended, or the index is rebuilt)."""
    result = tx.connection.execute(
        delete(search_entries).where(search_entries.c.message_id == message_id)
    )
    return int(result.rowcount or 0)


def delete_all_in(tx: Transaction) -> int:
    result = tx.connection.execute(delete(search_entries))
    return int(result.rowcount or 0)


def count(tx: Transaction) -> int:
    return int(tx.connection.execute(select(func.count()).select_from(search_entries)).scalar_one())


def trigram_available(tx: Transaction) -> bool:
    """Whether candidates may be found by trigrams (always on SQLite; pg_trgm on PostgreSQL)."""
    return _trigram_schema(tx.connection) is not None or tx.dialect == "sqlite"


def candidates(
    tx: Transaction,
    kind: str,
    keys: Sequence[str],
    *,
    fuzzy: bool = True,
    desks: Collection[str] | None,
    limit: int,
) -> list[Candidate]:
    """Entries of ``kind`` whose key is one of ``keys`` or (``fuzzy``), ranked by the trigram
    index, shares trigrams with them: at most ``limit`` per way of finding them.
    ``desks``: only entries of messages on these desks (None: every desk)."""
    ids = set(_exact(tx.connection, kind, keys, limit))
    if fuzzy and keys:
        if tx.dialect == "sqlite":
            ids.update(_sqlite_trigram(tx.connection, kind, _trigrams(keys), limit))
        elif (schema := _trigram_schema(tx.connection)) is not None:
            ids.update(_pg_trigram(tx.connection, schema, kind, keys, limit))
    if not ids:
        return []
    query = select(search_entries).where(search_entries.c.id.in_(bindparam("ids", expanding=True)))
    if desks is not None:
        query = query.where(search_entries.c.desk.in_(list(desks)))
    rows = tx.connection.execute(query, {"ids": sorted(ids)}).all()
    return [
        Candidate(
            id=row.id,
            row=IndexRow(row.kind, row.role, row.shown, row.folded, row.key, row.born, row.country),
            where=Where(row.message_id, row.direction, row.partner, row.desk, row.form),
            created_at=as_utc(row.created_at),
        )
        for row in rows
    ]


def _trigrams(keys: Sequence[str]) -> list[str]:
    """The distinct trigrams of the words of ``keys``, as FTS5's trigram tokenizer cuts them."""
    found: dict[str, None] = {}
    for key in keys:
        for word in key.split():
            for start in range(len(word) - 2):
                found[word[start : start + 3]] = None
    return list(found)


def _exact(connection: Connection, kind: str, keys: Sequence[str], limit: int) -> list[int]:
    if not keys:
        return []
    found = connection.execute(
        select(search_entries.c.id)
        .where(search_entries.c.kind == kind, search_entries.c.key.in_(list(keys)))
        .limit(limit * 5)
    )
    return [row[0] for row in found]


def _sqlite_trigram(
    connection: Connection, kind: str, trigrams: Sequence[str], limit: int
) -> list[int]:
    if not trigrams:
        return []
    table = search_ddl.NAMES_FTS if kind == PERSON else search_ddl.IDS_FTS
    match = " OR ".join('"' + gram.replace('"', '""') + '"' for gram in trigrams)
    # The table is one of our two names; the match and the limit are parameters.
    found = connection.execute(
        text(f"SELECT rowid FROM {table} WHERE {table} MATCH :match ORDER BY rank LIMIT :limit"),  # noqa: S608
        {"match": match, "limit": limit},
    )
    ids = [row[0] for row in found]
    if kind == PERSON or not ids:
        return ids
    kinds = connection.execute(
        select(search_entries.c.id).where(
            search_entries.c.id.in_(ids), search_entries.c.kind == kind
        )
    )
    return [row[0] for row in kinds]


def _pg_trigram(
    connection: Connection, schema: str, kind: str, keys: Sequence[str], limit: int
) -> list[int]:
    ids: list[int] = []
    which = "= 'person'" if kind == PERSON else "<> 'person'"
    statement = text(_PG_CANDIDATES.format(schema=schema, which=which))
    for key in keys:
        found = connection.execute(statement, {"key": key, "limit": limit})
        ids.extend(row[0] for row in found)
    if kind == PERSON or not ids:
        return ids
    kinds = connection.execute(
        select(search_entries.c.id).where(
            search_entries.c.id.in_(ids), search_entries.c.kind == kind
        )
    )
    return [row[0] for row in kinds]


def _trigram_schema(connection: Connection) -> str | None:
    if connection.dialect.name != "postgresql":
        return None
    return search_ddl.trigram_schema(connection)


def messages_after(tx: Transaction, after_id: int, limit: int) -> list[MessageRow]:
    """At most ``limit`` messages with an id above ``after_id``, by id (what a rebuild reads)."""
    rows = tx.connection.execute(
        select(messages).where(messages.c.id > after_id).order_by(messages.c.id).limit(limit)
    ).all()
    return [message_of(row._mapping) for row in rows]

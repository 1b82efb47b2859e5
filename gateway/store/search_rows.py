"""The search index's rows: written with a message, candidates read by trigram or exact key
(names: alike name parts first, then the entries holding them), deleted with a message's
retention, rebuilt."""

from __future__ import annotations

import sqlite3
import threading
import weakref
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Integer,
    bindparam,
    cast,
    delete,
    func,
    insert,
    select,
    text,
)
from sqlalchemy import table as sql_table
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect

from gateway.store import search_ddl
from gateway.store.common_grams import CommonGrams
from gateway.store.ledger import (
    KEYS_PER_QUERY,
    MessageRow,
    as_utc,
    message_of,
    messages,
    search_entries,
    search_entry_parts,
    search_parts,
)
from gateway.store.sqlite_insert import inserted_ids
from gateway.store.unit import Transaction, say_to_sqlite

PERSON = "person"
# A name part added unless it is held already, and an entry's link to a part by the part's
# text: fixed statements, compiled once.
_SQLITE_NEW_PARTS = sqlite_dialect.insert(search_parts).on_conflict_do_nothing(
    index_elements=["part"]
)
_PG_NEW_PARTS = (
    pg_dialect.insert(search_parts)
    .on_conflict_do_nothing(index_elements=["part"])
    .returning(search_parts.c.id)
)
_LINK_PART = insert(search_entry_parts).from_select(
    ["part_id", "entry_id"],
    select(search_parts.c.id, cast(bindparam("entry_id"), Integer)).where(
        search_parts.c.part == bindparam("part")
    ),
)
_SQLITE_NEW_PARTS_SQL = str(
    _SQLITE_NEW_PARTS.compile(
        dialect=sqlite_dialect.dialect(paramstyle="named"), column_keys=["part", "sound"]
    )
)
_LINK_PART_SQL = str(_LINK_PART.compile(dialect=sqlite_dialect.dialect(paramstyle="named")))
# The nearest keys by trigram distance, found by walking a partial GiST index (the kind is
# written into the statement, as the index's predicate, so the planner can prove it applies).
_PG_CANDIDATES = (
    "SELECT id FROM search_entries WHERE kind <> 'person'"
    ' ORDER BY key OPERATOR("{schema}".<->) :key LIMIT :limit'
)
# How many trigrams of a searched part are looked up: the rarest ones. A part missing at most
# GRAMS_LOOKED - 1 of the searched part's trigrams (a typo costs up to three) holds one of them.
GRAMS_LOOKED = 5
# ... as long as the parts holding them are at most POSTINGS together (the rarest one is always
# looked up): a common trigram (a frequent stem) adds many parts and little to tell them apart.
# Every part found is read, unranked. Where even the rarest is held by more parts (a frequent
# given name at a million persons), only its POSTINGS newest parts are read, every one of them
# (FTS5's bm25 ranking, which chose 300 of them before, cost a look-up per posting: 4.8 ms
# against 1.7 ms for reading all 1,000; rapidfuzz ranks them in C). A trigram's parts are
# counted up to POSTINGS + 1 (SQLite: from the table of counts, PostgreSQL: from its B-tree,
# but for the trigrams each process remembers as common: gateway.store.common_grams).
POSTINGS = 1000
# PostgreSQL's trigram table (search_ddl makes it): rows added from the new parts' ids, and
# deleted by their keys.
_GRAMS = sql_table(search_ddl.PARTS_GRAMS)
_PG_ADD_GRAMS = text(search_ddl.PG_ADD_GRAMS.format(ids="CAST(:ids AS integer[])"))
_PG_DELETE_GRAMS = text(
    f"DELETE FROM {search_ddl.PARTS_GRAMS} g"  # noqa: S608 (our table name)
    " USING unnest(CAST(:grams AS text[]), CAST(:ids AS integer[])) AS gone(gram, part_id)"
    " WHERE g.gram = gone.gram AND g.part_id = gone.part_id"
)
EXACT_READ = 5  # entries with a key asked are read up to this many times a search's limit


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
    # A name's parts as its key holds them (skeletons), each with its consonants.
    parts: tuple[tuple[str, str], ...] = ()


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
    if not values:
        return 0
    ids = inserted_ids(tx, search_entries, values)
    held = [
        (entry, part)
        for entry, row in zip(ids, (row for _, rows in messages_rows for row in rows), strict=True)
        for part in row.parts
    ]
    if held:
        _add_parts(tx, held)
    return len(values)


def _add_parts(tx: Transaction, held: Sequence[tuple[int, tuple[str, str]]]) -> None:
    """Record which entries hold which name parts, adding the parts not held before (on
    PostgreSQL with their trigrams' rows, cut by the server from the new parts' ids): the new
    parts in one statement, the links in one more, each link finding its part's id by the
    part's unique key (no read of the ids first)."""
    sounds = {part: sound for _, (part, sound) in held}
    new = [{"part": part, "sound": sound} for part, sound in sounds.items()]
    links = sorted({(part, entry) for entry, (part, _) in held})
    link_rows = [{"part": part, "entry_id": entry} for part, entry in links]
    if tx.dialect == "postgresql":
        added = sorted(row[0] for row in tx.connection.execute(_PG_NEW_PARTS, new))
        if added:
            tx.connection.execute(_PG_ADD_GRAMS, {"ids": added})
        linked = tx.connection.execute(_LINK_PART, link_rows).rowcount
    else:  # the fixed statements said to the driver (no value needs SQLAlchemy's processing)
        say_to_sqlite(tx.connection, _SQLITE_NEW_PARTS_SQL, new)
        linked = say_to_sqlite(tx.connection, _LINK_PART_SQL, link_rows).rowcount
    # Each part was inserted above or held before: a link short is never (psycopg reports no
    # count for several rows, -1; SQLite does).
    if linked not in (-1, len(links)):
        raise RuntimeError(f"{len(links) - linked} of a message's name parts were not linked")


def delete_of_message_in(tx: Transaction, message_id: int) -> int:
    """Delete a message's entries (its retention ended, or the index is rebuilt), and the name
    parts no other entry holds."""
    entries = select(search_entries.c.id).where(search_entries.c.message_id == message_id)
    parts = [
        row[0]
        for row in tx.connection.execute(
            select(search_entry_parts.c.part_id)
            .where(search_entry_parts.c.entry_id.in_(entries))
            .distinct()
        )
    ]
    tx.connection.execute(
        delete(search_entry_parts).where(search_entry_parts.c.entry_id.in_(entries))
    )
    result = tx.connection.execute(
        delete(search_entries).where(search_entries.c.message_id == message_id)
    )
    for first in range(0, len(parts), KEYS_PER_QUERY):
        some = parts[first : first + KEYS_PER_QUERY]
        still = select(search_entry_parts.c.part_id).where(search_entry_parts.c.part_id.in_(some))
        gone = tx.connection.execute(
            delete(search_parts)
            .where(search_parts.c.id.in_(some), search_parts.c.id.not_in(still))
            .returning(search_parts.c.id, search_parts.c.part)
        ).all()
        if tx.dialect == "postgresql" and gone:
            _delete_grams(tx.connection, [(row[0], row[1]) for row in gone])
    return int(result.rowcount or 0)


def _delete_grams(connection: Connection, parts: Sequence[tuple[int, str]]) -> None:
    """PostgreSQL: delete the trigram rows of these (id, part), by their key."""
    keys = [(gram, part_id) for part_id, part in parts for gram in _trigrams([part])]
    connection.execute(
        _PG_DELETE_GRAMS,
        {"grams": [gram for gram, _ in keys], "ids": [part_id for _, part_id in keys]},
    )


def count_of_message(tx: Transaction, message_id: int) -> int:
    """How many entries the message has in the index."""
    return int(
        tx.connection.execute(
            select(func.count())
            .select_from(search_entries)
            .where(search_entries.c.message_id == message_id)
        ).scalar_one()
    )


def delete_all_in(tx: Transaction) -> int:
    if tx.dialect == "postgresql":
        tx.connection.execute(delete(_GRAMS))
        _common_grams(tx.connection.engine).forget()
    tx.connection.execute(delete(search_entry_parts))
    tx.connection.execute(delete(search_parts))
    result = tx.connection.execute(delete(search_entries))
    return int(result.rowcount or 0)


# The index's tables; on PostgreSQL its trigram table besides (SQLite's FTS5 tables are its own).
_TABLES = (search_entries.name, search_parts.name, search_entry_parts.name)
VACUUMED = (*_TABLES, search_ddl.PARTS_GRAMS)


def analyze_in(tx: Transaction) -> None:
    """Gather the planner's statistics of the index's tables (after a rebuild, which changed
    every row: PostgreSQL's autovacuum would gather them some time later)."""
    for name in VACUUMED if tx.dialect == "postgresql" else _TABLES:
        tx.connection.exec_driver_sql(f"ANALYZE {name}")


def vacuum(engine: Engine) -> None:
    """PostgreSQL: VACUUM the index's tables (after a rebuild, which wrote every row), so that
    the visibility map marks their pages all-visible and a search's reads are index-only: the
    trigrams' parts from their B-tree, the holders of a part and the parts of an entry from
    the links' keys (unvacuumed, each link a search counts is looked up in the table: a fifth
    of a search's CPU at a million persons). Outside any transaction (VACUUM cannot run in
    one). Nothing on SQLite."""
    if engine.dialect.name != "postgresql":
        return
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        for name in VACUUMED:
            connection.exec_driver_sql(f"VACUUM {name}")


def count(tx: Transaction) -> int:
    return int(tx.connection.execute(select(func.count()).select_from(search_entries)).scalar_one())


def trigram_available(tx: Transaction) -> bool:
    """Whether candidates of kinds other than names may be found by trigrams (always on
    SQLite; pg_trgm on PostgreSQL). Names always may: on PostgreSQL by their own table."""
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
    """Entries of ``kind`` (not names: see alike_parts) whose key is one of ``keys`` or
    (``fuzzy``), ranked by the trigram index, shares trigrams with them: at most ``limit`` per
    way of finding them. ``desks``: only entries of messages on these desks (None: every
    desk)."""
    ids = set(_exact(tx.connection, kind, keys, limit))
    if fuzzy and keys and kind != PERSON:
        if tx.dialect == "sqlite":
            ids.update(_sqlite_trigram(tx.connection, kind, _trigrams(keys), limit))
        elif (schema := _trigram_schema(tx.connection)) is not None:
            ids.update(_pg_trigram(tx.connection, schema, kind, keys, limit))
    return entries(tx, sorted(ids), desks=desks)


def entries(
    tx: Transaction, ids: Sequence[int], *, desks: Collection[str] | None = None
) -> list[Candidate]:
    """The entries of these ids (on ``desks`` only, unless None), by id."""
    if not ids:
        return []
    statement = f"SELECT {_ENTRY_COLUMNS} FROM search_entries WHERE id {{entries}}"  # noqa: S608
    lists: list[Collection[object]] = [ids]
    if desks is not None:
        statement += " AND desk {desks}"
        lists.append(sorted(desks))
    rows = _driver_fetch(tx, statement + " ORDER BY id", lists, 0)
    return [_candidate(row) for row in rows]


def names_of(tx: Transaction, ids: Sequence[int]) -> list[tuple[int, str, str, str | None]]:
    """(id, role, folded name, date of birth) of these entries, by id: what a name's score
    needs, without the rest of a Candidate."""
    if not ids:
        return []
    statement = "SELECT id, role, folded, born FROM search_entries WHERE id {entries} ORDER BY id"
    return [
        (int(row[0]), str(row[1]), str(row[2]), row[3])
        for row in _driver_fetch(tx, statement, [ids], 0)
    ]


# What a Candidate is made of, in _candidate's order.
_ENTRY_COLUMNS = (
    'id, kind, role, shown, folded, "key", born, country, message_id, direction, partner, desk,'
    " form, created_at"
)


def _candidate(row: Sequence[Any]) -> Candidate:
    created = row[13]
    if isinstance(created, str):  # SQLite's driver hands back the stored text (UTC)
        created = datetime.fromisoformat(created)
    return Candidate(
        id=int(row[0]),
        row=IndexRow(*row[1:8]),
        where=Where(*row[8:13]),
        created_at=as_utc(created),
    )


def alike_parts(
    tx: Transaction, part: str, sound: str, *, lengths: tuple[int, int]
) -> list[tuple[int, str, str]]:
    """(id, part, sound) of the name parts held that may be alike ``part`` (a skeleton): the
    same part or the same ``sound`` (its consonants), and the parts holding one of its
    GRAMS_LOOKED rarest trigrams whose length is within ``lengths`` (least, most): every one of
    them while those trigrams are held by at most POSTINGS parts together, else (every trigram
    is common) every one of the rarest trigram's POSTINGS newest parts."""
    found: list[tuple[int, str, str]]
    if len(part) >= 3:
        found = _grammed_parts(tx, part, sound, lengths)
    else:
        found = [
            (int(row[0]), str(row[1]), str(row[2]))
            for row in tx.connection.execute(
                select(search_parts.c.id, search_parts.c.part, search_parts.c.sound).where(
                    (search_parts.c.part == part) | (search_parts.c.sound == sound)
                )
            )
        ]
    return sorted({row[1]: row for row in found}.values())


# The same part or the same consonants; then, on SQLite, the parts of the trigrams matched.
_SAME = "SELECT id, part, sound FROM search_parts WHERE part = {part} OR sound = {sound}"
_SQLITE_GRAMMED = (
    f"SELECT p.id, p.part, p.sound FROM {search_ddl.PARTS_FTS} g"  # noqa: S608
    f" JOIN search_parts p ON p.id = g.rowid WHERE {search_ddl.PARTS_FTS} MATCH :match"
    " AND length(p.part) BETWEEN :least AND :most"
)
# The rarest trigram alone is common: its newest parts.
_SQLITE_NEWEST = (
    f"SELECT p.id, p.part, p.sound FROM (SELECT rowid FROM {search_ddl.PARTS_FTS}"  # noqa: S608
    f" WHERE {search_ddl.PARTS_FTS} MATCH :match ORDER BY rowid DESC LIMIT :read) g"
    " JOIN search_parts p ON p.id = g.rowid WHERE length(p.part) BETWEEN :least AND :most"
)
# PostgreSQL: the parts of the trigrams asked, read from the B-tree on (gram, part_id), which
# includes each part and its consonants (index-only, no look-up into search_parts); where the
# rarest alone is common, its newest parts (the same B-tree walked backwards).
_PG_GRAMMED = (
    f"SELECT part_id, part, sound FROM {search_ddl.PARTS_GRAMS}"  # noqa: S608
    " WHERE gram = ANY(%(grams)s) AND length(part) BETWEEN %(least)s AND %(most)s"
)
_PG_NEWEST = (
    "SELECT part_id, part, sound FROM (SELECT part_id, part, sound"  # noqa: S608
    f" FROM {search_ddl.PARTS_GRAMS} WHERE gram = %(gram)s ORDER BY part_id DESC"
    " LIMIT %(read)s) g WHERE length(part) BETWEEN %(least)s AND %(most)s"
)
# How many parts hold each trigram asked, each counted up to POSTINGS + 1 from the B-tree.
_PG_POSTINGS = (
    "SELECT asked.gram, (SELECT count(*) FROM (SELECT 1"  # noqa: S608
    f" FROM {search_ddl.PARTS_GRAMS} held WHERE held.gram = asked.gram"
    " LIMIT %s) counted) FROM unnest(%s::text[]) AS asked(gram)"
)


def _grammed_parts(
    tx: Transaction, part: str, sound: str, lengths: tuple[int, int]
) -> list[tuple[int, str, str]]:
    """The same part or sound, and the parts found by the rarest trigrams, in one read (two
    when every trigram is common), on the driver's own cursor: this is a search's hot path.
    Both drivers give the rows as tuples of (int, str, str), read as they come."""
    grams = _trigrams([part])
    cursor = tx.connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
    postgresql = tx.dialect == "postgresql"
    if postgresql:
        held = _pg_postings(cursor, grams, _common_grams(tx.connection.engine))
    else:
        held = _sqlite_postings(cursor, grams)
    rarest, postings = _rarest(held)
    # Parts much shorter or longer cannot be alike: (least, most) characters.
    values: dict[str, object] = {"part": part, "sound": sound, "read": POSTINGS}
    values["least"], values["most"] = lengths
    if postgresql:
        same = _SAME.format(part="%(part)s", sound="%(sound)s")
        values["grams"], values["gram"] = rarest, rarest[0] if rarest else ""
        grammed, newest = _PG_GRAMMED, _PG_NEWEST
    else:
        same = _SAME.format(part=":part", sound=":sound")
        values["match"] = " OR ".join(_phrase(gram) for gram in rarest)
        grammed, newest = _SQLITE_GRAMMED, _SQLITE_NEWEST
    if not rarest:
        return _fetch(cursor, same, values)
    if postings <= POSTINGS:  # few enough to read them all
        return _fetch(cursor, f"{same} UNION ALL {grammed}", values)
    return _fetch(cursor, same, values) + _fetch(cursor, newest, values)


def _fetch(cursor: Any, statement: str, values: dict[str, object]) -> list[tuple[int, str, str]]:
    """The (id, part, sound) rows of ``statement`` on a driver's cursor (sqlite3's or
    psycopg's), the tuples it makes."""
    cursor.execute(statement, values)
    found: list[tuple[int, str, str]] = cursor.fetchall()
    return found


def _rarest(held: dict[str, int]) -> tuple[list[str], int]:
    """Of the trigrams held (how many parts hold each), the GRAMS_LOOKED rarest whose parts are
    at most POSTINGS together (the rarest always), and how many parts those are."""
    rarest: list[str] = []
    postings = 0
    for gram in sorted(held, key=lambda gram: (held[gram], gram))[:GRAMS_LOOKED]:
        if rarest and postings + held[gram] > POSTINGS:
            break
        rarest.append(gram)
        postings += held[gram]
    return rarest, postings


def _pg_postings(cursor: Any, grams: Sequence[str], common: CommonGrams) -> dict[str, int]:
    """PostgreSQL: how many parts hold each of ``grams`` (absent: none), counted up to
    POSTINGS + 1, but for those ``common`` remembers as counted to that lately (taken as
    POSTINGS + 1 without a count: at a million persons most of a family name's trigrams are)."""
    held = dict.fromkeys(common.among(grams), POSTINGS + 1)
    asked = [gram for gram in grams if gram not in held]
    if not asked:
        return held
    cursor.execute(_PG_POSTINGS, [POSTINGS + 1, asked])
    counted = {str(row[0]): int(row[1]) for row in cursor.fetchall() if row[1]}
    common.remember(gram for gram, parts in counted.items() if parts > POSTINGS)
    return held | counted


def _common_grams(engine: Engine) -> CommonGrams:
    """The trigrams remembered as common in ``engine``'s index."""
    with _COMMON_LOCK:
        found = _COMMON.get(engine)
        if found is None:
            found = _COMMON[engine] = CommonGrams()
        return found


_COMMON: weakref.WeakKeyDictionary[Engine, CommonGrams] = weakref.WeakKeyDictionary()
_COMMON_LOCK = threading.Lock()


def _sqlite_postings(cursor: sqlite3.Cursor, grams: Sequence[str]) -> dict[str, int]:
    """How many parts hold each of ``grams`` (absent: none), counted up to POSTINGS + 1: read
    from the table of counts the parts' triggers keep (FTS5 would read a trigram's
    postings)."""
    if not grams:
        return {}
    # The table is ours, the bound a number; the trigrams are parameters.
    found = cursor.execute(
        f"SELECT gram, min(parts, {POSTINGS + 1}) FROM {search_ddl.GRAM_COUNTS}"  # noqa: S608
        f" WHERE gram IN ({', '.join('?' for _ in grams)})",
        list(grams),
    )
    return {str(row[0]): int(row[1]) for row in found if row[1]}


def _phrase(gram: str) -> str:
    """A trigram as an FTS5 phrase (quoted, quotes doubled)."""
    return '"' + gram.replace('"', '""') + '"'


def entries_holding(
    tx: Transaction, part_ids: Sequence[int], *, desks: Collection[str] | None, limit: int
) -> list[tuple[int, int]]:
    """(entry id, part id) of at most ``limit`` person entries holding one of these parts, on
    ``desks`` only (None: every desk)."""
    if not part_ids:
        return []
    if desks is None:
        statement = "SELECT l.entry_id, l.part_id FROM search_entry_parts l WHERE l.part_id {parts}"
        return _driver_rows(tx, statement + " LIMIT {limit}", [part_ids], limit)
    statement = (
        "SELECT l.entry_id, l.part_id FROM search_entry_parts l"
        " JOIN search_entries e ON e.id = l.entry_id WHERE l.part_id {parts} AND e.desk {desks}"
        " LIMIT {limit}"
    )
    return _driver_rows(tx, statement, [part_ids, sorted(desks)], limit)


def holders_counted(tx: Transaction, part_ids: Sequence[int], *, limit: int) -> int:
    """How many entries (of any desk) hold one of these parts, counted up to ``limit``: read
    from the (part, entry) key alone, no entry's row."""
    if not part_ids:
        return 0
    statement = (
        "SELECT count(*), 0 FROM (SELECT 1 FROM search_entry_parts WHERE part_id {parts}"
        " LIMIT {limit}) held"
    )
    return int(_driver_rows(tx, statement, [part_ids], limit)[0][0])


def entries_holding_among(
    tx: Transaction, part_ids: Sequence[int], entry_ids: Sequence[int]
) -> list[tuple[int, int]]:
    """(entry id, part id) of the entries of ``entry_ids`` holding one of these parts."""
    statement = (
        "SELECT entry_id, part_id FROM search_entry_parts WHERE entry_id {entries}"
        " AND part_id {parts}"
    )
    held: list[tuple[int, int]] = []
    for first in range(0, len(entry_ids) if part_ids else 0, KEYS_PER_QUERY):
        some = entry_ids[first : first + KEYS_PER_QUERY]
        held += _driver_rows(tx, statement, [some, part_ids], 0)
    return held


def _driver_rows(
    tx: Transaction, statement: str, lists: Sequence[Collection[object]], limit: int
) -> list[tuple[int, int]]:
    """Pairs of numbers read by _driver_fetch."""
    return [(int(row[0]), int(row[1])) for row in _driver_fetch(tx, statement, lists, limit)]


def _driver_fetch(
    tx: Transaction, statement: str, lists: Sequence[Collection[object]], limit: int
) -> list[tuple[Any, ...]]:
    """The rows of a hot read of the search, on the driver's own cursor (SQLAlchemy renders an
    expanding IN anew on every execution: more than the read itself costs). ``statement``'s
    placeholders {parts}, {entries}, {desks} take ``lists`` in the order they appear, as
    ``IN (?, ...)`` on SQLite and ``= ANY(%s)`` on PostgreSQL (one text, prepared by psycopg
    once used often); {limit} takes ``limit``."""
    names = [name for name in ("parts", "entries", "desks") if "{" + name + "}" in statement]
    names.sort(key=lambda name: statement.index("{" + name + "}"))
    values: list[object] = []
    held: dict[str, str] = {}
    for name, listed in zip(names, lists, strict=True):
        if tx.dialect == "postgresql" and name in _NUMBERED:
            # Ids as an array's text, made by str.join: psycopg dumps a list of ints element by
            # element in Python (3,000 ids, the most entries_holding_among asks: 2.2 ms against
            # 0.5 ms of the client's CPU).
            held[name] = "= ANY(%s::integer[])"
            ids = ",".join([str(int(value)) for value in listed])  # type: ignore[call-overload]
            values.append("{" + ids + "}")
        elif tx.dialect == "postgresql":
            held[name] = "= ANY(%s)"
            values.append(list(listed))
        else:
            held[name] = "IN (" + ", ".join("?" for _ in listed) + ")"
            values.extend(listed)
    # Only placeholders and a number are put into the statement.
    cursor = tx.connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
    cursor.execute(statement.format(limit=int(limit), **held), values)
    return [tuple(row) for row in cursor.fetchall()]


_NUMBERED = frozenset({"parts", "entries"})  # _driver_fetch's placeholders that take ids


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
        .limit(limit * EXACT_READ)
    )
    return [row[0] for row in found]


def _sqlite_trigram(
    connection: Connection, kind: str, trigrams: Sequence[str], limit: int
) -> list[int]:
    if not trigrams:
        return []
    table = search_ddl.IDS_FTS
    match = " OR ".join('"' + gram.replace('"', '""') + '"' for gram in trigrams)
    # The table is one of our names; the match and the limit are parameters.
    found = connection.execute(
        text(f"SELECT rowid FROM {table} WHERE {table} MATCH :match ORDER BY rank LIMIT :limit"),  # noqa: S608
        {"match": match, "limit": limit},
    )
    return _of_kind(connection, kind, [row[0] for row in found])


def _pg_trigram(
    connection: Connection, schema: str, kind: str, keys: Sequence[str], limit: int
) -> list[int]:
    ids: list[int] = []
    statement = text(_PG_CANDIDATES.format(schema=schema))
    for key in keys:
        found = connection.execute(statement, {"key": key, "limit": limit})
        ids.extend(row[0] for row in found)
    return _of_kind(connection, kind, ids)


def _of_kind(connection: Connection, kind: str, ids: list[int]) -> list[int]:
    if not ids:
        return ids
    kinds = connection.execute(
        select(search_entries.c.id).where(
            search_entries.c.id.in_(ids), search_entries.c.kind == kind
        )
    )
    return [row[0] for row in kinds]


def _trigram_schema(connection: Connection) -> str | None:
    """Where pg_trgm is (None: not installed, or SQLite), asked once per connection checkout
    (a search asks for each part)."""
    if connection.dialect.name != "postgresql":
        return None
    if connection not in _SCHEMAS:
        _SCHEMAS[connection] = search_ddl.trigram_schema(connection)
    return _SCHEMAS[connection]


_SCHEMAS: weakref.WeakKeyDictionary[Connection, str | None] = weakref.WeakKeyDictionary()


def messages_after(tx: Transaction, after_id: int, limit: int) -> list[MessageRow]:
    """At most ``limit`` messages with an id above ``after_id``, by id (what a rebuild reads)."""
    rows = tx.connection.execute(
        select(messages).where(messages.c.id > after_id).order_by(messages.c.id).limit(limit)
    ).all()
    return [message_of(row._mapping) for row in rows]


def references_of(tx: Transaction, message_id: int) -> list[tuple[str, str, str]]:
    """The (kind, role, key) of a message's ``reference`` entries."""
    rows = tx.connection.execute(
        select(search_entries.c.kind, search_entries.c.role, search_entries.c.key).where(
            search_entries.c.message_id == message_id, search_entries.c.kind == "reference"
        )
    ).all()
    return [(row.kind, row.role, row.key) for row in rows]

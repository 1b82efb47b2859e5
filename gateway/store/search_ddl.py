"""The trigram indexes over the search index's keys, which table metadata cannot describe.

SQLite: two FTS5 tables with the trigram tokenizer, one over the distinct name parts (search_parts,
with a table of how many parts hold each trigram, which a search reads to choose the rarest), one
over the keys of every other kind (search_entries), kept by triggers in the transaction that writes
or deletes a row. PostgreSQL: a table of (trigram, part id) with its B-tree, which includes each
part's text and consonants (a search reads them from the index alone), written by
gateway.store.search_rows with each new name part (no extension needed), and the pg_trgm extension
with a GiST index over the keys of every other kind.
Where pg_trgm cannot be installed (not shipped with the server, or no right to create it), that
index is left out and searches of those kinds find candidates by their exact key only (no
typos); ``trigram_schema`` says which, and a search says so in its result.
"""

from __future__ import annotations

from sqlalchemy import Connection, text

PARTS_FTS = "search_parts_grams"  # the distinct name parts
PARTS_VOCAB = "search_parts_vocab"  # how many parts hold each trigram
IDS_FTS = "search_ids"
PARTS_GRAMS = "search_part_grams"  # PostgreSQL: which parts hold each trigram
GRAM_COUNTS = "search_gram_counts"  # SQLite: how many parts hold each trigram (revision 0020)
TRGM_INDEX = "ix_search_parts_trgm"  # name parts, up to revision 0018 (the trigram table since)
TRGM_OTHERS_INDEX = "ix_search_entries_key_trgm_others"  # every kind but names
TRGM_INDEXES = frozenset({TRGM_INDEX, TRGM_OTHERS_INDEX})
# What these make besides the tables of metadata: the FTS5 tables and their shadow tables, the
# trigram table.
EXTRA_TABLES = frozenset(
    {PARTS_VOCAB, PARTS_GRAMS, GRAM_COUNTS}
    | {
        f"{table}{suffix}"
        for table in (PARTS_FTS, IDS_FTS)
        for suffix in ("", "_data", "_idx", "_docsize", "_config")
    }
)

_SQLITE = (
    f"CREATE VIRTUAL TABLE IF NOT EXISTS {PARTS_FTS} USING fts5(part, content='search_parts', "
    "content_rowid='id', tokenize='trigram')",
    f"CREATE VIRTUAL TABLE IF NOT EXISTS {PARTS_VOCAB} USING fts5vocab({PARTS_FTS}, 'row')",
    f"CREATE VIRTUAL TABLE IF NOT EXISTS {IDS_FTS} USING fts5(key, content='search_entries', "
    "content_rowid='id', tokenize='trigram')",
    f"""CREATE TRIGGER IF NOT EXISTS search_parts_added AFTER INSERT ON search_parts BEGIN
      INSERT INTO {PARTS_FTS}(rowid, part) VALUES (new.id, new.part);
    END""",  # noqa: S608 (our table names)
    f"""CREATE TRIGGER IF NOT EXISTS search_parts_deleted AFTER DELETE ON search_parts BEGIN
      INSERT INTO {PARTS_FTS}({PARTS_FTS}, rowid, part) VALUES ('delete', old.id, old.part);
    END""",  # noqa: S608 (our table names)
    f"""CREATE TRIGGER IF NOT EXISTS search_entries_added AFTER INSERT ON search_entries
      WHEN new.kind <> 'person' BEGIN
      INSERT INTO {IDS_FTS}(rowid, key) VALUES (new.id, new.key);
    END""",  # noqa: S608 (our table names)
    f"""CREATE TRIGGER IF NOT EXISTS search_entries_deleted AFTER DELETE ON search_entries
      WHEN old.kind <> 'person' BEGIN
      INSERT INTO {IDS_FTS}({IDS_FTS}, rowid, key) VALUES ('delete', old.id, old.key);
    END""",  # noqa: S608 (our table names)
)
# SQLite: how many parts hold each trigram, kept by triggers with the parts (fts5vocab counts a
# trigram's parts by reading its every posting: 35 ms for the 216,000 parts of `ova` at a
# million persons; this is one look-up of its key). A part's distinct trigrams are cut by the
# trigger from a list of the places a part of PART_CHARS characters has (no CTE in a trigger);
# a trigram no part holds any more is deleted, not left at 0 (it is a piece of a name).
_AT = "json_each('[" + ",".join(str(at) for at in range(1, 63)) + "]')"
_OLD_GRAMS = (
    f"SELECT substr(old.part, at.value, 3) FROM {_AT} at"  # noqa: S608 (a constant list)
    " WHERE at.value <= length(old.part) - 2"
)
_SQLITE_COUNTS = (
    f"CREATE TABLE IF NOT EXISTS {GRAM_COUNTS} (gram TEXT PRIMARY KEY,"
    " parts INTEGER NOT NULL) WITHOUT ROWID",
    f"""CREATE TRIGGER IF NOT EXISTS search_gram_counts_added AFTER INSERT ON search_parts BEGIN
      INSERT INTO {GRAM_COUNTS} (gram, parts) SELECT DISTINCT substr(new.part, at.value, 3), 1
        FROM {_AT} at WHERE at.value <= length(new.part) - 2
        ON CONFLICT (gram) DO UPDATE SET parts = parts + 1;
    END""",  # noqa: S608 (our table names)
    f"""CREATE TRIGGER IF NOT EXISTS search_gram_counts_deleted AFTER DELETE ON search_parts
      BEGIN
      UPDATE {GRAM_COUNTS} SET parts = parts - 1 WHERE gram IN ({_OLD_GRAMS});
      DELETE FROM {GRAM_COUNTS} WHERE gram IN ({_OLD_GRAMS}) AND parts <= 0;
    END""",  # noqa: S608 (our table names)
)
# The counts of the parts held, made anew (revision 0020; a ledger made at once has none yet).
_SQLITE_COUNTS_FILL = (
    f"DELETE FROM {GRAM_COUNTS}",  # noqa: S608 (our table name)
    f"INSERT INTO {GRAM_COUNTS} (gram, parts) SELECT gram, count(*) FROM (SELECT DISTINCT"  # noqa: S608
    f" substr(p.part, at.value, 3) AS gram, p.id FROM search_parts p, {_AT} at"
    " WHERE at.value <= length(p.part) - 2) GROUP BY gram",
)
_SQLITE_COUNTS_DROP = (
    "DROP TRIGGER IF EXISTS search_gram_counts_deleted",
    "DROP TRIGGER IF EXISTS search_gram_counts_added",
    f"DROP TABLE IF EXISTS {GRAM_COUNTS}",
)
# A part's trigrams are every three characters in a row of it, as FTS5's trigram tokenizer cuts
# them. Each row carries its part and the part's consonants in the B-tree (INCLUDE): a search
# reads the parts of a trigram as one index-only range, not one look-up into search_parts per
# part. No foreign key: a part's rows are deleted by their key (its trigrams and its id) before
# the part, and a key on part_id alone would cost an index of its own.
# An index-only scan reads the heap where a page is not marked all-visible (the visibility map,
# which VACUUM sets): autovacuum visits the table after 1,000 new rows and 1 % more (not 20 %,
# PostgreSQL's default), so that the newest parts, which a common trigram's read asks first, are
# soon read from the index alone.
_PG_GRAMS = (
    f"CREATE TABLE IF NOT EXISTS {PARTS_GRAMS} (gram varchar(3) NOT NULL,"
    " part_id integer NOT NULL, part varchar(64) NOT NULL, sound varchar(64) NOT NULL,"
    " PRIMARY KEY (gram, part_id) INCLUDE (part, sound))"
    " WITH (autovacuum_vacuum_insert_scale_factor = 0.01, autovacuum_vacuum_scale_factor = 0.01)"
)
# The (trigram, part id, part, sound) rows of parts, sorted as the B-tree keeps them: those of
# the parts already held (revision 0018), and of the new parts (``{ids}``: a placeholder of
# their ids) as gateway.store.search_rows adds them.
_PG_GRAMS_OF = (
    "SELECT DISTINCT substr(p.part, at, 3), p.id, p.part, p.sound FROM search_parts p,"
    " generate_series(1, length(p.part) - 2) at"
)
PG_ADD_GRAMS = (
    f"INSERT INTO {PARTS_GRAMS} (gram, part_id, part, sound) {_PG_GRAMS_OF}"
    " WHERE p.id = ANY({ids}) ORDER BY 1, 2"
)
_PG_FILL = (
    f"INSERT INTO {PARTS_GRAMS} (gram, part_id, part, sound) {_PG_GRAMS_OF} ORDER BY 1, 2"
    " ON CONFLICT DO NOTHING"
)
_SQLITE_DROP = (
    *_SQLITE_COUNTS_DROP,
    "DROP TRIGGER IF EXISTS search_entries_deleted",
    "DROP TRIGGER IF EXISTS search_entries_added",
    "DROP TRIGGER IF EXISTS search_parts_deleted",
    "DROP TRIGGER IF EXISTS search_parts_added",
    f"DROP TABLE IF EXISTS {IDS_FTS}",
    f"DROP TABLE IF EXISTS {PARTS_VOCAB}",
    f"DROP TABLE IF EXISTS {PARTS_FTS}",
)


def create(connection: Connection) -> None:
    """Make the trigram indexes on a connection whose search_entries table exists."""
    if connection.dialect.name == "sqlite":
        for statement in _SQLITE:
            connection.exec_driver_sql(statement)
        add_gram_counts(connection)
        return
    connection.exec_driver_sql(_PG_GRAMS)
    schema = trigram_schema(connection) or _install_pg_trgm(connection)
    if schema is not None:
        # GiST, not GIN: it serves ORDER BY key <-> query LIMIT n, the nearest keys found by
        # walking the index, where GIN finds every key over a threshold and sorts them all.
        connection.exec_driver_sql(
            f"CREATE INDEX IF NOT EXISTS {TRGM_OTHERS_INDEX} ON search_entries"
            f" USING gist (key \"{schema}\".gist_trgm_ops) WHERE kind <> 'person'"
        )


def drop(connection: Connection) -> None:
    if connection.dialect.name == "sqlite":
        for statement in _SQLITE_DROP:
            connection.exec_driver_sql(statement)
        return
    for name in sorted(TRGM_INDEXES):
        connection.exec_driver_sql(f"DROP INDEX IF EXISTS {name}")
    connection.exec_driver_sql(f"DROP TABLE IF EXISTS {PARTS_GRAMS}")


def add_part_grams(connection: Connection) -> None:
    """PostgreSQL (revision 0018): the trigram table in place of the parts' GiST index, filled
    from the parts held. Nothing on SQLite, whose FTS5 table does this. The table's visibility
    map is left to autovacuum (VACUUM cannot run in the migration's transaction): until it
    passes, or a VACUUM, the index-only reads of the table still visit its heap."""
    if connection.dialect.name == "sqlite":
        return
    connection.exec_driver_sql(_PG_GRAMS)
    connection.exec_driver_sql(_PG_FILL)
    connection.exec_driver_sql(f"DROP INDEX IF EXISTS {TRGM_INDEX}")
    connection.exec_driver_sql(f"ANALYZE {PARTS_GRAMS}")


def drop_part_grams(connection: Connection) -> None:
    """PostgreSQL (revision 0018 undone): the parts' GiST index again, where pg_trgm is, in
    place of the trigram table."""
    if connection.dialect.name == "sqlite":
        return
    connection.exec_driver_sql(f"DROP TABLE IF EXISTS {PARTS_GRAMS}")
    schema = trigram_schema(connection)
    if schema is not None:
        connection.exec_driver_sql(
            f"CREATE INDEX IF NOT EXISTS {TRGM_INDEX} ON search_parts"
            f' USING gist (part "{schema}".gist_trgm_ops)'
        )


def add_gram_counts(connection: Connection) -> None:
    """SQLite (revision 0020): the table of how many parts hold each trigram, with its
    triggers, filled from the parts held. Nothing on PostgreSQL, which counts a trigram's parts
    in its trigram table's B-tree."""
    if connection.dialect.name != "sqlite":
        return
    for statement in (*_SQLITE_COUNTS, *_SQLITE_COUNTS_FILL):
        connection.exec_driver_sql(statement)


def drop_gram_counts(connection: Connection) -> None:
    """SQLite (revision 0020 undone): the trigram counts and their triggers dropped."""
    if connection.dialect.name != "sqlite":
        return
    for statement in _SQLITE_COUNTS_DROP:
        connection.exec_driver_sql(statement)


def trigram_schema(connection: Connection) -> str | None:
    """PostgreSQL: the schema pg_trgm is installed in, or None where it is not."""
    found = connection.execute(
        text(
            "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace"
            " WHERE e.extname = 'pg_trgm'"
        )
    ).scalar()
    return None if found is None else str(found)


def _install_pg_trgm(connection: Connection) -> str | None:
    """Install pg_trgm (in ``public`` where there is one, so that it outlives any other
    schema), or None where the server lacks it or we may not create it."""
    available = connection.execute(
        text("SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm'")
    ).scalar()
    if available is None:
        return None
    public = connection.execute(
        text("SELECT 1 FROM pg_namespace WHERE nspname = 'public'")
    ).scalar()
    where = " WITH SCHEMA public" if public is not None else ""
    savepoint = connection.begin_nested()
    try:
        connection.exec_driver_sql(f"CREATE EXTENSION IF NOT EXISTS pg_trgm{where}")
    except Exception:  # no right to create it: searches go by exact keys
        savepoint.rollback()
        return None
    savepoint.commit()
    return trigram_schema(connection)

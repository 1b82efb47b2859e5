"""The trigram indexes over the search index's keys, which table metadata cannot describe.

SQLite: two FTS5 tables with the trigram tokenizer, one over the distinct name parts
(search_parts, with an fts5vocab table saying how many parts hold each trigram), one over the
keys of every other kind (search_entries), kept by triggers in the transaction that writes or
deletes a row. PostgreSQL: a table of (trigram, part id) with its B-tree, which includes each
part's text and consonants (a search reads them from the index alone), written by
gateway.store.search_rows with each new name part (no extension needed), and the pg_trgm
extension with a GiST index over the keys of every other kind.
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
TRGM_INDEX = "ix_search_parts_trgm"  # name parts, up to revision 0018 (the trigram table since)
TRGM_OTHERS_INDEX = "ix_search_entries_key_trgm_others"  # every kind but names
TRGM_INDEXES = frozenset({TRGM_INDEX, TRGM_OTHERS_INDEX})
# What these make besides the tables of metadata: the FTS5 tables and their shadow tables, the
# trigram table.
EXTRA_TABLES = frozenset(
    {PARTS_VOCAB, PARTS_GRAMS}
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

"""The trigram indexes over the search index's keys, which table metadata cannot describe.

SQLite: two FTS5 tables with the trigram tokenizer, one over the distinct name parts
(search_parts, with an fts5vocab table saying how many parts hold each trigram), one over the
keys of every other kind (search_entries), kept by triggers in the transaction that writes or
deletes a row. PostgreSQL: the pg_trgm extension and two GiST indexes (name parts; the keys of
every other kind).
Where pg_trgm cannot be installed (not shipped with the server, or no right to create it), the
indexes are left out and searches
find candidates by their exact key only (spelling variants and reordered name parts, no typos);
``trigram_schema`` says which, and a search says so in its result.
"""

from __future__ import annotations

from sqlalchemy import Connection, text

PARTS_FTS = "search_parts_grams"  # the distinct name parts
PARTS_VOCAB = "search_parts_vocab"  # how many parts hold each trigram
IDS_FTS = "search_ids"
TRGM_INDEX = "ix_search_parts_trgm"  # name parts
TRGM_OTHERS_INDEX = "ix_search_entries_key_trgm_others"  # every kind but names
TRGM_INDEXES = frozenset({TRGM_INDEX, TRGM_OTHERS_INDEX})
# What these make besides the tables of metadata: the FTS5 tables and their shadow tables.
EXTRA_TABLES = frozenset(
    {PARTS_VOCAB}
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
    schema = trigram_schema(connection) or _install_pg_trgm(connection)
    if schema is not None:
        # GiST, not GIN: it serves ORDER BY key <-> query LIMIT n, the nearest keys found by
        # walking the index, where GIN finds every key over a threshold and sorts them all.
        connection.exec_driver_sql(
            f"CREATE INDEX IF NOT EXISTS {TRGM_INDEX} ON search_parts"
            f' USING gist (part "{schema}".gist_trgm_ops)'
        )
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

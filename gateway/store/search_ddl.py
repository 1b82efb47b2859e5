"""The trigram indexes over the search index's keys, which table metadata cannot describe.

SQLite: two FTS5 tables with the trigram tokenizer (names; every other kind), whose content is
search_entries itself, kept by triggers in the transaction that writes or deletes an entry.
PostgreSQL: the pg_trgm extension and two partial GiST indexes on ``key`` (names; the rest).
Where pg_trgm cannot be installed (not shipped with the server, or no right to create it), the
indexes are left out and searches
find candidates by their exact key only (spelling variants and reordered name parts, no typos);
``trigram_schema`` says which, and a search says so in its result.
"""

from __future__ import annotations

from sqlalchemy import Connection, text

NAMES_FTS = "search_names"
IDS_FTS = "search_ids"
TRGM_INDEX = "ix_search_entries_key_trgm"  # names
TRGM_OTHERS_INDEX = "ix_search_entries_key_trgm_others"  # every other kind
TRGM_INDEXES = frozenset({TRGM_INDEX, TRGM_OTHERS_INDEX})
# What these make besides the tables of metadata: the FTS5 tables and their shadow tables.
EXTRA_TABLES = frozenset(
    f"{table}{suffix}"
    for table in (NAMES_FTS, IDS_FTS)
    for suffix in ("", "_data", "_idx", "_docsize", "_config")
)

_SQLITE = (
    f"CREATE VIRTUAL TABLE IF NOT EXISTS {NAMES_FTS} USING fts5(key, content='search_entries', "
    "content_rowid='id', tokenize='trigram')",
    f"CREATE VIRTUAL TABLE IF NOT EXISTS {IDS_FTS} USING fts5(key, content='search_entries', "
    "content_rowid='id', tokenize='trigram')",
    f"""CREATE TRIGGER IF NOT EXISTS search_entries_added AFTER INSERT ON search_entries BEGIN
      INSERT INTO {NAMES_FTS}(rowid, key) SELECT new.id, new.key WHERE new.kind = 'person';
      INSERT INTO {IDS_FTS}(rowid, key) SELECT new.id, new.key WHERE new.kind <> 'person';
    END""",
    f"""CREATE TRIGGER IF NOT EXISTS search_entries_deleted AFTER DELETE ON search_entries BEGIN
      INSERT INTO {NAMES_FTS}({NAMES_FTS}, rowid, key)
        SELECT 'delete', old.id, old.key WHERE old.kind = 'person';
      INSERT INTO {IDS_FTS}({IDS_FTS}, rowid, key)
        SELECT 'delete', old.id, old.key WHERE old.kind <> 'person';
    END""",
)
_SQLITE_DROP = (
    "DROP TRIGGER IF EXISTS search_entries_deleted",
    "DROP TRIGGER IF EXISTS search_entries_added",
    f"DROP TABLE IF EXISTS {IDS_FTS}",
    f"DROP TABLE IF EXISTS {NAMES_FTS}",
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
        for name, which in ((TRGM_INDEX, "= 'person'"), (TRGM_OTHERS_INDEX, "<> 'person'")):
            connection.exec_driver_sql(
                f"CREATE INDEX IF NOT EXISTS {name} ON search_entries"
                f' USING gist (key "{schema}".gist_trgm_ops) WHERE kind {which}'
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

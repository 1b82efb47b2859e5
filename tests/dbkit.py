"""Test kit for the ledger: a private, throwaway schema on the test PostgreSQL, named in the URL it
yields; the statements a block runs, and SQLite's plans of them."""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, event, text

from gateway.store import schema
from gateway.store.ledger import NewMessage, make_engine, metadata
from gateway.store.states import InboundState

# A partner's form as the pipeline records it: the message the ledger and schema tests store.
RECEIVED = NewMessage(
    direction="inbound",
    partner="NO-SIRENE",
    channel="sirene",
    form="G",
    reference="NO-2026-000123",
    message_id="<a@no.example>",
    priority="urgent",
    content_sha256="a" * 64,
    raw_sha256="b" * 64,
    state=InboundState.RECEIVED,
    spool_key="k1",
    desk="sirene",
)

ENV_VAR = "GATEWAY_TEST_POSTGRES_URL"
# Where a PostgreSQL server is looked for when the variable is not set: this machine's own.
LOCAL_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def _find_postgres() -> tuple[str, str]:
    """The test server's URL ("" for none) and how it was found, for the session's report."""
    if ENV_VAR in os.environ:
        url = os.environ[ENV_VAR]
        return url, f"{ENV_VAR}={url}" if url else f"{ENV_VAR} is set empty"
    if _reachable("127.0.0.1", 5432):
        return LOCAL_URL, f"{ENV_VAR} not set; found a server on 127.0.0.1:5432"
    return "", f"{ENV_VAR} not set and nothing answers on 127.0.0.1:5432"


POSTGRES_URL, POSTGRES_FOUND = _find_postgres()


@contextlib.contextmanager
def postgres_schema() -> Iterator[str]:
    """A URL whose connections see only a new, empty schema, dropped afterwards. Skips the test,
    saying so, when there is no server: GATEWAY_TEST_POSTGRES_URL (CI sets it), or else one
    answering on 127.0.0.1:5432."""
    if not POSTGRES_URL:
        pytest.skip(f"no PostgreSQL: {POSTGRES_FOUND}")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = make_engine(POSTGRES_URL)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def upgraded(url: str) -> str:
    """The ledger at ``url`` brought to this gateway's schema revision, as an operator's
    `gateway db upgrade` does before the first `serve`; returns the URL."""
    engine = make_engine(url)
    try:
        schema.upgrade(engine)
    finally:
        engine.dispose()
    return url


REPORT_INDEXES = (
    "ix_messages_created",
    "ix_events_kind_at",
    "ix_deadlines_due",
    "ix_deadlines_opened",
)


def make_pre_migration_ledger(engine: Engine) -> None:
    """The tables every command made with ``metadata.create_all`` before schema migrations began
    (those of revision 0001), and no version table."""
    metadata.create_all(
        engine, tables=[metadata.tables[name] for name in sorted(schema.ADOPTED_TABLES)]
    )
    # What later revisions added to those tables was not there then (0003: the worklist's
    # indexes; 0006: the deadlines' pause).
    with engine.begin() as connection:
        connection.execute(text("DROP INDEX IF EXISTS ix_messages_desk_id"))
        connection.execute(text("DROP INDEX IF EXISTS ix_messages_direction_id"))
        connection.execute(text("ALTER TABLE deadlines DROP COLUMN paused_at"))
        connection.execute(text("ALTER TABLE deadlines DROP COLUMN paused_seconds"))
        # 0009: the alert article and the reports' indexes
        for index in REPORT_INDEXES:
            connection.execute(text(f"DROP INDEX IF EXISTS {index}"))
        connection.execute(text("ALTER TABLE messages DROP COLUMN alert_article"))
        connection.execute(text("ALTER TABLE messages DROP COLUMN shredded_at"))  # 0011


@contextlib.contextmanager
def statements_run(engine: Engine, naming: str) -> Iterator[list[tuple[str, Any]]]:
    """The statements ``engine`` runs inside the block that name ``naming``, with their
    parameters, as the driver was given them."""
    run: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if naming in statement:
            run.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield run
    finally:
        event.remove(engine, "before_cursor_execute", record)


def sqlite_plan(connection: Connection, statement: str, parameters: Any) -> str:
    """SQLite's EXPLAIN QUERY PLAN of a statement, its steps joined by " | "."""
    steps = connection.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)
    return " | ".join(row[3] for row in steps)

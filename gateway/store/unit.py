"""The unit of work: one transaction on the ledger, which the store's named operations join.

What must commit together is written inside one ``with ledger.transaction() as tx:`` block and
passed ``tx``; the block commits when it ends, or rolls everything back when it raises. Outside
gateway.store a Transaction is only handed on: SQL is the store's own (a test holds it).

The store's exceptions are named here too, so that a caller that must tell "our database is in
trouble" (a 4xx) from the rest needs no import of SQLAlchemy.
"""

from __future__ import annotations

import re
import threading
import weakref
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from typing import Any

from sqlalchemy import Connection, Engine, event, exc

# Whatever the database or its driver raises; a conflict with a unique key; the database is
# unreachable, locked too long or out of space.
LedgerError = exc.SQLAlchemyError
LedgerConflict = exc.IntegrityError
LedgerUnavailable = exc.OperationalError


class Transaction:
    """An open transaction. ``connection`` is for gateway.store's modules only."""

    __slots__ = ("connection",)

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    @property
    def dialect(self) -> str:
        """The database's name as SQLAlchemy spells it: sqlite, postgresql."""
        return self.connection.dialect.name


# On SQLite the writers of this process take turns on a lock of their engine: a writer that meets
# another inside SQLite is put to sleep by its busy handler (1, 2, 5, 10 ms and more), one waiting
# here goes on the moment the other commits. Since they take turns, they share one connection,
# kept open (in autocommit mode: BEGIN IMMEDIATE and COMMIT are ours to say); each thread keeps
# one for its reads. Checking a connection out of the pool and back in (its reset, its isolation
# level set and reset) cost more than the statements of a message's intake together.
class _Kept:
    """The connections kept for one SQLite engine; closed when the engine is disposed.

    A connection is never closed under a thread that is using it (closing a SQLite connection in
    the middle of another thread's statement crashes the process): the dispose waits for the
    writer's turn, and a reader in use is closed by its own thread when its read ends."""

    def __init__(self, engine: Engine) -> None:
        self.lock = threading.RLock()
        self.writer: Connection | None = None
        self.readers = threading.local()
        self.opened: weakref.WeakSet[Connection] = weakref.WeakSet()
        self.reading: set[Connection] = set()  # readers in use, which their threads close
        self.guard = threading.Lock()
        event.listen(engine, "engine_disposed", self.close)

    def open(self, engine: Engine, *, autocommit: bool) -> Connection:
        connection = engine.connect()
        if autocommit:
            connection.execution_options(isolation_level="AUTOCOMMIT")
        with self.guard:
            self.opened.add(connection)
        return connection

    def forget(self, connection: Connection, *, discard: bool = False) -> None:
        """Close a kept connection after a failure: the next use opens a new one. ``discard``:
        its pool is gone (the engine was disposed), so its driver's connection is closed too."""
        if self.writer is connection:
            self.writer = None
        if getattr(self.readers, "connection", None) is connection:
            self.readers.connection = None
        with self.guard:
            self.opened.discard(connection)
        with suppress(Exception):
            if discard:
                connection.invalidate()
            connection.close()

    def begin_read(self, connection: Connection) -> None:
        with self.guard:
            self.reading.add(connection)

    def end_read(self, connection: Connection) -> bool:
        """The read on ``connection`` is over; False when the engine was disposed meanwhile."""
        with self.guard:
            self.reading.discard(connection)
            return connection in self.opened

    def close(self, _engine: Engine | None = None) -> None:
        with self.lock:  # the writer's turn: not while another thread writes
            with self.guard:
                kept = [one for one in self.opened if one not in self.reading]
                self.opened = weakref.WeakSet()
            self.writer = None
            self.readers = threading.local()
            for connection in kept:  # their pool is gone with the dispose: closed, not checked in
                with suppress(Exception):
                    connection.invalidate()
                    connection.close()


_KEPT = "_gateway_kept"  # the engine's attribute that holds them: they go when the engine goes
_kept_guard = threading.Lock()


def _kept_for(engine: Engine) -> _Kept:
    with _kept_guard:
        kept: _Kept | None = getattr(engine, _KEPT, None)
        if kept is None:
            kept = _Kept(engine)
            setattr(engine, _KEPT, kept)
        return kept


@contextmanager
def writing(engine: Engine) -> Iterator[Transaction]:
    """A write transaction: committed when the block ends, rolled back when it raises.

    On SQLite it starts with BEGIN IMMEDIATE, so that no other writer can come between the reads
    and the writes inside it (a deferred transaction would fail on its first write instead).
    """
    if engine.dialect.name != "sqlite":
        with engine.begin() as connection:
            yield Transaction(connection)
        return
    kept = _kept_for(engine)
    with kept.lock:
        found = kept.writer
        nested = found is not None and in_sqlite_transaction(found)  # a write inside a write
        if found is None or nested:
            connection = kept.open(engine, autocommit=True)
            if not nested:
                kept.writer = connection
        else:
            connection = found
        try:
            say_to_sqlite(connection, "BEGIN IMMEDIATE")
            try:
                yield Transaction(connection)
            except BaseException:
                if in_sqlite_transaction(connection):
                    say_to_sqlite(connection, "ROLLBACK")
                raise
            say_to_sqlite(connection, "COMMIT")
        except BaseException:
            kept.forget(connection)
            raise
        finally:
            if nested:
                kept.forget(connection)


@contextmanager
def reading(engine: Engine) -> Iterator[Transaction]:
    """A connection for reads: what it sees is committed data; it writes nothing."""
    if engine.dialect.name != "sqlite":
        # A READ ONLY transaction (the server refuses any write in it), ended by COMMIT: psycopg
        # forgets every statement it prepared on a connection at each ROLLBACK, so reads that
        # rolled back had the server parse and plan each of their statements anew, every time.
        # An exception still rolls back.
        with engine.connect().execution_options(postgresql_readonly=True) as connection:
            yield Transaction(connection)
            connection.commit()  # the transaction SQLAlchemy began, if it did
            driver = connection.connection.dbapi_connection
            if driver is not None:  # the one the driver began for the hot reads on its cursors
                driver.commit()
        return
    kept = _kept_for(engine)
    found: Connection | None = getattr(kept.readers, "connection", None)
    if found is None or found.in_transaction():  # none yet, or a read inside a read
        connection = kept.open(engine, autocommit=False)
        if found is None:
            kept.readers.connection = connection
    else:
        connection = found
    kept.begin_read(connection)
    try:
        yield Transaction(connection)
    except BaseException:
        kept.end_read(connection)
        kept.forget(connection)
        raise
    if not kept.end_read(connection):
        kept.forget(connection, discard=True)  # the engine was disposed during the read
    elif getattr(kept.readers, "connection", None) is not connection:
        kept.forget(connection)  # a read inside a read
    elif connection.in_transaction():
        connection.rollback()  # ends what SQLAlchemy began: the next read sees new commits


_SAVEPOINT_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


@contextmanager
def savepoint(tx: Transaction, name: str) -> Iterator[None]:
    """A SAVEPOINT inside ``tx``: when the block raises, what it wrote is undone and the rest of
    the transaction goes on (on PostgreSQL too, where an error otherwise aborts the whole
    transaction). ``name``: a lower-case SQL identifier."""
    if not _SAVEPOINT_NAME.fullmatch(name):
        raise ValueError(f"not a savepoint name: {name!r}")
    connection = tx.connection
    connection.exec_driver_sql(f"SAVEPOINT {name}")
    try:
        yield
    except BaseException:
        connection.exec_driver_sql(f"ROLLBACK TO SAVEPOINT {name}")
        connection.exec_driver_sql(f"RELEASE SAVEPOINT {name}")
        raise
    connection.exec_driver_sql(f"RELEASE SAVEPOINT {name}")


def say_to_sqlite(
    connection: Connection,
    statement: str,
    values: Mapping[str, object] | Sequence[Mapping[str, object]] = (),
) -> Any:
    """A fixed statement said to SQLite's own connection (with SQLite's own :named parameters;
    a list of rows: once for each), its error raised as SQLAlchemy would raise it (a locked
    database: LedgerUnavailable; a unique key: LedgerConflict); returns the driver's cursor.
    For the writer's connection, in autocommit mode, whose BEGIN IMMEDIATE and COMMIT are the
    store's, and for hot statements: SQLAlchemy's execution path (its context, events and
    cursor) cost more than SQLite's own work for a BEGIN or a COMMIT (about 15 us a statement)."""
    driver = connection.connection.driver_connection
    if driver is None:  # pragma: no cover - a kept connection is always open
        raise exc.ResourceClosedError("the ledger's connection is closed")
    dbapi = connection.dialect.loaded_dbapi
    try:
        if isinstance(values, Sequence):
            if values:
                return driver.executemany(statement, values)
            return driver.execute(statement)
        return driver.execute(statement, values)
    except dbapi.Error as error:
        raise exc.DBAPIError.instance(
            statement, None, error, dbapi.Error, dialect=connection.dialect
        ) from error


def in_sqlite_transaction(connection: Connection) -> bool:
    """Whether SQLite has begun a transaction on this connection (the driver defers BEGIN)."""
    raw = connection.connection.dbapi_connection
    return bool(getattr(raw, "in_transaction", False))

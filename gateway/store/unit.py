"""The unit of work: one transaction on the ledger, which the store's named operations join.

What must commit together is written inside one ``with ledger.transaction() as tx:`` block and
passed ``tx``; the block commits when it ends, or rolls everything back when it raises. Outside
gateway.store a Transaction is only handed on: SQL is the store's own (a test holds it).

The store's exceptions are named here too, so that a caller that must tell "our database is in
trouble" (a 4xx) from the rest needs no import of SQLAlchemy.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine, exc

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
# here goes on the moment the other commits.
_writers: weakref.WeakKeyDictionary[Engine, threading.RLock] = weakref.WeakKeyDictionary()
_writers_guard = threading.Lock()


def _writer_lock(engine: Engine) -> threading.RLock:
    with _writers_guard:
        lock = _writers.get(engine)
        if lock is None:
            lock = _writers[engine] = threading.RLock()
        return lock


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
    with _writer_lock(engine), engine.connect() as connection:
        # The driver then leaves transaction control to us: BEGIN IMMEDIATE is ours to say.
        connection.execution_options(isolation_level="AUTOCOMMIT")
        connection.exec_driver_sql("BEGIN IMMEDIATE")
        try:
            yield Transaction(connection)
        except BaseException:
            if in_sqlite_transaction(connection):
                connection.exec_driver_sql("ROLLBACK")
            raise
        connection.exec_driver_sql("COMMIT")


@contextmanager
def reading(engine: Engine) -> Iterator[Transaction]:
    """A connection for reads: what it sees is committed data; it writes nothing."""
    with engine.connect() as connection:
        yield Transaction(connection)


def in_sqlite_transaction(connection: Connection) -> bool:
    """Whether SQLite has begun a transaction on this connection (the driver defers BEGIN)."""
    raw = connection.connection.dbapi_connection
    return bool(getattr(raw, "in_transaction", False))

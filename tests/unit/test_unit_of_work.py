"""The unit of work on SQLite: the writers share one kept connection, each thread keeps one for
its reads; a failure drops the connection it happened on; disposing the engine closes them."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from gateway.store.ledger import make_engine
from gateway.store.unit import (
    LedgerConflict,
    LedgerUnavailable,
    in_sqlite_transaction,
    reading,
    savepoint,
    say_to_sqlite,
    writing,
)


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    made = make_engine(f"sqlite:///{tmp_path / 'unit.db'}")
    with writing(made) as tx:
        tx.connection.exec_driver_sql("CREATE TABLE t (n INTEGER)")
    return made


def raw(tx: object) -> object:
    return tx.connection.connection.dbapi_connection  # type: ignore[attr-defined]


def count(engine: Engine) -> int:
    with reading(engine) as tx:
        return int(tx.connection.execute(text("SELECT count(*) FROM t")).scalar_one())


def test_writers_share_one_kept_connection(engine: Engine) -> None:
    seen = []
    for n in range(3):
        with writing(engine) as tx:
            tx.connection.execute(text("INSERT INTO t VALUES (:n)"), {"n": n})
            seen.append(raw(tx))
    assert len({id(one) for one in seen}) == 1
    assert count(engine) == 3
    other: list[object] = []

    def write_elsewhere() -> None:
        with writing(engine) as tx:
            other.append(raw(tx))

    thread = threading.Thread(target=write_elsewhere)
    thread.start()
    thread.join()
    assert other == seen[:1], "another thread takes its turn on the same connection"


def test_each_thread_reads_on_its_own_connection_and_sees_new_commits(engine: Engine) -> None:
    with reading(engine) as tx:
        first = raw(tx)
    assert count(engine) == 0
    with writing(engine) as tx:
        tx.connection.exec_driver_sql("INSERT INTO t VALUES (1)")
    with reading(engine) as tx:
        assert raw(tx) is first
        assert not in_sqlite_transaction(tx.connection)
    assert count(engine) == 1, "a kept reader sees what was committed since"
    theirs: list[object] = []

    def read_elsewhere() -> None:
        with reading(engine) as tx:
            theirs.append(raw(tx))

    thread = threading.Thread(target=read_elsewhere)
    thread.start()
    thread.join()
    assert theirs[0] is not first


def test_a_failed_write_rolls_back_and_drops_its_connection(engine: Engine) -> None:
    with writing(engine) as tx:
        before = raw(tx)
    with pytest.raises(RuntimeError), writing(engine) as tx:
        tx.connection.exec_driver_sql("INSERT INTO t VALUES (1)")
        raise RuntimeError("a later step failed")
    assert count(engine) == 0
    with writing(engine) as tx:
        assert raw(tx) is not before
        tx.connection.exec_driver_sql("INSERT INTO t VALUES (2)")
    assert count(engine) == 1


def test_writes_and_reads_inside_others(engine: Engine) -> None:
    with writing(engine) as outer:
        outer.connection.exec_driver_sql("INSERT INTO t VALUES (1)")
        with reading(engine) as read:
            assert read.connection.execute(text("SELECT count(*) FROM t")).scalar_one() == 0
            with reading(engine) as inner:  # a read inside a read: a connection of its own
                assert raw(inner) is not raw(read)
                inner.connection.execute(text("SELECT 1")).scalar_one()
    assert count(engine) == 1


def test_dispose_closes_the_kept_connections(engine: Engine) -> None:
    with writing(engine) as tx:
        writer = raw(tx)
    with reading(engine) as tx:
        reader = raw(tx)
    engine.dispose()
    for closed in (writer, reader):
        with pytest.raises(Exception, match="closed"):
            closed.execute("SELECT 1")  # type: ignore[attr-defined]
    with writing(engine) as tx:  # the engine still works: new connections
        tx.connection.exec_driver_sql("INSERT INTO t VALUES (3)")
    assert count(engine) == 1


def test_dispose_waits_for_a_write_in_progress(engine: Engine) -> None:
    inside, go_on = threading.Event(), threading.Event()
    committed: list[bool] = []

    def write_slowly() -> None:
        with writing(engine) as tx:
            tx.connection.exec_driver_sql("INSERT INTO t VALUES (1)")
            inside.set()
            go_on.wait(5)
        committed.append(True)

    writer = threading.Thread(target=write_slowly)
    writer.start()
    assert inside.wait(5)
    disposer = threading.Thread(target=engine.dispose)
    disposer.start()
    disposer.join(0.2)
    assert disposer.is_alive(), "the dispose waits for the writer's turn"
    go_on.set()
    writer.join(5)
    disposer.join(5)
    assert committed == [True] and not disposer.is_alive()
    assert count(engine) == 1


def test_dispose_leaves_a_read_in_progress_to_its_thread(engine: Engine) -> None:
    with writing(engine) as tx:
        tx.connection.exec_driver_sql("INSERT INTO t VALUES (1)")
    inside, go_on = threading.Event(), threading.Event()
    seen: list[object] = []

    def read_slowly() -> None:
        with reading(engine) as tx:
            seen.append(raw(tx))
            inside.set()
            go_on.wait(5)
            seen.append(tx.connection.execute(text("SELECT count(*) FROM t")).scalar_one())

    reader = threading.Thread(target=read_slowly)
    reader.start()
    assert inside.wait(5)
    engine.dispose()  # returns at once: the reader's connection is not closed under it
    go_on.set()
    reader.join(5)
    assert seen[1] == 1, "the read went on after the dispose"
    with pytest.raises(Exception, match="closed"):
        seen[0].execute("SELECT 1")  # type: ignore[attr-defined]


def test_a_savepoint_undoes_its_block_only_and_refuses_a_bad_name(engine: Engine) -> None:
    with writing(engine) as tx:
        tx.connection.exec_driver_sql("INSERT INTO t VALUES (1)")
        with pytest.raises(ZeroDivisionError), savepoint(tx, "one"):
            tx.connection.exec_driver_sql("INSERT INTO t VALUES (2)")
            raise ZeroDivisionError
        with savepoint(tx, "two"):
            tx.connection.exec_driver_sql("INSERT INTO t VALUES (3)")
        for bad in ("x; DROP TABLE t", "", "Upper", "a b"):
            with pytest.raises(ValueError, match="savepoint name"), savepoint(tx, bad):
                tx.connection.exec_driver_sql("INSERT INTO t VALUES (4)")
    with reading(engine) as tx:
        values = tx.connection.execute(text("SELECT n FROM t ORDER BY n")).scalars().all()
    assert values == [1, 3]


def test_a_locked_database_raises_ledger_unavailable_and_the_next_write_goes_on(
    engine: Engine, tmp_path: Path
) -> None:
    with writing(engine) as tx:
        tx.connection.exec_driver_sql("PRAGMA busy_timeout = 0")  # fail at once, not after waiting
    holder = sqlite3.connect(tmp_path / "unit.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    with pytest.raises(LedgerUnavailable, match="locked"), writing(engine):
        pytest.fail("the write lock is another connection's")
    holder.execute("COMMIT")
    holder.close()
    with writing(engine) as tx:
        tx.connection.exec_driver_sql("INSERT INTO t VALUES (7)")
    assert count(engine) == 1


def test_a_statement_said_to_sqlite_raises_as_sqlalchemy_would(engine: Engine) -> None:
    with writing(engine) as tx:
        tx.connection.exec_driver_sql("CREATE UNIQUE INDEX t_n ON t (n)")
        say_to_sqlite(tx.connection, "INSERT INTO t VALUES (:n)", [{"n": 1}, {"n": 2}])
        assert say_to_sqlite(tx.connection, "SELECT count(*) FROM t").fetchone() == (2,)
    with pytest.raises(LedgerConflict), writing(engine) as tx:
        say_to_sqlite(tx.connection, "INSERT INTO t VALUES (:n)", {"n": 3})
        say_to_sqlite(tx.connection, "INSERT INTO t VALUES (:n)", {"n": 1})
    assert count(engine) == 2, "the transaction that raised was rolled back"

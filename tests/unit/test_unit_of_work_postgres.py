"""The unit of work's reads on PostgreSQL: READ ONLY transactions, ended by COMMIT so that the
statements psycopg prepared on a connection are kept for the next read."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from dbkit import postgres_schema, upgraded
from sqlalchemy import Engine, text

from gateway.core.clock import FakeClock
from gateway.store import gauges, jobruns
from gateway.store.audit import GENESIS, AuditLog
from gateway.store.ledger import make_engine
from gateway.store.unit import LedgerError, reading, writing

HOT = "SELECT n FROM t WHERE n = %s"
NOW = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.fixture
def engine() -> Iterator[Engine]:
    with postgres_schema() as url:
        made = make_engine(url)
        with writing(made) as tx:
            tx.connection.exec_driver_sql("CREATE TABLE t (n integer)")
            tx.connection.exec_driver_sql("INSERT INTO t VALUES (1), (2)")
        try:
            yield made
        finally:
            made.dispose()


def driver(tx: Any) -> Any:
    return tx.connection.connection.driver_connection


def server_prepared(tx: Any) -> list[str]:
    rows = tx.connection.exec_driver_sql("SELECT statement FROM pg_prepared_statements").all()
    return [str(row[0]) for row in rows]


def test_a_write_in_a_read_is_refused_and_nothing_is_written(engine: Engine) -> None:
    with pytest.raises(LedgerError, match="read-only transaction"), reading(engine) as tx:
        tx.connection.execute(text("INSERT INTO t VALUES (3)"))
    with pytest.raises(LedgerError, match="read-only transaction"), reading(engine) as tx:
        tx.connection.execute(text("SELECT n FROM t WHERE n = 1 FOR UPDATE"))
    with reading(engine) as tx:  # the connection the refusals happened on reads on
        assert tx.connection.execute(text("SELECT count(*) FROM t")).scalar_one() == 2


def test_the_statements_prepared_in_a_read_are_kept_for_the_next_read(engine: Engine) -> None:
    pids = set()
    for _ in range(3):
        with reading(engine) as tx:
            pids.add(driver(tx).info.backend_pid)
            for _ in range(6):  # psycopg prepares a statement at its fifth execution
                assert driver(tx).cursor().execute(HOT, [1]).fetchall() == [(1,)]
    assert len(pids) == 1, "the pool gave the reads one connection"
    with reading(engine) as tx:
        # One PREPARE in all: a read ended by ROLLBACK had psycopg forget (and the server
        # deallocate) every statement it had prepared on the connection.
        assert server_prepared(tx) == ["SELECT n FROM t WHERE n = $1"]


def test_a_write_after_reads_on_the_same_connection_is_not_read_only(engine: Engine) -> None:
    with reading(engine) as tx:
        tx.connection.execute(text("SELECT 1"))
    with writing(engine) as tx:
        tx.connection.execute(text("INSERT INTO t VALUES (3)"))
    with reading(engine) as tx:
        assert tx.connection.execute(text("SELECT count(*) FROM t")).scalar_one() == 3


def test_a_read_that_raises_rolls_back(engine: Engine) -> None:
    with pytest.raises(RuntimeError, match="stop"), reading(engine) as tx:
        driver(tx).cursor().execute(HOT, [1])
        raise RuntimeError("stop")
    with reading(engine) as tx:
        assert driver(tx).info.transaction_status == 0  # idle: nothing left open
        assert tx.connection.execute(text("SELECT count(*) FROM t")).scalar_one() == 2


def test_the_stores_own_reads_leave_the_prepared_statements_in_place() -> None:
    with postgres_schema() as url:
        engine = make_engine(upgraded(url))
        try:
            with reading(engine) as tx:
                for _ in range(6):
                    driver(tx).cursor().execute("SELECT id FROM messages WHERE id = %s", [1])
            # The metrics' figures at each scrape, a scheduled job's check, the audit's reads.
            gauges.read(engine, NOW)
            assert not jobruns.ran(engine, "purge", "2026-12-01")
            audit = AuditLog(engine, FakeClock(NOW))
            assert audit.head() == (0, GENESIS)
            assert audit.entries() == []
            assert audit.check().problems == ()
            with reading(engine) as tx:
                assert server_prepared(tx) == ["SELECT id FROM messages WHERE id = $1"]
        finally:
            engine.dispose()

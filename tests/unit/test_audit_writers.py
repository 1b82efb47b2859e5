"""AuditLog.begin's in-process writer lock on SQLite: threads appending at once make one chain."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import pytest
from sqlalchemy import Engine

from gateway.core.clock import FakeClock
from gateway.store import schema
from gateway.store.audit import AuditLog
from gateway.store.ledger import make_engine

START = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    schema.upgrade(engine)
    yield engine
    engine.dispose()


def together(workers: list[Callable[[], object]]) -> None:
    """Run each worker in a thread of its own, all released at once; re-raise any failure."""
    errors: list[BaseException] = []
    gate = threading.Barrier(len(workers))

    def run(work: Callable[[], object]) -> None:
        try:
            gate.wait()
            work()
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(work,)) for work in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a writer hangs"
    assert errors == []


def test_two_concurrent_appends_make_a_chain_that_verifies(sqlite_engine: Engine) -> None:
    log = AuditLog(sqlite_engine, FakeClock(START))
    for round_ in range(20):
        together([partial(log.append, "race", reference=f"R{round_}-{n}") for n in range(2)])
    entries = log.entries()
    assert [entry.seq for entry in entries] == list(range(1, 41))
    assert len({entry.reference for entry in entries}) == 40
    assert log.verify() == []
    assert log.check().intact


def test_two_audit_logs_on_one_file_make_one_chain(sqlite_engine: Engine) -> None:
    """Two AuditLogs have two writer locks: SQLite's BEGIN IMMEDIATE still keeps the order."""
    first = AuditLog(sqlite_engine, FakeClock(START))
    second = AuditLog(sqlite_engine, FakeClock(START))

    def many(log: AuditLog, name: str) -> None:
        for n in range(25):
            log.append("race", reference=f"{name}-{n}")

    together([lambda: many(first, "A"), lambda: many(second, "B")])
    entries = first.entries()
    assert [entry.seq for entry in entries] == list(range(1, 51))
    assert first.verify() == [] and second.verify() == []


def test_begin_and_append_from_threads_interleave_safely(sqlite_engine: Engine) -> None:
    log = AuditLog(sqlite_engine, FakeClock(START))

    def in_transaction() -> None:
        for n in range(20):
            with log.begin() as connection:
                log.append_in(connection, "race", reference=f"T-{n}")

    def on_its_own() -> None:
        for n in range(20):
            log.append("race", reference=f"O-{n}")

    together([in_transaction, on_its_own])
    assert len(log.entries()) == 40
    assert log.verify() == []


def test_a_failed_transaction_releases_the_writer_lock(sqlite_engine: Engine) -> None:
    log = AuditLog(sqlite_engine, FakeClock(START))
    with pytest.raises(RuntimeError), log.begin() as connection:
        log.append_in(connection, "rolled-back")
        raise RuntimeError("the caller's later write failed")
    appended = threading.Thread(target=lambda: log.append("after"))
    appended.start()
    appended.join(timeout=10)
    assert not appended.is_alive(), "the lock was kept"
    assert [entry.kind for entry in log.entries()] == ["after"]
    assert log.verify() == []

"""The ledger on SQLite and PostgreSQL: messages, events, dedupe key, state moves, references."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, exc, text

from gateway.core.clock import FakeClock
from gateway.store.ledger import Ledger, NewMessage

START = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
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
    state="received",
    spool_key="k1",
    desk="sirene",
    signer="F" * 40,
    signed_at=START - timedelta(minutes=1),
)


@pytest.fixture
def ledger(ledger_engine: Engine) -> Ledger:
    return Ledger(ledger_engine, FakeClock(START))


def record(ledger: Ledger, new: NewMessage = RECEIVED) -> int:
    with ledger.engine.begin() as connection:
        return ledger.record_in(connection, new, "spooled k1")


def test_record_and_read_back(ledger: Ledger) -> None:
    message_id = record(ledger)
    row = ledger.get(message_id)
    assert (row.reference, row.state, row.desk, row.signer) == (
        "NO-2026-000123",
        "received",
        "sirene",
        "F" * 40,
    )
    assert row.created_at == START and row.created_at.tzinfo is not None
    assert row.signed_at == START - timedelta(minutes=1)
    assert ledger.find("inbound", "NO-SIRENE", "NO-2026-000123") == row
    assert ledger.find("outbound", "NO-SIRENE", "NO-2026-000123") is None
    assert ledger.events_of(message_id) == [(START, "received", "spooled k1")]


def test_the_same_reference_twice_is_refused_by_the_database(ledger: Ledger) -> None:
    record(ledger)
    with pytest.raises(exc.IntegrityError):
        record(ledger, replace(RECEIVED, content_sha256="c" * 64))
    other_partner = replace(RECEIVED, partner="SE-SIRENE")
    assert record(ledger, other_partner) > 0


def test_a_failed_transaction_leaves_nothing(ledger: Ledger) -> None:
    with pytest.raises(RuntimeError), ledger.engine.begin() as connection:
        ledger.record_in(connection, RECEIVED)
        raise RuntimeError("spool failed after the insert")
    assert ledger.find("inbound", "NO-SIRENE", "NO-2026-000123") is None


def test_state_moves_once(ledger: Ledger) -> None:
    message_id = record(ledger)
    clock = ledger.clock
    assert isinstance(clock, FakeClock)
    clock.advance(timedelta(seconds=5))
    assert ledger.set_state(message_id, "delivered", "desk sirene", expected="received")
    assert not ledger.set_state(message_id, "delivered", "again", expected="received")
    assert ledger.get(message_id).state == "delivered"
    assert [kind for _, kind, _ in ledger.events_of(message_id)] == ["received", "delivered"]
    assert ledger.in_state("inbound", "delivered")[0].id == message_id


def test_references_are_sequential_per_country_and_year(ledger: Ledger) -> None:
    with ledger.engine.begin() as connection:
        first = [ledger.next_reference_in(connection, "RO", 2026) for _ in range(3)]
        other = ledger.next_reference_in(connection, "RO", 2027)
    assert first == ["RO-2026-000001", "RO-2026-000002", "RO-2026-000003"]
    assert other == "RO-2027-000001"


def test_references_are_unique_under_concurrency(ledger: Ledger) -> None:
    with ledger.engine.begin() as connection:
        ledger.next_reference_in(connection, "RO", 2026)  # the row exists: updates race now
    taken: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(25):
            for attempt in range(20):
                try:
                    with ledger.engine.begin() as connection:
                        reference = ledger.next_reference_in(connection, "RO", 2026)
                    break
                except exc.OperationalError:  # SQLite: database is locked; try again
                    if attempt == 19:
                        raise
            with lock:
                taken.append(reference)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(taken) == 100 and len(set(taken)) == 100
    assert max(taken) == "RO-2026-000101"


def test_sqlite_is_durable_by_configuration(ledger_engine: Engine) -> None:
    if ledger_engine.dialect.name != "sqlite":
        pytest.skip("SQLite pragmas")
    with ledger_engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL
        assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1

"""The ledger on SQLite and PostgreSQL: messages, events, dedupe key, state moves, references."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import dbkit
import pytest
from sqlalchemy import Engine, exc, text

from gateway.core.clock import FakeClock
from gateway.core.errors import IllegalTransition
from gateway.store.ledger import MMAP_BYTES, Ledger, NewMessage, deadlines
from gateway.store.states import DeadlineState, InboundState, OutboundState
from gateway.store.unit import writing

START = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
RECEIVED = replace(dbkit.RECEIVED, signer="F" * 40, signed_at=START - timedelta(minutes=1))


@pytest.fixture
def ledger(ledger_engine: Engine) -> Ledger:
    return Ledger(ledger_engine, FakeClock(START))


def record(ledger: Ledger, new: NewMessage = RECEIVED) -> int:
    with writing(ledger.engine) as tx:
        return ledger.record_in(tx, new, "spooled k1")


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
    with pytest.raises(RuntimeError), writing(ledger.engine) as tx:
        ledger.record_in(tx, RECEIVED)
        raise RuntimeError("spool failed after the insert")
    assert ledger.find("inbound", "NO-SIRENE", "NO-2026-000123") is None


def test_state_moves_once(ledger: Ledger) -> None:
    message_id = record(ledger)
    clock = ledger.clock
    assert isinstance(clock, FakeClock)
    clock.advance(timedelta(seconds=5))
    delivered, received = InboundState.DELIVERED, InboundState.RECEIVED
    assert ledger.set_state(message_id, delivered, "desk sirene", expected=received)
    assert not ledger.set_state(message_id, delivered, "again", expected=received)
    assert ledger.get(message_id).state == "delivered"
    assert [kind for _, kind, _ in ledger.events_of(message_id)] == ["received", "delivered"]
    assert ledger.in_state("inbound", "delivered")[0].id == message_id


def _untouched(ledger: Ledger, message_id: int, state: str, events: int) -> None:
    """The message is still in ``state`` with its ``events`` events: nothing was written."""
    row = ledger.get(message_id)
    assert (row.state, row.updated_at) == (state, START)
    assert len(ledger.events_of(message_id)) == events


def test_an_illegal_move_raises_and_writes_nothing(ledger: Ledger) -> None:
    message_id = record(ledger)
    ledger.clock.advance(timedelta(seconds=5))  # type: ignore[attr-defined]
    with pytest.raises(IllegalTransition, match="inbound transition delivered -> received"):
        ledger.set_state(message_id, InboundState.RECEIVED, expected=InboundState.DELIVERED)
    # Without ``expected``, the move is checked from the state the row has now.
    assert ledger.set_state(message_id, InboundState.DELIVERED, "desk sirene")
    with pytest.raises(IllegalTransition, match="delivered -> received"):
        ledger.set_state(message_id, InboundState.RECEIVED, "back")
    row = ledger.get(message_id)
    assert row.state == "delivered"
    assert [kind for _, kind, _ in ledger.events_of(message_id)] == ["received", "delivered"]


def test_an_illegal_move_in_a_transaction_rolls_it_back(ledger: Ledger) -> None:
    message_id = record(ledger)
    with (
        pytest.raises(IllegalTransition, match=r"outbound transition .*received -> sent"),
        ledger.transaction() as tx,
    ):
        ledger.event_in(tx, message_id, "note", "written before the fault")
        # An outbound state asked of an inbound message's state: not in the outbound table.
        ledger.set_state_in(tx, message_id, OutboundState.SENT, "250")
    _untouched(ledger, message_id, "received", 1)


def test_a_guarded_move_with_an_illegal_source_raises_even_when_no_row_matches(
    ledger: Ledger,
) -> None:
    """The check is on the table, not on the rows: one illegal source in ``expected`` raises."""
    message_id = record(ledger)
    with (
        pytest.raises(IllegalTransition, match=r"answered -> delivered"),
        ledger.transaction() as tx,
    ):
        ledger.set_state_in(
            tx,
            message_id,
            InboundState.DELIVERED,
            expected=(InboundState.RECEIVED, InboundState.ANSWERED),
        )
    _untouched(ledger, message_id, "received", 1)


def test_an_illegal_batch_move_raises_and_writes_nothing(ledger: Ledger) -> None:
    message_id = record(ledger)
    with (
        pytest.raises(IllegalTransition, match=r"outbound transition sent -> queued"),
        ledger.transaction() as tx,
    ):
        ledger.move_many_in(
            tx,
            [(message_id, "")],
            OutboundState.QUEUED,
            expected=(OutboundState.SENT,),
        )
    _untouched(ledger, message_id, "received", 1)


def test_a_message_recorded_in_another_machine_s_state_is_refused(ledger: Ledger) -> None:
    with pytest.raises(IllegalTransition, match=r"inbound transition .* -> queued"):
        record(ledger, replace(RECEIVED, state=OutboundState.QUEUED))
    assert ledger.find("inbound", "NO-SIRENE", "NO-2026-000123") is None


def test_a_deadline_closes_only_from_open(ledger: Ledger) -> None:
    message_id = record(ledger)
    with writing(ledger.engine) as tx:
        ledger.open_deadline_in(
            tx, message_id, kind="reply", owed_by="desk", due=START + timedelta(hours=1)
        )
    with (
        pytest.raises(IllegalTransition, match=r"deadline transition open -> open"),
        ledger.transaction() as tx,
    ):
        ledger.close_deadline_in(tx, message_id, "reply", DeadlineState.OPEN)
    with ledger.engine.connect() as connection:
        state, closed_at = connection.execute(
            deadlines.select().with_only_columns(deadlines.c.state, deadlines.c.closed_at)
        ).one()
    assert (state, closed_at) == ("open", None)
    with writing(ledger.engine) as tx:
        assert ledger.close_deadline_in(tx, message_id, "reply", DeadlineState.MET, "ok")
        assert not ledger.close_deadline_in(tx, message_id, "reply", DeadlineState.MET)


def test_references_are_sequential_per_country_and_year(ledger: Ledger) -> None:
    with writing(ledger.engine) as tx:
        first = [ledger.next_reference_in(tx, "RO", 2026) for _ in range(3)]
        other = ledger.next_reference_in(tx, "RO", 2027)
    assert first == ["RO-2026-000001", "RO-2026-000002", "RO-2026-000003"]
    assert other == "RO-2027-000001"


def test_the_first_reference_of_a_year_taken_by_two_at_once_collides_with_nothing(
    ledger: Ledger,
) -> None:
    """Two transactions each take the year's first number before either commits (on SQLite the
    second waits for the first's write lock, on PostgreSQL for its new sequence row): both get a
    number, one after the other, and neither fails on the row the other made."""
    taken: list[str] = []
    failed: list[BaseException] = []
    inside = threading.Event()

    def second() -> None:
        inside.wait()
        try:
            with writing(ledger.engine) as tx:
                taken.append(ledger.next_reference_in(tx, "RO", 2031))
        except BaseException as error:
            failed.append(error)

    thread = threading.Thread(target=second)
    thread.start()
    with writing(ledger.engine) as tx:
        taken.append(ledger.next_reference_in(tx, "RO", 2031))
        inside.set()
        thread.join(timeout=0.5)  # it runs into our row (or lock) and waits for our commit
        assert thread.is_alive() or failed
    thread.join()
    assert failed == []
    assert taken == ["RO-2031-000001", "RO-2031-000002"]


def test_references_are_unique_under_concurrency(ledger: Ledger) -> None:
    with writing(ledger.engine) as tx:
        ledger.next_reference_in(tx, "RO", 2026)  # the row exists: updates race now
    taken: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(25):
            for attempt in range(20):
                try:
                    with writing(ledger.engine) as tx:
                        reference = ledger.next_reference_in(tx, "RO", 2026)
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
        # Deleted content zeroed, whatever the build's default (Debian's is on, SQLite's off).
        assert connection.execute(text("PRAGMA secure_delete")).scalar() == 1
        # Read through a memory map of the file (a search reads parts scattered over it).
        assert connection.execute(text("PRAGMA mmap_size")).scalar() == MMAP_BYTES

"""Group commit of received messages (gateway.store.groupcommit) on SQLite and PostgreSQL.

Concurrent sessions' records share one transaction; a record refused by the unique key does not
undo the others; a transaction that fails, or a process killed, between the group's statements
leaves nothing of the group and answers none of its sessions; the audit chain stays whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from dbkit import RECEIVED, postgres_schema, upgraded
from integration.inboundkit import FORM, World, ledger_messages, message, send, settle, spooled
from sqlalchemy import Engine, Table, func, select, text

from gateway.core.clock import FakeClock
from gateway.service.server import Gateway
from gateway.store.audit import LOCK_KEY, AuditLog
from gateway.store.groupcommit import GroupCommit, GroupNotCommitted, Received
from gateway.store.ledger import Ledger, deadlines, events, make_engine, messages
from gateway.store.unit import LedgerConflict

START = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
DIGEST = "c" * 64
SAMPLE_REFERENCE = b"<Reference>NO-2026-000123</Reference>"


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield upgraded(f"sqlite:///{tmp_path / 'ledger.db'}")
        return
    with postgres_schema() as found:
        yield upgraded(found)


@pytest.fixture
def engine(url: str) -> Iterator[Engine]:
    made = make_engine(url)
    yield made
    made.dispose()


def record(number: int, *, content: str = "a" * 64, due: bool = True) -> Received:
    reference = f"NO-2026-{number:06d}"
    return Received(
        dataclasses.replace(
            RECEIVED, reference=reference, content_sha256=content, spool_key=f"k{number}"
        ),
        event_detail=f"spooled k{number}",
        audit={"partner": "NO-SIRENE", "form": "G", "reference": reference, "digest": DIGEST},
        reply_due=(START + timedelta(hours=2), START + timedelta(hours=1)) if due else None,
    )


def count(engine: Engine, table: Table) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(table)).scalar_one())


@contextlib.contextmanager
def holding_the_writer(engine: Engine, ledger: Ledger, blocker: Received) -> Iterator[None]:
    """Another writer in the middle of a transaction that has recorded ``blocker`` and not
    committed yet: a group that starts now waits for it (on SQLite for the write lock, on
    PostgreSQL for the audit chain's lock, where ``blocker`` is committed at once)."""
    if engine.dialect.name == "sqlite":
        with ledger.transaction() as tx:
            ledger.record_in(tx, blocker.message)
            yield
        return
    with engine.begin() as connection:
        connection.execute(text(f"SELECT pg_advisory_xact_lock({LOCK_KEY})"))
        with ledger.transaction() as tx:  # a pool connection of its own: commits on its own
            ledger.record_in(tx, blocker.message)
        yield


def wait_for(condition: Callable[[], bool], what: str) -> None:
    """Poll a condition of other threads (not a timer: the test goes on when it holds)."""
    deadline = time.monotonic() + 30
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting: {what}")
        threading.Event().wait(0.005)


def submit_all(
    group: GroupCommit, records: list[Received]
) -> tuple[list[object], list[threading.Thread]]:
    outcomes: list[object] = [None] * len(records)

    def run(index: int) -> None:
        try:
            outcomes[index] = group.commit(records[index])
        except Exception as error:  # what that session would answer
            outcomes[index] = error

    threads = [threading.Thread(target=run, args=(n,)) for n in range(len(records))]
    for thread in threads:
        thread.start()
    return outcomes, threads


def joined(threads: list[threading.Thread]) -> None:
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a session hangs"


def test_a_lone_record_is_committed_at_once_with_its_event_deadline_and_audit_line(
    engine: Engine,
) -> None:
    clock = FakeClock(START)
    ledger, audit = Ledger(engine, clock), AuditLog(engine, clock)
    group = GroupCommit(ledger, audit, clock)
    first = group.commit(record(1))
    second = group.commit(record(2, due=False))
    assert (group.groups, group.records) == (2, 2)
    assert ledger.get(first).reference == "NO-2026-000001"
    assert [kind for _, kind, _ in ledger.events_of(second)] == ["received"]
    with engine.connect() as connection:
        owed = connection.execute(select(deadlines.c.message_id, deadlines.c.kind)).all()
    assert [tuple(row) for row in owed] == [(first, "reply")]
    lines = audit.entries()
    assert [(line.kind, line.reference) for line in lines] == [
        ("received", "NO-2026-000001"),
        ("received", "NO-2026-000002"),
    ]
    assert audit.verify() == []


def test_concurrent_records_share_a_transaction_and_a_conflict_undoes_only_itself(
    engine: Engine,
) -> None:
    """Eight sessions at once while another writer holds the ledger: they commit as one group
    (two on PostgreSQL, where the first leader starts before the others queue). One of them has
    the Reference the other writer records (a duplicate or a conflict: the pipeline tells which);
    another has a Reference that a later one in the same group repeats."""
    clock = FakeClock(START)
    ledger, audit = Ledger(engine, clock), AuditLog(engine, clock)
    group = GroupCommit(ledger, audit, clock)
    records = [record(n) for n in range(10, 16)]
    records.append(record(99, content="d" * 64))  # the other writer's Reference, other content
    records.append(record(12, content="e" * 64))  # the same Reference as records[2]
    with holding_the_writer(engine, ledger, record(99)):
        outcomes, threads = submit_all(group, records)
        wait_for(lambda: group.pending() == len(records), "every session queued")
        assert count(engine, messages) == (0 if engine.dialect.name == "sqlite" else 1)
    joined(threads)

    refused = [n for n, outcome in enumerate(outcomes) if isinstance(outcome, LedgerConflict)]
    stored = {n: outcome for n, outcome in enumerate(outcomes) if isinstance(outcome, int)}
    # records[6]: the other writer's Reference; of records[2] and [7], whichever came second
    assert len(refused) == 2 and 6 in refused and len({2, 7} & set(refused)) == 1
    assert set(refused) | set(stored) == set(range(8))
    assert group.groups <= 2 and group.records == len(records)
    assert count(engine, messages) == 1 + 6  # the other writer's and the six stored
    for n, message_id in stored.items():
        assert isinstance(message_id, int)
        row = ledger.get(message_id)
        assert (row.reference, row.content_sha256) == (
            records[n].message.reference,
            records[n].message.content_sha256,
        )
    assert count(engine, events) == 1 + 6 and count(engine, deadlines) == 6  # the refused: none
    lines = audit.entries()
    assert sorted(line.reference for line in lines) == sorted(
        records[n].message.reference for n in stored
    )
    assert audit.verify() == [] and audit.check().intact


def test_a_group_whose_transaction_fails_commits_none_and_tells_every_session(
    engine: Engine,
) -> None:
    """The audit chain's clock fails after the group's messages, events and deadlines are
    written: the transaction is rolled back, every session of the group gets GroupNotCommitted
    (the 451 of the pipeline), and the next group commits as if nothing had happened."""
    clock = FakeClock(START)

    class FailingClock(FakeClock):
        armed = False

        def now(self) -> datetime:
            if self.armed:
                raise OSError("the clock failed")
            return super().now()

    failing = FailingClock(START)
    ledger, audit = Ledger(engine, clock), AuditLog(engine, failing)
    group = GroupCommit(ledger, audit, clock)
    records = [record(n) for n in range(20, 25)]
    failing.armed = True
    with holding_the_writer(engine, ledger, record(98)):
        outcomes, threads = submit_all(group, records)
        wait_for(lambda: group.pending() == len(records), "every session queued")
    joined(threads)
    assert all(isinstance(outcome, GroupNotCommitted) for outcome in outcomes)
    assert count(engine, messages) == 1  # the other writer's only
    assert count(engine, events) == 1 and count(engine, deadlines) == 0  # its first event
    assert audit.entries() == []
    failing.armed = False
    assert isinstance(group.commit(record(20)), int)
    assert [line.reference for line in audit.entries()] == ["NO-2026-000020"]
    assert audit.verify() == []


def test_a_record_the_audit_log_refuses_is_refused_alone() -> None:
    """A bad audit field raises in its own session, before the record joins a group."""
    engine = make_engine("sqlite://")
    clock = FakeClock(START)
    group = GroupCommit(Ledger(engine, clock), AuditLog(engine, clock), clock)
    bad = dataclasses.replace(record(1), audit={"reference": "line\nbreak"})
    with pytest.raises(ValueError, match="reference"):
        group.commit(bad)
    assert group.pending() == 0 and group.groups == 0


CRASHING = """
import os, signal, sys, threading, dataclasses
from datetime import UTC, datetime, timedelta
sys.path.insert(0, sys.argv[2])
from dbkit import RECEIVED
from gateway.core.clock import FakeClock
from gateway.store.audit import AuditLog
from gateway.store.groupcommit import GroupCommit, Received
from gateway.store.ledger import Ledger, make_engine

START = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
SESSIONS = 6

class KillingClock(FakeClock):
    def now(self):  # the audit lines are hashed after the group's rows: die before COMMIT
        os.kill(os.getpid(), signal.SIGKILL)

engine = make_engine(sys.argv[1])
clock = FakeClock(START)
ledger = Ledger(engine, clock)
group = GroupCommit(ledger, AuditLog(engine, KillingClock(START)), clock)
hold = ledger.transaction()  # the writer held until every session has queued (SQLite)
if engine.dialect.name == "sqlite":
    hold.__enter__()

def session(n):
    reference = f"NO-2026-{n:06d}"
    message = dataclasses.replace(RECEIVED, reference=reference, spool_key=f"k{n}")
    group.commit(Received(message, "spooled", {"reference": reference}))
    print(f"250 {reference}", flush=True)  # what the session would answer

threads = [threading.Thread(target=session, args=(n,)) for n in range(SESSIONS)]
for thread in threads:
    thread.start()
while group.pending() < SESSIONS:
    threading.Event().wait(0.005)
print("queued", flush=True)
if engine.dialect.name == "sqlite":
    hold.__exit__(None, None, None)
for thread in threads:
    thread.join()
"""


def test_a_process_killed_between_the_groups_statements_answered_none_and_stored_none(
    url: str, engine: Engine, tmp_path: Path
) -> None:
    script = tmp_path / "crash.py"
    script.write_text(CRASHING)
    tests = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, str(script), url, str(tests)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "PYTHONPATH": str(tests)},
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert done.stdout.splitlines()[:1] == ["queued"] or done.stdout == ""
    assert "250" not in done.stdout  # no session was answered
    assert count(engine, messages) == 0 and count(engine, events) == 0
    assert count(engine, deadlines) == 0
    audit = AuditLog(engine, FakeClock(START))
    assert audit.entries() == [] and audit.verify() == []


# ------------------------------------------------------------- through SMTP, end to end


@contextlib.contextmanager
def writer_held_in_a_thread(gateway: Gateway) -> Iterator[None]:
    """The gateway's ledger held by another writer (holding_the_writer, in a thread of its
    own) until the block ends."""
    taken, release = threading.Event(), threading.Event()

    def hold() -> None:
        with holding_the_writer(gateway.engine, gateway.ledger, record(97)):
            taken.set()
            release.wait(60)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert taken.wait(30)
        yield
    finally:
        release.set()
        holder.join(60)


async def test_sessions_finishing_together_each_get_their_own_reply(
    world: World, gateway: Gateway
) -> None:
    """Four sessions (the gateway's data threads) whose records meet in the group commit: two
    new forms are accepted, the
    same form again (encrypted anew) is a duplicate, and another form with an accepted form's
    Reference is refused with its own 550; nothing of the refused one stays."""
    accepted = FORM.replace(SAMPLE_REFERENCE, b"<Reference>NO-2026-000500</Reference>")
    assert (await send(world, gateway, message(world, accepted)))[0] == 250
    forms = [
        FORM.replace(SAMPLE_REFERENCE, f"<Reference>NO-2026-00050{n}</Reference>".encode())
        for n in range(1, 3)
    ]
    forms.append(accepted)  # a duplicate: the same content, encrypted again
    forms.append(accepted.replace(b"Person arrested", b"Person detained"))  # a conflict
    raws = [message(world, form) for form in forms]
    records = gateway.pipeline.records
    with writer_held_in_a_thread(gateway):
        sending = [asyncio.ensure_future(send(world, gateway, raw)) for raw in raws]
        for _ in range(3000):  # until every session's record waits for the held ledger
            if records.pending() == len(raws) or any(task.done() for task in sending):
                break
            await asyncio.sleep(0.01)
        assert records.pending() == len(raws)
    replies = await asyncio.gather(*sending)
    codes = [(code, text.split()[0]) for code, text in replies]
    assert codes == [(250, "2.0.0")] * 3 + [(550, "5.7.1")]
    assert [("duplicate" in text) for _, text in replies] == [False] * 2 + [True, False]
    await settle(gateway)
    stored = sorted(
        reference for direction, _, reference in ledger_messages(gateway) if direction == "inbound"
    )
    assert stored == sorted({"NO-2026-000097", *(f"NO-2026-00050{n}" for n in range(3))})
    assert len([name for name in spooled(gateway) if name.startswith("done/")]) == 3
    assert [name for name in spooled(gateway) if not name.startswith("done/")] == []
    received = [line for line in gateway.audit.entries() if line.kind == "received"]
    assert len(received) == 3 and gateway.audit.verify() == []

"""Benchmark: the intake's ledger work per received message, one message at a time and from
concurrent sessions, the way before group commit against GroupCommit.

"separate" is the intake's ledger work as it was before group commit, written with the same
store operations: the dedupe read, then one transaction each (BEGIN IMMEDIATE, the message, its
event, the deadline's read and row, the audit chain's head and line, COMMIT). "grouped" is
GroupCommit.commit. With ``--sessions`` N, N threads hand in their messages at the same moment
(a barrier each round), as N SMTP sessions whose DATA completes together. The figures are the
process's CPU time (all threads; system time included: the WAL's syncs), its user part (the
Python and SQLite's own work) and the wall time per message, the median of ``--repeat`` runs,
on a SQLite ledger file (WAL, synchronous=FULL) or a PostgreSQL URL (``--url``: a schema of its
own is made there for the run, and dropped).

    .venv/bin/python bench/intake_ledger.py                     # SQLite, 1 and 4 sessions
    .venv/bin/python bench/intake_ledger.py --sessions 1 2 4 --count 800
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchkit import write_results
from sqlalchemy import make_url, text

from gateway.core.clock import SystemClock
from gateway.store import schema
from gateway.store.audit import AuditLog
from gateway.store.groupcommit import GroupCommit, Received
from gateway.store.ledger import Ledger, NewMessage, make_engine
from gateway.store.states import InboundState

START = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)


def new_message(number: int) -> Received:
    reference = f"NO-2026-{number:06d}"
    message = NewMessage(
        direction="inbound",
        partner="NO-SIRENE",
        channel="sirene",
        form="G",
        reference=reference,
        message_id=f"<{number}@no.example>",
        priority="urgent",
        content_sha256="a" * 64,
        raw_sha256="b" * 64,
        state=InboundState.RECEIVED,
        spool_key=f"NO-SIRENE.{reference}.{number:016x}",
        desk="duty",
        signer="C" * 40,
        signed_at=START,
    )
    return Received(
        message,
        event_detail=f"spooled {message.spool_key}",
        audit={"partner": "NO-SIRENE", "form": "G", "reference": reference, "digest": "c" * 64},
        reply_due=(START + timedelta(hours=2), START + timedelta(hours=1)),
    )


def separate(ledger: Ledger, audit: AuditLog) -> Callable[[Received], int]:
    """The intake's ledger work before group commit, statement for statement."""

    def write(record: Received) -> int:
        new = record.message
        if ledger.find(new.direction, new.partner, new.reference) is not None:
            raise AssertionError("a duplicate in the benchmark")
        with ledger.transaction() as tx:
            message_id = ledger.record_in(tx, new, record.event_detail)
            assert record.reply_due is not None
            ledger.open_deadline_in(
                tx,
                message_id,
                kind="reply",
                owed_by="desk",
                due=record.reply_due[0],
                next_action_at=record.reply_due[1],
            )
            audit.append_in(tx, "received", **record.audit)
        return message_id

    return write


def run(
    url: str, way: str, sessions: int, count: int, first: int
) -> tuple[float, float, float, int]:
    """(CPU ms, of which user ms, wall ms) per message, and the transactions."""
    engine = make_engine(url)
    clock = SystemClock()
    ledger, audit = Ledger(engine, clock), AuditLog(engine, clock)
    group = GroupCommit(ledger, audit, clock)
    write = group.commit if way == "grouped" else separate(ledger, audit)
    rounds = count // sessions
    gate = threading.Barrier(sessions)
    failures: list[BaseException] = []

    def session(index: int) -> None:
        try:
            for number in range(rounds):
                gate.wait()
                write(new_message(first + number * sessions + index))
        except BaseException as error:  # reported below
            failures.append(error)
            gate.abort()

    threads = [threading.Thread(target=session, args=(n,)) for n in range(sessions)]
    used, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - wall
    after = resource.getrusage(resource.RUSAGE_SELF)
    user = after.ru_utime - used.ru_utime
    cpu = user + after.ru_stime - used.ru_stime
    engine.dispose()
    if failures:
        raise failures[0]
    done = rounds * sessions
    transactions = group.groups if way == "grouped" else done
    return cpu * 1000 / done, user * 1000 / done, wall * 1000 / done, transactions


@contextlib.contextmanager
def private_schema(url: str) -> Iterator[str]:
    """A URL whose connections see only a new schema of the PostgreSQL at ``url``, dropped
    after the run."""
    name = f"bench_{uuid.uuid4().hex[:12]}"
    admin = make_engine(url)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{name}"'))
    try:
        yield f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{name}"
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{name}" CASCADE'))
        admin.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a ledger's URL (a new SQLite file when not given)")
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--count", type=int, default=400, help="messages a run")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "intake_ledger.json"
    )
    args = parser.parse_args()
    figures: dict[str, Any] = {
        "benchmark": "intake_ledger",
        "dialect": "sqlite" if args.url is None else make_url(args.url).get_backend_name(),
        "count": args.count,
        "repeat": args.repeat,
        "cpu_ms_user_ms_wall_ms_transactions": {},
    }
    with (
        tempfile.TemporaryDirectory(prefix="gw-ledger-") as folder,
        contextlib.ExitStack() as stack,
    ):
        url = args.url or f"sqlite:///{Path(folder) / 'ledger.db'}"
        if not url.startswith("sqlite"):
            url = stack.enter_context(private_schema(url))
        engine = make_engine(url)
        schema.upgrade(engine)
        engine.dispose()
        first = 1
        for sessions in args.sessions:
            results: dict[str, list[tuple[float, float, float, int]]] = {
                "separate": [],
                "grouped": [],
            }
            for _ in range(args.repeat):
                for way in ("separate", "grouped"):  # alternated: the machine's load is shared
                    results[way].append(run(url, way, sessions, args.count, first))
                    first += args.count
            figures["cpu_ms_user_ms_wall_ms_transactions"][str(sessions)] = results
            for way, runs in results.items():
                cpu = statistics.median(r[0] for r in runs)
                user = statistics.median(r[1] for r in runs)
                wall = statistics.median(r[2] for r in runs)
                transactions = statistics.median(r[3] for r in runs)
                print(
                    f"{sessions} session(s), {way:8}: CPU {cpu:.3f} ms/message, user {user:.3f} "
                    f"(runs {', '.join(f'{r[1]:.3f}' for r in runs)}), wall {wall:.3f} ms, "
                    f"{transactions:.0f} transactions for {args.count // sessions * sessions}"
                )
            sys.stdout.flush()
    write_results(args.out, figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

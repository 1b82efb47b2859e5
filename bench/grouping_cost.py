"""Benchmark: what the automatic grouping into cases adds to a message's acceptance, per message.

A ledger is filled with --messages messages (a third of them replies, each with a SIS alert and
a national case reference in the search index, so cases form), then, inside transactions of many
messages (no fsync counted), the grouping call alone is timed for: a message related to nothing
(its two references held by no one), a reply joining its request's case, and a message
whose alert reference finds an open case. Then the case of bench/inbound.py, where every
message names the same SIS alert: one reference held by --held messages (100, 1,000, 10,000),
all in one open case (a message holding it joins that case), or all in closed cases (a message
holding it finds no open case and no message in no case: the most a grouping reads; each timed
message is then put into a closed case too, outside the timing, so that every one meets the
same). SQLite by default; --postgres URL adds PostgreSQL (a private schema, dropped afterwards).
Times are per grouping call: wall clock, and the CPU time of the calling thread.

    .venv/bin/python bench/grouping_cost.py [--messages 20000] [--repeat 300] \
        [--held 100,1000,10000] [--postgres URL [--postgres-only]]
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from benchkit import write_results
from sqlalchemy import Engine, text

from gateway.core.clock import FakeClock
from gateway.store import case_rows, schema, search_rows
from gateway.store.grouping import ToGroup, group_safely_in
from gateway.store.ledger import Ledger, NewMessage, make_engine
from gateway.store.search_rows import IndexRow, Where
from gateway.store.states import InboundState
from gateway.store.unit import Transaction

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
MESSAGE = NewMessage(
    direction="inbound",
    partner="NO-SIRENE",
    channel="sirene",
    form="G",
    reference="",
    message_id="<bench@no.example>",
    priority="normal",
    content_sha256="a" * 64,
    raw_sha256="b" * 64,
    spool_key=None,
    state=InboundState.RECEIVED,
    desk="sirene",
)


def refs(number: int) -> list[IndexRow]:
    alert = f"SE{number:011d}"
    national = f"{number}2026"
    return [
        IndexRow("reference", "sis-alert", alert, alert, alert, None, None),
        IndexRow("reference", "national-case", national, national, national, None, None),
    ]


class Bench:
    def __init__(self, engine: Engine) -> None:
        self.ledger = Ledger(engine, FakeClock(NOW))
        self.serial = iter(range(1, 10**9))

    def record(self, tx: Transaction, *, in_reply_to: str | None, index: list[IndexRow]) -> ToGroup:
        reference = f"NO-2026-{next(self.serial):07d}"
        new = dataclasses.replace(MESSAGE, reference=reference, in_reply_to=in_reply_to)
        message_id = self.ledger.record_in(tx, new, "spooled")
        search_rows.add_in(tx, Where(message_id, "inbound", "NO-SIRENE", "sirene", "G"), index, NOW)
        pairs = [(row.role, row.key) for row in index]
        return ToGroup(message_id, "NO-SIRENE", "G", reference, in_reply_to, "sirene", pairs)

    def fill(self, count: int) -> list[str]:
        """``count`` messages: requests, and a reply to every other one (cases form)."""
        requests: list[str] = []
        with self.ledger.transaction() as tx:
            for number in range(count):
                answers = requests[-1] if number % 3 == 2 else None
                grouped = self.record(tx, in_reply_to=answers, index=refs(number))
                group_safely_in(tx, grouped, NOW)
                if answers is None:
                    requests.append(grouped.reference)
        return requests

    def timed(
        self,
        repeat: int,
        make: Callable[[Transaction, int], ToGroup],
        after: Callable[[Transaction, ToGroup], None] | None = None,
    ) -> dict[str, float]:
        """Microseconds per grouping call, wall-clock and the calling thread's CPU time (which a
        shared machine's load disturbs less): the medians of five passes of ``repeat``
        messages. ``after`` runs after each call, untimed."""
        walls, cpus = [], []
        for _ in range(5):
            wall = cpu = 0.0
            with self.ledger.transaction() as tx:
                for number in range(repeat):
                    grouped = make(tx, number)
                    start, start_cpu = time.perf_counter(), time.thread_time()
                    group_safely_in(tx, grouped, NOW)
                    cpu += time.thread_time() - start_cpu
                    wall += time.perf_counter() - start
                    if after is not None:
                        after(tx, grouped)
            walls.append(wall / repeat * 1e6)
            cpus.append(cpu / repeat * 1e6)
        return {
            "wall_us": round(statistics.median(walls), 1),
            "cpu_us": round(statistics.median(cpus), 1),
        }


def alert(key: str) -> list[IndexRow]:
    return [IndexRow("reference", "sis-alert", key, key, key, None, None)]


def held(bench: Bench, engine: Engine, count: int, repeat: int) -> dict[str, object]:
    """One reference held by ``count`` messages in one open case, then in closed cases."""
    found: dict[str, object] = {}
    for status in ("open", "closed"):
        key = f"SE{count:06d}{status.upper()}"
        with bench.ledger.transaction() as tx:
            first = bench.record(tx, in_reply_to=None, index=alert(key))
            group_safely_in(tx, first, NOW)
            for _ in range(count - 1):
                group_safely_in(tx, bench.record(tx, in_reply_to=None, index=alert(key)), NOW)
            case_id = case_rows.case_of_message(tx, first.id)
            assert case_id is not None, "the holders formed no case"
            if status == "closed":
                case_rows.set_status_in(tx, case_id, "open", "closed", NOW)
        if engine.dialect.name == "postgresql":
            with engine.begin() as connection:
                connection.execute(text("ANALYZE"))

        def out_of_the_way(tx: Transaction, grouped: ToGroup, closed: int = case_id) -> None:
            """The timed message into a closed case: the next one meets what this one did."""
            joined = case_rows.case_of_message(tx, grouped.id)
            if joined is None:
                case_rows.link_in(
                    tx, closed, [grouped.id], how="by-hand", by="b", reason="", now=NOW
                )
            elif joined != closed:
                case_rows.set_status_in(tx, joined, "open", "closed", NOW)

        def holding(tx: Transaction, _number: int, key: str = key) -> ToGroup:
            return bench.record(tx, in_reply_to=None, index=alert(key))

        found[status] = bench.timed(repeat, holding, out_of_the_way if status == "closed" else None)
    return found


def measure(engine: Engine, messages: int, repeat: int, counts: list[int]) -> dict[str, object]:
    bench = Bench(engine)
    start = time.perf_counter()
    requests = bench.fill(messages)
    filled = time.perf_counter() - start
    if engine.dialect.name == "postgresql":
        with engine.begin() as connection:
            connection.execute(text("ANALYZE"))
    fresh = iter(range(10**7, 10**9))  # references nobody holds
    return {
        "messages": messages,
        "fill_s": round(filled, 1),
        "unrelated": bench.timed(
            repeat, lambda tx, n: bench.record(tx, in_reply_to=None, index=refs(next(fresh)))
        ),
        "reply": bench.timed(
            repeat,
            lambda tx, n: bench.record(
                tx, in_reply_to=requests[n % len(requests)], index=refs(next(fresh))
            ),
        ),
        # The alert of a reply of the fill (every third message): held in an open case.
        "alert": bench.timed(
            repeat,
            lambda tx, n: bench.record(
                tx, in_reply_to=None, index=refs((3 * n + 2) % messages)[:1]
            ),
        ),
        "held_by": {str(count): held(bench, engine, count, repeat) for count in counts},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=300)
    parser.add_argument(
        "--held", default="100,1000,10000", help="holders of the one reference, comma-separated"
    )
    parser.add_argument("--postgres-only", action="store_true", help="with --postgres: no SQLite")
    parser.add_argument("--postgres", help="a PostgreSQL URL (a private schema is made in it)")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "bench" / "results" / "grouping_cost.json"
    )
    args = parser.parse_args()
    counts = [int(count) for count in args.held.split(",") if count]
    results: dict[str, object] = {"benchmark": "grouping_cost", "python": platform.python_version()}
    if not args.postgres_only:
        with tempfile.TemporaryDirectory() as folder:
            engine = make_engine(f"sqlite:///{Path(folder) / 'ledger.db'}")
            schema.upgrade(engine)
            results["sqlite"] = measure(engine, args.messages, args.repeat, counts)
            engine.dispose()
    if args.postgres:
        name = f"bench_{uuid.uuid4().hex[:8]}"
        admin = make_engine(args.postgres)
        with admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{name}"'))
        try:
            engine = make_engine(f"{args.postgres}?options=-csearch_path%3D{name}")
            schema.upgrade(engine)
            results["postgresql"] = measure(engine, args.messages, args.repeat, counts)
            engine.dispose()
        finally:
            with admin.begin() as connection:
                connection.execute(text(f'DROP SCHEMA "{name}" CASCADE'))
            admin.dispose()
    for database in ("sqlite", "postgresql"):
        if database in results:
            print(f"{database:>10}: {results[database]}")
    write_results(args.out, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: what the automatic grouping into cases adds to a message's acceptance, per message.

A ledger is filled with --messages messages (a third of them replies, each with a SIS alert and
a national case reference in the search index, so cases form), then, inside transactions of many
messages (no fsync counted), the grouping call alone is timed for: a message related to nothing
(its two references held by no one), a reply joining its request's case, and a message
whose alert reference finds an open case. SQLite by default; --postgres URL adds PostgreSQL
(a private schema, dropped afterwards).

    .venv/bin/python bench/grouping_cost.py [--messages 20000] [--repeat 300] [--postgres URL]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, text

from gateway.core.clock import FakeClock
from gateway.store import schema, search_rows
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

    def timed(self, repeat: int, make: Callable[[Transaction, int], ToGroup]) -> dict[str, float]:
        """Microseconds per grouping call, wall-clock and the process's CPU time (which a
        shared machine's load disturbs less): the medians of five passes of ``repeat``
        messages."""
        walls, cpus = [], []
        for _ in range(5):
            wall = cpu = 0.0
            with self.ledger.transaction() as tx:
                for number in range(repeat):
                    grouped = make(tx, number)
                    start, start_cpu = time.perf_counter(), time.process_time()
                    group_safely_in(tx, grouped, NOW)
                    cpu += time.process_time() - start_cpu
                    wall += time.perf_counter() - start
            walls.append(wall / repeat * 1e6)
            cpus.append(cpu / repeat * 1e6)
        return {
            "wall_us": round(statistics.median(walls), 1),
            "cpu_us": round(statistics.median(cpus), 1),
        }


def measure(engine: Engine, messages: int, repeat: int) -> dict[str, object]:
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
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=300)
    parser.add_argument("--postgres", help="a PostgreSQL URL (a private schema is made in it)")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "bench" / "results" / "grouping_cost.json"
    )
    args = parser.parse_args()
    results: dict[str, object] = {"benchmark": "grouping_cost", "python": platform.python_version()}
    with tempfile.TemporaryDirectory() as folder:
        engine = make_engine(f"sqlite:///{Path(folder) / 'ledger.db'}")
        schema.upgrade(engine)
        results["sqlite"] = measure(engine, args.messages, args.repeat)
        engine.dispose()
    if args.postgres:
        name = f"bench_{uuid.uuid4().hex[:8]}"
        admin = make_engine(args.postgres)
        with admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{name}"'))
        try:
            engine = make_engine(f"{args.postgres}?options=-csearch_path%3D{name}")
            schema.upgrade(engine)
            results["postgresql"] = measure(engine, args.messages, args.repeat)
            engine.dispose()
        finally:
            with admin.begin() as connection:
                connection.execute(text(f'DROP SCHEMA "{name}" CASCADE'))
            admin.dispose()
    for database in ("sqlite", "postgresql"):
        if database in results:
            print(f"{database:>10}: {results[database]}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

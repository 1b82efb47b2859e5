"""Benchmark: the cross-check at arrival (gateway.search.crosscheck.check) and the record of its
hits (crosscheck_rows.add_in), per arriving message, against an index of N entries where
the common values are held by thousands of messages; p50 and p95 at each size.

The index is filled with messages of five entries each: one of three common persons (the same
name and date of birth), one of three common alert references, a phone number every message
shares, and a person and a passport of its own; at 100,000 entries each common person and
reference is held by about 6,700 messages. Each arriving message carries a common person
spelled otherwise (the same skeleton), a common reference and a passport of its own, as
bench/inbound.py's sample does: every message hits the limits (PER_ENTRY per key, MAX_HITS per
message). The cost must not grow with the size: the look-ups walk the end of one index, never
the entries of a common value. SQLite always; PostgreSQL when GATEWAY_TEST_POSTGRES_URL is set
(analyzed after the fill, as autovacuum would).

Two layouts: ``alone``, every message in no case (each earlier message a hit of its own), and
``case``, the messages of each common person and reference in one case, as bench/inbound.py's
are (its worst case: every hit in one case, gathered). Each figure is given as wall-clock p50
and p95 and as the thread CPU (time.thread_time) per message, the mean of the run.

    .venv/bin/python bench/crosscheck.py [--sizes 10000,100000] [--messages 300]
        [--layouts alone,case]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

from search import MESSAGE, NOW, database, percentile, person

from gateway.core.clock import FakeClock
from gateway.forms.entities import Entity
from gateway.search import crosscheck, index
from gateway.store import case_rows, crosscheck_rows, schema, search_rows
from gateway.store.ledger import Ledger, make_engine
from gateway.store.search_rows import Where
from gateway.store.unit import Transaction

COMMON = [("Mohamed ALI", "1990-01-01"), ("Jan NOWAK", "1980-05-05"), ("Ivan IVANOV", "1975-03-03")]
SPELLED = ["Mohammed ALY", "Jan Novák", "Iwan Iwanow"]  # the same skeletons, written otherwise
ALERTS = ["NO0000000000000001", "NO0000000000000002", "NO0000000000000003"]
PHONE = "+47 22 00 00 00"
PER_FILLED = 5  # entries per message of the fill
BATCH = 1000  # messages per transaction of the fill


def fill(ledger: Ledger, size: int, pick: random.Random, cases: list[int]) -> float:
    """Index about ``size`` entries, PER_FILLED per message, each message in the case of its
    common values when ``cases`` are given; returns the seconds it took."""
    start = time.perf_counter()
    count = size // PER_FILLED
    for first in range(0, count, BATCH):
        with ledger.transaction() as tx:
            rows = []
            members: list[list[int]] = [[] for _ in cases]
            for number in range(first, min(count, first + BATCH)):
                new = dataclasses.replace(MESSAGE, reference=f"NO-2026-{number:07d}", form="G")
                message = ledger.record_in(tx, new, "spooled")
                name, born = COMMON[number % 3]
                own, own_born = person(number, pick)
                found = [
                    Entity("person", "name", name, born),
                    Entity("person", "name", own, own_born),
                    Entity("document", "passport", f"P{number:08d}", None, "NO"),
                    Entity("reference", "sis-alert", ALERTS[number % 3]),
                    Entity("phone", "phone", PHONE),
                ]
                where = Where(message, "inbound", "NO-SIRENE", "sirene", "G")
                rows.append((where, index.index_rows(found)))
                if cases:
                    members[number % 3].append(message)
            search_rows.add_many_in(tx, rows, NOW)
            for case_id, some in zip(cases, members, strict=True):
                link(tx, case_id, some)
    return time.perf_counter() - start


def link(tx: Transaction, case_id: int, members: list[int]) -> None:
    case_rows.link_in(tx, case_id, members, how="reference", by="bench", reason="", now=NOW)


def opened(ledger: Ledger, layout: str) -> list[int]:
    """A case for each common person and reference (layout ``case``), or none."""
    if layout != "case":
        return []
    with ledger.transaction() as tx:
        return [
            case_rows.open_in(tx, desk="sirene", title=alert, actor="bench", reason="", now=NOW)
            for alert in ALERTS
        ]


def measure(kind: str, layout: str, size: int, messages: int, folder: Path) -> dict[str, object]:
    with database(kind, folder) as url:
        engine = make_engine(url)
        try:
            schema.upgrade(engine)
            ledger = Ledger(engine, FakeClock(NOW))
            pick = random.Random(7)
            cases = opened(ledger, layout)
            filled = fill(ledger, size, pick, cases)
            if kind == "postgresql":
                with engine.begin() as connection:
                    connection.exec_driver_sql("ANALYZE search_entries")
            with ledger.reading() as tx:
                entries = search_rows.count(tx)
            checking: list[float] = []
            recording: list[float] = []
            check_cpu = record_cpu = 0.0
            hits = 0
            for number in range(messages):
                which = number % 3
                found = [
                    Entity("person", "name", SPELLED[which], COMMON[which][1]),
                    Entity("document", "passport", f"Q{number:08d}", None, "NO"),
                    Entity("reference", "sis-alert", ALERTS[which]),
                ]
                with ledger.transaction() as tx:
                    new = dataclasses.replace(MESSAGE, reference=f"NO-2027-{number:06d}", form="G")
                    message = ledger.record_in(tx, new, "spooled")
                    where = Where(message, "inbound", "NO-SIRENE", "sirene", "G")
                    index.write_in(tx, where, found, NOW)
                    if cases:  # as the grouping at acceptance puts it
                        link(tx, cases[which], [message])
                start, cpu = time.perf_counter(), time.thread_time()
                with ledger.reading() as tx:
                    found_hits = crosscheck.check(tx, message)
                checking.append(time.perf_counter() - start)
                check_cpu += time.thread_time() - cpu
                with ledger.transaction() as tx:  # the hand-off's, which commits anyway
                    start, cpu = time.perf_counter(), time.thread_time()
                    crosscheck_rows.add_in(tx, [(message, found_hits)], NOW)
                    recording.append(time.perf_counter() - start)
                    record_cpu += time.thread_time() - cpu
                hits += len(found_hits)
        finally:
            engine.dispose()
    return {
        "database": kind,
        "layout": layout,
        "entries": entries,
        "held_by_each_common_value": size // PER_FILLED // 3,
        "fill_seconds": round(filled, 1),
        "messages": messages,
        "hits_per_message": round(hits / messages, 1),
        "check_p50_ms": round(percentile(checking, 0.5) * 1000, 3),
        "check_p95_ms": round(percentile(checking, 0.95) * 1000, 3),
        "record_p50_ms": round(percentile(recording, 0.5) * 1000, 3),
        "record_p95_ms": round(percentile(recording, 0.95) * 1000, 3),
        "check_cpu_ms": round(check_cpu / messages * 1000, 3),
        "record_cpu_ms": round(record_cpu / messages * 1000, 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--layouts", default="alone,case")
    args = parser.parse_args()
    kinds = ["sqlite"] + (["postgresql"] if os.environ.get("GATEWAY_TEST_POSTGRES_URL") else [])
    with tempfile.TemporaryDirectory() as folder:
        for kind in kinds:
            for layout in args.layouts.split(","):
                for size in (int(value) for value in args.sizes.split(",")):
                    result = measure(kind, layout, size, args.messages, Path(folder))
                    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: what indexing adds to a message's acceptance, per message, against its validation.

For the valid sample forms and generated 5 KiB forms M (a dozen persons each), in one run:
validation alone (what intake already pays), entity extraction from the validated tree, folding
into index rows, and the write of those rows (with the FTS5 trigram triggers) alone; and, for
scale, the durable SQLite transaction that records a message with and without its index rows
(fsync-bound, so noisy on a shared disk).

And, per database (SQLite; PostgreSQL when GATEWAY_TEST_POSTGRES_URL is set, a private schema
dropped afterwards), what a NEW name part costs to write (its row, and its trigrams: SQLite's
FTS5 trigger, PostgreSQL's trigram table): messages of 1,000 persons whose family names are new
against messages of 1,000 persons whose every part is held already, on an index of
--held persons, alternated; per new part the difference, in wall time, the client thread's CPU
and (PostgreSQL, read from /proc/PID/schedstat) the server backend's CPU.

    .venv/bin/python bench/index_cost.py [--rounds 5] [--repeat 20] [--out FILE.json]
        [--databases sqlite,postgresql] [--held 10000]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchkit import write_results
from search import MESSAGE, NOW, PER_MESSAGE, backend, database, fill, on_cpu, person
from validate import documents

from gateway.core.clock import FakeClock
from gateway.forms.entities import Entity
from gateway.forms.setup import load_validator
from gateway.search import index
from gateway.store import schema
from gateway.store.ledger import Ledger, create_schema, make_engine
from gateway.store.search_rows import Where

ROOT = Path(__file__).resolve().parent.parent


def per_message_us(run: Callable[[], int], rounds: int) -> float:
    """Microseconds per message: the median of ``rounds`` passes (each returns its count)."""
    run()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        count = run()
        times.append((time.perf_counter() - start) / count * 1e6)
    return statistics.median(times)


def measure(
    group: list[tuple[str, bytes]], repeat: int, rounds: int, folder: Path
) -> dict[str, float]:
    validator = load_validator(None)
    validations = [validator.validate(data) for _, data in group]
    found = [validation.entities() for validation in validations]
    rows = [index.index_rows(entities) for entities in found]
    count = repeat * len(group)

    def validate() -> int:
        for _ in range(repeat):
            for _, data in group:
                validator.validate(data)
        return count

    def extract() -> int:
        for _ in range(repeat):
            for validation in validations:
                validation.entities()
        return count

    def fold() -> int:
        for _ in range(repeat):
            for entities in found:
                index.index_rows(entities)
        return count

    engine = make_engine(f"sqlite:///{folder / 'ledger.db'}")
    create_schema(engine)
    ledger = Ledger(engine, FakeClock(NOW))
    serial = iter(range(1, 10**9))

    def record(with_index: bool) -> Callable[[], int]:
        def run() -> int:
            for _ in range(repeat):
                for (_, _data), entities in zip(group, found, strict=True):
                    new = dataclasses.replace(MESSAGE, reference=f"NO-2026-{next(serial):06d}")
                    with ledger.transaction() as tx:
                        message = ledger.record_in(tx, new, "spooled")
                        if with_index:
                            where = Where(message, "inbound", "NO-SIRENE", "sirene", "M")
                            index.write_in(tx, where, entities, NOW)
            return count

        return run

    def write_only() -> int:
        """The index rows' inserts (and their FTS5 triggers) alone: many messages in one
        transaction, so that no fsync is counted."""
        with ledger.transaction() as tx:
            new = dataclasses.replace(MESSAGE, reference=f"NO-2026-{next(serial):06d}")
            message = ledger.record_in(tx, new, "spooled")
            where = Where(message, "inbound", "NO-SIRENE", "sirene", "M")
            for _ in range(repeat):
                for entities in found:
                    index.write_in(tx, where, entities, NOW)
        return count

    figures = {
        "documents": len(group),
        "entries_per_message": round(sum(map(len, rows)) / len(rows), 1),
        "validate_us": per_message_us(validate, rounds),
        "extract_us": per_message_us(extract, rounds),
        "fold_us": per_message_us(fold, rounds),
        "write_us": per_message_us(write_only, rounds),
        "record_us": per_message_us(record(False), rounds),
        "record_and_index_us": per_message_us(record(True), rounds),
    }
    engine.dispose()
    figures["index_total_us"] = figures["extract_us"] + figures["fold_us"] + figures["write_us"]
    return {key: round(value, 1) for key, value in figures.items()}


def new_part_cost(kind: str, held_persons: int, rounds: int, folder: Path) -> dict[str, object]:
    """Per new name part: a message of PER_MESSAGE persons with new family names against one
    whose persons' parts are all held, alternated ``rounds`` times (the medians' difference)."""
    with database(kind, folder) as url:
        engine = make_engine(url)
        try:
            schema.upgrade(engine)
            ledger = Ledger(engine, FakeClock(NOW))
            held, _ = fill(ledger, held_persons, seed=held_persons)
            pick = random.Random(1)
            serial = iter(range(held_persons, 10**9))
            costs: dict[str, list[tuple[float, float, float]]] = {"new": [], "held": []}
            for _ in range(rounds):
                for which in ("new", "held"):
                    if which == "new":
                        batch = [person(next(serial), pick) for _ in range(PER_MESSAGE)]
                    else:
                        batch = [pick.choice(held) for _ in range(PER_MESSAGE)]
                    found = [Entity("person", "name", name, born) for name, born in batch]
                    new = dataclasses.replace(MESSAGE, reference=f"NO-2027-{next(serial):06d}")
                    pid = backend(ledger)  # the pool's one connection, as the write's
                    server, cpu, wall = on_cpu(pid), time.thread_time(), time.perf_counter()
                    with ledger.transaction() as tx:
                        message = ledger.record_in(tx, new, "spooled")
                        where = Where(message, "inbound", "NO-SIRENE", "sirene", "M")
                        index.write_in(tx, where, found, NOW)
                    # The commit counts (PostgreSQL checks and writes its indexes' WAL then).
                    costs[which].append(
                        (
                            time.perf_counter() - wall,
                            time.thread_time() - cpu,
                            on_cpu(pid) - server,
                        )
                    )
        finally:
            engine.dispose()

    def per_part_us(at: int) -> float:
        new = statistics.median(cost[at] for cost in costs["new"])
        old = statistics.median(cost[at] for cost in costs["held"])
        return round((new - old) / PER_MESSAGE * 1e6, 1)

    def per_person_us(which: str, at: int) -> float:
        return round(statistics.median(cost[at] for cost in costs[which]) / PER_MESSAGE * 1e6, 1)

    return {
        "database": kind,
        "held_persons": held_persons,
        "rounds": rounds,
        "person_with_held_parts_wall_us": per_person_us("held", 0),
        "person_with_a_new_part_wall_us": per_person_us("new", 0),
        "new_part_wall_us": per_part_us(0),
        "new_part_client_cpu_us": per_part_us(1),
        "new_part_server_cpu_us": per_part_us(2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "index_cost.json")
    parser.add_argument("--databases", default=None, help="sqlite,postgresql (default: both)")
    parser.add_argument("--held", type=int, default=10000, help="persons indexed before")
    parser.add_argument("--only-new-parts", action="store_true", help="skip the forms' figures")
    args = parser.parse_args()
    kinds = ["sqlite"] + (["postgresql"] if os.environ.get("GATEWAY_TEST_POSTGRES_URL") else [])
    if args.databases is not None:
        kinds = [kind for kind in kinds if kind in args.databases.split(",")]
    docs = documents()
    groups = {
        "samples": [doc for doc in docs if doc[0].startswith("sample:")],
        "generated_5k": [doc for doc in docs if doc[0].startswith("generated-5k:")],
    }
    results: dict[str, object] = {"benchmark": "index_cost", "python": platform.python_version()}
    with tempfile.TemporaryDirectory() as folder:
        for name, group in groups.items() if not args.only_new_parts else ():
            where = Path(folder) / name
            where.mkdir()
            figures = measure(group, args.repeat, args.rounds, where)
            results[name] = figures
            print(
                f"{name:>13}: {figures['entries_per_message']} entries/message; validate "
                f"{figures['validate_us']} us, extract {figures['extract_us']} us, fold "
                f"{figures['fold_us']} us, write {figures['write_us']} us: indexing "
                f"{figures['index_total_us']} us/message (a durable record: "
                f"{figures['record_us']} us alone, {figures['record_and_index_us']} us indexed)"
            )
        parts = []
        for kind in kinds:
            cost = new_part_cost(kind, args.held, args.rounds, Path(folder))
            parts.append(cost)
            print(
                f"{kind:>10}, {args.held:,} persons held: a person whose parts are held "
                f"{cost['person_with_held_parts_wall_us']} us; a new name part "
                f"{cost['new_part_wall_us']} us more (client CPU "
                f"{cost['new_part_client_cpu_us']} us, server CPU "
                f"{cost['new_part_server_cpu_us']} us)"
            )
        results["new_parts"] = parts
    write_results(args.out, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())

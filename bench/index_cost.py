"""Benchmark: what indexing adds to a message's acceptance, per message, against its validation.

For the valid sample forms and generated 5 KiB forms M (a dozen persons each), in one run:
validation alone (what intake already pays), entity extraction from the validated tree, folding
into index rows, and the write of those rows (with the FTS5 trigram triggers) alone; and, for
scale, the durable SQLite transaction that records a message with and without its index rows
(fsync-bound, so noisy on a shared disk).

    .venv/bin/python bench/index_cost.py [--rounds 5] [--repeat 20] [--out FILE.json]
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
from collections.abc import Callable
from pathlib import Path

from search import MESSAGE, NOW
from validate import documents

from gateway.core.clock import FakeClock
from gateway.forms.setup import load_validator
from gateway.search import index
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "index_cost.json")
    args = parser.parse_args()
    docs = documents()
    groups = {
        "samples": [doc for doc in docs if doc[0].startswith("sample:")],
        "generated_5k": [doc for doc in docs if doc[0].startswith("generated-5k:")],
    }
    results: dict[str, object] = {"benchmark": "index_cost", "python": platform.python_version()}
    with tempfile.TemporaryDirectory() as folder:
        for name, group in groups.items():
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
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: the cross-check at arrival (gateway.search.crosscheck.check) of a message with one
person, one passport and one alert reference, against N persons already indexed; p50 and p95
per message, as the hand-off pays it (after the 250, never on the intake's path).

Half the arriving persons are a held person spelled otherwise with the same date of birth (a
hit), half are new; every passport is new and every alert reference is shared with one earlier
message. SQLite always; PostgreSQL when GATEWAY_TEST_POSTGRES_URL is set (analyzed after the
fill: without statistics the planner sorts every person by trigram distance instead of walking
the GiST index, 4 to 5 times slower at 100,000).

    .venv/bin/python bench/crosscheck.py [--sizes 10000,100000] [--messages 200]
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

from search import MESSAGE, NOW, database, fill, percentile, person, variant

from gateway.core.clock import FakeClock
from gateway.forms.entities import Entity
from gateway.search import crosscheck, index
from gateway.store import schema
from gateway.store.ledger import Ledger, make_engine
from gateway.store.search_rows import Where


def measure(kind: str, size: int, messages: int, folder: Path) -> dict[str, object]:
    with database(kind, folder) as url:
        engine = make_engine(url)
        try:
            schema.upgrade(engine)
            ledger = Ledger(engine, FakeClock(NOW))
            held, _ = fill(ledger, size, seed=7)
            if kind == "postgresql":  # as autovacuum would after the fill: the planner then
                with engine.begin() as connection:  # walks the GiST index, not every row
                    connection.exec_driver_sql("ANALYZE search_entries")
            pick = random.Random(11)
            seconds: list[float] = []
            hits = 0
            for number in range(messages):
                if number % 2 == 0:
                    name, born = pick.choice(held)
                    name = variant(name, pick)
                else:
                    name, born = person(size + number, pick)
                found = [
                    Entity("person", "name", name, born),
                    Entity("document", "passport", f"P{number:08d}", None, "NO"),
                    Entity("reference", "sis-alert", f"NO{number // 2:016d}"),
                ]
                with ledger.transaction() as tx:
                    new = dataclasses.replace(MESSAGE, reference=f"NO-2027-{number:06d}")
                    message = ledger.record_in(tx, new, "spooled")
                    where = Where(message, "inbound", "NO-SIRENE", "sirene", "G")
                    index.write_in(tx, where, found, NOW)
                start = time.perf_counter()
                with ledger.reading() as tx:
                    hits += len(crosscheck.check(tx, message))
                seconds.append(time.perf_counter() - start)
        finally:
            engine.dispose()
    return {
        "database": kind,
        "persons": size,
        "messages": messages,
        "hits": hits,
        "p50_ms": round(percentile(seconds, 0.5) * 1000, 2),
        "p95_ms": round(percentile(seconds, 0.95) * 1000, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--messages", type=int, default=200)
    args = parser.parse_args()
    kinds = ["sqlite"] + (["postgresql"] if os.environ.get("GATEWAY_TEST_POSTGRES_URL") else [])
    with tempfile.TemporaryDirectory() as folder:
        for kind in kinds:
            for size in (int(value) for value in args.sizes.split(",")):
                result = measure(kind, size, args.messages, Path(folder))
                print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: person searches on PostgreSQL in the gateway's reads (READ ONLY, ended by COMMIT)
against the same searches in reads ended by ROLLBACK, at which psycopg forgets every statement
it prepared on the connection, so that the server parses and plans each statement anew.

Both run in this process, search by search alternately (the order swapped every other search),
each on an engine, connection and backend of its own, so that both meet the machine as it is at
that moment: its speed moved by a third between runs of the same code here. CPU is this
thread's and the search's backend's (/proc/PID/schedstat). The index is one bench/search.py kept
(``--keep``, schema bench_search_SIZE); the first pass warms both and is not counted.

    GATEWAY_TEST_POSTGRES_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test \\
      .venv/bin/python bench/pg_reads.py --size 10000 [--rounds 3] [--queries 200]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

from benchkit import write_results
from search import NOW, backend, database, on_cpu, percentile, persons, variant
from sqlalchemy import Engine

from gateway.core.clock import FakeClock
from gateway.search import matching
from gateway.store import search_rows
from gateway.store.ledger import Ledger, make_engine
from gateway.store.unit import Transaction, reading

Reading = Callable[[Engine], AbstractContextManager[Transaction]]


@contextlib.contextmanager
def rolled_back(engine: Engine) -> Iterator[Transaction]:
    """A read as a plain connection gives it: its transaction rolled back when the connection
    goes back to the pool."""
    with engine.connect() as connection:
        yield Transaction(connection)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=3, help="passes; the first is not counted")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--keep", type=Path, required=True, help="bench/search.py's --keep")
    parser.add_argument("--out", type=Path, default=Path("bench/results/pg_reads.json"))
    args = parser.parse_args()
    if "GATEWAY_TEST_POSTGRES_URL" not in os.environ:
        raise SystemExit("set GATEWAY_TEST_POSTGRES_URL")
    if args.rounds < 2:
        raise SystemExit("--rounds: at least 2 (the first warms)")
    with database("postgresql", args.keep, args.size, args.keep) as url:
        ways: dict[str, tuple[Reading, Engine]] = {
            "rollback": (rolled_back, make_engine(url)),
            "commit": (reading, make_engine(url)),
        }
        with reading(ways["commit"][1]) as tx:
            if search_rows.count(tx) != args.size:
                raise SystemExit(f"no index of {args.size} persons kept: run bench/search.py")
        pids = {way: backend(Ledger(engine, FakeClock(NOW))) for way, (_, engine) in ways.items()}
        held = persons(args.size, seed=args.size)
        pick = random.Random(7)
        asked = [variant(pick.choice(held)[0], pick) for _ in range(args.queries)]
        cpu: dict[str, list[float]] = {way: [] for way in ways}
        wall: dict[str, list[float]] = {way: [] for way in ways}
        for number in range(args.rounds):
            for at, query in enumerate(asked):
                for way in ("rollback", "commit") if at % 2 == 0 else ("commit", "rollback"):
                    read, engine = ways[way]
                    pid = pids[way]
                    server, thread, start = on_cpu(pid), time.thread_time(), time.perf_counter()
                    with read(engine) as tx:
                        matching.search(tx, matching.Query("person", query), desks={"sirene"})
                    if number > 0:
                        wall[way].append(time.perf_counter() - start)
                        cpu[way].append(time.thread_time() - thread + on_cpu(pid) - server)
        for way, (_, engine) in ways.items():
            if backend(Ledger(engine, FakeClock(NOW))) != pids[way]:
                raise SystemExit(f"the {way} reads changed backends: CPU not counted")
            engine.dispose()
    figures = {
        way: {
            "cpu_p50_ms": round(percentile(cpu[way], 0.5) * 1000, 2),
            "cpu_p95_ms": round(percentile(cpu[way], 0.95) * 1000, 2),
            "wall_p50_ms": round(percentile(wall[way], 0.5) * 1000, 2),
            "wall_p95_ms": round(percentile(wall[way], 0.95) * 1000, 2),
        }
        for way in ways
    }
    for way, figure in figures.items():
        print(
            f"{args.size:,} persons, reads ended by {way:<8}: CPU p50 {figure['cpu_p50_ms']} ms, "
            f"p95 {figure['cpu_p95_ms']} ms; wall p50 {figure['wall_p50_ms']} ms, "
            f"p95 {figure['wall_p95_ms']} ms"
        )
    ratio = {
        f"rollback_over_commit_{stat}": round(
            figures["rollback"][f"{stat}_ms"] / figures["commit"][f"{stat}_ms"], 2
        )
        for stat in ("cpu_p50", "cpu_p95")
    }
    print(
        "rollback over commit, CPU: p50 "
        f"{ratio['rollback_over_commit_cpu_p50']}x, p95 {ratio['rollback_over_commit_cpu_p95']}x"
    )
    write_results(
        args.out,
        {"persons": args.size, "searches": args.queries * (args.rounds - 1), **figures, **ratio},
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

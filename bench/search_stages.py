"""Benchmark: where a person search's CPU goes, stage by stage, on an index bench/search.py kept
(its thread's CPU plus its PostgreSQL backend's, per call of each gateway.store.search_rows
read a search makes).

The same searches as bench/search.py (the same persons, the same variants, seed 7), on the
schema or file ``--keep`` holds for ``--size`` persons; every read of search_rows a search
calls is timed around the call. The stages nest: alike_parts holds the trigram counts
(_pg_postings on PostgreSQL) and the parts' reads (_fetch).

    GATEWAY_TEST_POSTGRES_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test \\
      .venv/bin/python bench/search_stages.py --size 1000000 [--database postgresql]
      --keep DIR [--queries 200]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchkit import write_results
from search import NOW, backend, database, on_cpu, percentile, persons, variant

from gateway.core.clock import FakeClock
from gateway.search import matching
from gateway.store import search_rows
from gateway.store.ledger import Ledger, make_engine

STAGES = (
    "alike_parts",
    "_pg_postings",
    "_sqlite_postings",
    "_fetch",
    "holders_counted",
    "entries_holding",
    "entries_holding_among",
    "entries",
)


def timed(
    name: str, real: Callable[..., Any], spent: dict[str, list[float]], pid: int | None
) -> Callable[..., Any]:
    """``real``, its calls' CPU (this thread's and the backend's) added to ``spent[name]``."""

    def call(*args: Any, **named: Any) -> Any:
        server, cpu = on_cpu(pid), time.thread_time()
        try:
            return real(*args, **named)
        finally:
            spent[name].append(time.thread_time() - cpu + on_cpu(pid) - server)

    return call


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, required=True)
    parser.add_argument("--database", default="postgresql", choices=["sqlite", "postgresql"])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--keep", type=Path, required=True, help="bench/search.py's --keep")
    parser.add_argument("--out", type=Path, default=Path("bench/results/search_stages.json"))
    args = parser.parse_args()
    if args.database == "postgresql" and "GATEWAY_TEST_POSTGRES_URL" not in os.environ:
        raise SystemExit("set GATEWAY_TEST_POSTGRES_URL")
    with database(args.database, args.keep, args.size, args.keep) as url:
        engine = make_engine(url)
        ledger = Ledger(engine, FakeClock(NOW))
        with ledger.reading() as tx:
            if search_rows.count(tx) != args.size:
                raise SystemExit(f"no index of {args.size} persons kept: run bench/search.py")
        held = persons(args.size, seed=args.size)
        pick = random.Random(7)
        asked = [variant(pick.choice(held)[0], pick) for _ in range(args.queries)]
        pid = backend(ledger)
        spent: dict[str, list[float]] = defaultdict(list)
        for name in STAGES:  # search_rows calls its own functions by their module's names
            setattr(search_rows, name, timed(name, getattr(search_rows, name), spent, pid))
        searches = []
        for query in asked:
            server, cpu = on_cpu(pid), time.thread_time()
            with ledger.reading() as tx:
                matching.search(tx, matching.Query("person", query), desks={"sirene"})
            searches.append(time.thread_time() - cpu + on_cpu(pid) - server)
        engine.dispose()
    print(
        f"{args.database} {args.size:,} persons, {args.queries} searches: CPU p50 "
        f"{percentile(searches, 0.5) * 1000:.2f} ms, p95 {percentile(searches, 0.95) * 1000:.2f} ms"
    )
    for name in STAGES:
        if spent[name]:
            calls = spent[name]
            print(
                f"  {name:<22} {len(calls) / args.queries:5.2f} calls a search, "
                f"CPU {sum(calls) / args.queries * 1000:6.2f} ms a search, "
                f"p95 a call {percentile(calls, 0.95) * 1000:6.2f} ms"
            )
    write_results(
        args.out,
        {
            "database": args.database,
            "persons": args.size,
            "searches": args.queries,
            "cpu_p50_ms": round(percentile(searches, 0.5) * 1000, 2),
            "cpu_p95_ms": round(percentile(searches, 0.95) * 1000, 2),
            "stages": {
                name: {
                    "calls_a_search": round(len(spent[name]) / args.queries, 2),
                    "cpu_ms_a_search": round(sum(spent[name]) / args.queries * 1000, 3),
                }
                for name in STAGES
                if spent[name]
            },
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

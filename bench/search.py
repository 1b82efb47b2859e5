"""Benchmark: person searches through the index (gateway.search.matching) with N indexed persons,
p50 and p95, against a full rapidfuzz scan over the same folded names in the same run, and how
p95 grows from the fewest persons to the most.

The persons are made from lists of family and given names (several scripts) with numbered
suffixes, so that many share trigrams; the searches are held names with a variant applied (a
typo, parts swapped, a transliteration). SQLite always; PostgreSQL when GATEWAY_TEST_POSTGRES_URL
is set (a private schema, dropped afterwards). The baseline is rapidfuzz.process.extract with
token_sort_ratio over every folded name held (C speed, one call per search).

On PostgreSQL the index is VACUUMed before the searches, as `gateway index rebuild` does at its
end (and autovacuum some time after a fill): a search's trigram reads are index-only only on
pages the visibility map marks all-visible.

The searches measured come after --warmup others (other persons, other variants; 50 by
default), not counted: what a running gateway's searches meet is its pooled connections with
their statements prepared (psycopg prepares a statement at its fifth execution on a connection)
and its process's memory of the common trigrams, not a new process's first searches; the
scan's first call is not counted either.

Besides the wall time, each search's CPU: this thread's, and on PostgreSQL its backend's on the
same machine (/proc/PID/schedstat, the time it ran on a CPU): what a search costs, which
waiting for a CPU on a loaded machine does not inflate (the wall time it does).

    .venv/bin/python bench/search.py [--sizes 10000,100000] [--queries 200] [--warmup 50]
        [--out FILE.json] [--keep DIR]

--keep DIR keeps each index built (SQLite: DIR/search-SIZE.db; PostgreSQL: the schema
bench_search_SIZE) and reuses it on the next run with the same size: a million persons take
minutes to index, the searches seconds. Drop the schemas with
``DROP SCHEMA bench_search_SIZE CASCADE`` when done.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import platform
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

from benchkit import write_results
from rapidfuzz import fuzz, process
from sqlalchemy import text

from gateway.core.clock import FakeClock
from gateway.forms.entities import Entity
from gateway.search import folding, index, matching
from gateway.search.translit import to_ascii
from gateway.store import schema, search_rows
from gateway.store.ledger import Ledger, NewMessage, make_engine
from gateway.store.search_rows import Where
from gateway.store.states import InboundState

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 12, 1, tzinfo=UTC)
FAMILY = [
    "MÜLLER", "SCHMIDT", "NOWAK", "IVANOV", "PETROV", "PAPADOPOULOS", "JOVANOVIĆ", "POPESCU",
    "GARCÍA", "WÓJCIK", "DUBOIS", "KOVALENKO", "NAGY", "YILMAZ", "ROSSI", "ANDERSSON",
    "SZYMAŃSKA", "WEBER", "SOKOLOVA", "NOVÁK", "SCHNEIDER", "KOWALSKI", "SMIRNOV", "GEORGIOU",
]  # fmt: skip
GIVEN = [
    "Hans", "Jürgen", "Anna", "Ivan", "Sergey", "Nikolaos", "Dragan", "Ion", "María", "Krzysztof",
    "Jean", "Yuriy", "Zoltán", "Ahmet", "Giuseppe", "Lars", "Agnieszka", "Philipp", "Olga",
]  # fmt: skip
PER_MESSAGE = 1000
MESSAGE = NewMessage(
    direction="inbound",
    partner="NO-SIRENE",
    channel="sirene",
    form="M",
    reference="NO-2026-000000",
    message_id="<bench@no.example>",
    priority="normal",
    content_sha256="a" * 64,
    raw_sha256="b" * 64,
    state=InboundState.RECEIVED,
    spool_key=None,
    desk="sirene",
)


def person(number: int, pick: random.Random) -> tuple[str, str]:
    """A held person: a name (a family name with a suffix that makes it one of many) and a
    date of birth."""
    family = f"{pick.choice(FAMILY)}{_suffix(number)}"
    born = date(1950 + pick.randrange(55), 1 + pick.randrange(12), 1 + pick.randrange(28))
    return f"{pick.choice(GIVEN)} {family}", born.isoformat()


def _suffix(number: int) -> str:
    letters = "abcdefghijklmnoprstuvz"
    word = ""
    while True:
        number, rest = divmod(number, len(letters))
        word += letters[rest]
        if number == 0:
            return word.upper()


def variant(name: str, pick: random.Random) -> str:
    parts = name.split()
    which = pick.randrange(3)
    if which == 0:  # a typo in the family name: one letter doubled
        family = parts[-1]
        at = pick.randrange(len(family))
        parts[-1] = family[:at] + family[at] + family[at:]
    elif which == 1:  # parts swapped
        parts.reverse()
    else:  # written without diacritics, lower case
        parts = [to_ascii(part).lower() for part in parts]
    return " ".join(parts)


@contextlib.contextmanager
def database(kind: str, folder: Path, size: int = 0, keep: Path | None = None) -> Iterator[str]:
    """A database for the index of ``size`` persons: kept (and reused) under ``keep``,
    otherwise made for the run and dropped after it."""
    if kind == "sqlite":
        name = f"search-{size}.db" if keep is not None else f"search-{uuid.uuid4().hex[:6]}.db"
        yield f"sqlite:///{(keep or folder) / name}"
        return
    admin = make_engine(os.environ["GATEWAY_TEST_POSTGRES_URL"])
    name = f"bench_search_{size}" if keep is not None else f"b_{uuid.uuid4().hex[:12]}"
    with admin.begin() as connection:
        exists = connection.execute(
            text("SELECT 1 FROM pg_namespace WHERE nspname = :name"), {"name": name}
        ).scalar()
        if exists is None:
            connection.execute(text(f'CREATE SCHEMA "{name}"'))
    try:
        yield f"{os.environ['GATEWAY_TEST_POSTGRES_URL']}?options=-csearch_path%3D{name}"
    finally:
        if keep is None:
            with admin.begin() as connection:
                connection.execute(text(f'DROP SCHEMA "{name}" CASCADE'))
        admin.dispose()


def persons(size: int, seed: int) -> list[tuple[str, str]]:
    """The ``size`` persons a fill with ``seed`` indexes (the same on every run)."""
    pick = random.Random(seed)
    return [person(number, pick) for number in range(size)]


def fill(ledger: Ledger, size: int, seed: int) -> tuple[list[tuple[str, str]], float]:
    """Index ``size`` persons, a thousand per message; returns them and the seconds it took."""
    held = persons(size, seed)
    start = time.perf_counter()
    for first in range(0, size, PER_MESSAGE):
        with ledger.transaction() as tx:
            new = dataclasses.replace(MESSAGE, reference=f"NO-2026-{first:06d}")
            message = ledger.record_in(tx, new, "spooled")
            where = Where(message, "inbound", "NO-SIRENE", "sirene", "M")
            batch = held[first : first + PER_MESSAGE]
            found = [Entity("person", "name", name, born) for name, born in batch]
            index.write_in(tx, where, found, NOW)
    return held, time.perf_counter() - start


def on_cpu(pid: int | None) -> float:
    """Seconds the process ``pid`` has run on a CPU (a PostgreSQL backend); 0 for none."""
    if pid is None:
        return 0.0
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e9


def backend(ledger: Ledger) -> int | None:
    """The pid of the PostgreSQL backend the ledger's searches use (one thread: the pool's one
    connection); None on SQLite."""
    with ledger.reading() as tx:
        if tx.dialect != "postgresql":
            return None
        return int(tx.connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def measure(
    kind: str, size: int, queries: int, folder: Path, keep: Path | None, *, warmup: int = 50
) -> dict[str, object]:
    with database(kind, folder, size, keep) as url:
        engine = make_engine(url)
        try:
            schema.upgrade(engine)
            ledger = Ledger(engine, FakeClock(NOW))
            with ledger.reading() as tx:
                already = search_rows.count(tx)
            if already not in (0, size):
                raise SystemExit(f"{url} holds {already} entries, not {size}: drop it first")
            built = already == size
            if built:
                held, filled = persons(size, seed=size), None
            else:
                held, filled = fill(ledger, size, seed=size)
            if kind == "postgresql":
                # What autovacuum or `gateway index rebuild` leaves: the visibility map set, so
                # that the trigram reads are index-only (right after a fill no page is marked
                # all-visible, and where autovacuum is off none ever is); on a kept index a
                # VACUUM skips the pages already marked. The statistics after a fill.
                search_rows.vacuum(engine)
                if not built:
                    with engine.begin() as connection:
                        connection.exec_driver_sql("ANALYZE")
            pick = random.Random(7)
            asked = [variant(pick.choice(held)[0], pick) for _ in range(queries)]
            other = random.Random(8)
            warming = [variant(other.choice(held)[0], other) for _ in range(warmup)]
            for query in warming:  # not counted: see the module's docstring
                with ledger.reading() as tx:
                    matching.search(tx, matching.Query("person", query), desks={"sirene"})
            times, cpus, found, candidates = [], [], 0, []
            pid = backend(ledger)
            for query in asked:
                server, cpu, start = on_cpu(pid), time.thread_time(), time.perf_counter()
                with ledger.reading() as tx:
                    result = matching.search(tx, matching.Query("person", query), desks={"sirene"})
                times.append(time.perf_counter() - start)
                cpus.append(time.thread_time() - cpu + on_cpu(pid) - server)
                found += bool(result.hits)
                candidates.append(result.candidates)
            if backend(ledger) != pid:
                raise SystemExit("the searches changed PostgreSQL backends: CPU not counted")
            with ledger.reading() as tx:
                fuzzy_index = search_rows.trigram_available(tx)
        finally:
            engine.dispose()
    folded = [" ".join(folding.name_parts(name)) for name, _ in held]
    scan, scan_cpu = [], []
    for query in warming[:1]:  # the scan's first call, not counted either
        process.extract(" ".join(folding.name_parts(query)), folded, scorer=fuzz.token_sort_ratio)
    for query in asked[: max(10, queries // 10)]:
        cpu, start = time.thread_time(), time.perf_counter()
        process.extract(
            " ".join(folding.name_parts(query)), folded, scorer=fuzz.token_sort_ratio, limit=50
        )
        scan.append(time.perf_counter() - start)
        scan_cpu.append(time.thread_time() - cpu)
    p95 = percentile(times, 0.95)
    scan_p95 = percentile(scan, 0.95)
    return {
        "database": kind,
        "persons": size,
        "index_seconds": None if filled is None else round(filled, 1),
        "searches": queries,
        "warmup_searches": warmup,
        "found_share": round(found / queries, 3),
        "candidates_median": statistics.median(candidates),
        "fuzzy_index": fuzzy_index,
        "p50_ms": round(percentile(times, 0.5) * 1000, 2),
        "p95_ms": round(p95 * 1000, 2),
        "cpu_p50_ms": round(percentile(cpus, 0.5) * 1000, 2),
        "cpu_p95_ms": round(percentile(cpus, 0.95) * 1000, 2),
        "scan_searches": len(scan),
        "scan_p50_ms": round(percentile(scan, 0.5) * 1000, 2),
        "scan_p95_ms": round(scan_p95 * 1000, 2),
        "scan_cpu_p95_ms": round(percentile(scan_cpu, 0.95) * 1000, 2),
        "scan_over_index_p95": round(scan_p95 / p95, 1),
    }


def growth(runs: list[dict[str, object]]) -> dict[str, dict[str, object]]:
    """Per database: p95 with the most persons over p95 with the fewest."""
    found: dict[str, dict[str, object]] = {}
    for kind in dict.fromkeys(str(run["database"]) for run in runs):
        mine = sorted(
            (run for run in runs if run["database"] == kind),
            key=lambda run: int(str(run["persons"])),
        )
        if len(mine) > 1:
            small, large = mine[0], mine[-1]
            found[kind] = {
                "smallest": small["persons"],
                "largest": large["persons"],
                "p95_ratio": round(float(str(large["p95_ms"])) / float(str(small["p95_ms"])), 2),
                "cpu_p95_ratio": round(
                    float(str(large["cpu_p95_ms"])) / float(str(small["cpu_p95_ms"])), 2
                ),
            }
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=50, help="searches first, not counted")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "search.json")
    parser.add_argument("--databases", default=None, help="sqlite,postgresql (default: both)")
    parser.add_argument("--keep", type=Path, default=None, help="keep and reuse the indexes here")
    args = parser.parse_args()
    kinds = ["sqlite"] + (["postgresql"] if os.environ.get("GATEWAY_TEST_POSTGRES_URL") else [])
    if args.databases is not None:
        kinds = [kind for kind in kinds if kind in args.databases.split(",")]
    results: dict[str, object] = {
        "benchmark": "search",
        "python": platform.python_version(),
        "threshold": matching.DEFAULT_THRESHOLD,
        "runs": [],
    }
    runs: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as folder:
        for kind in kinds:
            for size in (int(value) for value in args.sizes.split(",")):
                figures = measure(
                    kind, size, args.queries, Path(folder), args.keep, warmup=args.warmup
                )
                runs.append(figures)
                built = figures["index_seconds"]
                print(
                    f"{kind:>10} {size:>9,} persons "
                    f"({'reused' if built is None else f'indexed in {built} s'}): "
                    f"p50 {figures['p50_ms']} ms, p95 {figures['p95_ms']} ms (CPU "
                    f"{figures['cpu_p50_ms']} / {figures['cpu_p95_ms']} ms), found "
                    f"{figures['found_share']:.1%}, {figures['candidates_median']} candidates; "
                    f"full rapidfuzz scan p95 {figures['scan_p95_ms']} ms (CPU "
                    f"{figures['scan_cpu_p95_ms']} ms; {figures['scan_over_index_p95']}x)"
                )
    results["runs"] = runs
    grew = growth(runs)
    results["growth"] = grew
    for kind, figures in grew.items():
        print(
            f"{kind:>10} p95 at {figures['largest']:,} over p95 at {figures['smallest']:,} "
            f"persons: {figures['p95_ratio']}x, CPU p95 {figures['cpu_p95_ratio']}x "
            "(target: at most 3x)"
        )
    write_results(args.out, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())

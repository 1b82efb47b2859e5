"""Benchmark: the deadline sweep with 1,000,000 open deadlines beside 1,000, and the peak memory
of `gateway serve` holding them.

Each ledger (a SQLite file; a private schema on PostgreSQL too when GATEWAY_TEST_POSTGRES_URL or
--postgres names a server) is filled in bulk (executemany / COPY) with received urgent SIRENE G
forms, each with its open 12-hour reply deadline owed by the desk, and ``--rounds`` slices of
``--due`` deadlines whose first reminder falls due one minute after the other. Each round moves
the FakeClock one minute on and times one ``Sweeper.sweep()`` on the large ledger and on the
small one, in turn, in the same run: both find ``--due`` deadlines due and post as many
reminders (notice into the desk's Maildir, guarded update, event, audit entry, one transaction
each). The figure is the ratio of the medians, large over small (target <= 2: a sweep costs
what is due, not what is open).

Then a real `gateway serve` subprocess (the gateway's own command, sweeping every second) runs
on each ledger with ``--due`` more deadlines due at the wall clock's now; once it has posted
their reminders and swept a few more times, its VmHWM (peak resident memory) is read from
/proc/PID/status (target < 300 MB for the large ledger).

    .venv/bin/python bench/deadlines.py [--open 1000000] [--small 1000] [--due 100] [--rounds 5]
                                        [--postgres URL]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any

from benchkit import write_results
from sqlalchemy import Engine, text

from gateway.core import config as configuration
from gateway.core.clock import FakeClock
from gateway.core.config import BUILTIN_FORMS
from gateway.crypto.openpgp import GnuPG
from gateway.forms.catalogue import FormCatalogue
from gateway.store import schema as ledger_schema
from gateway.store.audit import AuditLog
from gateway.store.ledger import Ledger, NewMessage, make_engine
from gateway.store.spool import Spool
from gateway.store.states import InboundState
from gateway.store.unit import writing
from gateway.tracking.sweep import Sweeper

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
if str(ROOT / "tests") not in sys.path:
    sys.path.insert(0, str(ROOT / "tests"))
import gpgkit  # noqa: E402

TARGETS = {"sweep_large_over_small": 2.0, "serve_vmhwm_mb": 300.0}
WINDOW = timedelta(hours=12)  # SIRENE G, urgent
FIRST_REMINDER = WINDOW / 2
SWEEP_EVERY_S = 1
SERVE_SWEEPS = 3  # sweeps to let pass after the reminders are out, before reading VmHWM
SERVE_LIMIT_S = 900.0
DIGEST = "0" * 64
MESSAGE_COLUMNS = (
    "id", "direction", "partner", "channel", "form", "reference", "message_id", "priority",
    "content_sha256", "raw_sha256", "desk", "state", "created_at", "updated_at",
)  # fmt: skip
DEADLINE_COLUMNS = (
    "id", "message_id", "kind", "owed_by", "opened_at", "due", "state", "reminders_sent",
    "escalations", "resends", "next_action_at",
)  # fmt: skip


@dataclass
class Ledgerful:
    """One filled ledger with its configuration, folders and the sweeper's parts."""

    label: str
    size: int
    folder: Path
    url: str
    engine: Engine
    config: configuration.Config
    fill_seconds: float


# ---------------------------------------------------------------------------------- filling


def rows(size: int, due: int, rounds: int, start: datetime) -> Iterator[tuple[Any, ...]]:
    """(message row, deadline row) pairs: ``rounds`` slices of ``due`` deadlines spread over
    the ids, whose first reminder falls at start + 1, 2, ... minutes; the others at start + 6 h."""
    step = size // (due * rounds)
    for index in range(size):
        slot, rest = divmod(index, step)
        if rest == 0 and slot < due * rounds:
            next_action = start + timedelta(minutes=slot // due + 1)
        else:
            next_action = start + FIRST_REMINDER
        opened = next_action - FIRST_REMINDER
        number = index + 1
        yield (
            (
                number, "inbound", "NO-SIRENE", "sirene", "G", f"NO-2026-{number:07d}",
                f"<b{number}@no.example>", "urgent", DIGEST, DIGEST, "sirene", "delivered",
                opened, opened,
            ),
            (number, number, "reply", "desk", opened, opened + WINDOW, "open", 0, 0, 0,
             next_action),
        )  # fmt: skip


def fill(engine: Engine, size: int, due: int, rounds: int, start: datetime) -> float:
    """Bulk insert; returns the seconds it took."""
    began = time.perf_counter()
    if engine.dialect.name == "sqlite":
        fill_sqlite(engine, size, due, rounds, start)
    else:
        fill_postgres(engine, size, due, rounds, start)
    return time.perf_counter() - began


def _sqlite_time(value: Any) -> Any:
    return value.strftime("%Y-%m-%d %H:%M:%S.%f") if isinstance(value, datetime) else value


def fill_sqlite(engine: Engine, size: int, due: int, rounds: int, start: datetime) -> None:
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        batch: list[tuple[tuple[Any, ...], tuple[Any, ...]]] = []

        def flush() -> None:
            cursor.executemany(_insert_sql("messages", MESSAGE_COLUMNS),
                               [tuple(map(_sqlite_time, m)) for m, _ in batch])  # fmt: skip
            cursor.executemany(_insert_sql("deadlines", DEADLINE_COLUMNS),
                               [tuple(map(_sqlite_time, d)) for _, d in batch])  # fmt: skip
            batch.clear()

        for pair in rows(size, due, rounds, start):
            batch.append(pair)
            if len(batch) == 50_000:
                flush()
        flush()
        raw.commit()
    finally:
        raw.close()


def _insert_sql(table: str, columns: tuple[str, ...]) -> str:
    marks = ", ".join("?" * len(columns))
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"  # noqa: S608


def fill_postgres(engine: Engine, size: int, due: int, rounds: int, start: datetime) -> None:
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        for table, columns, part in (
            ("messages", MESSAGE_COLUMNS, 0),
            ("deadlines", DEADLINE_COLUMNS, 1),
        ):
            with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                for pair in rows(size, due, rounds, start):
                    copy.write_row(pair[part])
            cursor.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), {size})")
        raw.commit()
        cursor.execute("ANALYZE messages")
        cursor.execute("ANALYZE deadlines")
        raw.commit()
    finally:
        raw.close()


def write_config(folder: Path, url: str, gnupg_home: Path, ours: str, partner: str) -> Path:
    path = folder / "gateway.toml"
    path.write_text(f"""
[identity]
country = "RO"
address = "sirene@ro.example"
bureaux = {{ sirene = "RO-SIRENE" }}

[paths]
gnupg_home = "{gnupg_home}"
spool = "{folder / "spool"}"

[database]
url = "{url}"

[openpgp]
fingerprint = "{ours}"

[smtp.listen]
host = "127.0.0.1"
port = 0
hostname = "gateway.ro.example"

[[partners]]
code = "NO-SIRENE"
channel = "sirene"
country = "NO"
address = "sirene@no.example"
smtp_host = "127.0.0.1"
fingerprint = "{partner}"
require_tls = false

[[desks]]
name = "sirene"
maildir = "{folder / "desks" / "sirene"}"

[[desks]]
name = "duty"
maildir = "{folder / "desks" / "duty"}"

[[routes]]
desk = "sirene"

[deadlines]
duty_desk = "duty"

[scheduler]
sweep_every = "PT{SWEEP_EVERY_S}S"
""")
    return path


# ---------------------------------------------------------------------------------- timing


def sweeper(ledger: Ledgerful, clock: FakeClock, catalogue: FormCatalogue) -> Sweeper:
    return Sweeper(
        config=ledger.config,
        ledger=Ledger(ledger.engine, clock),
        audit=AuditLog(ledger.engine, clock),
        catalogue=catalogue,
        outbound=Spool(ledger.config.paths.spool / "outbound"),
    )


def time_sweeps(
    large: Ledgerful, small: Ledgerful, args: argparse.Namespace, start: datetime
) -> dict[str, Any]:
    catalogue = FormCatalogue.load([(BUILTIN_FORMS, "builtin")])
    clock = FakeClock(start)
    sweepers = {ledger.label: sweeper(ledger, clock, catalogue) for ledger in (large, small)}
    times: dict[str, list[float]] = {large.label: [], small.label: []}
    for number in range(1, args.rounds + 1):
        clock.set(start + timedelta(minutes=number, seconds=30))
        for label, each in sweepers.items():
            began = time.perf_counter()
            result = each.sweep()
            times[label].append(time.perf_counter() - began)
            if result.reminders != args.due or result.failed:
                raise AssertionError(f"{label} round {number}: {result}")
        print(
            f"  round {number}: {large.label} {times[large.label][-1] * 1000:.0f} ms, "
            f"{small.label} {times[small.label][-1] * 1000:.0f} ms "
            f"({args.due} reminders each)"
        )
    medians = {label: statistics.median(values) for label, values in times.items()}
    return {
        "sweep_ms_median": {label: round(value * 1000, 1) for label, value in medians.items()},
        "sweep_ms_rounds": {
            label: [round(value * 1000, 1) for value in values] for label, values in times.items()
        },
        "ratio_large_over_small": round(medians[large.label] / medians[small.label], 3),
        "query_plan": query_plan(large.engine, start),
    }


def query_plan(engine: Engine, now: datetime) -> str:
    """How the database finds the due deadlines (it must use ix_deadlines_next)."""
    sql = (
        "SELECT id FROM deadlines WHERE state = 'open' AND next_action_at <= :now "
        "ORDER BY next_action_at LIMIT 100"
    )
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            found = connection.execute(
                text("EXPLAIN QUERY PLAN " + sql), {"now": _sqlite_time(now)}
            ).all()
            return "; ".join(str(row[-1]) for row in found)
        found = connection.execute(text("EXPLAIN " + sql), {"now": now}).all()
        return "; ".join(str(row[0]).strip() for row in found)


# ---------------------------------------------------------------------------------- serve


def due_now(ledger: Ledgerful, count: int) -> None:
    """``count`` deadlines due at the wall clock's now, owed by the duty desk."""
    now = datetime.now(UTC)
    clock = FakeClock(now - FIRST_REMINDER - timedelta(minutes=1))
    book = Ledger(ledger.engine, clock)
    with writing(ledger.engine) as tx:
        for number in range(count):
            message = book.record_in(
                tx,
                NewMessage(
                    direction="inbound", partner="NO-SIRENE", channel="sirene", form="G",
                    reference=f"NO-2026-9{number:06d}", message_id=f"<now{number}@no.example>",
                    priority="urgent", content_sha256=DIGEST, raw_sha256=DIGEST,
                    state=InboundState.DELIVERED, desk="duty",
                ),
            )  # fmt: skip
            book.open_deadline_in(
                tx,
                message,
                kind="reply",
                owed_by="desk",
                due=clock.now() + WINDOW,
                next_action_at=clock.now() + FIRST_REMINDER,
            )


def vm_status(pid: int) -> dict[str, float]:
    """VmHWM and VmRSS of a process, in MB."""
    found: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmHWM", "VmRSS"):
            found[name] = round(int(value.split()[0]) / 1024, 1)
    return found


def serve_memory(ledger: Ledgerful, due: int) -> dict[str, Any]:
    """Run `gateway serve` on the ledger until it has reminded ``due`` deadlines and swept
    SERVE_SWEEPS more times; its peak memory."""
    due_now(ledger, due)
    duty = ledger.config.desk("duty").maildir / "new"
    log = (ledger.folder / "serve.log").open("wb")
    assert ledger.config.source is not None
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "-c", str(ledger.config.source), "serve",
         "--log-level", "WARNING"],
        stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
    )  # fmt: skip
    began = time.perf_counter()
    try:
        while len(list(duty.glob("notice.reminder.*")) if duty.is_dir() else []) < due:
            if process.poll() is not None:
                raise AssertionError(f"gateway serve exited: see {ledger.folder / 'serve.log'}")
            if time.perf_counter() - began > SERVE_LIMIT_S:
                raise AssertionError("gateway serve did not send the reminders in time")
            time.sleep(0.1)
        reminded = time.perf_counter() - began
        time.sleep(SERVE_SWEEPS * SWEEP_EVERY_S + 0.5)
        status = vm_status(process.pid)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
    return {
        "vmhwm_mb": status["VmHWM"],
        "vmrss_mb": status["VmRSS"],
        "seconds_to_reminders": round(reminded, 1),
        "exit_code": process.returncode,
    }


# ---------------------------------------------------------------------------------- the run


def make_ledger(
    label: str, size: int, *, base: Path, url: str, keys: tuple[Path, str, str], args: Any
) -> Ledgerful:
    folder = base / label
    folder.mkdir()
    engine = make_engine(url)
    ledger_schema.upgrade(engine)
    start = args.start
    seconds = fill(engine, size, args.due, args.rounds, start)
    gnupg_home, ours, partner = keys
    config = configuration.load(write_config(folder, url, gnupg_home, ours, partner))
    print(f"  {label}: {size:,} open deadlines written in {seconds:.1f} s")
    return Ledgerful(label, size, folder, url, engine, config, round(seconds, 1))


def postgres_schema(server: str) -> tuple[str, str]:
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = make_engine(server)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    admin.dispose()
    return schema, f"{server}?options=-csearch_path%3D{schema}"


def drop_schema(server: str, schema: str) -> None:
    admin = make_engine(server)
    with admin.begin() as connection:
        connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


def run_backend(
    backend: str, base: Path, keys: tuple[Path, str, str], args: argparse.Namespace
) -> dict[str, Any]:
    print(f"{backend}:")
    schemas: list[str] = []
    ledgers: list[Ledgerful] = []
    try:
        for label, size in (("large", args.open), ("small", args.small)):
            if backend == "sqlite":
                url = f"sqlite:///{base / backend}-{label}.db"
            else:
                schema, url = postgres_schema(args.postgres)
                schemas.append(schema)
            ledgers.append(
                make_ledger(f"{backend}-{label}", size, base=base, url=url, keys=keys, args=args)
            )
        large, small = ledgers
        timing = time_sweeps(large, small, args, args.start)
        print(
            f"  sweep of {args.due} due: {timing['sweep_ms_median'][large.label]} ms with "
            f"{args.open:,} open, {timing['sweep_ms_median'][small.label]} ms with "
            f"{args.small:,} open: ratio {timing['ratio_large_over_small']}"
        )
        print(f"  plan: {timing['query_plan']}")
        memory = {}
        for ledger in (large, small):
            memory[ledger.label] = serve_memory(ledger, args.due)
            print(f"  gateway serve on {ledger.size:,} open deadlines: {memory[ledger.label]}")
        return {
            "open": {"large": args.open, "small": args.small},
            "fill_seconds": {ledger.label: ledger.fill_seconds for ledger in ledgers},
            **timing,
            "serve": memory,
        }
    finally:
        for ledger in ledgers:
            ledger.engine.dispose()
        for schema in schemas:
            drop_schema(args.postgres, schema)


def versions() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "sqlalchemy": version("sqlalchemy"),
        "apscheduler": version("apscheduler"),
        "psycopg": version("psycopg"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--open", type=int, default=1_000_000, help="open deadlines, large")
    parser.add_argument("--small", type=int, default=1_000, help="open deadlines, small")
    parser.add_argument("--due", type=int, default=100, help="deadlines due in each sweep")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--postgres", default=os.environ.get("GATEWAY_TEST_POSTGRES_URL", ""),
        help="a PostgreSQL server URL (default: $GATEWAY_TEST_POSTGRES_URL); empty: SQLite only",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=BENCH / "results" / "deadlines.json")
    args = parser.parse_args()
    if args.due * args.rounds > args.small or args.small > args.open or args.due < 1:
        parser.error("need 1 <= --due, --due * --rounds <= --small <= --open")
    # Far enough ahead that none of the bulk deadlines is due for the `gateway serve` runs.
    args.start = (datetime.now(UTC) + timedelta(days=2)).replace(second=0, microsecond=0)

    base = Path(tempfile.mkdtemp(prefix="gwd-", dir="/tmp"))
    homes = [gpgkit.new_home(), gpgkit.new_home()]
    try:
        ours = GnuPG(homes[0])
        fingerprint = ours.generate("RO-SIRENE", "sirene@ro.example")
        partner = gpgkit.make_key(homes[1], "NO <sirene@no.example>")
        ours.import_partner_key(gpgkit.export(homes[1], partner))
        ours.close()
        keys = (homes[0], fingerprint, partner)
        results: dict[str, Any] = {
            "benchmark": "deadlines",
            **versions(),
            "cpus": os.cpu_count(),
            "targets": TARGETS,
            "due_per_sweep": args.due,
            "rounds": args.rounds,
            "sweep_every_s": SWEEP_EVERY_S,
            "backends": {},
        }
        backends = ["sqlite"] + (["postgresql"] if args.postgres else [])
        for backend in backends:
            results["backends"][backend] = run_backend(backend, base, keys, args)
    finally:
        for home in homes:
            gpgkit.kill_agent(home)
            shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(base, ignore_errors=True)
    report(results)
    write_results(args.out, results)
    return 0


def report(results: dict[str, Any]) -> None:
    for backend, figures in results["backends"].items():
        ratio = figures["ratio_large_over_small"]
        target = TARGETS["sweep_large_over_small"]
        print(
            f"{backend}: sweep ratio {figures['open']['large']:,} / {figures['open']['small']:,} "
            f"open = {ratio:.2f} (target <= {target}: {'met' if ratio <= target else 'MISSED'})"
        )
        peak = figures["serve"][f"{backend}-large"]["vmhwm_mb"]
        small = figures["serve"][f"{backend}-small"]["vmhwm_mb"]
        target = TARGETS["serve_vmhwm_mb"]
        print(
            f"{backend}: gateway serve VmHWM {peak} MB with {figures['open']['large']:,} open "
            f"deadlines ({small} MB with {figures['open']['small']:,}) "
            f"(target < {target}: {'met' if peak < target else 'MISSED'})"
        )


if __name__ == "__main__":
    sys.exit(main())

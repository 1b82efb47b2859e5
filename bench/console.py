"""Benchmark: the console's worklist page and message view with 100,000 messages in the ledger
beside 1,000, on SQLite and (when GATEWAY_TEST_POSTGRES_URL or --postgres names a server)
PostgreSQL.

Each ledger is migrated to this gateway's revision and filled in bulk (executemany / COPY) with
received SIRENE G forms, their desks in turn sirene, interpol and duty, a reply deadline for one
in three; the newest is a real received message whose form lies in the inbound spool. The real
app (gateway.web.app over open_services) answers through Starlette's TestClient, in process:
each round times, on the small ledger and then on the large one, a handler's first worklist page
(one desk), a handler's of two desks (one read per desk, merged), a supervisor's (every desk), a
handler's page deep in the list (``?before=`` the middle id), a handler's page filtered by time
left (overdue) and by priority and time left, and the message view (the form rendered, the view
appended to the audit chain). One message in five is claimed (the worklist joins the claims);
each message has two events (spooled, delivered). The live worklist's parts are timed too: the
change token's read from the ledger (what one console process does once per interval, whatever
the number of open worklists), a worklist's check when nothing changed (304) and its lines when
something did.
The figure per request is p95 large over p95 small (target <= 2: a page costs what it shows, not
what the ledger holds).

    .venv/bin/python bench/console.py [--large 100000] [--small 1000] [--rounds 200]
                                      [--postgres URL]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import re
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any

from benchkit import write_results
from sqlalchemy import Engine, text
from starlette.testclient import TestClient

from gateway.access.passwords import PasswordPolicy, Passwords
from gateway.access.roles import Role
from gateway.access.setup import open_access
from gateway.core import config as configuration
from gateway.crypto import pgpmime
from gateway.service.services import open_services
from gateway.store import schema as ledger_schema
from gateway.store import worklist
from gateway.store.ledger import NewMessage, make_engine
from gateway.store.states import InboundState
from gateway.web.app import build_app

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
SAMPLE = ROOT / "forms" / "samples" / "G" / "valid-person-arrested.xml"
TARGET = 2.0
PASSWORD = "a benchmark passphrase"  # noqa: S105 (a throwaway user of a throwaway ledger)
CHEAP = PasswordPolicy(min_length=12, time_cost=1, memory_kib=1024, parallelism=1)
DESKS = ("sirene", "interpol", "duty")
DIGEST = "0" * 64
START = datetime(2026, 11, 1, tzinfo=UTC)
MESSAGE_COLUMNS = (
    "id", "direction", "partner", "channel", "form", "reference", "message_id", "priority",
    "content_sha256", "raw_sha256", "desk", "state", "created_at", "updated_at",
)  # fmt: skip
CLAIM_COLUMNS = ("message_id", "holder", "since", "updated_at")
EVENT_COLUMNS = ("message_id", "at", "kind", "detail")
DEADLINE_COLUMNS = (
    "message_id", "kind", "owed_by", "opened_at", "due", "state", "reminders_sent",
    "escalations", "resends", "next_action_at",
)  # fmt: skip
CONFIG = """
[identity]
country = "RO"
address = "sirene@ro.example"
bureaux = {{ sirene = "RO-SIRENE" }}

[paths]
spool = "{spool}"

[database]
url = "{url}"

[[desks]]
name = "sirene"
maildir = "desks/sirene"

[[desks]]
name = "interpol"
maildir = "desks/interpol"

[[desks]]
name = "duty"
maildir = "desks/duty"

[[routes]]
desk = "sirene"

[access]
totp_required = []

[web]
time_zone = "Europe/Bucharest"
"""


def claim_rows(size: int) -> Iterator[tuple[Any, ...]]:
    for number in range(5, size + 1, 5):
        at = START + timedelta(seconds=number, minutes=5)
        yield (number, "ana", at, at)


def rows(size: int) -> Iterator[tuple[tuple[Any, ...], tuple[Any, ...] | None]]:
    for number in range(1, size + 1):
        at = START + timedelta(seconds=number)
        message = (
            number, "inbound", "NO-SIRENE", "sirene", "G", f"NO-2026-{number:06d}",
            f"<b{number}@no.example>", "urgent", DIGEST, DIGEST, DESKS[number % 3], "delivered",
            at, at,
        )  # fmt: skip
        deadline = (
            (number, "reply", "desk", at, at + timedelta(hours=12), "open", 0, 0, 0, at)
            if number % 3 == 0
            else None
        )
        yield message, deadline


def event_rows(size: int) -> Iterator[tuple[Any, ...]]:
    for number in range(1, size + 1):
        at = START + timedelta(seconds=number)
        yield (number, at, "spooled", "")
        yield (number, at, "delivered", "desk sirene")


def fill(engine: Engine, size: int) -> float:
    began = time.perf_counter()
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        if engine.dialect.name == "sqlite":
            stamp = lambda v: v.strftime("%Y-%m-%d %H:%M:%S.%f") if isinstance(v, datetime) else v  # noqa: E731
            pairs = list(rows(size))
            cursor.executemany(_insert("messages", MESSAGE_COLUMNS, "?"),
                               [tuple(map(stamp, m)) for m, _ in pairs])  # fmt: skip
            cursor.executemany(_insert("deadlines", DEADLINE_COLUMNS, "?"),
                               [tuple(map(stamp, d)) for _, d in pairs if d])  # fmt: skip
            cursor.executemany(_insert("claims", CLAIM_COLUMNS, "?"),
                               [tuple(map(stamp, c)) for c in claim_rows(size)])  # fmt: skip
            cursor.executemany(_insert("events", EVENT_COLUMNS, "?"),
                               [tuple(map(stamp, e)) for e in event_rows(size)])  # fmt: skip
            raw.commit()
            cursor.execute("ANALYZE")
        else:
            with cursor.copy(f"COPY messages ({', '.join(MESSAGE_COLUMNS)}) FROM STDIN") as copy:
                for message, _ in rows(size):
                    copy.write_row(message)
            with cursor.copy(f"COPY deadlines ({', '.join(DEADLINE_COLUMNS)}) FROM STDIN") as copy:
                for _, deadline in rows(size):
                    if deadline:
                        copy.write_row(deadline)
            with cursor.copy(f"COPY claims ({', '.join(CLAIM_COLUMNS)}) FROM STDIN") as copy:
                for claim in claim_rows(size):
                    copy.write_row(claim)
            with cursor.copy(f"COPY events ({', '.join(EVENT_COLUMNS)}) FROM STDIN") as copy:
                for event_row in event_rows(size):
                    copy.write_row(event_row)
            cursor.execute(f"SELECT setval(pg_get_serial_sequence('messages', 'id'), {size})")
            raw.commit()
            cursor.execute("ANALYZE messages")
            cursor.execute("ANALYZE deadlines")
            cursor.execute("ANALYZE claims")
            cursor.execute("ANALYZE events")
        raw.commit()
    finally:
        raw.close()
    return time.perf_counter() - began


def _insert(table: str, columns: tuple[str, ...], mark: str) -> str:
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join([mark] * len(columns))})"  # noqa: S608


@contextlib.contextmanager
def console(folder: Path, url: str, size: int) -> Iterator[dict[str, Any]]:
    """A filled ledger, its console app, three signed-in clients and the requests to time."""
    engine = make_engine(url)
    ledger_schema.upgrade(engine)
    seconds = fill(engine, size - 1)
    engine.dispose()
    path = folder / "gateway.toml"
    path.write_text(CONFIG.format(spool=folder / "spool", url=url))
    config = configuration.load(path)
    with open_services(config) as services:
        access = open_access(config, services.ledger, services.clock, passwords=Passwords(CHEAP))
        users = {
            "ana": ({Role.HANDLER}, {"sirene"}),
            "bob": ({Role.HANDLER}, {"sirene", "duty"}),
            "sue": ({Role.SUPERVISOR}, set()),
        }
        for name, (roles, desks) in users.items():
            access.accounts.add(name, frozenset(roles), frozenset(desks), PASSWORD)
        raw = b"raw\r\n"
        entity = pgpmime.build_entity(
            SAMPLE.read_bytes().replace(b"000123", f"{size:06d}".encode())
        )
        services.inbound.put("newest", raw + entity, {"raw_length": len(raw)})
        with services.ledger.transaction() as tx:
            newest = services.ledger.record_in(
                tx,
                NewMessage(
                    direction="inbound", partner="NO-SIRENE", channel="sirene", form="G",
                    reference=f"NO-2026-{size:06d}", message_id="<newest@no.example>",
                    priority="urgent", content_sha256=DIGEST, raw_sha256=DIGEST,
                    state=InboundState.RECEIVED, spool_key="newest", desk="sirene",
                ),
            )  # fmt: skip
        _ = services.validator
        app = build_app(services, access)
        clients = {}
        with contextlib.ExitStack() as stack:
            for name in users:
                client = stack.enter_context(TestClient(app, follow_redirects=False))
                page = client.get("/login").text
                token = re.search(r'name="csrf" value="([^"]+)"', page)
                assert token is not None
                answer = client.post(
                    "/login", data={"csrf": token.group(1), "name": name, "password": PASSWORD}
                )
                assert answer.status_code == 303, answer.text
                clients[name] = client
            yield {
                "fill_seconds": round(seconds, 1),
                "requests": {
                    "worklist, one desk": (clients["ana"], "/"),
                    "worklist, two desks": (clients["bob"], "/"),
                    "worklist, every desk": (clients["sue"], "/"),
                    "worklist, deep page": (clients["ana"], f"/?before={size // 2}"),
                    "worklist, overdue": (clients["ana"], "/?due=overdue"),
                    "worklist, urgent, 4 h": (clients["ana"], "/?priority=urgent&due=4"),
                    "message view": (clients["ana"], f"/messages/{newest}"),
                    "live: lines": (clients["ana"], "/worklist/rows"),
                },
                "calls": {
                    "live: token read": lambda: _token_read(services),
                    "live: check, unchanged": lambda: _unchanged(clients["ana"]),
                },
            }


def _token_read(services: Any) -> float:
    """The change token read from the ledger, as ChangeWatch does once per interval."""
    began = time.perf_counter()
    with services.ledger.reading() as tx:
        worklist.change_token(tx)
    return (time.perf_counter() - began) * 1000


def _unchanged(client: TestClient) -> float:
    """A worklist's check that finds nothing changed: 304, with the token the page holds."""
    token = client.get("/worklist/rows").headers["etag"]
    began = time.perf_counter()
    answer = client.get("/worklist/rows", headers={"If-None-Match": token})
    elapsed = time.perf_counter() - began
    # The token moves each minute (and the FakeClock-free console runs on the wall clock).
    assert answer.status_code in (200, 304), answer.status_code
    return elapsed * 1000


def timed(client: TestClient, url: str) -> float:
    began = time.perf_counter()
    answer = client.get(url)
    elapsed = time.perf_counter() - began
    assert answer.status_code == 200, (url, answer.status_code)
    return elapsed * 1000


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def run_backend(backend: str, base: Path, args: argparse.Namespace) -> dict[str, Any]:
    print(f"{backend}:")
    schemas: list[str] = []
    try:
        with contextlib.ExitStack() as stack:
            made = {}
            for label, size in (("large", args.large), ("small", args.small)):
                folder = base / f"{backend}-{label}"
                folder.mkdir()
                if backend == "sqlite":
                    url = f"sqlite:///{folder / 'ledger.db'}"
                else:
                    schema = f"bench_{uuid.uuid4().hex[:10]}"
                    schemas.append(schema)
                    admin = make_engine(args.postgres)
                    with admin.begin() as connection:
                        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
                    admin.dispose()
                    url = f"{args.postgres}?options=-csearch_path%3D{schema}"
                made[label] = stack.enter_context(console(folder, url, size))
                print(f"  {label}: {size:,} messages written in {made[label]['fill_seconds']} s")
            runs = {
                label: {
                    **{
                        name: (lambda request=request: timed(*request))
                        for name, request in made[label]["requests"].items()
                    },
                    **made[label]["calls"],
                }
                for label in ("small", "large")
            }
            times: dict[str, dict[str, list[float]]] = {
                name: {"small": [], "large": []} for name in runs["small"]
            }
            for name in times:  # warm-up
                for label in ("small", "large"):
                    runs[label][name]()
            for _ in range(args.rounds):
                for name in times:
                    for label in ("small", "large"):
                        times[name][label].append(runs[label][name]())
    finally:
        for schema in schemas:
            admin = make_engine(args.postgres)
            with admin.begin() as connection:
                connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            admin.dispose()
    result: dict[str, Any] = {}
    for name, by_size in times.items():
        entry = {
            f"{label}_{stat}_ms": round(percentile(values, share), 2)
            for label, values in by_size.items()
            for stat, share in (("p50", 0.5), ("p95", 0.95))
        }
        entry["p95_large_over_small"] = round(entry["large_p95_ms"] / entry["small_p95_ms"], 2)
        result[name] = entry
        verdict = "ok" if entry["p95_large_over_small"] <= TARGET else "OVER TARGET"
        print(
            f"  {name:<22} p50 {entry['small_p50_ms']:6.2f} / {entry['large_p50_ms']:6.2f} ms"
            f"  p95 {entry['small_p95_ms']:6.2f} / {entry['large_p95_ms']:6.2f} ms"
            f"  (small / large)  ratio {entry['p95_large_over_small']:.2f}  {verdict}"
        )
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--large", type=int, default=100_000)
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--postgres", default=os.environ.get("GATEWAY_TEST_POSTGRES_URL", ""))
    args = parser.parse_args()
    backends = ["sqlite"] + (["postgresql"] if args.postgres else [])
    results: dict[str, Any] = {
        "benchmark": "console",
        "large": args.large,
        "small": args.small,
        "rounds": args.rounds,
        "target_p95_ratio": TARGET,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "versions": {name: version(name) for name in ("starlette", "jinja2", "sqlalchemy")},
    }
    with tempfile.TemporaryDirectory(prefix="bench-console-") as base:
        for backend in backends:
            results[backend] = run_backend(backend, Path(base), args)
    write_results(BENCH / "results" / "console.json", results)
    ratios = [
        entry["p95_large_over_small"] for backend in backends for entry in results[backend].values()
    ]
    return 0 if all(ratio <= TARGET for ratio in ratios) else 1


if __name__ == "__main__":
    sys.exit(main())

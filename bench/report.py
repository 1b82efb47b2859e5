"""Benchmark: `gateway report` time and peak memory over 10,000 and 1,000,000 ledger messages.

Each ledger (a SQLite file; a private schema on PostgreSQL too when GATEWAY_TEST_POSTGRES_URL or
--postgres names a server) is filled in bulk with messages over a year (three partners, five
forms, both directions), each with a reply deadline (met in time, met late or left open), a
receipt deadline for ours, and refusals. A child process then makes the report over the year
(every figure, in SQL) and renders it as JSON and as HTML with its charts; its time and its
peak resident memory (ru_maxrss of the child) are the figures. The baseline is a raw
``SELECT direction, partner, form, COUNT(*) ... GROUP BY`` over the same messages, timed in
the same child: the ratio says what the whole report costs over one plain count.
Target: the 1 M report needs < 300 MB.

    .venv/bin/python bench/report.py [--sizes 10000 1000000] [--postgres URL]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from benchkit import write_results
from sqlalchemy import Engine, text

from gateway.core.clock import FakeClock
from gateway.reports import htmlpage, tables
from gateway.reports.figures import make_report, scope_of
from gateway.store.ledger import Ledger, create_schema, make_engine

BENCH = Path(__file__).resolve().parent
TARGET_MB = 300
YEAR_START = datetime(2026, 1, 1, tzinfo=UTC)
AS_OF = datetime(2027, 1, 5, tzinfo=UTC)
PARTNERS = ("NO-SIRENE", "RS-NCB", "NL-ENU")
FORMS = ("G", "M", "H", "IP-MSG", "EU-RFI")
MESSAGE_COLUMNS = (
    "id", "direction", "partner", "channel", "form", "reference", "message_id", "priority",
    "content_sha256", "raw_sha256", "desk", "state", "created_at", "updated_at", "alert_article",
)  # fmt: skip
DEADLINE_COLUMNS = (
    "id", "message_id", "kind", "owed_by", "opened_at", "due", "state", "closed_at",
    "reminders_sent", "escalations", "resends",
)  # fmt: skip
DIGEST = "a" * 64


def rows(size: int) -> Iterator[tuple[tuple[Any, ...], list[tuple[Any, ...]]]]:
    """Messages spread over the year, each with its deadlines."""
    step = timedelta(days=365) / size
    deadline_id = 0
    for index in range(size):
        number = index + 1
        created = YEAR_START + step * index
        direction = "inbound" if index % 2 == 0 else "outbound"
        partner = PARTNERS[index % 3]
        form = FORMS[index % 5]
        article = ("26", "36", "38")[index % 3] if form == "G" else None
        message = (
            number, direction, partner, "sirene", form, f"XX-2026-{number:07d}",
            f"<m{number}@example>", "urgent" if index % 4 == 0 else "normal", DIGEST, DIGEST,
            "sirene", "delivered" if direction == "inbound" else "acknowledged", created,
            created, article,
        )  # fmt: skip
        due = created + timedelta(hours=12)
        outcome = index % 7
        closed = created + timedelta(hours=(3 + outcome * 2)) if outcome < 6 else None
        found: list[tuple[Any, ...]] = []
        deadline_id += 1
        found.append(
            (deadline_id, number, "reply", "desk" if direction == "inbound" else "partner",
             created, due, "met" if closed else "open", closed, 0, 0, 0)
        )  # fmt: skip
        if direction == "outbound":
            deadline_id += 1
            found.append(
                (deadline_id, number, "receipt", "partner", created,
                 created + timedelta(minutes=15), "met",
                 created + timedelta(seconds=30 + index % 600), 0, 0, int(index % 11 == 0))
            )  # fmt: skip
        yield message, found


def _sqlite_time(value: Any) -> Any:
    return value.strftime("%Y-%m-%d %H:%M:%S.%f") if isinstance(value, datetime) else value


def _insert_sql(table: str, columns: tuple[str, ...], mark: str) -> str:
    marks = ", ".join([mark] * len(columns))
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"  # noqa: S608


def fill(engine: Engine, size: int) -> float:
    """Bulk insert (executemany in batches); returns the seconds it took."""
    began = time.perf_counter()
    sqlite = engine.dialect.name == "sqlite"
    mark = "?" if sqlite else "%s"
    convert = _sqlite_time if sqlite else (lambda value: value)
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        messages: list[tuple[Any, ...]] = []
        deadlines: list[tuple[Any, ...]] = []

        def flush() -> None:
            cursor.executemany(_insert_sql("messages", MESSAGE_COLUMNS, mark),
                               [tuple(map(convert, m)) for m in messages])  # fmt: skip
            cursor.executemany(_insert_sql("deadlines", DEADLINE_COLUMNS, mark),
                               [tuple(map(convert, d)) for d in deadlines])  # fmt: skip
            messages.clear()
            deadlines.clear()

        for message, found in rows(size):
            messages.append(message)
            deadlines.extend(found)
            if len(messages) == 20_000:
                flush()
        flush()
        refusals = [
            (YEAR_START + timedelta(hours=n), PARTNERS[n % 3], DIGEST, 550, "5.6.0", "InvalidForm",
             "550 5.6.0 invalid form")
            for n in range(min(size // 100, 5000))
        ]  # fmt: skip
        cursor.executemany(
            _insert_sql(
                "refusals",
                ("at", "partner", "raw_sha256", "smtp_code", "enhanced", "kind", "reply"),
                mark,
            ),
            [tuple(map(convert, r)) for r in refusals],
        )
        raw.commit()
        if not sqlite:
            cursor.execute("ANALYZE")
            raw.commit()
    finally:
        raw.close()
    return time.perf_counter() - began


def child(url: str) -> None:
    """In its own process: the baseline count, then the report in JSON and HTML; prints JSON."""
    engine = make_engine(url)
    ledger = Ledger(engine, FakeClock(AS_OF))
    began = time.perf_counter()
    with engine.connect() as connection:
        groups = connection.execute(
            text("SELECT direction, partner, form, COUNT(*) FROM messages GROUP BY 1, 2, 3")
        ).all()
    baseline = time.perf_counter() - began
    began = time.perf_counter()
    scope = scope_of(date(2026, 1, 1), date(2026, 12, 31), AS_OF)
    report = make_report(ledger, scope, ZoneInfo("Europe/Bucharest"))
    figures_s = time.perf_counter() - began
    document = tables.to_json(report)
    html = htmlpage.page(report)
    total = time.perf_counter() - began
    engine.dispose()
    counted = sum(n for _, _, _, _, n in report.figures.forms)
    print(
        json.dumps(
            {
                "baseline_count_s": round(baseline, 4),
                "figures_s": round(figures_s, 3),
                "report_json_html_s": round(total, 3),
                "ratio_report_over_baseline": round(total / baseline, 1) if baseline else None,
                "forms_counted": counted,
                "baseline_groups": len(groups),
                "json_bytes": len(document),
                "html_bytes": len(html),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            }
        )
    )


def run(url: str, size: int) -> dict[str, Any]:
    engine = make_engine(url)
    create_schema(engine)
    filled = fill(engine, size)
    engine.dispose()
    done = subprocess.run(
        [sys.executable, __file__, "--child", url],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(BENCH.parent)},
    )
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    figures["messages"] = size
    figures["fill_s"] = round(filled, 1)
    figures["target_met"] = figures["peak_rss_mb"] < TARGET_MB
    return figures


def postgres_url(base: str, name: str) -> str:
    engine = make_engine(base)
    with engine.begin() as connection:
        connection.execute(text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
        connection.execute(text(f'CREATE SCHEMA "{name}"'))
    engine.dispose()
    return f"{base}?options=-csearch_path%3D{name}"


def drop_schema(base: str, name: str) -> None:
    engine = make_engine(base)
    with engine.begin() as connection:
        connection.execute(text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
    engine.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 1_000_000])
    parser.add_argument("--postgres", default=os.environ.get("GATEWAY_TEST_POSTGRES_URL", ""))
    parser.add_argument("--out", type=Path, default=BENCH / "results" / "report.json")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return 0
    results: dict[str, Any] = {
        "benchmark": "report",
        "python": platform.python_version(),
        "sqlalchemy": version("sqlalchemy"),
        "matplotlib": version("matplotlib"),
        "cpus": os.cpu_count(),
        "target_peak_mb": TARGET_MB,
        "backends": {},
    }
    folder = Path(tempfile.mkdtemp(prefix="gwr-", dir="/tmp"))
    try:
        for size in args.sizes:
            url = f"sqlite:///{folder}/ledger-{size}.db"
            figures = run(url, size)
            results["backends"].setdefault("sqlite", []).append(figures)
            print(f"sqlite {size:,}: {figures}", flush=True)
            if args.postgres:
                name = f"bench_report_{size}"
                try:
                    figures = run(postgres_url(args.postgres, name), size)
                finally:
                    drop_schema(args.postgres, name)
                results["backends"].setdefault("postgresql", []).append(figures)
                print(f"postgresql {size:,}: {figures}", flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    write_results(args.out, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())

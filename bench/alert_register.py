"""Benchmark: the alert register's reads over a ledger of many exchanges about many alerts.

Fills a SQLite ledger (or PostgreSQL, --url) with N messages, each referring to one of N/4
alerts (as the index holds an AlertRef), on two desks, then times the listing (every alert, a
supervisor; one desk's, a handler) and one alert's page: the median of a few runs, in
milliseconds. No access-log line is written: the store's reads alone.

    .venv/bin/python bench/alert_register.py [--messages 100000] [--url URL] [--rounds 5]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from gateway.core.clock import FakeClock
from gateway.store import alert_rows
from gateway.store.ledger import Ledger, NewMessage, create_schema, make_engine
from gateway.store.search_rows import IndexRow, Where, add_many_in
from gateway.store.states import InboundState

START = datetime(2026, 1, 1, tzinfo=UTC)
BATCH = 2000


def fill(ledger: Ledger, count: int) -> None:
    template = NewMessage(
        direction="inbound", partner="NO-SIRENE", channel="sirene", form="G",
        reference="", message_id="<m@no.example>", priority="normal",
        content_sha256="a" * 64, raw_sha256="b" * 64, state=InboundState.RECEIVED,
        alert_article="26",
    )  # fmt: skip
    for first in range(0, count, BATCH):
        with ledger.transaction() as tx:
            news = [
                (
                    dataclasses.replace(
                        template,
                        reference=f"NO-2026-{number:06d}",
                        form=("G", "M", "J", "A")[number % 4],
                        desk=("sirene", "interpol")[number % 2],
                    ),
                    "spooled",
                )
                for number in range(first, min(first + BATCH, count))
            ]
            rows = ledger.record_many_in(tx, news)
            add_many_in(
                tx,
                [
                    (
                        Where(row.id, "inbound", row.partner, row.desk, row.form),
                        [IndexRow("reference", "sis-alert", key, key, key, None, None)],
                    )
                    for row in rows
                    for key in [f"R0{row.id % (count // 4):016d}"]
                ],
                START,
            )


def median_ms(run: Callable[[], object], rounds: int) -> float:
    run()
    times = []
    for _ in range(rounds):
        began = time.perf_counter()
        run()
        times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--url")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        url = args.url or f"sqlite:///{Path(folder) / 'ledger.db'}"
        engine = make_engine(url)
        create_schema(engine)
        clock = FakeClock(START)
        ledger = Ledger(engine, clock)
        clock.advance(timedelta(0))
        began = time.perf_counter()
        fill(ledger, args.messages)
        print(
            f"{args.messages} messages filled in {time.perf_counter() - began:.1f} s"
            f" ({url.split(':')[0]})"
        )

        if engine.dialect.name == "postgresql":  # as autovacuum would before the reads come
            with engine.begin() as connection:
                connection.exec_driver_sql("ANALYZE")

        def listing(desks: frozenset[str] | None) -> Callable[[], object]:
            def run() -> object:
                with ledger.reading() as tx:
                    return alert_rows.exchanges(tx, desks=desks, limit=alert_rows.LIMIT + 1)

            return run

        def one() -> object:
            with ledger.reading() as tx:
                return alert_rows.exchanges(tx, alert=f"R0{123:016d}")

        print(f"listing, every desk: {median_ms(listing(None), args.rounds):.1f} ms")
        print(
            f"listing, one desk:   {median_ms(listing(frozenset({'sirene'})), args.rounds):.1f} ms"
        )
        print(f"one alert:           {median_ms(one, args.rounds):.2f} ms")
        engine.dispose()


if __name__ == "__main__":
    main()

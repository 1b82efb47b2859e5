"""Benchmark: the thread CPU of two parts of the intake alone, to compare checkouts by.

"parse": ``pgpmime.parse_outer`` of a PGP/MIME message (50 of them, each with a boundary of its
own, an armored ciphertext of 2,400 bytes) and ``parse_entity`` of a signed multipart/mixed
entity holding a form; the median of 7 passes of 1,000 pairs. "group write": ``GroupCommit.commit``
of one received message (bench/intake_ledger.py's record, with three search index entries,
two of them names with their parts) on a fresh SQLite ledger, after 30 to warm up; the median of
3 runs of 300. Both by ``time.thread_time`` (user and system: the ledger's syncs count).
The baseline, in the same run: the email package's own parser (``email.message_from_bytes``)
reading the same message and entity, no check made, which the parse used to run beneath them.

    .venv/bin/python bench/intake_cuts.py [--out FILE.json]
    PYTHONPATH=/tmp/before .venv/bin/python bench/intake_cuts.py   # another checkout's code
"""

from __future__ import annotations

import argparse
import base64
import email
import os
import random
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from gateway.core.clock import SystemClock
from gateway.crypto import pgpmime
from gateway.store import schema
from gateway.store.audit import AuditLog
from gateway.store.groupcommit import GroupCommit
from gateway.store.ledger import Ledger, make_engine
from gateway.store.search_rows import IndexRow

BENCH = Path(__file__).resolve().parent
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))
import intake_ledger  # noqa: E402
from benchkit import write_results  # noqa: E402

FORM = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<FormG>'
    + b"<Person><Name>Ion Popescu</Name></Person>" * 20
    + b"</FormG>\n"
)
INDEX = (
    IndexRow(
        "person",
        "subject",
        "POPESCU Ion",
        "popescu ion",
        "popescu|ion|1980-01-01",
        "1980-01-01",
        "RO",
        (("popescu", "ppsc"), ("ion", "n")),
    ),
    IndexRow(
        "person",
        "subject",
        "IONESCU Maria",
        "ionescu maria",
        "ionescu|maria|1979-02-02",
        "1979-02-02",
        "RO",
        (("ionescu", "nsc"), ("maria", "mr")),
    ),
    IndexRow("document", "passport", "AB123456", "ab123456", "ab123456", None, "RO"),
)


def parse_cost(parse: bool = True) -> float:
    """CPU seconds of one parse_outer and one parse_entity; ``parse`` False: of the email
    package's parser alone on the same message and entity (the baseline)."""
    chooser = random.Random(1)
    blob = bytes(chooser.randrange(256) for _ in range(2400))
    lines = b"\n".join(base64.b64encode(blob[i : i + 48]) for i in range(0, len(blob), 48))
    armor = b"-----BEGIN PGP MESSAGE-----\n\n" + lines + b"\n=abcd\n-----END PGP MESSAGE-----\n"
    envelope = pgpmime.Envelope(
        "sirene@no.example",
        "sirene@ro.example",
        "SIRENE G NO-2026-000001",
        "<1@no.example>",
        "Mon, 07 Dec 2026 06:00:00 +0000",
    )
    raws = [pgpmime.wrap_encrypted(armor, envelope) for _ in range(50)]
    entity = pgpmime.build_entity(FORM)
    passes = []
    for _ in range(7):
        start = time.thread_time()
        for _ in range(20):
            for raw in raws:
                if parse:
                    pgpmime.parse_outer(raw)
                    pgpmime.parse_entity(entity)
                else:
                    email.message_from_bytes(raw)
                    email.message_from_bytes(entity)
        passes.append((time.thread_time() - start) / (20 * len(raws)))
    return statistics.median(passes)


def group_write_cost() -> float:
    """CPU seconds of one message's GroupCommit.commit (a group of one)."""
    runs = []
    for _ in range(3):
        with tempfile.TemporaryDirectory() as directory:
            engine = make_engine(f"sqlite:///{directory}/ledger.db")
            schema.upgrade(engine)
            clock = SystemClock()
            group = GroupCommit(Ledger(engine, clock), AuditLog(engine, clock), clock)
            records = [replace(intake_ledger.new_message(n), index=INDEX) for n in range(1, 331)]
            for record in records[:30]:
                group.commit(record)
            start = time.thread_time()
            for record in records[30:]:
                group.commit(record)
            runs.append((time.thread_time() - start) / (len(records) - 30))
            engine.dispose()
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results/intake_cuts.json"))
    args = parser.parse_args()
    load = os.getloadavg()[0]
    parse, bare, write = parse_cost(), parse_cost(parse=False), group_write_cost()
    print(
        f"parse_outer+parse_entity {parse * 1e6:.1f} us (the email package's parser alone "
        f"{bare * 1e6:.1f} us: {parse / bare:.2f}x), group write {write * 1e6:.1f} us "
        f"(load average {load:.2f} -> {os.getloadavg()[0]:.2f}; {pgpmime.__file__})"
    )
    write_results(
        args.out,
        {
            "parse_us": round(parse * 1e6, 1),
            "email_parser_us": round(bare * 1e6, 1),
            "parse_over_email_parser": round(parse / bare, 2),
            "group_write_us": round(write * 1e6, 1),
            "load_average": [load, os.getloadavg()[0]],
            "code": pgpmime.__file__,
        },
    )


if __name__ == "__main__":
    main()

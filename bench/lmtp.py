"""Benchmark: desk copies by LMTP to a real Dovecot (started in a temporary folder by
tests/dovecotkit.py), against the Maildir sink on the same copies.

``--copies`` copies of ``--size`` bytes (a desk copy with a small PDF) go through the gateway's
``LmtpSink`` in batches of the hand-off's size (32): first delivery (named unseen: no look),
then the same copies again, as a retry after a crash would send them (each batch looked for over
IMAP by Message-ID: all found, none sent), then one copy per call (an LMTP and an IMAP session
each). The reference is ``MaildirSink`` on the same copies, and Dovecot with ``mail_fsync =
never``, which shows what Dovecot's syncing costs (the gateway keeps Dovecot's default: a 250
from LMTP means the copy is on Dovecot's disk).

    .venv/bin/python bench/lmtp.py [--copies 300] [--size 6000]
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchkit import write_results

from gateway.core.config import Desk, DeskDelivery
from gateway.desks.lmtp import LmtpSink
from gateway.desks.sink import DeskCopy, MaildirSink

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
if str(ROOT / "tests") not in sys.path:
    sys.path.insert(0, str(ROOT / "tests"))
from dovecotkit import Dovecot, running_dovecot  # noqa: E402

BATCH = 32  # the hand-off's batch (inbound/handoff.py HANDOFF_BATCH)


def make_copies(desk: Desk, count: int, size: int) -> list[DeskCopy]:
    line = b"Y" * 76 + b"\n"
    body = line * max(1, size // len(line))
    return [
        DeskCopy(
            desk,
            f"{n}.RO-2026-{n:06d}",
            f"<desk.{n}.RO-2026-{n:06d}@gateway.bench>",
            f"Message-ID: <desk.{n}.RO-2026-{n:06d}@gateway.bench>\nSubject: bench\n\n".encode()
            + body,
        )
        for n in range(count)
    ]


def rate(count: int, seconds: float) -> float:
    return round(count / seconds, 1)


def through(sink: LmtpSink | MaildirSink, copies: list[DeskCopy], *, look: bool) -> float:
    start = time.perf_counter()
    for first in range(0, len(copies), BATCH):
        batch = copies[first : first + BATCH]
        unseen = set() if look else {copy.name for copy in batch}
        outcome = sink.deliver(batch, unseen=unseen)
        if any(error is not None for error in outcome):
            raise AssertionError(outcome)
    return rate(len(copies), time.perf_counter() - start)


def lmtp_figures(dovecot: Dovecot, copies: list[DeskCopy]) -> dict[str, float]:
    settings = DeskDelivery(
        method="lmtp",
        lmtp=str(dovecot.lmtp_socket),
        imap=f"127.0.0.1:{dovecot.imap_port}",
        imap_user="gateway",
        imap_password_file=dovecot.password_file,
        imap_tls=False,
    )
    sink = LmtpSink(settings, "gateway.bench")
    first = through(sink, copies, look=False)
    again = through(sink, copies, look=True)
    start = time.perf_counter()
    for copy in copies[:50]:
        if sink.deliver([copy]) != [None]:
            raise AssertionError(copy.name)
    single = rate(50, time.perf_counter() - start)
    held = sum(dovecot.message_ids("sirene").values())
    if held != len(copies):
        raise AssertionError(f"{held} copies in Dovecot, {len(copies)} sent")
    return {
        "first_delivery_per_second": first,
        "redelivery_looked_for_per_second": again,
        "one_per_call_looked_for_per_second": single,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=300)
    parser.add_argument("--size", type=int, default=6000)
    parser.add_argument("--out", type=Path, default=BENCH / "results" / "lmtp.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lmtpbench") as folder:
        desk = Desk(name="sirene", maildir=Path(folder) / "sirene")
        copies = make_copies(desk, args.copies, args.size)
        maildir = {
            "first_delivery_per_second": through(MaildirSink(), copies, look=False),
            "redelivery_per_second": through(MaildirSink(), copies, look=True),
        }
    with running_dovecot(("sirene",)) as dovecot:
        lmtp = lmtp_figures(dovecot, copies)
    with running_dovecot(("sirene",), extra="mail_fsync = never\n") as dovecot:
        unsynced = lmtp_figures(dovecot, copies)
    version = subprocess.run(
        ["dovecot", "--version"], capture_output=True, text=True, check=True
    ).stdout
    results = {
        "benchmark": "lmtp",
        "python": platform.python_version(),
        "dovecot": version.strip(),
        "copies": args.copies,
        "bytes_each": len(copies[0].data),
        "lmtp": lmtp,
        "lmtp_dovecot_without_fsync": unsynced,
        "maildir": maildir,
    }
    for name in ("lmtp", "lmtp_dovecot_without_fsync", "maildir"):
        print(f"{name:>27}: {results[name]}")
    write_results(args.out, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())

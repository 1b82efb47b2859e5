"""Benchmark: the event loop's CPU to read one message's DATA, aiosmtpd's line-by-line reading
against the gateway's reading in pieces (gateway/inbound/smtp_data.py), thread CPU.

Each side reads the same armored message (lines of 64 characters and CRLF, as gpg writes them,
some dot-stuffed) from a StreamReader fed as a TLS transport feeds it (pieces of up to 16 KiB,
one TLS record each), up to the end of DATA and the handler's call, in one event loop; the
thread's CPU (``time.thread_time``) over ``--count`` messages is divided by the count. The sides
alternate ``--rounds`` times; the medians are printed and written to ``--out``.

    .venv/bin/python bench/smtp_data.py [--count 2000] [--rounds 5] [--kib 8 32]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session
from benchkit import write_results

from gateway.inbound.smtp_data import ChunkedData

RECORD = 16 * 1024


class _Handler:
    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        return "250 OK"


class _Writer:
    def write(self, data: bytes) -> None:
        return None

    async def drain(self) -> None:
        return None


class _Transport:
    def get_extra_info(self, name: str, default: object = None) -> object:
        return default


def message(kib: int) -> bytes:
    """An armored message of about ``kib`` KiB as DATA carries it (every 50th line stuffed)."""
    lines = [b"Content-Type: application/octet-stream", b""]
    n = 0
    while sum(len(line) + 2 for line in lines) < kib * 1024:
        body = bytes(65 + (n * 7 + i) % 58 for i in range(64)).replace(b"\\", b"+")
        lines.append(b"." + body if n % 50 == 0 else body)
        n += 1
    return b"\r\n".join(lines) + b"\r\n.\r\n"


async def _read(kind: type[SMTP], data: bytes, count: int) -> float:
    loop = asyncio.get_running_loop()
    pieces = [data[i : i + RECORD] for i in range(0, len(data), RECORD)]
    session = kind(_Handler(), loop=loop, decode_data=False, data_size_limit=1 << 22)
    session.transport = _Transport()  # type: ignore[assignment]
    session._writer = _Writer()  # type: ignore[assignment]
    session.session = Session(loop)
    session.session.host_name = "client.example"
    started = time.thread_time()
    for _ in range(count):
        reader = asyncio.StreamReader(limit=session.line_length_limit, loop=loop)
        session._reader = reader
        session.envelope = Envelope()
        session.envelope.rcpt_tos.append("gateway@example.org")
        task = asyncio.ensure_future(session.smtp_DATA(""))
        for piece in pieces:
            reader.feed_data(piece)
            await asyncio.sleep(0)
        await task
    return (time.thread_time() - started) / count * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--kib", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--out", type=Path, default=Path("bench/results/smtp_data.json"))
    args = parser.parse_args()
    results: dict[str, Any] = {"load_average": os.getloadavg(), "sizes": {}}
    for kib in args.kib:
        data = message(kib)
        runs: dict[str, list[float]] = {"aiosmtpd": [], "pieces": []}
        for _ in range(args.rounds):
            for name, kind in (("aiosmtpd", SMTP), ("pieces", ChunkedData)):
                runs[name].append(asyncio.run(_read(kind, data, args.count)))
        medians = {name: round(statistics.median(ms), 4) for name, ms in runs.items()}
        results["sizes"][f"{kib} KiB"] = {
            "bytes": len(data),
            "cpu_ms_per_message": medians,
            "runs": runs,
        }
        print(f"{kib} KiB ({len(data)} bytes): thread CPU ms per DATA {medians}")
    results["load_average_after"] = os.getloadavg()
    write_results(args.out, results)


if __name__ == "__main__":
    main()

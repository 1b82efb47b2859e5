"""The console's PDF workers (gateway.web.pdfwork) with real spawned processes and WeasyPrint:
the PDF is made in another process, and a worker killed while making one breaks only that PDF
(the next one gets a new pool)."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
from concurrent.futures.process import BrokenProcessPool
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from gateway.reports.subject import Exchange, SubjectReport
from gateway.web.pdfwork import PdfWorkers

AT = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def exchange(n: int) -> Exchange:
    return Exchange(
        n, AT, "inbound", "NO-SIRENE", "G", "Hit, action taken", f"NO-2026-{n:06d}", "sirene",
        "deleted from 2027-12-01 (kept P365D)", 100.0, ("matched",), ("why",),
    )  # fmt: skip


def made(rows: int) -> SubjectReport:
    exchanges = tuple(exchange(n) for n in range(1, rows + 1))
    return SubjectReport(
        AT, "aud", "auditor", "audit", None, "annual check", 1, ("Document X0000000",), ("how",),
        exchanges, (), ZoneInfo("UTC"),
    )  # fmt: skip


async def test_a_killed_worker_fails_its_pdf_and_the_next_gets_a_new_pool() -> None:
    workers = PdfWorkers(1)
    try:
        making = asyncio.create_task(workers.pdf(made(400)))
        while not multiprocessing.active_children() and not making.done():
            await asyncio.sleep(0.01)  # polls a state, no deadline
        [worker] = multiprocessing.active_children()
        assert worker.pid is not None and worker.pid != os.getpid()
        os.kill(worker.pid, signal.SIGKILL)
        with pytest.raises(BrokenProcessPool):
            await making
        pdf = await workers.pdf(made(2))
        assert pdf.startswith(b"%PDF-")
    finally:
        workers.close()

"""The console's data-subject PDFs, made in worker processes: WeasyPrint is Python that holds the
GIL for most of its tens of ms a row, so in a thread it would slow every other request of the
console. At most ``[web] subject_pdf_at_once`` at once (a request beyond them is refused at once,
503); each worker is a fresh process (spawned, never forked from the threaded console) that ends
after its PDF, so its memory goes back to the system."""

from __future__ import annotations

import asyncio
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from gateway.reports import subject as subject_page
from gateway.web.slots import Slots


class PdfWorkers:
    """The slots and, made at the first PDF, the pool of worker processes."""

    def __init__(self, at_once: int) -> None:
        self.slots = Slots(at_once)
        self._pool: ProcessPoolExecutor | None = None

    async def pdf(self, report: subject_page.SubjectReport) -> bytes:
        """``report`` as a PDF, made in a worker process (the caller holds a slot). A worker
        that died (killed, out of memory) breaks its pool: the next PDF gets a new one."""
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=self.slots.size,
                mp_context=multiprocessing.get_context("spawn"),
                max_tasks_per_child=1,
            )
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, subject_page.pdf, report)
        except BrokenProcessPool:
            self.close()
            raise

    def close(self) -> None:
        """Stop the workers (the console is stopping): a PDF being made is abandoned."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

"""CPU time spent in each stage of a message's path, counted by the thread that does the work.

A stage is timed with :func:`time.thread_time` (this thread's CPU, user and system), so the
figures of stages that run side by side in several threads add up rather than overlap, and time
spent waiting (for gpg, the disk, a lock) is not counted: what waits in a child process is that
process's CPU, not ours. Two clock reads per stage; the totals are kept per stage and read as a
snapshot, for the benchmarks and the metrics. The SMTP conversations (the sessions we serve and
those of delivery) share the event loop's thread and are not split by stage: they are what the
process spent beyond these.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

INTAKE: Final = "intake"  # from the end of DATA to the 250: open, validate, spool, commit
DESK: Final = "desk"  # the hand-off up to the desk's copy and its ledger record
RECEIPT: Final = "receipt"  # the receipt: its form, signed and encrypted, queued
DELIVERY: Final = "delivery"  # outbound items claimed and their outcomes recorded (threads)
STAGES: Final = (INTAKE, DESK, RECEIPT, DELIVERY)


class StageCpu:
    """CPU seconds and counts per stage, safe to add to from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seconds: dict[str, float] = dict.fromkeys(STAGES, 0.0)
        self._counts: dict[str, int] = dict.fromkeys(STAGES, 0)

    def add(self, stage: str, seconds: float, count: int = 1) -> None:
        with self._lock:
            self._seconds[stage] = self._seconds.get(stage, 0.0) + seconds
            self._counts[stage] = self._counts.get(stage, 0) + count

    @contextmanager
    def timing(self, stage: str, count: int = 1) -> Iterator[None]:
        """Count this thread's CPU inside the block to ``stage`` (for ``count`` messages)."""
        start = time.thread_time()
        try:
            yield
        finally:
            self.add(stage, time.thread_time() - start, count)

    def snapshot(self) -> dict[str, tuple[float, int]]:
        """Each stage's CPU seconds and the number of messages they were counted for."""
        with self._lock:
            return {stage: (self._seconds[stage], self._counts[stage]) for stage in self._seconds}

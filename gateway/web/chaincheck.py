"""The audit chain's verification as the access-log page shows it: the last check's result and
when it ran, kept by the console process; a check runs on the page's first view and when the
auditor asks for one, one at a time (it reads the whole chain)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime

from gateway.core.clock import Clock
from gateway.store.audit import AuditLog, AuditReport


@dataclass(frozen=True)
class ChainState:
    checked_at: datetime
    report: AuditReport
    seconds: float  # how long the check took


class ChainCheck:
    def __init__(self, audit: AuditLog, clock: Clock) -> None:
        self.audit = audit
        self.clock = clock
        self._lock = threading.Lock()
        self._last: ChainState | None = None

    def current(self) -> ChainState:
        """The last check's state, or a check made now when none was made yet."""
        last = self._last
        return last if last is not None else self.run()

    def run(self) -> ChainState:
        """Check the whole chain now (after any check already running ends)."""
        with self._lock:
            started = time.monotonic()
            report = self.audit.check()
            self._last = ChainState(self.clock.now(), report, time.monotonic() - started)
            return self._last

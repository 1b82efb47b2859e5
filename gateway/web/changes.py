"""The ledger's change token as the open worklists ask for it: read from the ledger at most once
per interval for the whole console process, however many worklists are open, and given with the
minute it was asked in (a worklist's time left changes each minute)."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

from gateway.core.clock import Clock
from gateway.store import worklist
from gateway.store.ledger import Ledger

MINUTE = 60


class ChangeWatch:
    def __init__(self, ledger: Ledger, clock: Clock, live_seconds: int) -> None:
        self.ledger = ledger
        self.clock = clock
        # Half the worklist's interval (at least a second): a change shows within 1.5 intervals.
        self.fresh_for = timedelta(seconds=max(1.0, live_seconds / 2))
        self._lock = threading.Lock()
        self._token = ""
        self._read_at: datetime | None = None
        self.reads = 0  # how many times the ledger was asked (for tests and the benchmark)

    def current(self) -> str:
        """The token: the ledger's (as read at most ``fresh_for`` ago) and the current minute.
        A blocking call (it may read the ledger): run it in a thread."""
        now = self.clock.now()
        with self._lock:
            last = self._read_at
            if last is None or not last <= now < last + self.fresh_for:
                with self.ledger.reading() as tx:
                    self._token = worklist.change_token(tx)
                self._read_at = now
                self.reads += 1
            token = self._token
        return f"{token}.{int(now.timestamp()) // MINUTE}"

"""The figures a scrape reads besides this process's events: the ledger's (deadlines, the audit
chain), the spools' (outbound queue, quarantine, free disk) and the keys' expiry, kept for
CACHE_FOR so that scrapes close together cost one read.

Two kinds, told apart by name: ``ipcgw_ledger_*`` are the same on every gateway sharing a ledger
(aggregate them with max(), never sum()), the others belong to the node that exports them.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import shutil
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TypeVar

from gateway.core.clock import Clock
from gateway.core.config import Config
from gateway.crypto.openpgp import KeyInfo
from gateway.store import gauges
from gateway.store.ledger import Ledger
from gateway.store.spool import SUFFIX, Spool

log = logging.getLogger("gateway.metrics")
T = TypeVar("T")

CACHE_FOR = timedelta(seconds=10)
DAY = 86400.0


@dataclass(frozen=True)
class Scraped:
    """The figures at one instant; a part that could not be read is None (and logged)."""

    ledger: gauges.LedgerFigures | None = None
    queue_depth: int | None = None
    queue_oldest_seconds: float | None = None
    quarantined: dict[str, int] = field(default_factory=dict)
    disk_free_bytes: int | None = None
    disk_floor_bytes: int = 0
    our_key_days: float | None = None
    partner_key_days: dict[str, float] = field(default_factory=dict)


class Figures:
    """Reads the figures, at most once per CACHE_FOR."""

    def __init__(
        self,
        *,
        config: Config,
        ledger: Ledger,
        clock: Clock,
        spools: dict[str, Spool],
        keys: Callable[[], Sequence[KeyInfo]],
    ) -> None:
        self.config = config
        self.ledger = ledger
        self.clock = clock
        self.spools = spools
        self.keys = keys
        self._lock = threading.Lock()
        self._kept: tuple[datetime, Scraped] | None = None

    def current(self) -> Scraped:
        now = self.clock.now()
        with self._lock:
            if self._kept is not None and now - self._kept[0] < CACHE_FOR:
                return self._kept[1]
            scraped = self._read(now)
            self._kept = (now, scraped)
            return scraped

    def _read(self, now: datetime) -> Scraped:
        ledger = _guarded("ledger", lambda: gauges.read(self.ledger.engine, now))
        queued = _guarded("outbound queue", self.spools["outbound"].queued)
        oldest = None
        if queued:
            oldest = max(0.0, now.timestamp() - min(instant for _, instant in queued))
        elif queued is not None:
            oldest = 0.0
        quarantined = {}
        for name, spool in self.spools.items():
            found = _guarded(f"{name} quarantine", functools.partial(_count, spool.quarantine))
            if found is not None:
                quarantined[name] = found
        free = _guarded("disk", lambda: shutil.disk_usage(self.config.paths.spool).free)
        keys = _guarded("keys", self.keys) or ()
        by_fingerprint = {key.fingerprint: key for key in keys}
        ours = by_fingerprint.get((self.config.openpgp.fingerprint or "").upper())
        partners = {
            partner.code: _days(by_fingerprint[partner.fingerprint].encryption_ends(), now)
            for partner in self.config.partners
            if partner.fingerprint in by_fingerprint
        }
        return Scraped(
            ledger=ledger,
            queue_depth=None if queued is None else len(queued),
            queue_oldest_seconds=oldest,
            quarantined=quarantined,
            disk_free_bytes=free,
            disk_floor_bytes=self.config.metrics.disk_floor_mb * 1024 * 1024,
            our_key_days=_days(ours.expires, now) if ours is not None else None,
            partner_key_days=partners,
        )


def _days(until: datetime | None, now: datetime) -> float:
    """Days from ``now`` to ``until``; +Inf for a key that never expires."""
    return math.inf if until is None else (until - now).total_seconds() / DAY


def _count(folder: os.PathLike[str]) -> int:
    try:
        with os.scandir(folder) as entries:
            return sum(1 for entry in entries if entry.name.endswith(SUFFIX))
    except FileNotFoundError:
        return 0


def _guarded(what: str, read: Callable[[], T]) -> T | None:
    try:
        return read()
    except Exception as error:
        log.warning("metrics: cannot read the %s: %s", what, type(error).__name__)
        return None

"""A token bucket per client address, kept in memory: so many attempts a minute, then refusals
with the seconds to wait. Bounded: the fullest buckets (which remember least) are forgotten
first, so a flood from many addresses cannot make it forget the ones it is holding back."""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from datetime import datetime

from gateway.core.clock import Clock

MAX_ADDRESSES = 10_000


@dataclass
class _Bucket:
    tokens: float
    at: datetime
    told: bool = False  # this refusal window was reported (audited) already


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after: int = 0  # whole seconds, at least 1 when refused
    first_refusal: bool = False  # the first refusal since the bucket last had a token


class RateLimit:
    def __init__(
        self, per_minute: int, clock: Clock, *, max_addresses: int = MAX_ADDRESSES
    ) -> None:
        if per_minute < 1:
            raise ValueError("per_minute must be at least 1")
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0  # tokens a second
        self.clock = clock
        self.max_addresses = max_addresses
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def take(self, address: str) -> Verdict:
        """One attempt from ``address``: allowed while its bucket holds a token."""
        return self._attempt(address, spend=True)

    def peek(self, address: str) -> Verdict:
        """Whether ``address`` would be allowed an attempt now, spending nothing (the API counts
        only failed keys, and refuses every key while an address is held back)."""
        return self._attempt(address, spend=False)

    def _attempt(self, address: str, *, spend: bool) -> Verdict:
        now = self.clock.now()
        with self._lock:
            bucket = self._buckets.get(address)
            if bucket is None:
                if not spend:
                    return Verdict(True)
                self._make_room(now)
                bucket = self._buckets[address] = _Bucket(self.capacity, now)
            elapsed = max(0.0, (now - bucket.at).total_seconds())
            bucket.tokens = min(self.capacity, bucket.tokens + elapsed * self.rate)
            bucket.at = now
            if bucket.tokens >= 1.0 and not spend:
                return Verdict(True)
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                bucket.told = False
                return Verdict(True)
            wait = max(1, math.ceil((1.0 - bucket.tokens) / self.rate))
            first = not bucket.told
            bucket.told = True
            return Verdict(False, retry_after=wait, first_refusal=first)

    def __len__(self) -> int:
        return len(self._buckets)

    def _make_room(self, now: datetime) -> None:
        """Below the bound before a new address is added: drop the buckets that have refilled
        (they remember nothing), then those holding the most tokens."""
        if len(self._buckets) < self.max_addresses:
            return

        def level(key: str) -> float:
            bucket = self._buckets[key]
            return bucket.tokens + (now - bucket.at).total_seconds() * self.rate

        for key in [key for key in self._buckets if level(key) >= self.capacity]:
            del self._buckets[key]
        if len(self._buckets) >= self.max_addresses:
            # A tenth at once: a flood of new addresses sorts once per many, not once each.
            excess = max(len(self._buckets) - self.max_addresses + 1, self.max_addresses // 10)
            for key in sorted(self._buckets, key=level, reverse=True)[:excess]:
                del self._buckets[key]

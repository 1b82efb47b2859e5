"""The retry policy of outbound delivery: the wait after a failure (doubling, capped, with jitter),
giving up ``give_up_after`` since the first attempt, and the instants and count an item keeps in its
spool metadata (``attempts``, ``first_attempt_at``, ``not_before``, ``last_error``), so that a
restart keeps its schedule. An item a stopped process left claimed goes back as it was: an
interruption is not a failed attempt, and its schedule is not touched.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from gateway.core.config import Outbound
from gateway.store.spool import Spool, SpoolItem

log = logging.getLogger("gateway.delivery")
# The metadata this policy keeps.
RETRY_STATE = ("attempts", "first_attempt_at", "not_before", "last_error")


@dataclass(frozen=True)
class Retry:
    """The next try of an item that failed again: its metadata, its attempt count, the wait."""

    meta: dict[str, Any]
    attempts: int
    delay: timedelta


class RetryPolicy:
    """Decides, from an item's metadata and the time, whether it is tried again and when."""

    def __init__(self, settings: Outbound, rng: random.Random) -> None:
        self.settings = settings
        self.rng = rng

    def give_up(self, meta: Mapping[str, Any], now: datetime) -> str | None:
        """Why an item that failed again at ``now`` is tried no more ("gave up after N attempts
        since <first>"), or None while it is within ``give_up_after`` of its first attempt."""
        first = instant(meta.get("first_attempt_at")) or now
        if not gives_up(first, now, self.settings):
            return None
        return f"gave up after {attempts_of(meta) + 1} attempts since {iso(first)}"

    def next_try(self, meta: Mapping[str, Any], error: str, now: datetime) -> Retry:
        """The metadata of an item that failed at ``now`` with ``error`` and is tried again:
        one attempt more, the first attempt's instant kept, the next one after the backoff."""
        attempts = attempts_of(meta) + 1
        delay = backoff_delay(attempts, self.settings, self.rng)
        later = {
            **meta,
            "attempts": attempts,
            "first_attempt_at": meta.get("first_attempt_at") or iso(now),
            "not_before": iso(now + delay),
            "last_error": error,
        }
        return Retry(later, attempts, delay)


def requeue_interrupted(spool: Spool, items: Iterable[SpoolItem]) -> int:
    """At start-up: items a stopped process left claimed (``Spool.recover``) go back into the
    queue untouched, with their attempts and instants. One may have reached its partner before
    the stop: it goes again (same Message-ID and Reference; the partner deduplicates). Returns
    how many."""
    requeued = 0
    for item in items:
        spool.requeue(item)
        log.info("requeued %s, interrupted by a stop", item.key)
        requeued += 1
    return requeued


def backoff_delay(attempt: int, settings: Outbound, rng: random.Random) -> timedelta:
    """The wait after failed attempt number ``attempt`` (1 for the first): ``retry_first``,
    doubled at each attempt up to ``retry_max``, times a factor drawn uniformly from
    [1 - jitter, 1 + jitter] (so a capped delay may exceed ``retry_max`` by the jitter)."""
    if attempt < 1:
        raise ValueError("attempts are counted from 1")
    delay = settings.retry_first
    for _ in range(attempt - 1):
        if delay >= settings.retry_max:
            break
        delay *= 2
    delay = min(delay, settings.retry_max)
    return delay * rng.uniform(1 - settings.jitter, 1 + settings.jitter)


def gives_up(first_attempt_at: datetime, now: datetime, settings: Outbound) -> bool:
    """Whether an item that failed again at ``now`` is out of time."""
    return now - first_attempt_at >= settings.give_up_after


def not_before(meta: Mapping[str, Any]) -> datetime | None:
    """When an item is due; None: at once (never tried, or its instant cannot be read)."""
    return instant(meta.get("not_before"))


def attempts_of(meta: Mapping[str, Any]) -> int:
    """The failed attempts an item's metadata counts (0 when it has none or nonsense)."""
    value = meta.get("attempts")
    return value if isinstance(value, int) and value >= 0 else 0


def iso(moment: datetime) -> str:
    """An instant as the metadata keeps it: ISO 8601 in UTC."""
    return moment.astimezone(UTC).isoformat()


def instant(value: object) -> datetime | None:
    """An instant read back from metadata (naive means UTC); None when it cannot be read."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)

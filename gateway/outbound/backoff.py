"""Retry timing of outbound delivery: the wait after a failure, when to give up, and the instants
and counts an item keeps in its spool metadata (so that a restart keeps its schedule)."""

from __future__ import annotations

import random
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from gateway.core.config import Outbound


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

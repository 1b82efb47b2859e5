"""Instants as the console shows them: in the bureau's time zone, UTC on hover, time left."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo


@dataclass(frozen=True)
class Shown:
    iso: str  # for <time datetime=...>
    local: str  # in the bureau's zone
    utc: str  # on hover


def shown(instant: datetime, zone: ZoneInfo) -> Shown:
    utc = instant.astimezone(UTC)
    local = utc.astimezone(zone)
    return Shown(
        iso=utc.isoformat().replace("+00:00", "Z"),
        local=f"{local:%Y-%m-%d %H:%M} {local.tzname()}",
        utc=f"{utc:%Y-%m-%d %H:%M} UTC",
    )


def time_left(due: datetime, now: datetime) -> str:
    """``3 h 20 min`` left, ``2 d 04 h``, or ``overdue 15 min``."""
    left = due - now
    overdue = left < timedelta(0)
    minutes = int(abs(left).total_seconds()) // 60
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    if days:
        text = f"{days} d {hours:02d} h"
    elif hours:
        text = f"{hours} h {mins:02d} min"
    else:
        text = f"{mins} min"
    return f"overdue {text}" if overdue else text

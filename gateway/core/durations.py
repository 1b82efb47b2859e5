"""ISO 8601 durations (PnDTnHnMnS, PnW) as used by the configuration and the form policies."""

from __future__ import annotations

import re
from datetime import timedelta

_DURATION = re.compile(
    r"P(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?"
)


def parse_duration(text: str, *, allow_zero: bool = False) -> timedelta:
    """Parse an ISO 8601 duration made of weeks, days, hours, minutes and seconds.

    Years and months are refused: their length varies, and a deadline must be an exact span.
    A zero span (``PT0S``) only where ``allow_zero`` says it means "not at all".
    """
    match = _DURATION.fullmatch(text.strip())
    if not match or text.strip() in {"P", "PT"} or text.strip().endswith("T"):
        raise ValueError(
            f"{text!r} is not an ISO 8601 duration such as PT12H, P3D or PT15M "
            "(years and months are not allowed: write days)"
        )
    parts = {name: float(value) for name, value in match.groupdict().items() if value}
    span = timedelta(**parts)
    if span < timedelta(0) or (span == timedelta(0) and not allow_zero):
        raise ValueError(f"{text!r} must be longer than zero")
    return span


def format_duration(span: timedelta) -> str:
    """The ISO 8601 form of a positive span, e.g. ``P3DT4H``."""
    seconds = int(span.total_seconds())
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    time = "".join(f"{n}{unit}" for n, unit in ((hours, "H"), (minutes, "M"), (secs, "S")) if n)
    return "P" + (f"{days}D" if days else "") + (f"T{time}" if time else "") if seconds else "PT0S"

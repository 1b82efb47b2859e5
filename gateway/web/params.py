"""The query parameters of the console's pages, checked: codes, keyset positions, names, instants
and choices; 400 with a sentence for anything else."""

from __future__ import annotations

import re
from collections.abc import Collection
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from starlette.exceptions import HTTPException
from starlette.requests import Request

CODE = re.compile(r"[A-Z0-9][A-Z0-9-]{0,31}")
NAME = re.compile(r"[a-z][a-z0-9._:-]{1,35}")  # a user's name, or key: and an API key's
LOCAL = "%Y-%m-%dT%H:%M"  # what <input type="datetime-local"> sends


def code(request: Request, key: str) -> str | None:
    """A form or partner code such as G or NO-SIRENE; None when absent or empty."""
    value = request.query_params.get(key, "")
    if not value:
        return None
    if CODE.fullmatch(value) is None:
        raise HTTPException(400, f"{key} must be a code such as G or NO-SIRENE")
    return value


def position(request: Request, key: str = "before") -> int | None:
    """A keyset position: the last ledger id or sequence number of the page before."""
    value = request.query_params.get(key, "")
    if not value:
        return None
    if not value.isdigit() or len(value) > 18:
        raise HTTPException(400, f"{key} must be a ledger id or a sequence number")
    return int(value)


def choice(request: Request, key: str, choices: Collection[str]) -> str | None:
    """One of ``choices``; None when absent or empty."""
    value = request.query_params.get(key, "")
    if not value:
        return None
    if value not in choices:
        raise HTTPException(400, f"{key} must be one of {', '.join(choices)}")
    return value


def name(request: Request, key: str) -> str | None:
    """A user's name (or an API key's, ``key:NAME``)."""
    value = request.query_params.get(key, "").strip()
    if not value:
        return None
    if NAME.fullmatch(value) is None:
        raise HTTPException(400, f"{key} must be a user's name such as ana")
    return value


def instant(request: Request, key: str, zone: ZoneInfo) -> datetime | None:
    """A minute in the bureau's zone (``2026-12-01T08:00``, as a date-time field sends it), in
    UTC; None when absent or empty."""
    value = request.query_params.get(key, "")
    if not value:
        return None
    try:
        local = datetime.strptime(value, LOCAL)
    except ValueError:
        example = "2026-12-01T08:00"
        raise HTTPException(400, f"{key} must be a date and time such as {example}") from None
    return local.replace(tzinfo=zone).astimezone(UTC)


def local_text(value: datetime | None, zone: ZoneInfo) -> str:
    """An instant as the date-time field shows it again (in the bureau's zone)."""
    return f"{value.astimezone(zone):{LOCAL}}" if value is not None else ""

"""A search through the API: a JSON body (never the URL, which servers and proxies log) with the
terms and the purpose; results limited to the key's desks, recorded as `gateway search` does."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway.core.errors import SearchRefused
from gateway.search import matching
from gateway.service import searching
from gateway.web.api.auth import principal_of
from gateway.web.api.context import api_of
from gateway.web.api.errors import ApiError

FIELDS = frozenset(
    {
        "kind",
        "value",
        "born",
        "born_within_days",
        "threshold",
        "limit",
        "purpose",
        "case_reference",
        "reason",
    }
)
MAX_BODY = 4096


async def post_search(request: Request) -> Response:
    api = api_of(request)
    principal = await principal_of(request)
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise ApiError(415, "unsupported_media_type", "the body is application/json")
    body = await request.body()
    if len(body) > MAX_BODY:
        raise ApiError(413, "body_too_large", f"a search is at most {MAX_BODY} bytes")
    asked = _fields(body)
    try:
        why = searching.Why.of(
            _text(asked, "purpose"), _text(asked, "case_reference"), _text(asked, "reason")
        )
        query = matching.Query(
            _text(asked, "kind") or "person",
            _text(asked, "value") or "",
            born=_date(asked.get("born")),
            born_within_days=_int(asked, "born_within_days", 0),
            threshold=_number(asked, "threshold"),
            limit=_int(asked, "limit", 50),
        )
    except SearchRefused as refused:
        raise ApiError(400, "search_refused", refused.detail) from None
    try:
        done = await run_in_threadpool(
            searching.search, api.services, api.access.access_log, principal, query, why
        )
    except SearchRefused as refused:
        raise ApiError(403, "forbidden", refused.detail) from None
    return JSONResponse(searching.as_json(done))


def _fields(body: bytes) -> dict[str, Any]:
    try:
        asked = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ApiError(400, "bad_request", "the body is not JSON") from None
    if not isinstance(asked, dict):
        raise ApiError(400, "bad_request", "the body is a JSON object")
    unknown = sorted(set(asked) - FIELDS)
    if unknown:
        raise ApiError(400, "bad_request", f"unknown field(s): {', '.join(unknown)}")
    return asked


def _text(asked: dict[str, Any], name: str) -> str | None:
    value = asked.get(name)
    if value is None or isinstance(value, str):
        return value
    raise SearchRefused(f"{name} is a string")


def _int(asked: dict[str, Any], name: str, default: int) -> int:
    value = asked.get(name, default)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise SearchRefused(f"{name} is an integer")


def _number(asked: dict[str, Any], name: str) -> float | None:
    value = asked.get(name)
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise SearchRefused(f"{name} is a number")


def _date(value: Any) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value) if isinstance(value, str) else _refuse_date()
    except ValueError:
        return _refuse_date()


def _refuse_date() -> date:
    raise SearchRefused("born is a date, YYYY-MM-DD")

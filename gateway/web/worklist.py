"""The worklist: the received messages of the desks the user may see, newest first, a page at a
time (keyset on the ledger id), each with its state on the desk (new, seen, claimed by whom and
since when, answered, closed) and a claim or release button; filtered by form, partner, priority
and time left (overdue, or due within N hours); metadata only.

The page keeps itself current (static/live.js): every ``[web] live_seconds`` it asks
/worklist/rows, with the same filters, for its lines; with the change token it last got
(If-None-Match) the answer is 304 and costs no read of the ledger unless the token moved. Those
requests do not count as the user's use of the session. Without JavaScript, Refresh reloads."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from gateway.access.roles import Permission
from gateway.core.vocabulary import RECEIPT_FORM
from gateway.store import worklist
from gateway.web import params, times
from gateway.web.console import Console, SignedIn, console_of, require_user

PRIORITIES = ("normal", "urgent")
# The time-left filter's choices (hours); any whole number of hours up to MAX_HOURS is accepted.
DUE_WITHIN = (1, 4, 12, 24, 72)
MAX_HOURS = 24 * 31


ROWS = "/worklist/rows"


async def worklist_page(request: Request) -> Response:
    console = console_of(request)
    signed = await require_user(request)
    token = await run_in_threadpool(console.changes.current)
    context = await _lines(request, signed, console)
    live = {"every": console.settings.live_seconds, "token": token, "url": ROWS}
    return console.page(request, "worklist.html", {**context, "live": live})


async def worklist_rows(request: Request) -> Response:
    """The page's lines (the part the page replaces), or 304 when nothing changed since the
    token the page holds; 401 once the session has ended (the page then reloads: to the login
    page). A request of the page's own: the session's idle time runs on."""
    console = console_of(request)
    signed = await console.signed_in(request, use=False)
    if signed is None:
        return Response(status_code=401)
    token = await run_in_threadpool(console.changes.current)  # before the read: never late
    headers = {"ETag": f'"{token}"'}
    if request.headers.get("if-none-match") == f'"{token}"':
        return Response(status_code=304, headers=headers)
    context = await _lines(request, signed, console)
    return console.fragment(request, "worklist_rows.html", context, headers)


async def _lines(request: Request, signed: SignedIn, console: Console) -> dict[str, Any]:
    """What the page's lines show: the filters of the request, and its page of messages."""
    principal = signed.user.principal
    desks = principal.desks_for(Permission.METADATA)
    if desks is not None and not desks:
        if principal.may(Permission.AUDIT):
            raise HTTPException(303, headers={"Location": "/access-log"})
        raise HTTPException(403, "your role has no worklist")
    form = params.code(request, "form")
    partner = params.code(request, "partner")
    priority = _priority(request)
    due = _due(request)
    before = params.position(request)
    size = console.settings.page_size
    now = console.services.clock.now()
    due_by = _due_by(due, now)

    def read() -> list[worklist.WorkItem]:
        with console.services.ledger.reading() as tx:
            return worklist.page(
                tx,
                desks=desks,
                before=before,
                form=form,
                partner=partner,
                priority=priority,
                due_by=due_by,
                leave_out_form=RECEIPT_FORM,
                limit=size + 1,
            )

    items = await run_in_threadpool(read)
    more = len(items) > size
    items = items[:size]
    config = console.services.config
    filters = {"form": form, "partner": partner, "priority": priority, "due": due}
    kept = urlencode({key: value for key, value in filters.items() if value})
    here = "&".join(part for part in (kept, f"before={before}" if before else "") if part)
    return {
        "signed": signed,
        "items": items,
        "left": {
            item.id: times.time_left(item.reply_due, now)
            for item in items
            if item.reply_due is not None and item.reply_state == "open"
        },
        "desks": sorted(desks) if desks is not None else None,
        "form": form or "",
        "partner": partner or "",
        "priority": priority or "",
        "due": due or "",
        "priorities": PRIORITIES,
        "due_within": DUE_WITHIN,
        "may_claim": {item.id: principal.may(Permission.CLAIM, item.desk) for item in items},
        "back": "/" + (f"?{here}" if here else ""),
        "forms": sorted(
            spec.code for spec in console.services.validator.catalogue if spec.code != RECEIPT_FORM
        ),
        "partners": sorted(p.code for p in config.partners),
        "next_before": items[-1].id if more and items else None,
        "kept": kept,
        "filtered": bool(kept or before),
    }


def _priority(request: Request) -> str | None:
    value = request.query_params.get("priority", "")
    if not value:
        return None
    if value not in PRIORITIES:
        raise HTTPException(400, "priority must be normal or urgent")
    return value


def _due(request: Request) -> str | None:
    """``overdue``, or a whole number of hours (due within that time, overdue included)."""
    value = request.query_params.get("due", "")
    if not value:
        return None
    if value == "overdue" or (value.isdigit() and 1 <= int(value) <= MAX_HOURS):
        return value
    raise HTTPException(400, f"due must be overdue or a number of hours from 1 to {MAX_HOURS}")


def _due_by(due: str | None, now: datetime) -> datetime | None:
    if due is None:
        return None
    return now if due == "overdue" else now + timedelta(hours=int(due))

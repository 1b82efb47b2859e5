"""Messages as metadata: the list (keyset pages by cursor, filtered by direction, desk, form,
partner and state), one message with its timeline and deadlines, and its status. Never a form's
content (that is gateway.web.api.form's and .attachments', with the access log) but, for keys
whose role reads content, the list of a received message's attachments (recorded as a view)."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway.access.accesslog import Purpose, Seen
from gateway.access.roles import Permission, Principal, Role
from gateway.core.vocabulary import RECEIPT_FORM
from gateway.service import attachments, received
from gateway.store import worklist
from gateway.store.ledger import DIRECTIONS, MessageRow
from gateway.store.states import InboundState, OutboundState
from gateway.web.api.auth import principal_of
from gateway.web.api.context import Api, api_of, instant, seconds_left
from gateway.web.api.errors import ApiError
from gateway.web.api.form import PURPOSE_HEADER, PURPOSES
from gateway.web.api.scope import metadata_desks, visible

log = logging.getLogger("gateway.web")

# The purpose recorded when a key lists a message's attachments without giving X-Purpose.
ROLE_PURPOSES = {
    Role.HANDLER: Purpose.CASE_WORK,
    Role.SUPERVISOR: Purpose.SUPERVISION,
    Role.DUTY_OFFICER: Purpose.ESCALATION,
}
CODE = re.compile(r"[A-Z0-9][A-Z0-9-]{0,31}")
DESK = re.compile(r"[a-z][a-z0-9_-]{0,31}")
STATES = tuple(sorted({*InboundState, *OutboundState}))
LIST_PARAMETERS = ("direction", "desk", "form", "partner", "state", "cursor", "limit")
MAX_LIMIT = 200


async def list_messages(request: Request) -> Response:
    api = api_of(request)
    principal = await principal_of(request)
    scope = metadata_desks(principal)
    query = _query(request)
    desk = query.get("desk")
    desks = scope if desk is None else (frozenset({desk}) & (scope or {desk}))
    direction = query.get("direction")
    form = query.get("form")
    limit = _limit(query.get("limit"), api.settings.page_size)
    before = _cursor(query.get("cursor"))

    def read() -> list[worklist.WorkItem]:
        if desks is not None and not desks:
            return []  # a desk out of the key's scope: nothing, as a desk without messages
        with api.services.ledger.reading() as tx:
            return worklist.page(
                tx,
                desks=desks,
                before=before,
                form=form,
                partner=query.get("partner"),
                state=query.get("state"),
                leave_out_form=RECEIPT_FORM if form is None else None,
                directions=DIRECTIONS if direction is None else (direction,),
                limit=limit + 1,
            )

    items = await run_in_threadpool(read)
    more = len(items) > limit
    items = items[:limit]
    now = api.services.clock.now()
    return JSONResponse(
        {
            "messages": [_item(item, now) for item in items],
            "next_cursor": str(items[-1].id) if more and items else None,
        }
    )


async def get_message(request: Request) -> Response:
    api = api_of(request)
    principal = await principal_of(request)
    row = await visible(api, principal, int(request.path_params["ledger_id"]))

    def read() -> tuple[list[tuple[datetime, str, str]], list[worklist.MessageDeadline]]:
        events = api.services.ledger.events_of(row.id)
        with api.services.ledger.reading() as tx:
            return events, worklist.deadlines_of(tx, row.id)

    events, deadlines = await run_in_threadpool(read)
    listed = await run_in_threadpool(_attachments, api, principal, row, request)
    now = api.services.clock.now()
    return JSONResponse(
        {
            **metadata(row),
            "attachments": listed,
            "deadlines": [_deadline(deadline, now) for deadline in deadlines],
            "timeline": [
                {"at": instant(at), "kind": kind, "detail": detail} for at, kind, detail in events
            ],
        }
    )


def _attachments(
    api: Api, principal: Principal, row: MessageRow, request: Request
) -> list[dict[str, Any]] | None:
    """A received message's attachments (number, name, type, size, SHA-256) for a key whose
    role reads content, the listing recorded in the access log (part "attachments", with the
    X-Purpose given or the role's own) when there is any; None for other keys, a message we
    sent, or one whose copy is no longer readable."""
    role = principal.role_for(Permission.CONTENT, row.desk)
    if role is None or row.direction != "inbound":
        return None
    services = api.services
    try:
        found = received.delivery_of(services, row).attachments
    except received.NotReadable as exc:
        log.warning("api message: %s", exc)
        return None
    if found:
        given = request.headers.get(PURPOSE_HEADER)
        purpose = (
            Purpose(given) if given in PURPOSES else ROLE_PURPOSES.get(role, Purpose.CASE_WORK)
        )
        with services.ledger.transaction() as tx:
            api.access.access_log.record_view(
                tx,
                principal.name,
                role,
                Seen(
                    row.id,
                    partner=row.partner,
                    form=row.form,
                    reference=row.reference,
                    part="attachments",
                ),
                purpose,
            )
    return [
        {
            "number": item.number,
            "filename": item.filename,
            "media_type": item.media_type,
            "size": item.size,
            "sha256": item.sha256,
        }
        for item in attachments.listed(found)
    ]


async def get_status(request: Request) -> Response:
    api = api_of(request)
    principal = await principal_of(request)
    row = await visible(api, principal, int(request.path_params["ledger_id"]))

    def read() -> list[worklist.MessageDeadline]:
        with api.services.ledger.reading() as tx:
            return worklist.deadlines_of(tx, row.id)

    deadlines = await run_in_threadpool(read)
    now = api.services.clock.now()
    return JSONResponse(
        {
            "id": row.id,
            "direction": row.direction,
            "reference": row.reference,
            "state": row.state,
            "updated_at": instant(row.updated_at),
            "deadlines": [_deadline(deadline, now) for deadline in deadlines],
        }
    )


def metadata(row: MessageRow) -> dict[str, Any]:
    """What the ledger knows of a message: codes, references, instants (no content)."""
    return {
        "id": row.id,
        "direction": row.direction,
        "partner": row.partner,
        "channel": row.channel,
        "form": row.form,
        "reference": row.reference,
        "in_reply_to": row.in_reply_to,
        "message_id": row.message_id,
        "priority": row.priority,
        "state": row.state,
        "desk": row.desk,
        "created_at": instant(row.created_at),
        "updated_at": instant(row.updated_at),
    }


def _item(item: worklist.WorkItem, now: datetime) -> dict[str, Any]:
    reply = None
    if item.reply_due is not None:
        reply = {
            "due": instant(item.reply_due),
            "state": item.reply_state,
            "seconds_left": seconds_left(item.reply_due, now)
            if item.reply_state == "open"
            else None,
        }
    return {
        "id": item.id,
        "direction": item.direction,
        "created_at": instant(item.received_at),
        "partner": item.partner,
        "form": item.form,
        "reference": item.reference,
        "priority": item.priority,
        "state": item.state,
        "desk": item.desk,
        "reply_deadline": reply,
    }


def _deadline(deadline: worklist.MessageDeadline, now: datetime) -> dict[str, Any]:
    return {
        "kind": deadline.kind,
        "owed_by": deadline.owed_by,
        "due": instant(deadline.due),
        "state": deadline.state,
        "seconds_left": seconds_left(deadline.due, now) if deadline.state == "open" else None,
    }


def _query(request: Request) -> Mapping[str, str]:
    """The list's parameters, each checked; 400 naming the first one that is wrong."""
    params = request.query_params
    unknown = sorted(set(params) - set(LIST_PARAMETERS))
    if unknown:
        raise _bad(unknown[0], f"unknown parameter; known: {', '.join(LIST_PARAMETERS)}")
    for name in params:
        if len(params.getlist(name)) > 1:
            raise _bad(name, "give it once")
    checks: dict[str, tuple[Callable[[str], bool], str]] = {
        "direction": (lambda v: v in DIRECTIONS, "inbound or outbound"),
        "desk": (lambda v: DESK.fullmatch(v) is not None, "a desk's name such as sirene"),
        "form": (lambda v: CODE.fullmatch(v) is not None, "a form's code such as G"),
        "partner": (lambda v: CODE.fullmatch(v) is not None, "a partner's code such as NO-SIRENE"),
        "state": (lambda v: v in STATES, f"one of {', '.join(STATES)}"),
    }
    for name, (good, expected) in checks.items():
        value = params.get(name)
        if value is not None and not good(value):
            raise _bad(name, f"must be {expected}")
    return {name: params[name] for name in params}


def _cursor(value: str | None) -> int | None:
    if value is None:
        return None
    if not value.isdigit() or len(value) > 18:
        raise _bad("cursor", "must be a next_cursor this API returned")
    return int(value)


def _limit(value: str | None, default: int) -> int:
    if value is None:
        return min(default, MAX_LIMIT)
    if not value.isdigit() or not 1 <= int(value) <= MAX_LIMIT:
        raise _bad("limit", f"must be a whole number from 1 to {MAX_LIMIT}")
    return int(value)


def _bad(name: str, why: str) -> ApiError:
    return ApiError(
        400, "bad_parameter", f"{name}: {why}", details=[{"parameter": name, "reason": why}]
    )

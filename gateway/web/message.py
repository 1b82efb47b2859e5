"""The message view: metadata, the timeline (the ledger's events), the reply deadline and, for
the roles that may read it, the form as its desk copy renders it, the view recorded in the
access log before the page is sent. Out of the user's desks: 404, as if it did not exist."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from gateway.access.accesslog import Purpose, Seen
from gateway.access.roles import Permission, Role
from gateway.service import received
from gateway.store import worklist
from gateway.store.ledger import MessageRow
from gateway.web import times
from gateway.web.console import Console, SignedIn, console_of, require_user

log = logging.getLogger("gateway.web")

# Why a role reads a message, written in the access log with the view.
PURPOSES = {
    Role.HANDLER: Purpose.CASE_WORK,
    Role.SUPERVISOR: Purpose.SUPERVISION,
    Role.DUTY_OFFICER: Purpose.ESCALATION,
}
NOT_FOUND = "no such message"
SEALED = "The form went out signed and encrypted to the partner; no readable copy is kept."


@dataclass(frozen=True)
class Found:
    row: MessageRow
    events: list[tuple[datetime, str, str]]
    deadline: worklist.ReplyDeadline | None
    form: received.Rendered | None  # None: the role may not read it, or it cannot be shown
    missing: str  # why a form the role may read is not shown ("" when it is, or may not be)


async def message_page(request: Request) -> Response:
    console = console_of(request)
    signed = await require_user(request)
    principal = signed.user.principal
    desks = principal.desks_for(Permission.METADATA)
    if desks is not None and not desks:
        raise HTTPException(403, "your role does not see messages")
    ledger_id = int(request.path_params["ledger_id"])
    found = await run_in_threadpool(_read, console, signed, ledger_id)
    now = console.services.clock.now()
    deadline = found.deadline
    return console.page(
        request,
        "message.html",
        {
            "signed": signed,
            "row": found.row,
            "events": found.events,
            "deadline": deadline,
            "left": times.time_left(deadline.due, now)
            if deadline is not None and deadline.state == "open"
            else None,
            "form": found.form,
            "missing": found.missing,
            "may_read": principal.may(Permission.CONTENT, found.row.desk),
            "replies": _replies(console, signed, found.row),
        },
    )


def _replies(console: Console, signed: SignedIn, row: MessageRow) -> list[str]:
    """The forms that answer a received message, for a user who may send from its desk."""
    if row.direction != "inbound" or not signed.user.principal.may(Permission.SEND, row.desk):
        return []
    catalogue = console.services.validator.catalogue
    if row.form not in catalogue:
        return []
    return list(catalogue.get(row.form).reply.answered_by)


def _read(console: Console, signed: SignedIn, ledger_id: int) -> Found:
    """The message, if the user may see it (HTTPException 404 otherwise); its form rendered and
    the view recorded (in that order: nothing is recorded for a form that cannot be shown, and
    nothing is shown that was not recorded)."""
    services = console.services
    principal = signed.user.principal
    try:
        row = services.ledger.get(ledger_id)
    except KeyError:
        raise HTTPException(404, NOT_FOUND) from None
    if not principal.may(Permission.METADATA, row.desk):
        raise HTTPException(404, NOT_FOUND)
    events = services.ledger.events_of(row.id)
    with services.ledger.reading() as tx:
        deadline = worklist.reply_deadline(tx, row.id)
    if row.direction != "inbound":
        return Found(row, events, deadline, None, missing=SEALED)
    role = principal.role_for(Permission.CONTENT, row.desk)
    if role is None:
        return Found(row, events, deadline, None, missing="")
    try:
        form = received.render(services, row)
    except received.NotReadable as exc:
        log.warning("message view: %s", exc)
        return Found(row, events, deadline, None, missing=exc.shown)
    with services.ledger.transaction() as tx:
        console.access.access_log.record_view(
            tx,
            principal.name,
            role,
            Seen(row.id, partner=row.partner, form=row.form, reference=row.reference),
            PURPOSES.get(role, Purpose.CASE_WORK),
        )
    return Found(row, events, deadline, form, missing="")

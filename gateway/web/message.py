"""The message view: metadata, who holds it on its desk (with the claim buttons), the timeline
(the ledger's events), the reply deadline, the thread of related messages the user may see and,
for the roles that may read it, the form as its desk copy renders it, the view recorded in the
access log (and the message's first opening) before the page is sent. Out of the user's desks:
404, as if it did not exist. A message of ours (outbound) shows its metadata, timeline and thread;
its form is the sending desk's file; its delivery history (attempts, the partner server's replies,
receipts and the keys that signed them, answers, quarantine and the operators' actions) is
metadata, which an operator sees too. A received message shows what the cross-check at its
arrival found: the hits on messages the user may see, described (personal data: shown only
with the form, in the view the access log records), and the others counted."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import datetime

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from gateway.access.accesslog import Purpose, Seen
from gateway.access.roles import Permission, Role
from gateway.core.vocabulary import RECEIPT_FORM
from gateway.search import crosscheck
from gateway.service import alerts, attachments, received
from gateway.service.cases import Cases
from gateway.store import claims, crosscheck_rows, delivery_history, thread, worklist
from gateway.store.claims import Claim, WorkState, work_state
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


@dataclass(frozen=True)
class Found:
    row: MessageRow
    events: list[tuple[datetime, str, str]]
    deadline: worklist.ReplyDeadline | None
    form: received.Rendered | None  # None: the role may not read it, or it cannot be shown
    missing: str  # why a form the role may read is not shown ("" when it is, or may not be)
    claim: Claim | None = None
    thread: tuple[thread.ThreadItem, ...] = ()
    delivery: delivery_history.DeliveryHistory | None = None  # of a message of ours
    earlier: tuple[tuple[str, int], ...] = ()  # the cross-check's hits shown: text, ledger id
    earlier_hidden: int = 0  # and those counted only

    @property
    def work(self) -> WorkState:
        held = self.claim
        return work_state(
            self.row.state,
            self.deadline.state if self.deadline is not None else None,
            holder=held.holder if held is not None else None,
            seen_at=held.seen_at if held is not None else None,
            closed_at=held.closed_at if held is not None else None,
        )


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
    row = found.row
    may_claim = row.direction == "inbound" and principal.may(Permission.CLAIM, row.desk)
    holder = found.claim.holder if found.claim is not None else None
    may_act = may_claim and (
        holder in (None, principal.name) or principal.may(Permission.DASHBOARDS)
    )
    candidates = (
        await run_in_threadpool(console.claims.candidates, row.desk)
        if may_act and holder is not None
        else []
    )
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
            "attachments": attachments.listed(found.form.attachments) if found.form else [],
            "missing": found.missing,
            "may_read": principal.may(Permission.CONTENT, found.row.desk),
            "claim": found.claim,
            "work": found.work if row.direction == "inbound" else None,
            "may_claim": may_claim,
            "may_act": may_act,
            "candidates": [name for name in candidates if name != holder],
            "thread": found.thread,
            "delivery": found.delivery,
            "may_open": {
                answer.ledger_id: principal.may(Permission.METADATA, answer.desk)
                for answer in (found.delivery.answers if found.delivery else ())
            },
            "replies": _replies(console, signed, found.row),
            "alerts": await run_in_threadpool(alerts.of_message, console.services, row.id)
            if principal.may(Permission.CONTENT, row.desk)
            else [],
            "case": await run_in_threadpool(
                Cases(console.services.ledger, console.services.audit).case_of,
                principal,
                row.id,
            ),
            "earlier": found.earlier,
            "earlier_hidden": found.earlier_hidden,
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
        held = claims.get(tx, row.id)
        related = thread.related(tx, row.id, leave_out_form=RECEIPT_FORM)
        delivery = (
            delivery_history.history(
                tx, row.id, partner=row.partner, reference=row.reference, receipt_form=RECEIPT_FORM
            )
            if row.direction == "outbound"
            else None
        )
        hits = (
            crosscheck.with_cases(tx, crosscheck_rows.of_message(tx, row.id))
            if row.direction == "inbound"
            else []
        )
    shown = tuple(
        item
        for item in related
        if item.id != row.id and principal.may(Permission.METADATA, item.desk)
    )
    found = Found(
        row,
        events,
        deadline,
        None,
        missing="",
        claim=held,
        thread=shown,
        delivery=delivery,
        earlier_hidden=len(hits),
    )
    role = principal.role_for(Permission.CONTENT, row.desk)
    if role is None or row.direction != "inbound":
        return found
    try:
        form = received.render(services, row, earlier=False)  # the page has its own list
    except received.NotReadable as exc:
        log.warning("message view: %s", exc)
        return replace(found, missing=exc.shown)
    now = services.clock.now()
    with services.ledger.transaction() as tx:
        claims.mark_seen_in(tx, row.id, now)
        console.access.access_log.record_view(
            tx,
            principal.name,
            role,
            Seen(row.id, partner=row.partner, form=row.form, reference=row.reference),
            PURPOSES.get(role, Purpose.CASE_WORK),
        )
    if held is None:
        held = Claim(row.id, holder=None, since=None, seen_at=now, closed_at=None, closed_by=None)
    elif held.seen_at is None:
        held = replace(held, seen_at=now)
    described = tuple(
        (crosscheck.describe(hit), hit.earlier_id)
        for hit in hits
        if principal.may(Permission.METADATA, hit.earlier_desk)
    )
    return replace(
        found,
        form=form,
        claim=held,
        earlier=described,
        earlier_hidden=len(hits) - len(described),
    )

"""The messages we sent, newest first, a page at a time (keyset on the ledger id), filtered by
state and partner: metadata, failed attempts and the last error as the gateway wrote it, never
content; and the retry of a rejected or failed one (or a deferred one sent now) for the roles that
manage the queues, through the service the `gateway queue` command uses, audited."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from gateway.access.roles import Permission
from gateway.core.vocabulary import RECEIPT_FORM
from gateway.service.queues import QueueItem, QueueRefusal, Queues, checked_reason
from gateway.store import outbound_rows
from gateway.store.states import OutboundState
from gateway.web import params
from gateway.web.console import Console, SignedIn, check_csrf, console_of, require_user

STATES = tuple(state.value for state in OutboundState)
# The states from which an operator may send a message again: its item is quarantined.
RETRIABLE = (OutboundState.REJECTED, OutboundState.FAILED)
NOT_FOUND = "no such message"


async def outbound_page(request: Request) -> Response:
    console = console_of(request)
    signed = await require_user(request)
    principal = signed.user.principal
    desks = principal.desks_for(Permission.METADATA)
    if desks is not None and not desks:
        raise HTTPException(403, "your role does not see messages")
    state = params.choice(request, "state", STATES)
    partner = params.code(request, "partner")
    receipts = params.choice(request, "receipts", ("1",)) is not None
    before = params.position(request)
    size = console.settings.page_size

    def read() -> list[outbound_rows.SentItem]:
        with console.services.ledger.reading() as tx:
            return outbound_rows.page(
                tx,
                desks=desks,
                before=before,
                state=state,
                partner=partner,
                leave_out_form=None if receipts else RECEIPT_FORM,
                limit=size + 1,
            )

    items = await run_in_threadpool(read)
    more = len(items) > size
    items = items[:size]
    query = {"state": state, "partner": partner, "receipts": "1" if receipts else None}
    return console.page(
        request,
        "outbound.html",
        {
            "signed": signed,
            "items": items,
            "states": STATES,
            "state": state or "",
            "partner": partner or "",
            "receipts": receipts,
            "partners": sorted(p.code for p in console.services.config.partners),
            "desks": sorted(desks) if desks is not None else None,
            "may_retry": principal.may(Permission.QUEUES),
            "retriable": RETRIABLE,
            "filters": {key: value for key, value in query.items() if value},
            "next_before": items[-1].id if more and items else None,
            "filtered": bool(state or partner or receipts or before),
            "done": params.position(request, "retried"),
        },
    )


async def retry(request: Request) -> Response:
    """POST /outbound/{id}/retry: a rejected or failed message's quarantined item back into the
    queue (``Queues.release``), or a deferred one sent at the next pass (``Queues.retry``)."""
    console = console_of(request)
    signed = await require_user(request)
    form = await check_csrf(request, signed)
    if not signed.user.principal.may(Permission.QUEUES):
        raise HTTPException(403, "your role does not manage the queues")
    try:
        reason = checked_reason(form.get("reason", ""), required=False)
    except ValueError as error:
        raise HTTPException(400, f"the reason must be {error}") from None
    ledger_id = int(request.path_params["ledger_id"])
    await run_in_threadpool(_retry, console, signed, ledger_id, reason)
    return RedirectResponse(f"/outbound?retried={ledger_id}", status_code=303)


def _retry(console: Console, signed: SignedIn, ledger_id: int, reason: str) -> QueueItem:
    services = console.services
    try:
        row = services.ledger.get(ledger_id)
    except KeyError:
        raise HTTPException(404, NOT_FOUND) from None
    if row.direction != "outbound" or not row.spool_key:
        raise HTTPException(404, NOT_FOUND)
    queues = Queues(services, actor=signed.user.principal.name)
    try:
        item = queues.get(row.spool_key, "outbound")
        if item.folder == "quarantined":
            return queues.release(row.spool_key, reason, "outbound")
        return queues.retry(row.spool_key, reason)
    except QueueRefusal as refusal:
        raise HTTPException(409, str(refusal)) from None

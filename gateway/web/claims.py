"""The claim buttons of the message view and the worklist: claim, release, hand over, close, each a
POST with the session's CSRF token (403 without), on a message of the user's desks (404 for any
other, as if it did not exist), then back to the page the button was on (303). A refusal is a
409 page that says why; the loser of a race is told who holds the message and since when."""

from __future__ import annotations

import re

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from gateway.access.roles import Permission
from gateway.service.claims import ClaimRefused, Done, HeldByOther
from gateway.web import times
from gateway.web.console import Console, SignedIn, check_csrf, console_of, require_user
from gateway.web.message import NOT_FOUND

ACTIONS = ("claim", "release", "hand-over", "close")
# Where a button may send the browser back to: the worklist (with its filters) or a message.
BACK = re.compile(r"/(\?[A-Za-z0-9=&_.%-]{0,300})?|/messages/[0-9]{1,18}")


async def claim_action(request: Request) -> Response:
    console = console_of(request)
    signed = await require_user(request)
    form = await check_csrf(request, signed)
    action = request.path_params["action"]
    if action not in ACTIONS:
        raise HTTPException(404, NOT_FOUND)
    ledger_id = int(request.path_params["ledger_id"])
    back = form.get("back", "")
    if BACK.fullmatch(back) is None:
        back = f"/messages/{ledger_id}"
    try:
        await run_in_threadpool(_act, console, signed, ledger_id, action, form.get("to", ""))
    except HeldByOther as held:
        since = f" since {times.shown(held.since, console.zone).local}" if held.since else ""
        raise HTTPException(409, f"Not done: {held}{since}.") from None
    except ClaimRefused as refused:
        raise HTTPException(409, f"Not done: {refused}.") from None
    return RedirectResponse(back, status_code=303)


def _act(console: Console, signed: SignedIn, ledger_id: int, action: str, to: str) -> Done:
    principal = signed.user.principal
    try:
        row = console.services.ledger.get(ledger_id)
    except KeyError:
        raise HTTPException(404, NOT_FOUND) from None
    if row.direction != "inbound" or not principal.may(Permission.METADATA, row.desk):
        raise HTTPException(404, NOT_FOUND)
    if not principal.may(Permission.CLAIM, row.desk):
        raise HTTPException(403, "your role does not claim messages")
    claims = console.claims
    if action == "claim":
        return claims.claim(principal, row)
    if action == "release":
        return claims.release(principal, row)
    if action == "hand-over":
        return claims.hand_over(principal, row, to.strip())
    return claims.close(principal, row)

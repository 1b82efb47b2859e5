"""An attachment of a received message in the console, by its number: a raster photo shown
inline, any other file a download, the view or download recorded in the access log before the
bytes are sent. The message view's rules: a message out of the user's desks is 404, a role that
does not read content (operator, auditor) is refused 403 and never gets the bytes."""

from __future__ import annotations

import logging

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from gateway.access.accesslog import Purpose
from gateway.access.roles import Permission
from gateway.service import attachments, received
from gateway.web.console import console_of, require_user
from gateway.web.message import NOT_FOUND, PURPOSES

log = logging.getLogger("gateway.web")
NO_ATTACHMENT = "no such attachment"


async def attachment_file(request: Request) -> Response:
    if request.method != "GET":  # a HEAD would be recorded as a view that sent nothing
        raise HTTPException(405, "GET the file", headers={"Allow": "GET"})
    console = console_of(request)
    signed = await require_user(request)
    principal = signed.user.principal
    desks = principal.desks_for(Permission.METADATA)
    if desks is not None and not desks:
        raise HTTPException(403, "your role does not see messages")
    ledger_id = int(request.path_params["ledger_id"])
    number = int(request.path_params["number"])
    services = console.services

    def read() -> attachments.Served:
        try:
            row = services.ledger.get(ledger_id)
        except KeyError:
            raise HTTPException(404, NOT_FOUND) from None
        if not principal.may(Permission.METADATA, row.desk):
            raise HTTPException(404, NOT_FOUND)
        role = principal.role_for(Permission.CONTENT, row.desk)
        if role is None:
            raise HTTPException(403, "your role sees a message's metadata, not its files")
        if row.direction != "inbound":
            raise HTTPException(404, NO_ATTACHMENT)
        try:
            return attachments.hand_out(
                services,
                console.access.access_log,
                row,
                number,
                user=principal.name,
                role=role,
                purpose=PURPOSES.get(role, Purpose.CASE_WORK),
            )
        except attachments.NoSuchAttachment:
            raise HTTPException(404, NO_ATTACHMENT) from None
        except received.NotReadable as exc:
            log.warning("attachment: %s", exc)
            raise HTTPException(410 if exc.shown == received.GONE else 409, exc.shown) from None

    out = await run_in_threadpool(read)
    return served(out)


def served(out: attachments.Served) -> Response:
    """A file's bytes as they leave: its disposition (inline photo or download), never sniffed
    by the browser, never cached."""
    return Response(
        out.data,
        media_type=out.media_type,
        headers={
            "Content-Disposition": out.disposition,
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-store",
        },
    )

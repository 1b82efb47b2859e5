"""The worklist: the received messages of the desks the user may see, newest first, a page at a
time (keyset on the ledger id), filtered by form and partner; metadata only."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from gateway.access.roles import Permission
from gateway.core.vocabulary import RECEIPT_FORM
from gateway.store import worklist
from gateway.web import params, times
from gateway.web.console import console_of, require_user


async def worklist_page(request: Request) -> Response:
    console = console_of(request)
    signed = await require_user(request)
    principal = signed.user.principal
    desks = principal.desks_for(Permission.METADATA)
    if desks is not None and not desks:
        if principal.may(Permission.AUDIT):
            raise HTTPException(303, headers={"Location": "/access-log"})
        raise HTTPException(403, "your role has no worklist")
    form = params.code(request, "form")
    partner = params.code(request, "partner")
    before = params.position(request)
    size = console.settings.page_size

    def read() -> list[worklist.WorkItem]:
        with console.services.ledger.reading() as tx:
            return worklist.page(
                tx,
                desks=desks,
                before=before,
                form=form,
                partner=partner,
                leave_out_form=RECEIPT_FORM,
                limit=size + 1,
            )

    items = await run_in_threadpool(read)
    more = len(items) > size
    items = items[:size]
    now = console.services.clock.now()
    config = console.services.config
    return console.page(
        request,
        "worklist.html",
        {
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
            "forms": sorted(
                spec.code
                for spec in console.services.validator.catalogue
                if spec.code != RECEIPT_FORM
            ),
            "partners": sorted(p.code for p in config.partners),
            "next_before": items[-1].id if more and items else None,
            "filtered": bool(form or partner or before),
        },
    )

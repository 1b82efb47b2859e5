"""The auditor's view of the access log: who consulted what, as which role, why and when, newest
first a page at a time (keyset on the chain's sequence number), filtered by user, kind and time;
with the audit chain's verification. Codes and references only: no content anywhere."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from gateway.access import accesslog
from gateway.access.roles import Permission
from gateway.web import params
from gateway.web.console import SignedIn, check_csrf, console_of, require_user


async def access_log_page(request: Request) -> Response:
    console = console_of(request)
    signed = await _auditor(request)
    kind = params.choice(request, "kind", accesslog.KINDS) or "consultations"
    user = params.name(request, "user")
    since = params.instant(request, "since", console.zone)
    until = params.instant(request, "until", console.zone)
    before = params.position(request)
    size = console.settings.page_size

    def read() -> list[accesslog.AccessEntry]:
        try:
            return accesslog.page(
                console.services.ledger,
                kind=kind,
                user=user,
                since=since,
                until=until,
                before=before,
                limit=size + 1,
            )
        except ValueError as error:
            raise HTTPException(400, str(error)) from None

    entries = await run_in_threadpool(read)
    chain = await run_in_threadpool(console.chain.current)
    more = len(entries) > size
    entries = entries[:size]
    filters = {
        "kind": kind if kind != "consultations" else None,
        "user": user,
        "since": params.local_text(since, console.zone) or None,
        "until": params.local_text(until, console.zone) or None,
    }
    return console.page(
        request,
        "accesslog.html",
        {
            "signed": signed,
            "entries": entries,
            "kinds": list(accesslog.KINDS),
            "kind": kind,
            "user": user or "",
            "since": filters["since"] or "",
            "until": filters["until"] or "",
            "filters": {key: value for key, value in filters.items() if value},
            "filtered": any(filters.values()) or before is not None,
            "next_before": entries[-1].seq if more and entries else None,
            "chain": chain,
        },
    )


async def verify(request: Request) -> Response:
    """POST /access-log/verify: check the whole audit chain now."""
    console = console_of(request)
    signed = await _auditor(request)
    await check_csrf(request, signed)
    await run_in_threadpool(console.chain.run)
    return RedirectResponse("/access-log", status_code=303)


async def _auditor(request: Request) -> SignedIn:
    signed = await require_user(request)
    if not signed.user.principal.may(Permission.AUDIT):
        raise HTTPException(403, "the access log is for auditors")
    return signed

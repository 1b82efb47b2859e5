"""The alert register in the console: ``/alerts`` (the alerts the user may see, filtered by kind
and following desk) and ``/alerts/{key}`` (one alert, its exchanges classified and linked), each
view written to the access log before the page is sent; supervisors' and duty officers' changes
(the desk that follows it, its status as a message told it) are POSTs with the CSRF token. Roles
that do not read forms (operators, auditors) get 403; an alert out of a handler's desks, 404."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from gateway.access.roles import Permission
from gateway.service import alerts
from gateway.store.alert_rows import STATUSES
from gateway.web.console import check_csrf, console_of, require_user

NOT_FOUND = "no such alert"


async def alerts_page(request: Request) -> Response:
    console = console_of(request)
    signed = await require_user(request)
    kind = request.query_params.get("kind") or None
    desk = request.query_params.get("desk") or None
    if kind is not None and kind not in alerts.KINDS:
        raise HTTPException(400, f"kind is one of {', '.join(alerts.KINDS)}")
    try:
        found = await run_in_threadpool(
            alerts.listing,
            console.services,
            console.access.access_log,
            signed.user.principal,
            kind=kind,
            desk=desk,
        )
    except alerts.AlertRefused as refused:
        raise HTTPException(403, str(refused)) from None
    return console.page(
        request,
        "alerts.html",
        {
            "signed": signed,
            "alerts": found.alerts,
            "complete": found.complete,
            "kinds": alerts.KINDS,
            "kind": kind or "",
            "desk": desk or "",
            "desks": [item.name for item in console.services.config.desks],
        },
    )


async def alert_page(request: Request) -> Response:
    console = console_of(request)
    signed = await require_user(request)
    principal = signed.user.principal
    try:
        alert = await run_in_threadpool(
            alerts.show,
            console.services,
            console.access.access_log,
            principal,
            request.path_params["key"],
        )
    except alerts.AlertRefused as refused:
        raise HTTPException(403, str(refused)) from None
    except alerts.NoSuchAlert:
        raise HTTPException(404, NOT_FOUND) from None
    return console.page(
        request,
        "alert.html",
        {
            "signed": signed,
            "alert": alert,
            "may_change": principal.may(Permission.DASHBOARDS),
            "desks": [item.name for item in console.services.config.desks],
            "statuses": STATUSES,
        },
    )


async def alert_change(request: Request) -> Response:
    """Follow (``desk``, empty for the desk its messages reach) or status (``status`` and
    ``message``, the ledger id of the message that told it); back to the alert's page."""
    console = console_of(request)
    signed = await require_user(request)
    form = await check_csrf(request, signed)
    key = request.path_params["key"]
    action = request.path_params["action"]
    principal = signed.user.principal
    try:
        if action == "follow":
            desk = form.get("desk", "").strip() or None
            alert = await run_in_threadpool(alerts.follow, console.services, principal, key, desk)
        elif action == "status":
            told = form.get("message", "").strip()
            if told and not told.isdigit():
                raise ValueError("the message is named by its ledger id (a number)")
            alert = await run_in_threadpool(
                alerts.set_status,
                console.services,
                principal,
                key,
                form.get("status", ""),
                int(told) if told else None,
            )
        else:
            raise HTTPException(404, NOT_FOUND)
    except alerts.AlertRefused as refused:
        raise HTTPException(403, str(refused)) from None
    except alerts.NoSuchAlert:
        raise HTTPException(404, NOT_FOUND) from None
    except ValueError as wrong:
        raise HTTPException(409, f"Not done: {wrong}.") from None
    return RedirectResponse(f"/alerts/{alert.key}", status_code=303)

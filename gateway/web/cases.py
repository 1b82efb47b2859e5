"""The cases pages: the list (filtered by desk and status) and a case (its messages with form,
partner, direction and date, its timeline, and the actions by hand as POSTs with the session's
CSRF token and a required reason), through the service the `gateway cases` command uses. A case
out of the user's scope is 404; operators see no cases (403). The view of a case's messages is
written to the access log, one line a message, before the page is sent."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from gateway.access.roles import Permission
from gateway.service.cases import (
    CaseNotFound,
    CaseRefused,
    Cases,
    CaseView,
    may_act,
    may_see_cases,
)
from gateway.store.case_rows import STATUSES, Case
from gateway.web import params
from gateway.web.console import Console, SignedIn, check_csrf, console_of, require_user

ACTIONS = ("link", "unlink", "merge", "close", "reopen", "desk")
NOT_FOUND = "no such case"


def _desk_names(console: Console) -> list[str]:
    return sorted(desk.name for desk in console.services.config.desks)


def cases_of(console: Console) -> Cases:
    return Cases(console.services.ledger, console.services.audit)


async def cases_page(request: Request) -> Response:
    console = console_of(request)
    signed = await require_user(request)
    principal = signed.user.principal
    if not may_see_cases(principal):
        raise HTTPException(403, "your role does not see cases")
    status = params.choice(request, "status", STATUSES)
    desk = params.choice(request, "desk", _desk_names(console))
    found = await run_in_threadpool(cases_of(console).listed, principal, desk=desk, status=status)
    return console.page(
        request,
        "cases.html",
        {
            "signed": signed,
            "cases": found,
            "statuses": STATUSES,
            "status": status or "",
            "desks": _desk_names(console),
            "desk": desk or "",
            "filtered": bool(status or desk),
        },
    )


async def case_page(request: Request) -> Response:
    console = console_of(request)
    signed = await require_user(request)
    principal = signed.user.principal
    if not may_see_cases(principal):
        raise HTTPException(403, "your role does not see cases")
    case_id = int(request.path_params["case_id"])
    view = await run_in_threadpool(_read, console, signed, case_id)
    acting = may_act(principal, view.case.desk)
    return console.page(
        request,
        "case.html",
        {
            "signed": signed,
            "case": view.case,
            "members": view.members,
            "timeline": view.timeline,
            "may_act": acting,
            "may_move": acting and principal.may(Permission.DASHBOARDS),
            "desks": _desk_names(console),
        },
    )


def _read(console: Console, signed: SignedIn, case_id: int) -> CaseView:
    """The case, if the user may see it (404 otherwise), its members' view recorded."""
    try:
        return cases_of(console).view_logged(
            signed.user.principal, str(case_id), console.access.access_log
        )
    except CaseNotFound:
        raise HTTPException(404, NOT_FOUND) from None


async def case_action(request: Request) -> Response:
    console = console_of(request)
    signed = await require_user(request)
    form = await check_csrf(request, signed)
    action = request.path_params["action"]
    if action not in ACTIONS:
        raise HTTPException(404, NOT_FOUND)
    case_id = int(request.path_params["case_id"])
    try:
        case = await run_in_threadpool(_act, console, signed, case_id, action, form)
    except CaseNotFound:
        raise HTTPException(404, NOT_FOUND) from None
    except CaseRefused as refused:
        raise HTTPException(409, f"Not done: {refused}.") from None
    return RedirectResponse(f"/cases/{case.id}", status_code=303)


def _act(
    console: Console, signed: SignedIn, case_id: int, action: str, form: dict[str, str]
) -> Case:
    principal = signed.user.principal
    cases = cases_of(console)
    wanted, reason = str(case_id), form.get("reason", "")
    if action in ("link", "unlink"):
        message = cases.message(form.get("message", ""))
        if action == "link":
            return cases.link(principal, wanted, message, reason)
        return cases.unlink(principal, wanted, message, reason)
    if action == "merge":
        return cases.merge(principal, wanted, form.get("into", "").strip(), reason)
    if action == "close":
        return cases.close(principal, wanted, reason)
    if action == "reopen":
        return cases.reopen(principal, wanted, reason)
    return cases.set_desk(principal, wanted, form.get("desk", "").strip(), reason)

"""The statistics dashboard (``/dashboard``): the report's figures and charts over the last
DAYS UTC days, for supervisors and duty officers (Permission.DASHBOARDS) and for operators
(Permission.OPERATIONS). Codes, counts, durations, ledger ids and references only: no form's
content, so nothing for the access log, and an operator may see it. The charts are inline SVG
without CSS (markup under the Content-Security-Policy); no script."""

from __future__ import annotations

from datetime import timedelta

from markupsafe import Markup
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from gateway.access.roles import Permission
from gateway.reports import htmlpage
from gateway.reports.figures import make_report, scope_of
from gateway.web.console import console_of, require_user

DAYS = 30


async def dashboard_page(request: Request) -> Response:
    console = console_of(request)
    signed = await require_user(request)
    principal = signed.user.principal
    if not (principal.may(Permission.DASHBOARDS) or principal.may(Permission.OPERATIONS)):
        raise HTTPException(403, "the dashboard is for supervisors, duty officers and operators")
    now = console.services.clock.now()
    last = now.date()
    scope = scope_of(last - timedelta(days=DAYS - 1), last, now)

    def made() -> str:
        return htmlpage.fragment(make_report(console.services.ledger, scope, console.zone))

    body = await run_in_threadpool(made)
    return console.page(
        request,
        "dashboard.html",
        {"signed": signed, "days": DAYS, "report": Markup(body)},  # noqa: S704 (escaped by htmlpage)
    )

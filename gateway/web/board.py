"""The deadlines board (``/deadlines``) for the roles with ``Permission.DASHBOARDS``: the open
deadlines of every desk by time left, the overdue marked, the escalations counted, who holds each
message; metadata only (no view of a form, so nothing for the access log)."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from gateway.access.roles import Permission
from gateway.store import deadline_rows
from gateway.web import times
from gateway.web.console import console_of, require_user

LIMIT = 500  # lines on the board; the rest is counted, not shown
REFRESH_SECONDS = 60  # the page reloads itself (no script: a refresh header)


async def board_page(request: Request) -> Response:
    console = console_of(request)
    signed = await require_user(request)
    if not signed.user.principal.may(Permission.DASHBOARDS):
        raise HTTPException(403, "the deadlines board is for supervisors and duty officers")

    def read() -> list[deadline_rows.ListedDeadline]:
        with console.services.ledger.reading() as tx:
            return deadline_rows.listed(tx, limit=LIMIT + 1)

    rows = await run_in_threadpool(read)
    more = len(rows) > LIMIT
    rows = rows[:LIMIT]
    now = console.services.clock.now()
    return console.page(
        request,
        "board.html",
        {
            "signed": signed,
            "rows": rows,
            "left": [times.time_left(row.due, now) for row in rows],
            "overdue": sum(1 for row in rows if row.due < now),
            "escalated": sum(1 for row in rows if row.escalations),
            "more": more,
            "limit": LIMIT,
        },
        headers={"Refresh": str(REFRESH_SECONDS)},
    )

"""The open deadlines of the key's desks, the least time left first: receipts owed by partners
and replies owed by either side, with the message each belongs to."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway.store import deadline_rows
from gateway.web.api.auth import principal_of
from gateway.web.api.context import api_of, instant, seconds_left
from gateway.web.api.errors import ApiError
from gateway.web.api.scope import metadata_desks

PARAMETERS = ("overdue", "limit")
MAX_LIMIT = 1000


async def list_deadlines(request: Request) -> Response:
    api = api_of(request)
    principal = await principal_of(request)
    desks = metadata_desks(principal)
    params = request.query_params
    unknown = sorted(set(params) - set(PARAMETERS))
    if unknown:
        raise ApiError(
            400, "bad_parameter", f"{unknown[0]}: unknown parameter; known: overdue, limit"
        )
    overdue = params.get("overdue", "false")
    if overdue not in ("true", "false"):
        raise ApiError(400, "bad_parameter", "overdue: must be true or false")
    limit_text = params.get("limit", str(MAX_LIMIT))
    if not limit_text.isdigit() or not 1 <= int(limit_text) <= MAX_LIMIT:
        raise ApiError(400, "bad_parameter", f"limit: must be a whole number from 1 to {MAX_LIMIT}")
    now = api.services.clock.now()

    def read() -> list[deadline_rows.ListedDeadline]:
        with api.services.ledger.reading() as tx:
            return deadline_rows.listed(
                tx,
                due_by=now if overdue == "true" else None,
                desks=desks,
                limit=int(limit_text),
            )

    rows = await run_in_threadpool(read)
    return JSONResponse(
        {
            "deadlines": [
                {
                    "message_id": row.message_id,
                    "reference": row.reference,
                    "form": row.form,
                    "partner": row.partner,
                    "direction": row.direction,
                    "desk": row.desk,
                    "kind": row.kind,
                    "owed_by": row.owed_by,
                    "due": instant(row.due),
                    "seconds_left": seconds_left(row.due, now),
                    "reminders_sent": row.reminders_sent,
                }
                for row in rows
            ]
        }
    )

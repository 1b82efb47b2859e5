"""An attachment of a received message, by its number, for keys whose role reads content: always
a download (a photo keeps its checked type, any other file is application/octet-stream), recorded
in the access log with the purpose the caller gives in X-Purpose before the bytes are sent. Out of
the key's desks: 404, as for a message that does not exist."""

from __future__ import annotations

import logging

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from gateway.access.roles import Permission
from gateway.service import attachments, received
from gateway.web.api.auth import principal_of
from gateway.web.api.context import api_of
from gateway.web.api.errors import ApiError
from gateway.web.api.form import purpose_of
from gateway.web.api.scope import visible
from gateway.web.attachments import served

log = logging.getLogger("gateway.web")


async def get_attachment(request: Request) -> Response:
    if request.method != "GET":  # a HEAD would be recorded as a download that sent nothing
        raise ApiError(405, "method_not_allowed", "GET the file", headers={"Allow": "GET"})
    api = api_of(request)
    principal = await principal_of(request)
    purpose = purpose_of(request)
    row = await visible(api, principal, int(request.path_params["ledger_id"]))
    number = int(request.path_params["number"])
    role = principal.role_for(Permission.CONTENT, row.desk)
    if role is None:
        raise ApiError(403, "forbidden", "this key's role does not read forms' content")
    if row.direction != "inbound":
        raise ApiError(404, "not_found", "no such attachment")

    def read() -> attachments.Served:
        try:
            return attachments.hand_out(
                api.services,
                api.access.access_log,
                row,
                number,
                user=principal.name,
                role=role,
                purpose=purpose,
                inline_photos=False,
            )
        except attachments.NoSuchAttachment:
            raise ApiError(404, "not_found", "no such attachment") from None
        except received.NotReadable as exc:
            log.warning("api attachment: %s", exc)
            if exc.shown == received.GONE:
                raise ApiError(410, "form_not_kept", exc.shown) from None
            raise ApiError(409, "form_unreadable", exc.shown) from None

    out = await run_in_threadpool(read)
    return served(out)

"""A received message's form, as the XML it came in, for keys whose role reads content: the
download recorded in the access log (with the purpose the caller gives in X-Purpose) before the
form is sent. Out of the key's desks: 404, as for a message that does not exist."""

from __future__ import annotations

import logging

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from gateway.access.accesslog import Access, Purpose, Seen
from gateway.access.roles import Permission, Principal, Role
from gateway.service import received
from gateway.store.ledger import MessageRow
from gateway.web.api.auth import principal_of
from gateway.web.api.context import Api, api_of
from gateway.web.api.errors import ApiError
from gateway.web.api.scope import visible

log = logging.getLogger("gateway.web")

PURPOSE_HEADER = "X-Purpose"
PURPOSES = tuple(purpose.value for purpose in Purpose)
XML = "application/xml"


async def get_form(request: Request) -> Response:
    api = api_of(request)
    principal = await principal_of(request)
    purpose = purpose_of(request)
    row = await visible(api, principal, int(request.path_params["ledger_id"]))
    role = principal.role_for(Permission.CONTENT, row.desk)
    if role is None:
        raise ApiError(403, "forbidden", "this key's role does not read forms' content")
    if row.direction != "inbound":
        raise ApiError(
            410,
            "form_not_kept",
            "the form of a message we sent is kept only sealed for its partner",
        )
    form = await run_in_threadpool(_read_and_record, api, principal, role, row, purpose)
    return Response(form, media_type=XML)


def purpose_of(request: Request) -> Purpose:
    value = request.headers.get(PURPOSE_HEADER)
    if value is None or value not in PURPOSES:
        why = f"give the purpose of this read in {PURPOSE_HEADER}: one of {', '.join(PURPOSES)}"
        raise ApiError(
            400, "purpose_required", why, details=[{"header": PURPOSE_HEADER, "reason": why}]
        )
    return Purpose(value)


def _read_and_record(
    api: Api, principal: Principal, role: Role, row: MessageRow, purpose: Purpose
) -> bytes:
    """The form, read and checked again, then recorded (nothing is recorded for a form that
    cannot be given, and nothing is given that was not recorded)."""
    services = api.services
    try:
        form = received.delivery_of(services, row).form_xml
    except received.NotReadable as exc:
        log.warning("api form: %s", exc)
        if exc.shown == received.GONE:
            raise ApiError(410, "form_not_kept", exc.shown) from None
        raise ApiError(409, "form_unreadable", exc.shown) from None
    with services.ledger.transaction() as tx:
        api.access.access_log.record_view(
            tx,
            principal.name,
            role,
            Seen(row.id, partner=row.partner, form=row.form, reference=row.reference),
            purpose,
            kind=Access.DOWNLOAD,
        )
    return form

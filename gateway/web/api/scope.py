"""Which messages a key may see, by the console's rules: the desks its roles allow, a message
of another desk answered 404 exactly as one that does not exist, a role without messages 403."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool

from gateway.access.roles import Permission, Principal
from gateway.store.ledger import MessageRow
from gateway.web.api.context import Api
from gateway.web.api.errors import ApiError

NOT_FOUND = ApiError(404, "not_found", "no such message")
LARGEST_ID = 2**62  # beyond any ledger id: answered as not found, never sent to the database


def metadata_desks(principal: Principal) -> frozenset[str] | None:
    """The desks whose messages the key sees (None: every desk); ApiError 403 for none."""
    desks = principal.desks_for(Permission.METADATA)
    if desks is not None and not desks:
        raise ApiError(403, "forbidden", "this key's role does not see messages")
    return desks


async def visible(api: Api, principal: Principal, ledger_id: int) -> MessageRow:
    """The message if the key may see it; ApiError 404, the same for every other case."""
    metadata_desks(principal)
    if ledger_id > LARGEST_ID:
        raise _not_found()

    def read() -> MessageRow | None:
        try:
            return api.services.ledger.get(ledger_id)
        except KeyError:
            return None

    row = await run_in_threadpool(read)
    if row is None or not principal.may(Permission.METADATA, row.desk):
        raise _not_found()
    return row


def _not_found() -> ApiError:
    return ApiError(NOT_FOUND.status, NOT_FOUND.code, NOT_FOUND.message)

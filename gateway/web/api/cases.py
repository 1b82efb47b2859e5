"""One case: its metadata, its messages (form, partner, direction, date, how each came in) and
its timeline; 404 for a case out of the key's scope, 403 for a role that sees no cases. Each
message shown is written to the access log."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway.service.case_json import view_json
from gateway.service.cases import CaseNotFound, Cases, CaseView, may_see_cases
from gateway.web.api.auth import principal_of
from gateway.web.api.context import api_of
from gateway.web.api.errors import ApiError


async def get_case(request: Request) -> Response:
    api = api_of(request)
    principal = await principal_of(request)
    if not may_see_cases(principal):
        raise ApiError(403, "forbidden", "this key's role does not see cases")
    case_id = int(request.path_params["case_id"])

    def read() -> CaseView:
        cases = Cases(api.services.ledger, api.services.audit)
        try:
            return cases.view_logged(principal, str(case_id), api.access.access_log)
        except CaseNotFound:
            raise ApiError(404, "not_found", "no such case") from None

    return JSONResponse(view_json(await run_in_threadpool(read)))

"""The API as an ASGI app mounted at /api/v1 beside the console: its routes and its JSON
refusals (the console's security headers and body cap wrap it too)."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.routing import Route

from gateway.access.setup import AccessServices
from gateway.service.services import Services
from gateway.web.api.attachments import get_attachment
from gateway.web.api.cases import get_case
from gateway.web.api.context import Api
from gateway.web.api.deadlines import list_deadlines
from gateway.web.api.errors import ApiError, api_refusal
from gateway.web.api.form import get_form
from gateway.web.api.messages import get_message, get_status, list_messages
from gateway.web.api.openapi import openapi_json
from gateway.web.api.search import post_search
from gateway.web.api.send import post_message
from gateway.web.bodylimit import BodyTooLarge

ROUTES = [
    Route("/messages", list_messages, methods=["GET"]),
    Route("/messages", post_message, methods=["POST"]),
    Route("/messages/{ledger_id:int}", get_message, methods=["GET"]),
    Route("/messages/{ledger_id:int}/status", get_status, methods=["GET"]),
    Route("/messages/{ledger_id:int}/form", get_form, methods=["GET"]),
    Route("/messages/{ledger_id:int}/attachments/{number:int}", get_attachment, methods=["GET"]),
    Route("/deadlines", list_deadlines, methods=["GET"]),
    Route("/cases/{case_id:int}", get_case, methods=["GET"]),
    Route("/search", post_search, methods=["POST"]),
    Route("/openapi.json", openapi_json, methods=["GET"]),
]


def build_api(services: Services, access: AccessServices) -> Starlette:
    app = Starlette(
        routes=ROUTES,
        # A body found too long while streaming is refused here: the mounted app would otherwise
        # answer it 500 before the console's BodyLimit around it could.
        exception_handlers={
            ApiError: api_refusal,
            HTTPException: api_refusal,
            BodyTooLarge: api_refusal,
        },
    )
    app.state.api = Api.of(services, access)
    return app

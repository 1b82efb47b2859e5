"""The console as an ASGI application: its routes, the API mounted at /api/v1, the security
headers, the refusal pages."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from gateway.access.setup import AccessServices
from gateway.service import attaching
from gateway.service.services import Services
from gateway.web import accesslog, alerts, cases, outbound, queues
from gateway.web.api.app import build_api
from gateway.web.api.context import PREFIX
from gateway.web.attachments import attachment_file
from gateway.web.board import board_page
from gateway.web.bodylimit import BodyLimit
from gateway.web.claims import claim_action
from gateway.web.compose import compose_home, compose_page, compose_post
from gateway.web.console import Console, console_of
from gateway.web.dashboard import dashboard_page
from gateway.web.headers import SecurityHeaders
from gateway.web.login import login, login_page, logout
from gateway.web.message import message_page
from gateway.web.search import search_page, search_post
from gateway.web.subject_report import subject_form, subject_pdf, subject_post
from gateway.web.worklist import worklist_page, worklist_rows

STATIC = Path(__file__).resolve().parent / "static"
TITLES = {
    400: "Bad request",
    403: "Forbidden",
    404: "Not found",
    405: "Not allowed",
    409: "Cannot do that now",
    410: "No longer kept",
    429: "Too many attempts",
}


def build_app(services: Services, access: AccessServices) -> Starlette:
    """The console over ``services`` (whose ledger it reads and whose audit chain it writes)."""
    console = Console.of(services, access)
    app = Starlette(
        routes=[
            Route("/", worklist_page, methods=["GET"]),
            Route("/worklist/rows", worklist_rows, methods=["GET"]),
            Route("/messages/{ledger_id:int}", message_page, methods=["GET"]),
            Route("/messages/{ledger_id:int}/{action}", claim_action, methods=["POST"]),
            Route(
                "/messages/{ledger_id:int}/attachments/{number:int}",
                attachment_file,
                methods=["GET"],
            ),
            Route("/alerts", alerts.alerts_page, methods=["GET"]),
            Route("/alerts/{key}", alerts.alert_page, methods=["GET"]),
            Route("/alerts/{key}/{action}", alerts.alert_change, methods=["POST"]),
            Route("/cases", cases.cases_page, methods=["GET"]),
            Route("/cases/{case_id:int}", cases.case_page, methods=["GET"]),
            Route("/cases/{case_id:int}/{action}", cases.case_action, methods=["POST"]),
            Route("/deadlines", board_page, methods=["GET"]),
            Route("/dashboard", dashboard_page, methods=["GET"]),
            Route("/outbound", outbound.outbound_page, methods=["GET"]),
            Route("/outbound/{ledger_id:int}/retry", outbound.retry, methods=["POST"]),
            Route("/quarantine", queues.queues_page, methods=["GET"]),
            Route("/queues", queues.queues_page, methods=["GET"]),
            Route("/queues/drop", queues.drop_page, methods=["GET"]),
            Route("/queues/drop", queues.drop, methods=["POST"]),
            Route("/queues/release", queues.release, methods=["POST"]),
            Route("/queues/retry", queues.send_now, methods=["POST"]),
            Route("/search", search_page, methods=["GET"]),
            Route("/search", search_post, methods=["POST"]),
            Route("/subject-report", subject_form, methods=["GET"]),
            Route("/subject-report", subject_post, methods=["POST"]),
            Route("/subject-report/pdf", subject_pdf, methods=["POST"]),
            Route("/access-log", accesslog.access_log_page, methods=["GET"]),
            Route("/access-log/verify", accesslog.verify, methods=["POST"]),
            Route("/compose", compose_home, methods=["GET"]),
            Route("/compose/{form}", compose_page, methods=["GET"]),
            Route("/compose/{form}", compose_post, methods=["POST"]),
            Route("/login", login_page, methods=["GET"]),
            Route("/login", login, methods=["POST"]),
            Route("/logout", logout, methods=["POST"]),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
            Mount(PREFIX, build_api(services, access), name="api"),
        ],
        middleware=[
            Middleware(SecurityHeaders, hsts=services.config.web.tls),
            Middleware(
                BodyLimit,
                json_under=PREFIX + "/",
                upload_paths=("/compose/", PREFIX + "/messages"),
                max_upload=attaching.upload_limits(services.config).body,
            ),
        ],
        exception_handlers={HTTPException: _refusal},
        lifespan=_stopping(console),
    )
    app.state.console = console
    return app


def _stopping(console: Console) -> Callable[[Starlette], AbstractAsyncContextManager[None]]:
    """The app's lifespan: when it stops, the PDF workers stop with it."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            console.pdfs.close()

    return lifespan


async def _refusal(request: Request, exc: Exception) -> Response:
    """A refusal as a page (a redirect as it is), keeping its headers (Retry-After)."""
    if not isinstance(exc, HTTPException):
        raise exc
    if 300 <= exc.status_code < 400:
        return Response(status_code=exc.status_code, headers=exc.headers)
    console = console_of(request)
    return console.page(
        request,
        "refused.html",
        {
            "signed": await console.signed_in(request),
            "title": TITLES.get(exc.status_code, "Refused"),
            "detail": exc.detail,
            "status": exc.status_code,
        },
        status=exc.status_code,
        headers=exc.headers,
    )

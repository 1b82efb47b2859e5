"""What every page of the console works with: the services, the access services, the
templates, the login rate limit; who is signed in; pages and refusals rendered."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse

from gateway.access.sessions import SessionUser
from gateway.access.setup import AccessServices
from gateway.core.config import WebSettings
from gateway.service.claims import Claims
from gateway.service.services import Services
from gateway.web import cookies, csrf, navigation, times
from gateway.web.chaincheck import ChainCheck
from gateway.web.changes import ChangeWatch
from gateway.web.client import Client, client_of
from gateway.web.pdfwork import PdfWorkers
from gateway.web.ratelimit import RateLimit

TEMPLATES = Path(__file__).resolve().parent / "templates"


@dataclass(frozen=True)
class SignedIn:
    user: SessionUser
    csrf: str  # the token the session's forms carry


@dataclass(frozen=True)
class Console:
    services: Services
    access: AccessServices
    settings: WebSettings
    login_limit: RateLimit
    zone: ZoneInfo
    templates: Environment
    claims: Claims
    chain: ChainCheck  # the audit chain's last verification, for the access-log page
    changes: ChangeWatch  # the ledger's change token, read once for every open worklist
    pdfs: PdfWorkers  # data-subject reports' PDFs: the slots and the worker processes

    @classmethod
    def of(cls, services: Services, access: AccessServices) -> Console:
        settings = services.config.web
        environment = Environment(
            loader=FileSystemLoader(TEMPLATES),
            autoescape=select_autoescape(("html",), default=True),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        zone = ZoneInfo(settings.time_zone)
        environment.filters["shown"] = lambda instant: times.shown(instant, zone)
        environment.filters["fingerprint"] = grouped
        return cls(
            services=services,
            access=access,
            settings=settings,
            login_limit=RateLimit(settings.login_attempts_per_minute, services.clock),
            zone=zone,
            templates=environment,
            claims=Claims(services.ledger, services.audit),
            chain=ChainCheck(services.audit, services.clock),
            changes=ChangeWatch(services.ledger, services.clock, settings.live_seconds),
            pdfs=PdfWorkers(settings.subject_pdf_at_once),
        )

    def client(self, request: Request) -> Client:
        return client_of(request, self.settings)

    async def signed_in(self, request: Request, *, use: bool = True) -> SignedIn | None:
        """The session of the request's cookie, checked (and its use noted unless ``use`` is
        False: a request the page made by itself); None without one."""
        token = cookies.read(request, cookies.SESSION, self.client(request))
        if not token:
            return None
        user = await run_in_threadpool(self.access.sessions.check, token, use=use)
        return SignedIn(user, csrf.session_token(token)) if user is not None else None

    def page(
        self,
        request: Request,
        template: str,
        context: dict[str, Any],
        *,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
    ) -> HTMLResponse:
        signed = context.get("signed")
        nav = navigation.links(signed.user.principal) if isinstance(signed, SignedIn) else []
        body = self.templates.get_template(template).render(
            request=request, now=self.services.clock.now(), nav=nav, **context
        )
        return HTMLResponse(body, status_code=status, headers=headers)

    def fragment(
        self, request: Request, template: str, context: dict[str, Any], headers: Mapping[str, str]
    ) -> HTMLResponse:
        """A part of a page (no layout), for a page's script to put in place."""
        body = self.templates.get_template(template).render(
            request=request, now=self.services.clock.now(), **context
        )
        return HTMLResponse(body, headers=headers)


def grouped(fingerprint: str) -> str:
    """A key's fingerprint in groups of four, as gpg prints it."""
    return " ".join(fingerprint[index : index + 4] for index in range(0, len(fingerprint), 4))


def console_of(request: Request) -> Console:
    console: Console = request.app.state.console
    return console


async def require_user(request: Request) -> SignedIn:
    """The signed-in user; otherwise a 303 to the login page (HTTPException with Location)."""
    signed = await console_of(request).signed_in(request)
    if signed is None:
        raise HTTPException(303, headers={"Location": "/login"})
    return signed


async def check_csrf(request: Request, signed: SignedIn) -> dict[str, str]:
    """The form of a state-changing request, after its CSRF token: 403 when missing or wrong."""
    form = await request.form()
    given = form.get(csrf.FIELD)
    if not csrf.same(signed.csrf, given if isinstance(given, str) else None):
        raise HTTPException(403, "the form's security token is missing or wrong: reload the page")
    return {key: value for key, value in form.items() if isinstance(value, str)}

"""The login page and logout: the access services' login check (argon2id, lockout, TOTP) behind
a rate limit per client address, a server-side session in a cookie, CSRF on both forms."""

from __future__ import annotations

import logging

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from gateway.access.login import LoginResult, Refusal
from gateway.web import cookies, csrf
from gateway.web.console import Console, check_csrf, console_of, require_user

log = logging.getLogger("gateway.web")

NAME_LIMIT, PASSWORD_LIMIT, CODE_LIMIT = 64, 1024, 16


async def login_page(request: Request) -> Response:
    console = console_of(request)
    if await console.signed_in(request) is not None:
        return RedirectResponse("/", status_code=303)
    return _form(request, console)


async def login(request: Request) -> Response:
    console = console_of(request)
    client = console.client(request)
    verdict = console.login_limit.take(client.address)
    if not verdict.allowed:
        if verdict.first_refusal:  # once per window: a flood is not a flood of audit writes
            await run_in_threadpool(
                console.services.audit.append,
                "login.throttled",
                reason=f"limit={console.settings.login_attempts_per_minute}/min",
            )
            log.warning("login attempts over the limit from one address: refused for a while")
        raise HTTPException(
            429,
            "too many login attempts: wait a minute",
            headers={"Retry-After": str(verdict.retry_after)},
        )
    form = await request.form()
    expected = cookies.read(request, cookies.LOGIN, client)
    given = form.get(csrf.FIELD)
    if not csrf.same(expected, given if isinstance(given, str) else None):
        raise HTTPException(403, "the form's security token is missing or wrong: reload the page")
    name = _field(form.get("name"), NAME_LIMIT)
    password = _field(form.get("password"), PASSWORD_LIMIT)
    code = _field(form.get("code"), CODE_LIMIT) or None
    if not name or not password:
        return _form(request, console, "Give your name and password.", status=400, name=name)
    result: LoginResult = await run_in_threadpool(
        console.access.authenticator.login, name, password, code
    )
    if not result.ok or result.user_id is None:
        return _form(request, console, _refusal(console, result), status=401, name=name)
    token = await run_in_threadpool(console.access.sessions.open, result.user_id)
    response = RedirectResponse("/", status_code=303)
    cookies.put(response, cookies.SESSION, token, client)
    cookies.drop(response, cookies.LOGIN, client)
    return response


async def logout(request: Request) -> Response:
    console = console_of(request)
    signed = await require_user(request)
    await check_csrf(request, signed)
    client = console.client(request)
    token = cookies.read(request, cookies.SESSION, client)
    if token:
        await run_in_threadpool(console.access.sessions.close, token)
    response = RedirectResponse("/login", status_code=303)
    cookies.drop(response, cookies.SESSION, client)
    return response


def _form(
    request: Request, console: Console, error: str = "", *, status: int = 200, name: str = ""
) -> Response:
    """The login form with a fresh CSRF value, also set in its cookie."""
    token = csrf.new_login_token()
    response = console.page(
        request, "login.html", {"error": error, "name": name, "csrf": token}, status=status
    )
    cookies.put(
        response, cookies.LOGIN, token, console.client(request), max_age=cookies.LOGIN_MAX_AGE
    )
    return response


def _field(value: object, limit: int) -> str:
    text = value if isinstance(value, str) else ""
    return text[:limit]


def _refusal(console: Console, result: LoginResult) -> str:
    """What the user is told: never which of name or password was wrong."""
    if result.refusal is Refusal.LOCKED and result.locked_until is not None:
        until = result.locked_until.astimezone(console.zone)
        return f"This account is locked until {until:%H:%M} ({until.tzname()}) after failed logins."
    if result.refusal is Refusal.TOTP_NEEDED:
        return "Give the code of your authenticator app too."
    if result.refusal is Refusal.TOTP_WRONG:
        return "Wrong name, password or code."
    if result.refusal is Refusal.TOTP_NOT_ENROLLED:
        return "Your role needs a second factor: ask an administrator to enrol one."
    if result.locked_until is not None:
        return "Wrong name or password. The account is now locked for a while."
    return "Wrong name or password."

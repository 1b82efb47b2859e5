"""The console's cookies: the session and the login form's CSRF value. HttpOnly and
SameSite=Strict always; over TLS (ours or a trusted proxy's) Secure and ``__Host-`` named."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from gateway.web.client import Client

SESSION = "gateway-session"
LOGIN = "gateway-login"
LOGIN_MAX_AGE = 30 * 60


def name(base: str, client: Client) -> str:
    return f"__Host-{base}" if client.secure else base


def read(request: Request, base: str, client: Client) -> str | None:
    return request.cookies.get(name(base, client))


def put(
    response: Response, base: str, value: str, client: Client, *, max_age: int | None = None
) -> None:
    response.set_cookie(
        name(base, client),
        value,
        max_age=max_age,
        path="/",
        secure=client.secure,
        httponly=True,
        samesite="strict",
    )


def drop(response: Response, base: str, client: Client) -> None:
    response.delete_cookie(
        name(base, client), path="/", secure=client.secure, httponly=True, samesite="strict"
    )

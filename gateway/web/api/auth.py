"""Who calls the API: an API key given as ``Authorization: Bearer <key>``, checked by
gateway.access (unknown or revoked: 401 with WWW-Authenticate). No cookie is read, so a browser
cannot be made to call the API with someone's credentials: the API needs no CSRF token. Wrong
keys are counted per client address; past the limit every key from that address is refused (429
with Retry-After) until the bucket refills, and the first refusal of a window is audited."""

from __future__ import annotations

import logging

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from gateway.access.roles import Principal
from gateway.web.api.context import Api, api_of
from gateway.web.api.errors import ApiError
from gateway.web.client import client_of
from gateway.web.ratelimit import Verdict

log = logging.getLogger("gateway.web")

REALM = 'Bearer realm="ipc-gateway-api"'
MAX_KEY_LENGTH = 200


async def principal_of(request: Request) -> Principal:
    """The principal of the request's key; ApiError 401 or 429 otherwise."""
    api = api_of(request)
    address = client_of(request, api.settings).address
    held_back = api.key_limit.peek(address)
    if not held_back.allowed:
        await _throttled(api, held_back)
    key = _bearer(request)
    if key is None:
        raise ApiError(
            401,
            "unauthorized",
            "give an API key as 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": REALM},
        )
    principal = await run_in_threadpool(api.access.api_keys.authenticate, key)
    if principal is None:
        verdict = api.key_limit.take(address)
        if not verdict.allowed:
            await _throttled(api, verdict)
        raise ApiError(
            401,
            "unauthorized",
            "the API key is unknown or revoked",
            headers={"WWW-Authenticate": f'{REALM}, error="invalid_token"'},
        )
    return principal


def _bearer(request: Request) -> str | None:
    """The key of an ``Authorization: Bearer`` header; None without one (or a malformed one)."""
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key or len(key) > MAX_KEY_LENGTH:
        return None
    return key


async def _throttled(api: Api, verdict: Verdict) -> None:
    if verdict.first_refusal:  # once per window: a flood is not a flood of audit writes
        await run_in_threadpool(
            api.services.audit.append,
            "apikey.throttled",
            reason=f"limit={api.settings.login_attempts_per_minute}/min",
        )
        log.warning("wrong API keys over the limit from one address: refused for a while")
    raise ApiError(
        429,
        "too_many_requests",
        "too many wrong API keys from this address: wait a minute",
        headers={"Retry-After": str(verdict.retry_after)},
    )

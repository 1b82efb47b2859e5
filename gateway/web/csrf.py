"""CSRF tokens: a signed-in session's token derived from its secret (HMAC-SHA256), the login
form's a random value also set in a cookie (double submit); compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets

FIELD = "csrf"


def session_token(session_secret: str) -> str:
    """The token of a session's forms: only whoever holds the session cookie can make it."""
    return hmac.new(session_secret.encode(), b"gateway-csrf-v1", hashlib.sha256).hexdigest()


def new_login_token() -> str:
    return secrets.token_urlsafe(32)


def same(expected: str | None, given: str | None) -> bool:
    """Whether ``given`` is ``expected`` (both present), in time independent of where they
    differ."""
    if not expected or not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())

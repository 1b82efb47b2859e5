"""Bearer secrets (session tokens, API keys): made random, kept only as their SHA-256.

A token carries 256 random bits, so no slow hash is needed to keep it from being guessed from
its digest; what the ledger holds cannot be used to log in."""

from __future__ import annotations

import hashlib
import secrets


def new_token(prefix: str = "") -> str:
    return prefix + secrets.token_urlsafe(32)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()

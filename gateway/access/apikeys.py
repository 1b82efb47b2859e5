"""API keys for systems that call /api/v1 (a national case-management system): made with their
roles and desks, shown once, kept as their SHA-256, revoked for good. Audited."""

from __future__ import annotations

from gateway.access.principals import joined, principal_of, roles_text
from gateway.access.roles import Principal, Role, check_assignment, check_name
from gateway.access.tokens import digest, new_token
from gateway.core.clock import Clock
from gateway.store import users
from gateway.store.audit import AuditLog
from gateway.store.ledger import Ledger
from gateway.store.unit import LedgerConflict
from gateway.store.users import ApiKeyRow

KEY_PREFIX = "gwk_"
# last_used_at is written when it is older than this: a key used every second writes once an hour.
TOUCH_EVERY_SECONDS = 3600


class ApiKeyError(ValueError):
    """A key that cannot be made or revoked as asked (the reason, never a key)."""


class ApiKeys:
    def __init__(self, ledger: Ledger, audit: AuditLog, clock: Clock) -> None:
        self.ledger = ledger
        self.audit = audit
        self.clock = clock

    def create(self, name: str, roles: frozenset[Role], desks: frozenset[str]) -> str:
        """A new key called ``name``; returns the key, which nothing stores."""
        check_name(name)
        check_assignment(roles, desks)
        key = new_token(KEY_PREFIX)
        try:
            with self.ledger.transaction() as tx:
                users.insert_api_key(
                    tx,
                    name=name,
                    key_sha256=digest(key),
                    roles=roles_text(roles),
                    desks=joined(desks),
                    now=self.clock.now(),
                )
                self.audit.append_in(
                    tx,
                    "apikey.created",
                    reason=f"key={name} roles={roles_text(roles)} desks={joined(desks) or '-'}",
                )
        except LedgerConflict:
            raise ApiKeyError(f"an API key called {name!r} exists already") from None
        return key

    def list(self) -> list[ApiKeyRow]:
        with self.ledger.reading() as tx:
            return users.all_api_keys(tx)

    def revoke(self, name: str) -> None:
        with self.ledger.transaction() as tx:
            if not users.revoke_api_key(tx, name, self.clock.now()):
                raise ApiKeyError(f"no API key called {name!r} in use")
            self.audit.append_in(tx, "apikey.revoked", reason=f"key={name}")

    def authenticate(self, key: str) -> Principal | None:
        """Whose key this is (named ``key:NAME``), or None: unknown or revoked."""
        if not key.startswith(KEY_PREFIX):
            return None
        now = self.clock.now()
        # Read first: a key in use writes once an hour, so most requests take no write lock
        # (on SQLite the one the SMTP intake needs for every message).
        with self.ledger.reading() as tx:
            row = users.api_key_by_hash(tx, digest(key))
        if row is None or row.revoked_at is not None:
            return None
        if (
            row.last_used_at is None
            or (now - row.last_used_at).total_seconds() >= TOUCH_EVERY_SECONDS
        ):
            with self.ledger.transaction() as tx:
                users.touch_api_key(tx, row.id, now)
        return principal_of(f"key:{row.name}", row.roles, row.desks)

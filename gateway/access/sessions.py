"""The console's sessions: opened at login, ended by logout, by the idle or the absolute
timeout, or when the user is disabled; kept in the ledger as the token's SHA-256."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from gateway.access.principals import principal_of
from gateway.access.roles import Principal
from gateway.access.tokens import digest, new_token
from gateway.core.clock import Clock
from gateway.core.config import AccessSettings
from gateway.store import users
from gateway.store.ledger import Ledger

# last_seen_at is written at most this often per session: one write a minute, not one a request.
TOUCH_EVERY = timedelta(seconds=60)


@dataclass(frozen=True)
class SessionUser:
    principal: Principal
    user_id: int
    expires_at: datetime


class Sessions:
    def __init__(self, ledger: Ledger, settings: AccessSettings, clock: Clock) -> None:
        self.ledger = ledger
        self.settings = settings
        self.clock = clock

    def open(self, user_id: int) -> str:
        """A new session for a user who just logged in: the token for the browser's cookie
        (shown once; the ledger keeps its digest)."""
        token = new_token()
        now = self.clock.now()
        with self.ledger.transaction() as tx:
            users.insert_session(
                tx,
                digest(token),
                user_id,
                now=now,
                expires_at=now + self.settings.session_absolute,
            )
        return token

    def check(self, token: str, *, use: bool = True) -> SessionUser | None:
        """Who holds ``token``, or None: unknown, past its absolute end, idle too long, or its
        user disabled (an ended session is deleted). A read; a write only to end the session or
        to note its use (at most once a ``TOUCH_EVERY``). ``use=False``: a request the page made
        by itself (the worklist's check for changes), not the user: the idle time runs on."""
        key = digest(token)
        now = self.clock.now()
        with self.ledger.reading() as tx:
            row = users.session_by_hash(tx, key)
            user = users.user_by_id(tx, row.user_id) if row is not None else None
        if row is None:
            return None
        if (
            user is None
            or user.disabled
            or now >= row.expires_at
            or now - row.last_seen_at >= self.settings.session_idle
        ):
            with self.ledger.transaction() as tx:
                users.delete_session(tx, key)
            return None
        if use and now - row.last_seen_at >= TOUCH_EVERY:
            with self.ledger.transaction() as tx:
                users.touch_session(tx, key, now)
        return SessionUser(principal_of(user.name, user.roles, user.desks), user.id, row.expires_at)

    def close(self, token: str) -> bool:
        """Logout: the session ends now. Whether there was one."""
        with self.ledger.transaction() as tx:
            return users.delete_session(tx, digest(token))

    def sweep(self) -> int:
        """Delete the sessions that have ended; how many."""
        now = self.clock.now()
        with self.ledger.transaction() as tx:
            return users.delete_stale_sessions(
                tx, now=now, idle_before=now - self.settings.session_idle
            )

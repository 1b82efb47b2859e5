"""The login check: password, then the second factor where the user has one or a role needs
one; lockout with a growing lock after failed logins. Every failure and lock is audited (the
user's name and the reason, never the password or a code)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from gateway.access import totp
from gateway.access.passwords import Passwords
from gateway.access.principals import principal_of, split
from gateway.access.roles import NAME, Principal
from gateway.access.secretbox import SecretBox
from gateway.core.clock import Clock
from gateway.core.config import AccessSettings
from gateway.store import users
from gateway.store.audit import AuditLog
from gateway.store.ledger import Ledger
from gateway.store.unit import Transaction

log = logging.getLogger("gateway.access")


class Refusal(StrEnum):
    """Why a login was refused. The console tells the user only "wrong name or password",
    "locked until", or "give your code": the rest is for the audit chain."""

    UNKNOWN_USER = "unknown-user"
    BAD_PASSWORD = "bad-password"  # noqa: S105 (a reason's name, not a password)
    DISABLED = "disabled"
    LOCKED = "locked"
    TOTP_NEEDED = "totp-needed"  # the password was right: ask for the code
    TOTP_NOT_ENROLLED = "totp-not-enrolled"  # a role requires a code and the user has none
    TOTP_WRONG = "totp-wrong"


@dataclass(frozen=True)
class LoginResult:
    principal: Principal | None
    user_id: int | None = None
    refusal: Refusal | None = None
    locked_until: datetime | None = None

    @property
    def ok(self) -> bool:
        return self.principal is not None


def lock_for(settings: AccessSettings, failures: int) -> timedelta | None:
    """How long the account is locked after ``failures`` failed logins in a row: none below
    ``lockout_after``, then ``lockout_for`` doubled for each further failure, at most
    ``lockout_max``."""
    beyond = failures - settings.lockout_after
    if beyond < 0:
        return None
    if beyond >= 32:
        return settings.lockout_max
    lock: timedelta = settings.lockout_for * (1 << beyond)
    return min(lock, settings.lockout_max)


class Authenticator:
    def __init__(
        self,
        ledger: Ledger,
        audit: AuditLog,
        passwords: Passwords,
        *,
        settings: AccessSettings,
        clock: Clock,
        box: Callable[[], SecretBox],
    ) -> None:
        self.ledger = ledger
        self.audit = audit
        self.passwords = passwords
        self.settings = settings
        self.clock = clock
        self._box = box

    def login(self, name: str, password: str, code: str | None = None) -> LoginResult:
        """Check a login in one transaction: the user's row is locked while its counters move."""
        now = self.clock.now()
        with self.ledger.transaction() as tx:
            row = users.user_by_name(tx, name, for_update=True) if NAME.fullmatch(name) else None
            if row is None:
                self.passwords.verify(None, password)  # the time a known name costs
                # The name typed is not written: it may be a password typed in the wrong field.
                self.audit.append_in(tx, "login.failed", reason=f"reason={Refusal.UNKNOWN_USER}")
                return LoginResult(None, refusal=Refusal.UNKNOWN_USER)
            if row.disabled:
                self.passwords.verify(None, password)
                return self._refused(tx, row, Refusal.DISABLED)
            if row.locked_until is not None and now < row.locked_until:
                return self._refused(tx, row, Refusal.LOCKED, locked_until=row.locked_until)
            if not self.passwords.verify(row.password_hash, password):
                return self._failed(tx, row, Refusal.BAD_PASSWORD, now)
            step = None
            if row.totp_secret is not None:
                if not code:
                    return self._refused(tx, row, Refusal.TOTP_NEEDED)
                secret = self._box().open(row.totp_secret, context=f"totp:{row.name}")
                step = totp.matching_step(secret, code, now, row.totp_last_step)
                if step is None:
                    return self._failed(tx, row, Refusal.TOTP_WRONG, now)
            elif split(row.roles) & set(self.settings.totp_required):
                return self._refused(tx, row, Refusal.TOTP_NOT_ENROLLED)
            changes: dict[str, object] = {
                "failed_logins": 0,
                "locked_until": None,
                "last_login_at": now,
            }
            if step is not None:
                changes["totp_last_step"] = step
            if self.passwords.needs_rehash(row.password_hash):
                changes["password_hash"] = self.passwords.hash(password)
            users.update_user(tx, row.id, now, **changes)
            self.audit.append_in(tx, "login.ok", reason=f"user={row.name} roles={row.roles}")
        return LoginResult(principal_of(row.name, row.roles, row.desks), user_id=row.id)

    def _failed(
        self, tx: Transaction, row: users.UserRow, refusal: Refusal, now: datetime
    ) -> LoginResult:
        failures = row.failed_logins + 1
        lock = lock_for(self.settings, failures)
        until = now + lock if lock is not None else None
        users.update_user(tx, row.id, now, failed_logins=failures, locked_until=until)
        self.audit.append_in(
            tx, "login.failed", reason=f"user={row.name} reason={refusal} failures={failures}"
        )
        if lock is not None:
            self.audit.append_in(
                tx,
                "login.locked",
                reason=f"user={row.name} failures={failures} seconds={int(lock.total_seconds())}",
            )
            log.warning("login: %s locked for %s after %d failures", row.name, lock, failures)
        return LoginResult(None, refusal=refusal, locked_until=until)

    def _refused(
        self,
        tx: Transaction,
        row: users.UserRow,
        refusal: Refusal,
        locked_until: datetime | None = None,
    ) -> LoginResult:
        self.audit.append_in(tx, "login.failed", reason=f"user={row.name} reason={refusal}")
        return LoginResult(None, refusal=refusal, locked_until=locked_until)

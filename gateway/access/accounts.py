"""The users' accounts as `gateway users` manages them: add, list, passwords, roles, disable and
enable, the second factor. Each change is audited (the user's name and codes: never a password,
a display name or a secret) and ends the user's sessions where it changes what they may do."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass

from gateway.access import totp
from gateway.access.passwords import Passwords
from gateway.access.principals import joined, roles_text
from gateway.access.roles import Role, check_assignment, check_name
from gateway.access.secretbox import SecretBox
from gateway.core.clock import Clock
from gateway.store import users
from gateway.store.audit import AuditLog
from gateway.store.ledger import Ledger
from gateway.store.unit import LedgerConflict, Transaction
from gateway.store.users import UserRow

DISPLAY_NAME_LIMIT = 100


class AccountError(ValueError):
    """A change that cannot be made as asked, with the reason (one line)."""


@dataclass(frozen=True)
class Enrolment:
    """A TOTP secret just made: shown once to the user, to put into an authenticator app."""

    secret: str
    uri: str


class Accounts:
    def __init__(
        self,
        ledger: Ledger,
        audit: AuditLog,
        passwords: Passwords,
        *,
        clock: Clock,
        box: Callable[[], SecretBox],
        desks: Collection[str],
        issuer: str = "IPC Gateway",
    ) -> None:
        self.ledger = ledger
        self.audit = audit
        self.passwords = passwords
        self.clock = clock
        self._box = box
        self.desks = frozenset(desks)
        self.issuer = issuer

    def _checked(self, roles: frozenset[Role], desks: frozenset[str]) -> None:
        try:
            check_assignment(roles, desks)
        except ValueError as error:
            raise AccountError(str(error)) from None
        unknown = sorted(desks - self.desks)
        if unknown:
            raise AccountError(f"no desk {unknown[0]!r} in the configuration")

    def add(
        self,
        name: str,
        roles: frozenset[Role],
        desks: frozenset[str],
        password: str,
        display_name: str = "",
    ) -> None:
        try:
            check_name(name)
            password_hash = self.passwords.hash(password)
        except ValueError as error:
            raise AccountError(str(error)) from None
        self._checked(roles, desks)
        if len(display_name) > DISPLAY_NAME_LIMIT or not display_name.isprintable():
            raise AccountError(f"a display name is one line of at most {DISPLAY_NAME_LIMIT}")
        try:
            with self.ledger.transaction() as tx:
                users.insert_user(
                    tx,
                    name=name,
                    display_name=display_name,
                    roles=roles_text(roles),
                    desks=joined(desks),
                    password_hash=password_hash,
                    now=self.clock.now(),
                )
                self.audit.append_in(
                    tx,
                    "user.created",
                    reason=f"user={name} roles={roles_text(roles)} desks={joined(desks) or '-'}",
                )
        except LedgerConflict:
            raise AccountError(f"a user called {name!r} exists already") from None

    def list(self) -> list[UserRow]:
        with self.ledger.reading() as tx:
            return users.all_users(tx)

    def get(self, name: str) -> UserRow:
        with self.ledger.reading() as tx:  # a read locks nothing (PostgreSQL: READ ONLY)
            return self._user(tx, name, for_update=False)

    def set_password(self, name: str, password: str) -> None:
        """A new password; the lockout is lifted and the user's sessions end."""
        try:
            password_hash = self.passwords.hash(password)
        except ValueError as error:
            raise AccountError(str(error)) from None
        with self.ledger.transaction() as tx:
            row = self._user(tx, name)
            users.update_user(
                tx,
                row.id,
                self.clock.now(),
                password_hash=password_hash,
                failed_logins=0,
                locked_until=None,
            )
            ended = users.delete_sessions_of(tx, row.id)
            self.audit.append_in(tx, "user.password", reason=f"user={name} sessions-ended={ended}")

    def set_roles(self, name: str, roles: frozenset[Role], desks: frozenset[str]) -> None:
        self._checked(roles, desks)
        with self.ledger.transaction() as tx:
            row = self._user(tx, name)
            users.update_user(
                tx, row.id, self.clock.now(), roles=roles_text(roles), desks=joined(desks)
            )
            ended = users.delete_sessions_of(tx, row.id)
            self.audit.append_in(
                tx,
                "user.roles",
                reason=f"user={name} roles={roles_text(roles)} desks={joined(desks) or '-'} "
                f"was={row.roles}/{row.desks or '-'} sessions-ended={ended}",
            )

    def disable(self, name: str) -> None:
        """The user can no longer log in; their sessions end now."""
        with self.ledger.transaction() as tx:
            row = self._user(tx, name)
            users.update_user(tx, row.id, self.clock.now(), disabled=True)
            ended = users.delete_sessions_of(tx, row.id)
            self.audit.append_in(tx, "user.disabled", reason=f"user={name} sessions-ended={ended}")

    def enable(self, name: str) -> None:
        """Undo ``disable``; the lockout counter starts again."""
        with self.ledger.transaction() as tx:
            row = self._user(tx, name)
            users.update_user(
                tx, row.id, self.clock.now(), disabled=False, failed_logins=0, locked_until=None
            )
            self.audit.append_in(tx, "user.enabled", reason=f"user={name}")

    def enrol_totp(self, name: str) -> Enrolment:
        """A new TOTP secret for the user (replacing any): sealed in the ledger, returned once."""
        secret = totp.new_secret()
        sealed = self._box().seal(secret, context=f"totp:{name}")
        with self.ledger.transaction() as tx:
            row = self._user(tx, name)
            users.update_user(tx, row.id, self.clock.now(), totp_secret=sealed, totp_last_step=None)
            self.audit.append_in(tx, "user.totp-enrolled", reason=f"user={name}")
        return Enrolment(secret, totp.provisioning_uri(secret, name, self.issuer))

    def remove_totp(self, name: str) -> None:
        with self.ledger.transaction() as tx:
            row = self._user(tx, name)
            users.update_user(tx, row.id, self.clock.now(), totp_secret=None, totp_last_step=None)
            self.audit.append_in(tx, "user.totp-removed", reason=f"user={name}")

    @staticmethod
    def _user(tx: Transaction, name: str, *, for_update: bool = True) -> UserRow:
        row = users.user_by_name(tx, name, for_update=for_update)
        if row is None:
            raise AccountError(f"no user called {name!r}")
        return row

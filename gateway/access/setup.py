"""The access services made from a Config: one ledger, one audit log, the password policy, the
TOTP key file (read, or made on first enrolment), for the CLI now and the console later."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from gateway.access.accesslog import AccessLog
from gateway.access.accounts import Accounts
from gateway.access.apikeys import ApiKeys
from gateway.access.login import Authenticator
from gateway.access.passwords import PasswordPolicy, Passwords
from gateway.access.secretbox import SecretBox, load_key
from gateway.access.sessions import Sessions
from gateway.core.clock import Clock
from gateway.core.config import Config
from gateway.store.audit import AuditLog
from gateway.store.ledger import Ledger


@dataclass(frozen=True)
class AccessServices:
    ledger: Ledger
    accounts: Accounts
    authenticator: Authenticator
    sessions: Sessions
    api_keys: ApiKeys
    access_log: AccessLog


def password_policy(config: Config) -> PasswordPolicy:
    settings = config.access
    return PasswordPolicy(
        min_length=settings.password_min_length,
        time_cost=settings.password_time_cost,
        memory_kib=settings.password_memory_kib,
    )


def open_access(
    config: Config, ledger: Ledger, clock: Clock, passwords: Passwords | None = None
) -> AccessServices:
    """The services over ``ledger`` (whose engine the caller owns and disposes of)."""
    passwords = passwords or Passwords(password_policy(config))
    audit = AuditLog(ledger.engine, clock)
    key_file = config.access.totp_key_file
    # The key is read when a secret is first sealed or opened: a gateway whose users have no
    # second factor never needs the file.
    box = functools.cache(lambda: SecretBox(load_key(key_file, create=True)))
    issuer = f"IPC Gateway {next(iter(config.identity.bureaux.values()))}"
    return AccessServices(
        ledger=ledger,
        accounts=Accounts(
            ledger,
            audit,
            passwords,
            clock=clock,
            box=box,
            desks=[desk.name for desk in config.desks],
            issuer=issuer,
        ),
        authenticator=Authenticator(
            ledger, audit, passwords, settings=config.access, clock=clock, box=box
        ),
        sessions=Sessions(ledger, config.access, clock),
        api_keys=ApiKeys(ledger, audit, clock),
        access_log=AccessLog(audit),
    )

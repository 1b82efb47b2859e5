"""Test kit: the access services over a test ledger with an injected clock, at a cheap argon2
cost (the policy's floor is for the configuration, not for tests)."""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine

from gateway.access.accesslog import AccessLog
from gateway.access.accounts import Accounts
from gateway.access.apikeys import ApiKeys
from gateway.access.login import Authenticator
from gateway.access.passwords import PasswordPolicy, Passwords
from gateway.access.secretbox import SecretBox, load_key
from gateway.access.sessions import Sessions
from gateway.core.clock import FakeClock
from gateway.core.config import AccessSettings
from gateway.store.audit import AuditLog
from gateway.store.ledger import Ledger

START = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
CHEAP = PasswordPolicy(min_length=12, time_cost=1, memory_kib=1024, parallelism=1)
PASSWORD = "correct horse battery"
DESKS = ("sirene", "interpol", "duty")


@dataclass
class Kit:
    clock: FakeClock
    ledger: Ledger
    audit: AuditLog
    accounts: Accounts
    authenticator: Authenticator
    sessions: Sessions
    api_keys: ApiKeys
    access_log: AccessLog
    key_file: Path


def make_kit(engine: Engine, folder: Path, **settings: object) -> Kit:
    clock = FakeClock(START)
    access = replace(AccessSettings(totp_key_file=folder / "totp.key"), **settings)  # type: ignore[arg-type]
    ledger = Ledger(engine, clock)
    audit = AuditLog(engine, clock)
    passwords = Passwords(CHEAP)
    box = functools.cache(lambda: SecretBox(load_key(access.totp_key_file, create=True)))
    return Kit(
        clock=clock,
        ledger=ledger,
        audit=audit,
        accounts=Accounts(ledger, audit, passwords, clock=clock, box=box, desks=DESKS),
        authenticator=Authenticator(
            ledger, audit, passwords, settings=access, clock=clock, box=box
        ),
        sessions=Sessions(ledger, access, clock),
        api_keys=ApiKeys(ledger, audit, clock),
        access_log=AccessLog(audit),
        key_file=access.totp_key_file,
    )

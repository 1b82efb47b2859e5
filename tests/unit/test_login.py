"""Logins, lockout, the second factor per role, sessions and API keys, and the access log, on a
SQLite file and PostgreSQL with an injected clock: audited, and never a password or a secret in
a log line or the audit chain."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

import pytest
from accesskit import PASSWORD, START, Kit, make_kit
from sqlalchemy import Engine

from gateway.access import accesslog, totp
from gateway.access.accesslog import Access, Purpose, Seen
from gateway.access.accounts import AccountError
from gateway.access.apikeys import ApiKeyError
from gateway.access.login import Refusal, lock_for
from gateway.access.roles import Permission, Role, parse_roles
from gateway.access.tokens import digest
from gateway.core.config import AccessSettings
from gateway.store import users
from gateway.store.audit import AuditEntry

HANDLER = parse_roles(["handler"])
SUPERVISOR = parse_roles(["supervisor"])


@pytest.fixture
def kit(ledger_engine: Engine, tmp_path: Path) -> Kit:
    return make_kit(ledger_engine, tmp_path)


def kinds(kit: Kit) -> list[str]:
    return [entry.kind for entry in kit.audit.entries()]


def chain_text(entries: list[AuditEntry]) -> str:
    return "\n".join(
        f"{e.kind} {e.partner} {e.form} {e.reference} {e.digest} {e.reason}" for e in entries
    )


def test_a_handler_logs_in_with_the_right_password_only(kit: Kit) -> None:
    kit.accounts.add("ana", HANDLER, frozenset({"sirene"}), PASSWORD, display_name="Ana Pop")
    ok = kit.authenticator.login("ana", PASSWORD)
    assert ok.ok and ok.principal is not None
    assert ok.principal.may(Permission.CONTENT, "sirene")
    assert not ok.principal.may(Permission.CONTENT, "interpol")
    wrong = kit.authenticator.login("ana", PASSWORD + "!")
    assert (wrong.ok, wrong.refusal) == (False, Refusal.BAD_PASSWORD)
    unknown = kit.authenticator.login("nobody", PASSWORD)
    assert unknown.refusal is Refusal.UNKNOWN_USER
    entries = kit.audit.entries()
    assert [e.kind for e in entries] == ["user.created", "login.ok", "login.failed", "login.failed"]
    assert entries[0].reason == "user=ana roles=handler desks=sirene"
    assert entries[2].reason == "user=ana reason=bad-password failures=1"
    assert entries[3].reason == "reason=unknown-user"  # the name typed is not written
    assert "Ana Pop" not in chain_text(entries)
    assert kit.audit.check().intact


def test_lockout_after_failures_then_a_growing_lock(
    kit: Kit, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    kit.accounts.add("ana", HANDLER, frozenset({"sirene"}), PASSWORD)
    for failure in range(1, 5):
        result = kit.authenticator.login("ana", f"wrong guess {failure}")
        assert (result.refusal, result.locked_until) == (Refusal.BAD_PASSWORD, None)
    fifth = kit.authenticator.login("ana", "wrong guess 5")
    assert fifth.locked_until == START + timedelta(minutes=5)
    # locked: even the right password is refused, and the lock is not extended by it
    assert kit.authenticator.login("ana", PASSWORD).refusal is Refusal.LOCKED
    kit.clock.advance(timedelta(minutes=5))
    sixth = kit.authenticator.login("ana", "wrong guess 6")  # one more failure: twice as long
    assert sixth.locked_until == kit.clock.now() + timedelta(minutes=10)
    kit.clock.advance(timedelta(minutes=10))
    assert kit.authenticator.login("ana", PASSWORD).ok
    after = kit.authenticator.login("ana", "wrong again")  # the count started again
    assert after.locked_until is None
    entries = kit.audit.entries()
    locks = [e.reason for e in entries if e.kind == "login.locked"]
    assert locks == ["user=ana failures=5 seconds=300", "user=ana failures=6 seconds=600"]
    assert [e.reason for e in entries if "reason=locked" in e.reason] == ["user=ana reason=locked"]
    everything = chain_text(entries) + caplog.text
    for secret in (PASSWORD, "wrong guess", "wrong again"):
        assert secret not in everything
    assert "ana locked for 0:05:00 after 5 failures" in caplog.text


def test_the_lock_doubles_up_to_its_maximum() -> None:
    settings = AccessSettings(
        lockout_after=3, lockout_for=timedelta(minutes=1), lockout_max=timedelta(minutes=5)
    )
    assert [lock_for(settings, n) for n in (1, 2)] == [None, None]
    assert [lock_for(settings, n) for n in (3, 4, 5, 6, 100)] == [
        timedelta(minutes=m) for m in (1, 2, 4, 5, 5)
    ]


def test_a_disabled_user_cannot_log_in_and_loses_every_session(kit: Kit) -> None:
    kit.accounts.add("ana", HANDLER, frozenset({"sirene"}), PASSWORD)
    login = kit.authenticator.login("ana", PASSWORD)
    assert login.user_id is not None
    token = kit.sessions.open(login.user_id)
    assert kit.sessions.check(token) is not None
    kit.accounts.disable("ana")
    assert kit.sessions.check(token) is None
    assert kit.authenticator.login("ana", PASSWORD).refusal is Refusal.DISABLED
    kit.accounts.enable("ana")
    assert kit.authenticator.login("ana", PASSWORD).ok
    assert "user=ana sessions-ended=1" in [e.reason for e in kit.audit.entries()]


def test_sessions_end_when_idle_and_at_their_absolute_end(kit: Kit) -> None:
    kit.accounts.add("ana", HANDLER, frozenset({"sirene"}), PASSWORD)
    user = kit.authenticator.login("ana", PASSWORD).user_id
    assert user is not None
    idle = kit.sessions.open(user)
    kit.clock.advance(timedelta(minutes=29, seconds=59))
    assert kit.sessions.check(idle) is not None  # used: the idle time starts again
    kit.clock.advance(timedelta(minutes=29, seconds=59))
    assert kit.sessions.check(idle) is not None
    kit.clock.advance(timedelta(minutes=30))
    assert kit.sessions.check(idle) is None
    assert kit.sessions.check(idle) is None  # deleted, not only refused

    busy = kit.sessions.open(user)
    opened = kit.clock.now()
    while kit.clock.now() < opened + timedelta(hours=12) - timedelta(minutes=20):
        kit.clock.advance(timedelta(minutes=20))
        assert kit.sessions.check(busy) is not None
    kit.clock.set(opened + timedelta(hours=12))
    assert kit.sessions.check(busy) is None  # in use all along, ended by the absolute timeout

    closing = kit.sessions.open(user)
    assert kit.sessions.close(closing)
    assert kit.sessions.check(closing) is None
    assert kit.sessions.check("a token never given") is None


def test_session_tokens_are_stored_as_digests_and_swept(kit: Kit) -> None:
    kit.accounts.add("ana", HANDLER, frozenset({"sirene"}), PASSWORD)
    user = kit.authenticator.login("ana", PASSWORD).user_id
    assert user is not None
    token = kit.sessions.open(user)
    kit.sessions.open(user)
    with kit.ledger.reading() as tx:
        assert users.session_by_hash(tx, token) is None
        assert users.session_by_hash(tx, digest(token)) is not None
    kit.clock.advance(timedelta(hours=1))
    assert kit.sessions.sweep() == 2


def test_totp_is_required_by_role_and_checked(kit: Kit, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    kit.accounts.add("sam", SUPERVISOR, frozenset(), PASSWORD)
    kit.accounts.add("ana", HANDLER, frozenset({"sirene"}), PASSWORD)
    # a supervisor must have a second factor; a handler need not
    assert kit.authenticator.login("sam", PASSWORD).refusal is Refusal.TOTP_NOT_ENROLLED
    assert kit.authenticator.login("ana", PASSWORD).ok
    enrolment = kit.accounts.enrol_totp("sam")
    assert kit.key_file.is_file()
    assert kit.authenticator.login("sam", PASSWORD).refusal is Refusal.TOTP_NEEDED
    wrong = "000000" if totp.code_at(enrolment.secret, START) != "000000" else "111111"
    assert kit.authenticator.login("sam", PASSWORD, wrong).refusal is Refusal.TOTP_WRONG
    code = totp.code_at(enrolment.secret, START)
    assert kit.authenticator.login("sam", PASSWORD, code).ok
    replay = kit.authenticator.login("sam", PASSWORD, code)
    assert replay.refusal is Refusal.TOTP_WRONG  # a code is accepted once
    kit.clock.advance(timedelta(seconds=30))
    assert kit.authenticator.login(
        "sam", PASSWORD, totp.code_at(enrolment.secret, kit.clock.now())
    ).ok
    # a handler who enrolled must give the code too
    ana = kit.accounts.enrol_totp("ana")
    assert kit.authenticator.login("ana", PASSWORD).refusal is Refusal.TOTP_NEEDED
    assert kit.authenticator.login("ana", PASSWORD, totp.code_at(ana.secret, kit.clock.now())).ok
    stored = kit.accounts.get("sam").totp_secret or ""
    everything = chain_text(kit.audit.entries())
    for secret in (enrolment.secret, ana.secret, code, PASSWORD):
        assert secret not in stored
        assert secret not in everything
        assert secret not in caplog.text
    assert "user.totp-enrolled" in kinds(kit)


def test_totp_not_required_when_the_configuration_says_so(
    ledger_engine: Engine, tmp_path: Path
) -> None:
    kit = make_kit(ledger_engine, tmp_path, totp_required=())
    kit.accounts.add("sam", SUPERVISOR, frozenset(), PASSWORD)
    assert kit.authenticator.login("sam", PASSWORD).ok
    assert not kit.key_file.exists()  # never needed


def test_roles_and_passwords_change_and_end_sessions(ledger_engine: Engine, tmp_path: Path) -> None:
    kit = make_kit(ledger_engine, tmp_path, totp_required=())
    kit.accounts.add("ana", HANDLER, frozenset({"sirene"}), PASSWORD)
    user = kit.authenticator.login("ana", PASSWORD).user_id
    assert user is not None
    token = kit.sessions.open(user)
    kit.accounts.set_roles("ana", parse_roles(["handler", "duty_officer"]), frozenset({"interpol"}))
    assert kit.sessions.check(token) is None
    login = kit.authenticator.login("ana", PASSWORD)
    assert login.principal is not None
    assert login.principal.role_for(Permission.ESCALATIONS) is Role.DUTY_OFFICER
    kit.accounts.set_password("ana", "a new long passphrase")
    assert not kit.authenticator.login("ana", PASSWORD).ok
    assert kit.authenticator.login("ana", "a new long passphrase").ok
    reasons = [e.reason for e in kit.audit.entries() if e.kind.startswith("user.")]
    assert reasons[1] == (
        "user=ana roles=duty_officer,handler desks=interpol was=handler/sirene sessions-ended=1"
    )
    assert "a new long passphrase" not in chain_text(kit.audit.entries())


@pytest.mark.parametrize(
    ("call", "reason"),
    [
        (
            lambda k: k.accounts.add("ana", HANDLER, frozenset({"sirene"}), PASSWORD),
            "exists already",
        ),
        (
            lambda k: k.accounts.add("bob", HANDLER, frozenset({"nowhere"}), PASSWORD),
            "no desk 'nowhere'",
        ),
        (lambda k: k.accounts.add("bob", HANDLER, frozenset({"sirene"}), "short"), "at least 12"),
        (lambda k: k.accounts.disable("nobody"), "no user called 'nobody'"),
        (lambda k: k.accounts.set_roles("ana", SUPERVISOR, frozenset({"sirene"})), "handlers only"),
    ],
)
def test_account_changes_refused(kit: Kit, call: object, reason: str) -> None:
    kit.accounts.add("ana", HANDLER, frozenset({"sirene"}), PASSWORD)
    before = kinds(kit)
    with pytest.raises(AccountError, match=reason):
        call(kit)  # type: ignore[operator]
    assert kinds(kit) == before  # nothing audited, nothing changed


def test_api_keys_scoped_shown_once_and_revoked(kit: Kit) -> None:
    key = kit.api_keys.create("cms", HANDLER, frozenset({"sirene"}))
    assert key.startswith("gwk_")
    principal = kit.api_keys.authenticate(key)
    assert principal is not None and principal.name == "key:cms"
    assert principal.may(Permission.CONTENT, "sirene")
    assert not principal.may(Permission.CONTENT, "interpol")  # desk A's key cannot read desk B
    listed = kit.api_keys.list()
    assert [(row.name, row.roles, row.desks, row.last_used_at) for row in listed] == [
        ("cms", "handler", "sirene", START)
    ]
    assert key not in repr(listed)
    with pytest.raises(ApiKeyError, match="exists already"):
        kit.api_keys.create("cms", HANDLER, frozenset({"sirene"}))
    kit.api_keys.revoke("cms")
    assert kit.api_keys.authenticate(key) is None
    with pytest.raises(ApiKeyError, match="no API key called 'cms' in use"):
        kit.api_keys.revoke("cms")
    assert kit.api_keys.authenticate("gwk_guess") is None
    entries = kit.audit.entries()
    assert [(e.kind, e.reason) for e in entries] == [
        ("apikey.created", "key=cms roles=handler desks=sirene"),
        ("apikey.revoked", "key=cms"),
    ]
    assert key[4:] not in chain_text(entries)


def test_the_access_log_records_views_and_reads_them_by_user_and_time(kit: Kit) -> None:
    seen = Seen(ledger_id=12, partner="NO-SIRENE", form="G", reference="NO-2026-000123")
    with kit.ledger.transaction() as tx:
        kit.access_log.record_view(tx, "ana", Role.HANDLER, seen, Purpose.CASE_WORK)
    kit.clock.advance(timedelta(hours=1))
    with kit.ledger.transaction() as tx:
        kit.access_log.record_view(
            tx,
            "ana",
            Role.HANDLER,
            Seen(12, "NO-SIRENE", "G", "NO-2026-000123", part="attachment-1"),
            Purpose.REPLY,
            kind=Access.DOWNLOAD,
        )
        kit.access_log.record_search(tx, "sam", Role.SUPERVISOR, 3, Purpose.SUPERVISION)
    with kit.ledger.transaction() as tx:
        kit.access_log.record_view(tx, "key:cms", Role.HANDLER, seen, Purpose.CASE_WORK)
    kit.accounts.add("anabel", HANDLER, frozenset({"sirene"}), PASSWORD)  # an account event

    everything = accesslog.read(kit.ledger)
    assert [(e.kind, e.user, e.role, e.purpose) for e in everything] == [
        ("access.view", "ana", "handler", "case-work"),
        ("access.download", "ana", "handler", "reply"),
        ("access.search", "sam", "supervisor", "supervision"),
        ("access.view", "key:cms", "handler", "case-work"),
    ]
    first = everything[0]
    assert (first.partner, first.form, first.reference, first.details) == (
        "NO-SIRENE",
        "G",
        "NO-2026-000123",
        {"ledger": "12", "part": "form"},
    )
    assert everything[2].details == {"hits": "3"}
    ana = accesslog.read(kit.ledger, user="ana")
    assert [e.kind for e in ana] == ["access.view", "access.download"]  # not anabel's
    later = accesslog.read(kit.ledger, since=START + timedelta(minutes=30))
    assert [e.user for e in later] == ["ana", "sam", "key:cms"]
    assert [e.kind for e in accesslog.read(kit.ledger, until=START + timedelta(minutes=30))] == [
        "access.view"
    ]
    with_accounts = accesslog.read(kit.ledger, accounts=True)
    assert with_accounts[-1].kind == "user.created"
    assert kit.audit.check().intact


@pytest.mark.parametrize(
    ("user", "seen", "purpose"),
    [
        ("Ana Pop", Seen(12), "reply"),
        ("ana", Seen(12, part="John Smith"), "reply"),
        ("ana", Seen(12), "looking at John"),
        ("ana", Seen(12, reference="john smith"), "reply"),
    ],
)
def test_the_access_log_refuses_what_could_carry_personal_data(
    kit: Kit, user: str, seen: Seen, purpose: str
) -> None:
    with pytest.raises(ValueError), kit.ledger.transaction() as tx:
        kit.access_log.record_view(tx, user, Role.HANDLER, seen, Purpose(purpose))
    assert kit.audit.entries() == []

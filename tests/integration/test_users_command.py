"""`gateway users ...` as an operator runs it (subprocesses on a SQLite file and PostgreSQL):
each command, its one-line refusals, its audit lines, and never a password or secret on the
command line, in the output or in the audit chain."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from dbkit import postgres_schema, upgraded

from gateway.access import totp
from gateway.access.setup import open_access
from gateway.core import config as configuration
from gateway.core.clock import SystemClock
from gateway.store.audit import AuditEntry, AuditLog
from gateway.store.ledger import Ledger, make_engine

GATEWAY = (sys.executable, "-m", "gateway")
PASSWORD = "a long enough passphrase"
CONFIG = """
[identity]
country = "RO"
address = "gateway@ro.example"
bureaux = {{ sirene = "RO-SIRENE" }}

[[desks]]
name = "sirene"
maildir = "desks/sirene"

[[desks]]
name = "interpol"
maildir = "desks/interpol"

[[routes]]
desk = "sirene"

[database]
url = "{url}"

[access]
password_time_cost = 2
password_memory_kib = 19456
"""


@pytest.fixture(params=["sqlite", "postgresql"])
def config(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    """A configuration whose ledger is upgraded and holds no user."""
    with contextlib.ExitStack() as stack:
        url = (
            f"sqlite:///{tmp_path / 'ledger.db'}"
            if request.param == "sqlite"
            else stack.enter_context(postgres_schema())
        )
        upgraded(url)
        path = tmp_path / "gateway.toml"
        path.write_text(CONFIG.format(url=url))
        yield path


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "password"
    path.write_text(PASSWORD + "\n")
    return path


def gateway(config: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*GATEWAY, "-c", str(config), *args],
        capture_output=True,
        text=True,
        timeout=60,
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        cwd="/",
        check=False,
    )


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stderr
    return done.stdout


def refused(done: subprocess.CompletedProcess[str], code: int = 1) -> str:
    lines = done.stderr.strip().splitlines()
    assert "Traceback" not in done.stderr, done.stderr
    assert (done.returncode, len(lines)) == (code, 1), done.stderr
    return lines[0]


def audit_of(config: Path) -> list[AuditEntry]:
    engine = make_engine(configuration.load(config).database_url)
    try:
        log = AuditLog(engine, SystemClock())
        assert log.check().intact
        return log.entries()
    finally:
        engine.dispose()


def test_every_users_command_and_its_audit_line(config: Path, password_file: Path) -> None:
    out = ok(
        gateway(
            config, "users", "add", "ana", "--role", "handler", "--desk", "sirene",
            "--display-name", "Ana Pop", "--password-file", str(password_file),
        )
    )  # fmt: skip
    assert out == "user ana added\n"
    ok(
        gateway(
            config,
            "users",
            "add",
            "sam",
            "--role",
            "auditor",
            "--password-file",
            "-",
            stdin=PASSWORD,
        )
    )
    listed = json.loads(ok(gateway(config, "users", "list", "--json")))
    assert [(u["name"], u["roles"], u["desks"], u["state"], u["totp"]) for u in listed] == [
        ("ana", ["handler"], ["sirene"], "active", False),
        ("sam", ["auditor"], [], "active", False),
    ]
    table = ok(gateway(config, "users", "list"))
    assert table.splitlines()[0].split() == [
        "NAME", "ROLES", "DESKS", "TOTP", "STATE", "LAST", "LOGIN", "DISPLAY", "NAME",
    ]  # fmt: skip
    assert "Ana Pop" in table

    roles = ok(
        gateway(
            config,
            "users",
            "roles",
            "ana",
            "--role",
            "handler",
            "--desk",
            "sirene",
            "--desk",
            "interpol",
        )
    )
    assert roles == "ana is now handler of interpol, sirene; their sessions have ended\n"
    assert "disabled" in ok(gateway(config, "users", "disable", "ana"))
    assert json.loads(ok(gateway(config, "users", "list", "--json")))[0]["state"] == "disabled"
    ok(gateway(config, "users", "enable", "ana"))
    new_password = password_file.parent / "new-password"
    new_password.write_text("another long passphrase\n")
    ok(gateway(config, "users", "passwd", "ana", "--password-file", str(new_password)))
    enrolled = ok(gateway(config, "users", "totp", "sam"))
    secret = enrolled.split("secret: ")[1].split()[0]
    assert "otpauth://totp/" in enrolled

    created = ok(
        gateway(config, "users", "apikey", "create", "cms", "--role", "handler", "--desk", "sirene")
    )
    key = created.splitlines()[1]
    assert key.startswith("gwk_")
    keys = json.loads(ok(gateway(config, "users", "apikey", "list", "--json")))
    assert [(k["name"], k["desks"], k["revoked"]) for k in keys] == [("cms", ["sirene"], None)]
    assert key not in ok(gateway(config, "users", "apikey", "list"))
    ok(gateway(config, "users", "apikey", "revoke", "cms"))
    assert json.loads(ok(gateway(config, "users", "apikey", "list", "--json")))[0]["revoked"]

    # what the CLI made works for the login check: the new password, the enrolled second factor
    loaded = configuration.load(config)
    engine = make_engine(loaded.database_url)
    try:
        clock = SystemClock()
        access = open_access(loaded, Ledger(engine, clock), clock)
        assert access.authenticator.login("ana", "another long passphrase").ok
        assert not access.authenticator.login("sam", PASSWORD).ok
        assert access.authenticator.login("sam", PASSWORD, totp.code_at(secret, clock.now())).ok
        assert access.api_keys.authenticate(key) is None
    finally:
        engine.dispose()

    entries = audit_of(config)
    assert [(e.kind, e.reason) for e in entries if not e.kind.startswith("login.")] == [
        ("user.created", "user=ana roles=handler desks=sirene"),
        ("user.created", "user=sam roles=auditor desks=-"),
        (
            "user.roles",
            "user=ana roles=handler desks=interpol,sirene was=handler/sirene sessions-ended=0",
        ),
        ("user.disabled", "user=ana sessions-ended=0"),
        ("user.enabled", "user=ana"),
        ("user.password", "user=ana sessions-ended=0"),
        ("user.totp-enrolled", "user=sam"),
        ("apikey.created", "key=cms roles=handler desks=sirene"),
        ("apikey.revoked", "key=cms"),
    ]
    chain = " ".join(f"{e.kind} {e.reference} {e.reason}" for e in entries)
    for secret_text in (PASSWORD, "another long passphrase", secret, key[4:], "Ana Pop"):
        assert secret_text not in chain

    access_log = json.loads(
        ok(gateway(config, "users", "access-log", "--accounts", "--user", "ana", "--json"))
    )
    assert [e["kind"] for e in access_log][:2] == ["user.created", "user.roles"]


def test_refusals_are_one_line(config: Path, password_file: Path) -> None:
    add = (
        "users",
        "add",
        "ana",
        "--role",
        "handler",
        "--desk",
        "sirene",
        "--password-file",
        str(password_file),
    )
    ok(gateway(config, *add))
    assert refused(gateway(config, *add)) == "gateway users: a user called 'ana' exists already"
    assert "no desk 'nowhere' in the configuration" in refused(
        gateway(
            config,
            "users",
            "add",
            "bob",
            "--role",
            "handler",
            "--desk",
            "nowhere",
            "--password-file",
            str(password_file),
        )
    )
    assert "a handler needs at least one desk" in refused(
        gateway(
            config,
            "users",
            "add",
            "bob",
            "--role",
            "handler",
            "--password-file",
            str(password_file),
        )
    )
    short = password_file.parent / "short"
    short.write_text("short\n")
    line = refused(gateway(config, "users", "passwd", "ana", "--password-file", str(short)))
    assert line == "gateway users: a password has at least 12 characters"
    assert (
        refused(gateway(config, "users", "disable", "bob")) == "gateway users: no user called 'bob'"
    )
    assert "no API key called 'cms' in use" in refused(
        gateway(config, "users", "apikey", "revoke", "cms")
    )
    # no terminal and no file: no password is taken from anywhere else
    line = refused(gateway(config, "users", "passwd", "ana"), code=2)
    assert line == "gateway users: no terminal to ask for the password: use --password-file"
    # argv has no place for a password
    done = gateway(config, "users", "add", "bob", "--role", "operator", "--password", PASSWORD)
    assert done.returncode == 2 and "unrecognized arguments" in done.stderr
    line = refused(
        gateway(config, "users", "add", "bob", "--role", "operator", "--password-file", PASSWORD),
        code=2,
    )
    assert line == "gateway users: cannot read the --password-file: no such file or directory"
    # A --password-file is read up to a password's longest line: a huge one is refused unread.
    huge = password_file.parent / "huge"
    huge.write_bytes(b"x" * (1 << 20))
    line = refused(
        gateway(config, "users", "add", "bob", "--role", "operator", "--password-file", str(huge)),
        code=2,
    )
    assert line == (
        "gateway users: the --password-file's first line is longer than a password may be "
        "(1024 characters)"
    )
    listed = json.loads(ok(gateway(config, "users", "list", "--json")))
    assert [user["name"] for user in listed] == ["ana"]
    kinds = [e.kind for e in audit_of(config)]
    assert kinds == ["user.created"]  # refusals change nothing


def test_an_outdated_ledger_is_refused(tmp_path: Path, password_file: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(CONFIG.format(url=f"sqlite:///{tmp_path / 'ledger.db'}"))
    line = refused(gateway(path, "users", "list"), code=2)
    assert "has no tables yet" in line and "db upgrade" in line

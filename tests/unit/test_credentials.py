"""Passwords (argon2id), TOTP codes and the sealing of TOTP secrets, each on its own."""

from __future__ import annotations

import ast
import stat
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from accesskit import CHEAP

from gateway.access import totp
from gateway.access.passwords import PasswordPolicy, Passwords
from gateway.access.secretbox import SecretBox, SecretBoxError, load_key

PACKAGE = Path(__file__).resolve().parents[2] / "gateway"
AT = datetime(2026, 12, 1, 8, 0, 10, tzinfo=UTC)


def test_a_password_is_stored_as_an_argon2id_hash_and_verifies() -> None:
    passwords = Passwords(CHEAP)
    stored = passwords.hash("correct horse battery")
    assert stored.startswith("$argon2id$v=19$m=1024,t=1,p=1$")
    assert "correct horse" not in stored
    assert passwords.verify(stored, "correct horse battery")
    assert not passwords.verify(stored, "correct horse batterY")
    assert not passwords.verify(stored, "")
    assert not passwords.verify("not a hash", "correct horse battery")
    assert passwords.hash("correct horse battery") != stored  # salted


def test_an_unknown_user_is_answered_false_after_a_decoy_verification() -> None:
    passwords = Passwords(CHEAP)
    assert not passwords.verify(None, "not a password of anyone")  # the decoy's own text


def test_a_hash_at_another_cost_still_verifies_and_asks_to_be_rehashed() -> None:
    old = Passwords(CHEAP).hash("correct horse battery")
    stronger = Passwords(PasswordPolicy(min_length=12, time_cost=2, memory_kib=2048, parallelism=1))
    assert stronger.verify(old, "correct horse battery")
    assert stronger.needs_rehash(old)
    assert not stronger.needs_rehash(stronger.hash("correct horse battery"))


@pytest.mark.parametrize(
    ("password", "reason"),
    [("short", "at least 12"), (" " * 12, "not blank"), ("x" * 1025, "at most 1024")],
)
def test_weak_passwords_are_refused_without_echoing_them(password: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason) as refused:
        Passwords(CHEAP).hash(password)
    assert password.strip() == "" or password not in str(refused.value)


def test_totp_codes_match_their_step_with_drift_and_never_twice() -> None:
    secret = totp.new_secret()
    assert len(secret) == 32
    now_code = totp.code_at(secret, AT)
    step = totp.matching_step(secret, now_code, AT, None)
    assert step == int(AT.timestamp()) // 30
    earlier = totp.code_at(secret, AT - timedelta(seconds=30))
    assert totp.matching_step(secret, earlier, AT, None) == step - 1
    assert (
        totp.matching_step(secret, totp.code_at(secret, AT - timedelta(seconds=60)), AT, None)
        is None
    )
    # the same code again, or an older one, after it was used
    assert totp.matching_step(secret, now_code, AT, step) is None
    assert totp.matching_step(secret, earlier, AT, step) is None
    assert totp.matching_step(secret, "12345", AT, None) is None
    assert totp.matching_step(secret, "abcdef", AT, None) is None
    uri = totp.provisioning_uri(secret, "ana", "IPC Gateway RO-SIRENE")
    assert uri.startswith("otpauth://totp/") and f"secret={secret}" in uri


def test_a_sealed_secret_opens_only_with_its_key_and_its_user(tmp_path: Path) -> None:
    key_file = tmp_path / "var" / "totp.key"
    key = load_key(key_file, create=True)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert load_key(key_file, create=True) == key  # never replaced
    box = SecretBox(key)
    sealed = box.seal("JBSWY3DPEHPK3PXP", context="totp:ana")
    assert "JBSWY3DP" not in sealed
    assert box.open(sealed, context="totp:ana") == "JBSWY3DPEHPK3PXP"
    with pytest.raises(SecretBoxError):
        box.open(sealed, context="totp:bob")  # moved to another user's row
    with pytest.raises(SecretBoxError):
        SecretBox(bytes(32)).open(sealed, context="totp:ana")
    with pytest.raises(SecretBoxError):
        box.open(sealed[:-4] + "AAAA", context="totp:ana")
    with pytest.raises(FileNotFoundError):
        load_key(tmp_path / "missing.key", create=False)
    (tmp_path / "bad.key").write_text("abc\n")
    with pytest.raises(ValueError, match="not a key"):
        load_key(tmp_path / "bad.key", create=False)


@pytest.mark.parametrize(
    ("library", "module"),
    [("argon2", "passwords.py"), ("pyotp", "totp.py"), ("cryptography", "secretbox.py")],
)
def test_each_library_is_imported_by_one_module(library: str, module: str) -> None:
    importers = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            if any(name == library or name.startswith(library + ".") for name in names):
                importers.add(path.relative_to(PACKAGE).as_posix())
    assert importers == {f"access/{module}"}


def test_the_import_contract_names_every_other_module_of_access() -> None:
    """The contract lists gateway.access's modules one by one: a new one must be added."""
    project = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())
    contract = next(
        c
        for c in project["tool"]["importlinter"]["contracts"]
        if c["name"].startswith("Only gateway.access.passwords")
    )
    wrappers = {"passwords", "totp", "secretbox"}
    modules = {
        f"gateway.access.{path.stem}"
        for path in (PACKAGE / "access").glob("*.py")
        if path.stem not in wrappers | {"__init__"}
    }
    assert modules <= set(contract["source_modules"])

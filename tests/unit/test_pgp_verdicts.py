"""The acceptance rule's verdicts in detail, with real gpg: which (sub)key and instant a verified
message names, which refusal each of gpg's status outcomes becomes, and with which reason."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import gpgkit
import pytest

from gateway.core.errors import (
    DamagedCiphertext,
    DecryptedTooBig,
    NotForUs,
    SignerKeyExpired,
    SignerKeyRevoked,
    UnexpectedSigner,
)
from gateway.crypto.openpgp import GnuPG, KeyProtection, _integrity_protected
from gateway.crypto.pgpmime import split_signed
from gateway.crypto.pgpstatus import StatusLog

CONTENT = gpgkit.entity(b'<FormG xmlns="urn:ipc-gateway:sirene:1"/>')
SIGNED_IN_2020 = datetime(2020, 6, 1, 12, 0, 0, tzinfo=UTC)


@dataclass
class Keys:
    ours: GnuPG
    ro: str
    home: Path  # the partner's
    no: str  # signs with its primary key
    sub: str  # a primary that signs with a subkey
    sub_signing: str  # that subkey
    old: str  # made in 2020, never expires
    revoked_sub: str  # a primary whose signing subkey is revoked
    other_home: Path
    xx: str


def _signing_subkey(home: Path, primary: str) -> str:
    gpgkit.gpg(home, "--quick-add-key", primary, "ed25519", "sign", "2y")
    listing = gpgkit.gpg(home, "--with-colons", "--list-keys", primary).stdout.decode()
    lines = listing.splitlines()
    sub = max(i for i, line in enumerate(lines) if line.startswith("sub:") and ":s:" in line)
    return lines[sub + 1].split(":")[9]


@pytest.fixture(scope="module")
def keys() -> Iterator[Keys]:
    ours = GnuPG(gpgkit.new_home())
    ro = ours.generate("RO-SIRENE", "sirene@ro.example")
    home, other_home = gpgkit.new_home(), gpgkit.new_home()
    no = gpgkit.make_key(home, "NO-SIRENE <sirene@no.example>")
    sub = gpgkit.make_key(home, "NO subkey <sub@no.example>")
    sub_signing = _signing_subkey(home, sub)
    old = gpgkit.make_key(home, "NO 2020 <old@no.example>", faketime="20200101T000000!", expire="0")
    revoked_sub = gpgkit.make_key(home, "NO lost subkey <lostsub@no.example>")
    _signing_subkey(home, revoked_sub)
    xx = gpgkit.make_key(other_home, "XX <x@x.example>")
    gpgkit.import_key(home, ours.export_public().encode())
    gpgkit.import_key(home, gpgkit.export(other_home, xx))
    for fingerprint in (no, sub, old, revoked_sub):
        gpgkit.import_key(ours.home, gpgkit.export(home, fingerprint))
    yield Keys(ours, ro, home, no, sub, sub_signing, old, revoked_sub, other_home, xx)
    ours.close()
    gpgkit.kill_agent(other_home)


def _encrypted(keys: Keys, signer: str | None, content: bytes = CONTENT, *to: str) -> bytes:
    return gpgkit.sign_encrypt(
        keys.home, [signer] if signer else [], list(to or [keys.ro]), content
    )


def _signed_then_encrypted(keys: Keys, signature: bytes) -> bytes:
    return _encrypted(keys, None, gpgkit.multipart_signed(CONTENT, signature))


# ------------------------------------------------------------------------ what is accepted


def test_a_message_names_the_signing_subkey_and_the_pinned_primary(keys: Keys) -> None:
    """gpg signs with the signing subkey; the pin is on the primary (VALIDSIG's last field),
    and the pinned fingerprint may be given in lower case."""
    verified = keys.ours.decrypt_verify(_encrypted(keys, keys.sub), keys.sub.lower())
    assert verified.signer == keys.sub
    assert verified.signing_key == keys.sub_signing != keys.sub
    assert verified.plaintext == CONTENT


def test_a_message_signed_by_the_primary_names_it_twice(keys: Keys) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    verified = keys.ours.decrypt_verify(_encrypted(keys, keys.no), keys.no)
    assert (verified.signer, verified.signing_key) == (keys.no, keys.no)
    assert before - timedelta(seconds=1) <= verified.signed_at <= datetime.now(UTC)


def test_a_detached_signature_names_its_own_instant_and_subkey(keys: Keys) -> None:
    signature = gpgkit.gpg(
        keys.home,
        "--local-user",
        keys.old,
        "--detach-sign",
        "--armor",
        data=CONTENT,
        faketime="20200601T120000!",
    ).stdout
    verified = keys.ours.decrypt_verify(
        _signed_then_encrypted(keys, signature), keys.old.lower(), detached=split_signed
    )
    assert verified.signed_at == SIGNED_IN_2020
    assert (verified.signer, verified.signing_key) == (keys.old, keys.old)
    assert verified.plaintext == CONTENT


def test_a_detached_signature_by_a_subkey(keys: Keys) -> None:
    signature = gpgkit.sign_detached(keys.home, keys.sub, CONTENT)
    verified = keys.ours.decrypt_verify(
        _signed_then_encrypted(keys, signature), keys.sub, detached=split_signed
    )
    assert (verified.signer, verified.signing_key) == (keys.sub, keys.sub_signing)


def test_a_detached_signature_leaves_no_file_in_the_home(keys: Keys) -> None:
    signature = gpgkit.sign_detached(keys.home, keys.no, CONTENT)
    keys.ours.decrypt_verify(
        _signed_then_encrypted(keys, signature), keys.no, detached=split_signed
    )
    assert not list(keys.ours.home.glob("detached-*"))


# ------------------------------------------------------------------------ what is refused


def test_an_expired_signature_by_a_valid_key(keys: Keys) -> None:
    """EXPSIG: the key is good, the signature carried an expiry (one day) that has passed."""
    signature = gpgkit.gpg(
        keys.home,
        "--local-user",
        keys.old,
        "--default-sig-expire",
        "1d",
        "--detach-sign",
        "--armor",
        data=CONTENT,
        faketime="20200601T120000!",
    ).stdout
    raw = _signed_then_encrypted(keys, signature)
    with pytest.raises(SignerKeyExpired, match=r"^the signature has expired$"):
        keys.ours.decrypt_verify(raw, keys.old, detached=split_signed)


def test_a_signature_by_a_revoked_signing_subkey(keys: Keys) -> None:
    """gpg reports REVKEYSIG, a VALIDSIG naming the pinned primary, and exit code 0."""
    signed = _encrypted(keys, keys.revoked_sub)
    gpgkit.gpg(
        keys.home,
        "--command-fd",
        "0",
        "--edit-key",
        keys.revoked_sub,
        data=b"key 2\nrevkey\ny\n0\n\ny\nsave\n",
    )
    gpgkit.import_key(keys.ours.home, gpgkit.export(keys.home, keys.revoked_sub))
    with pytest.raises(SignerKeyRevoked, match=r"^the signing key is revoked$"):
        keys.ours.decrypt_verify(signed, keys.revoked_sub)


def test_another_key_of_the_same_partner_is_not_the_pinned_one(keys: Keys) -> None:
    with pytest.raises(UnexpectedSigner) as caught:
        keys.ours.decrypt_verify(_encrypted(keys, keys.sub), keys.no)
    assert str(caught.value) == (
        f"signed by key {keys.sub}, not by the key pinned for this partner"
    )


def test_a_damaged_message_to_us_and_another_is_damaged_not_for_somebody_else(
    keys: Keys,
) -> None:
    """gpg reports NO_SECKEY for the other recipient beside our DECRYPTION_KEY: the refusal is
    the damage, not a message meant for somebody else."""
    ciphertext = _encrypted(keys, keys.no, CONTENT, keys.xx, keys.ro)
    middle = len(gpgkit.dearmor(ciphertext)) // 2
    with pytest.raises(DamagedCiphertext, match=r"^decryption failed: the ciphertext is damaged$"):
        keys.ours.decrypt_verify(gpgkit.flip_byte(ciphertext, middle), keys.no)


def test_a_message_to_another_only_is_not_for_us(keys: Keys) -> None:
    with pytest.raises(NotForUs):
        keys.ours.decrypt_verify(_encrypted(keys, keys.no, CONTENT, keys.xx), keys.no)


def test_what_is_not_openpgp_is_named_so(keys: Keys) -> None:
    with pytest.raises(DamagedCiphertext) as caught:
        keys.ours.decrypt_verify(b"no OpenPGP here", keys.no)
    assert str(caught.value) == "the ciphertext is damaged or is not OpenPGP encrypted data"


def test_a_session_key_with_no_data_after_it(keys: Keys) -> None:
    """Only the first packet (the session key for us): gpg exits 0, having decrypted nothing."""
    binary = gpgkit.dearmor(_encrypted(keys, keys.no))
    first = binary[: binary[1] + 2]  # an old-format packet with a one-octet length
    with pytest.raises(DamagedCiphertext) as caught:
        keys.ours.decrypt_verify(gpgkit.armor(first), keys.no)
    assert str(caught.value) == "decryption failed: the ciphertext is damaged"


def test_a_message_encrypted_with_a_passphrase_only(keys: Keys) -> None:
    symmetric = gpgkit.gpg(
        keys.home, "--passphrase", "shared secret", "--symmetric", "--armor", data=CONTENT
    ).stdout
    with pytest.raises(DamagedCiphertext) as caught:
        keys.ours.decrypt_verify(symmetric, keys.no)
    assert str(caught.value) == "decryption failed: the ciphertext is damaged"


# ------------------------------------------------------------------------ integrity protection


@pytest.mark.parametrize(
    ("status", "protected"),
    [
        ("DECRYPTION_INFO 2 9 0", True),  # gpg 2.2: SHA-1 MDC, AES-256
        ("DECRYPTION_INFO 2 9", True),  # older gpg: no AEAD field
        ("DECRYPTION_INFO 0 9 2", True),  # gpg 2.3+: OCB AEAD, no MDC
        ("DECRYPTION_INFO 0 9 0", False),  # neither: RFC 2440 symmetrically encrypted data
        ("DECRYPTION_INFO 0 9", False),
        ("DECRYPTION_INFO", False),
        ("BEGIN_DECRYPTION", False),  # no DECRYPTION_INFO at all
    ],
)
def test_integrity_protection_is_read_from_decryption_info(status: str, protected: bool) -> None:
    """The fields of DECRYPTION_INFO as GnuPG's doc/DETAILS gives them; gpg 2.2 here makes no
    AEAD message, so the AEAD forms are gpg's own lines written out."""
    assert _integrity_protected(StatusLog.parse(f"[GNUPG:] {status}\n")) is protected


def test_status_lines_are_only_those_with_gpgs_prefix() -> None:
    log = StatusLog.parse(
        "gpg: GOODSIG printed as a diagnostic\n"
        " [GNUPG:] GOODSIG indented\n"
        "[GNUPG:] NEWSIG\n"
        "[GNUPG:] VALIDSIG A B\n"
        "[GNUPG:] NEWSIG x\n"
    )
    assert log.lines == (("NEWSIG", ()), ("VALIDSIG", ("A", "B")), ("NEWSIG", ("x",)))
    assert (log.has("GOODSIG"), log.count("NEWSIG"), log.fields("VALIDSIG")) == (
        False,
        2,
        [["A", "B"]],
    )


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("[GNUPG:] INV_SGNR 5 ABCD", "key expired"),
        ("[GNUPG:] INV_SGNR 4 ABCD", "key revoked"),
        ("[GNUPG:] INV_SGNR 99 ABCD", "reason 99"),
        ("[GNUPG:] INV_SGNR", "no reason given"),
        ("", "no reason given"),
    ],
)
def test_reason_codes(line: str, reason: str) -> None:
    assert StatusLog.parse(line).reason("INV_SGNR") == reason


# ------------------------------------------------------------------------ the run's own bounds


def test_the_plaintext_cap_is_exact(keys: Keys) -> None:
    """A plaintext of exactly the cap is accepted, one byte over it is refused, whatever the
    slack gpg's own --max-output is given."""
    big = CONTENT + b"x" * (200 << 10)
    ciphertext = _encrypted(keys, keys.no, big)
    assert keys.ours.decrypt_verify(ciphertext, keys.no, max_plaintext=len(big)).plaintext == big
    with pytest.raises(DecryptedTooBig, match=f"exceeds {len(big) - 1} bytes"):
        keys.ours.decrypt_verify(ciphertext, keys.no, max_plaintext=len(big) - 1)


def test_a_passphrase_of_two_lines_is_refused_before_gpg_runs(keys: Keys) -> None:
    """The passphrase goes to gpg's stdin ahead of the data: a line break would end it early."""
    twice = GnuPG(keys.ours.home, fingerprint=keys.ro, protection=KeyProtection("one\ntwo"))
    with pytest.raises(ValueError, match=r"^Invalid passphrase$"):
        twice.decrypt_verify(_encrypted(keys, keys.no), keys.no)

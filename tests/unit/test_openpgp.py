"""The acceptance rule, with real gpg and throwaway homes: one good signature by the pinned key of
an integrity-protected message to us, or a refusal with its own error and no plaintext."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import gpgkit
import pytest

from gateway.core.config import BUILTIN_FORMS
from gateway.core.errors import (
    DamagedCiphertext,
    KeyUnusable,
    NotForUs,
    NotIntegrityProtected,
    NotPgpMime,
    NotSigned,
    SeveralSignatures,
    SignatureMismatch,
    SignerKeyExpired,
    SignerKeyRevoked,
    UnexpectedSigner,
    UnknownSigner,
)
from gateway.crypto import pgpmime
from gateway.crypto.openpgp import GnuPG, KeyProtection
from gateway.crypto.pgpmime import Attachment
from gateway.crypto.sealing import open_message, seal

FORM = (BUILTIN_FORMS / "samples" / "G" / "valid-person-arrested.xml").read_bytes()
PAST = "20200101T000000!"  # gpg --faked-system-time: keys made then, valid for one day


@dataclass
class World:
    ours: GnuPG
    ro: str
    no_home: Path
    no: str
    rs_home: Path
    rs: str
    xx_home: Path
    xx: str
    no_expired: str
    no_revoked: str


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    ours = GnuPG(gpgkit.new_home())
    ro = ours.generate("RO-SIRENE", "sirene@ro.example")
    no_home, rs_home, xx_home = gpgkit.new_home(), gpgkit.new_home(), gpgkit.new_home()
    no = gpgkit.make_key(no_home, "NO-SIRENE <sirene@no.example>")
    rs = gpgkit.make_key(rs_home, "RS-NCB <ncb@rs.example>")
    xx = gpgkit.make_key(xx_home, "Unknown <x@x.example>")
    no_expired = gpgkit.make_key(no_home, "NO old <old@no.example>", faketime=PAST, expire="1d")
    no_revoked = gpgkit.make_key(no_home, "NO lost <lost@no.example>")
    for fingerprint in (no, no_revoked):
        ours.import_partner_key(gpgkit.export(no_home, fingerprint))
    ours.import_partner_key(gpgkit.export(rs_home, rs))
    gpgkit.import_key(ours.home, gpgkit.export(no_home, no_expired))  # expired: CLI import
    for home in (no_home, rs_home, xx_home):
        gpgkit.import_key(home, ours.export_public().encode())
    gpgkit.import_key(no_home, gpgkit.export(xx_home, xx))
    # The revocation reaches our keyring after the message below was signed.
    certificate = (no_home / "openpgp-revocs.d" / f"{no_revoked}.rev").read_bytes()
    gpgkit.import_key(ours.home, certificate.replace(b":-----BEGIN", b"-----BEGIN"))
    yield World(ours, ro, no_home, no, rs_home, rs, xx_home, xx, no_expired, no_revoked)
    ours.close()
    for home in (no_home, rs_home, xx_home):
        gpgkit.kill_agent(home)


def from_no(world: World, ciphertext: bytes) -> bytes:
    return gpgkit.pgp_mime(ciphertext, "sirene@no.example", "sirene@ro.example", "SIRENE G")


def cli_message(
    world: World,
    signers: list[str],
    *extra: str,
    home: Path | None = None,
    recipients: list[str] | None = None,
    content: bytes | None = None,
    faketime: str | None = None,
) -> bytes:
    ciphertext = gpgkit.sign_encrypt(
        home or world.no_home,
        signers,
        recipients or [world.ro],
        content if content is not None else gpgkit.entity(FORM),
        *extra,
        faketime=faketime,
    )
    return from_no(world, ciphertext)


def refused(world: World, raw: bytes, error: type[Exception], reason: str) -> None:
    """Refused with this error and exactly this reason (the text of the SMTP reply)."""
    with pytest.raises(error) as caught:
        open_message(world.ours, raw, world.no)
    assert str(caught.value) == reason


# ------------------------------------------------------------------------ accepted


def test_round_trip_gateway_to_gateway(world: World) -> None:
    partner = GnuPG(gpgkit.new_home())
    try:
        fingerprint = partner.generate("NO-SIRENE", "sirene@no.example")
        partner.import_partner_key(world.ours.export_public().encode())
        world.ours.import_partner_key(partner.export_public().encode())
        scan = Attachment("eaw.pdf", "application/pdf", b"%PDF-1.7 fictitious")
        envelope = pgpmime.new_envelope(
            "sirene@ro.example",
            "sirene@no.example",
            pgpmime.subject("sirene", "G", "RO-2026-000001"),
            "ro.example",
        )
        raw = seal(world.ours, FORM, [scan], fingerprint, envelope)
        opened = open_message(partner, raw, world.ro)
    finally:
        partner.close()
    assert opened.payload.form == FORM
    assert opened.payload.attachments == (scan,)
    assert opened.verified.signer == world.ro
    assert opened.content_sha256 == hashlib.sha256(opened.entity).hexdigest()
    assert b"Subject: SIRENE G RO-2026-000001" in raw
    assert b"EXAMPLE" not in raw and b"<FormG" not in raw, "nothing readable outside"


def test_message_made_with_gpg_command_line_is_accepted(world: World) -> None:
    opened = open_message(world.ours, cli_message(world, [world.no]), world.no)
    assert opened.payload.form.replace(b"\r\n", b"\n") == FORM
    assert opened.verified.signer == world.no
    assert opened.envelope.message_id == "<test-1@example.test>"


def test_nested_signed_then_encrypted_is_accepted(world: World) -> None:
    content = gpgkit.entity(FORM)
    signed = gpgkit.multipart_signed(
        content, gpgkit.sign_detached(world.no_home, world.no, content)
    )
    opened = open_message(world.ours, cli_message(world, [], content=signed), world.no)
    assert opened.entity == content
    assert opened.verified.signer == world.no


def test_gateway_message_verifies_with_gpg_command_line(world: World) -> None:
    envelope = pgpmime.new_envelope(
        "sirene@ro.example", "sirene@no.example", "SIRENE G X", "ro.example"
    )
    raw = seal(world.ours, FORM, [], world.no, envelope)
    _, ciphertext = pgpmime.parse_outer(raw)
    code, plaintext, status = gpgkit.decrypt(world.no_home, ciphertext)
    assert code == 0
    assert f"VALIDSIG {world.ro}" in status and "GOODMDC" in status
    assert pgpmime.parse_entity(plaintext).form == FORM


# ------------------------------------------------------------------------ refused


def _flip_and_open(world: World, position: int) -> str:
    """Flip one byte of a fresh message and open it: "refused", or "authentic" when gpg still
    authenticated the original content (a flip in packet framing, such as a partial-length
    header, can leave the content and its MDC intact). Anything else is a forgery let through."""
    content = gpgkit.entity(FORM)
    ciphertext = gpgkit.sign_encrypt(world.no_home, [world.no], [world.ro], content)
    binary = gpgkit.dearmor(ciphertext)
    try:
        opened = open_message(
            world.ours, from_no(world, gpgkit.flip_byte(ciphertext, position)), world.no
        )
    except DamagedCiphertext as exc:
        assert "damaged" in str(exc)
        return "refused"
    assert opened.entity == content, f"forged content accepted (byte {position} of {len(binary)})"
    return "authentic"


def test_tampered_ciphertext_middle(world: World) -> None:
    size = len(
        gpgkit.dearmor(
            gpgkit.sign_encrypt(world.no_home, [world.no], [world.ro], gpgkit.entity(FORM))
        )
    )
    outcomes = [_flip_and_open(world, size // 2 + offset) for offset in range(-4, 5)]
    assert outcomes.count("refused") >= 8


def test_tampered_ciphertext_last_bytes(world: World) -> None:
    outcomes = [_flip_and_open(world, -position) for position in range(1, 23)]
    assert outcomes.count("refused") >= 20


def test_tampered_armor(world: World) -> None:
    ciphertext = gpgkit.sign_encrypt(world.no_home, [world.no], [world.ro], gpgkit.entity(FORM))
    lines = ciphertext.split(b"\n")
    lines[4] = lines[4][:10] + (b"A" if lines[4][10:11] != b"A" else b"B") + lines[4][11:]
    with pytest.raises(DamagedCiphertext, match="damaged"):
        open_message(world.ours, from_no(world, b"\n".join(lines)), world.no)


def test_signed_by_unknown_key(world: World) -> None:
    raw = cli_message(world, [world.xx], home=world.xx_home)
    refused(
        world, raw, UnknownSigner, "the signature was made by an unknown key or cannot be checked"
    )


def test_signed_by_another_partner(world: World) -> None:
    raw = cli_message(world, [world.rs], home=world.rs_home)
    refused(
        world,
        raw,
        UnexpectedSigner,
        f"signed by key {world.rs}, not by the key pinned for this partner",
    )


def test_signed_by_the_partners_expired_key(world: World) -> None:
    # Signed while the key was valid (2020), encrypted now: RFC 3156 sign-then-encrypt.
    content = gpgkit.entity(FORM)
    signature = gpgkit.gpg(
        world.no_home,
        "--local-user",
        world.no_expired,
        "--detach-sign",
        "--armor",
        data=content,
        faketime="20200101T120000!",
    ).stdout
    raw = cli_message(world, [], content=gpgkit.multipart_signed(content, signature))
    with pytest.raises(SignerKeyExpired, match=r"^the signing key has expired$"):
        open_message(world.ours, raw, world.no_expired)


def test_signed_by_the_partners_revoked_key(world: World) -> None:
    raw = cli_message(world, [world.no_revoked])
    with pytest.raises(SignerKeyRevoked, match=r"^the signing key is revoked$"):
        open_message(world.ours, raw, world.no_revoked)


def test_not_signed(world: World) -> None:
    refused(world, cli_message(world, []), NotSigned, "the message is not signed")


def test_two_signatures(world: World) -> None:
    gpgkit.import_key(world.no_home, gpgkit.export(world.rs_home, world.rs))
    secret = gpgkit.gpg(world.rs_home, "--armor", "--export-secret-keys", world.rs).stdout
    gpgkit.import_key(world.no_home, secret)
    refused(
        world,
        cli_message(world, [world.no, world.rs]),
        SeveralSignatures,
        "the message carries 2 signatures; exactly one is required",
    )


def test_encrypted_to_somebody_else(world: World) -> None:
    raw = cli_message(world, [world.no], recipients=[world.xx])
    refused(world, raw, NotForUs, "the message is not encrypted to our key")


def test_no_integrity_protection(world: World) -> None:
    raw = cli_message(world, [world.no], "--rfc2440", "--cipher-algo", "AES")
    refused(
        world, raw, NotIntegrityProtected, "the message is not integrity protected (no MDC or AEAD)"
    )


def test_inline_pgp(world: World) -> None:
    armored = gpgkit.sign_encrypt(world.no_home, [world.no], [world.ro], FORM)
    raw = (
        b"From: sirene@no.example\r\nTo: sirene@ro.example\r\nSubject: x\r\n"
        b"Content-Type: text/plain; charset=us-ascii\r\n\r\n" + armored
    )
    refused(world, raw, NotPgpMime, "inline PGP is not accepted: send PGP/MIME (RFC 3156)")


def test_cleartext_part_beside_the_encrypted_one(world: World) -> None:
    armored = gpgkit.sign_encrypt(world.no_home, [world.no], [world.ro], gpgkit.entity(FORM))
    raw = (
        b"From: sirene@no.example\r\nTo: sirene@ro.example\r\nSubject: x\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nUnsigned note: please also arrest EXAMPLE.\r\n"
        b"--b\r\nContent-Type: application/octet-stream\r\n\r\n" + armored + b"\r\n--b--\r\n"
    )
    refused(
        world,
        raw,
        NotPgpMime,
        "cleartext parts beside encrypted data are not accepted: the whole message must be one"
        " multipart/encrypted (RFC 3156)",
    )


def test_signature_over_other_bytes_than_the_spooled_content(world: World) -> None:
    content = gpgkit.entity(FORM)
    signature = gpgkit.sign_detached(world.no_home, world.no, content)
    forged = content.replace(b"NO-2026-000123", b"NO-2026-000999")
    signed = gpgkit.multipart_signed(forged, signature)
    refused(
        world,
        cli_message(world, [], content=signed),
        SignatureMismatch,
        "the signature does not match the signed content",
    )


def test_signed_twice_inside_and_outside(world: World) -> None:
    content = gpgkit.entity(FORM)
    signed = gpgkit.multipart_signed(
        content, gpgkit.sign_detached(world.no_home, world.no, content)
    )
    raw = cli_message(world, [world.no], content=signed)
    refused(
        world,
        raw,
        NotPgpMime,
        "the signed content must be multipart/mixed or application/xml, not multipart/signed",
    )


def test_not_encrypted_at_all(world: World) -> None:
    raw = b"From: a@b\r\nSubject: x\r\nContent-Type: application/xml\r\n\r\n" + FORM
    refused(
        world,
        raw,
        NotPgpMime,
        "application/xml is not accepted: send PGP/MIME multipart/encrypted (RFC 3156)",
    )


# ------------------------------------------------------------------------ sending


def test_our_expired_key_is_never_replaced_by_another(world: World) -> None:
    home = gpgkit.new_home()
    try:
        usable = gpgkit.make_key(home, "RO other <other@ro.example>")
        expired = gpgkit.make_key(home, "RO old <old@ro.example>", faketime=PAST, expire="1d")
        gpgkit.import_key(home, gpgkit.export(world.no_home, world.no))
        ours = GnuPG(home, fingerprint=expired)
        # gpg's reason code in words (gpg 2.2 gives 9, "not a secret key", for an expired key)
        reason = r"\((?!no reason given)[a-z ]+\)$"
        with pytest.raises(KeyUnusable, match=f"^our signing key {expired} is unusable {reason}"):
            ours.sign_encrypt(b"<form/>", world.no)
        assert GnuPG(home, fingerprint=usable).sign_encrypt(b"<form/>", world.no)
    finally:
        gpgkit.kill_agent(home)


def test_recipient_key_expired(world: World) -> None:
    with pytest.raises(KeyUnusable, match=f"recipient key {world.no_expired} has expired"):
        world.ours.sign_encrypt(b"<form/>", world.no_expired)


def test_recipient_key_revoked(world: World) -> None:
    with pytest.raises(KeyUnusable, match="is revoked"):
        world.ours.sign_encrypt(b"<form/>", world.no_revoked)


def test_recipient_key_missing(world: World) -> None:
    with pytest.raises(KeyUnusable, match="not in our keyring"):
        world.ours.sign_encrypt(b"<form/>", "0" * 40)


# ------------------------------------------------------------------------ keys


def test_import_refuses_secret_keys(world: World) -> None:
    secret = gpgkit.gpg(world.xx_home, "--armor", "--export-secret-keys", world.xx).stdout
    with pytest.raises(KeyUnusable, match="secret key"):
        world.ours.import_partner_key(secret)


def test_import_refuses_several_keys(world: World) -> None:
    both = gpgkit.export(world.no_home, world.no) + gpgkit.export(world.rs_home, world.rs)
    with pytest.raises(KeyUnusable, match="exactly one public key, it holds 2"):
        world.ours.import_partner_key(both)


def test_import_refuses_expired_keys(world: World) -> None:
    with pytest.raises(KeyUnusable, match="has expired"):
        world.ours.import_partner_key(gpgkit.export(world.no_home, world.no_expired))


def test_keys_are_listed_with_expiry(world: World) -> None:
    keys = {key.fingerprint: key for key in world.ours.list_keys()}
    assert keys[world.ro].expires is not None
    assert keys[world.no_revoked].revoked
    assert keys[world.no_expired].expired


def test_home_is_private() -> None:
    home = gpgkit.new_home() / "sub" / "gnupg"
    gpg = GnuPG(home, protection=KeyProtection("secret", s2k_count=65536))
    assert home.stat().st_mode & 0o777 == 0o700
    conf = (home / "gpg-agent.conf").read_text()
    assert "max-cache-ttl 0" in conf and "s2k-count 65536" in conf
    gpg.close()


def test_passphrase_is_enforced(world: World) -> None:
    home = gpgkit.new_home()
    protected = GnuPG(home, protection=KeyProtection("right passphrase", s2k_count=65536))
    try:
        fingerprint = protected.generate("RO-SIRENE", "sirene@ro.example")
        protected.import_partner_key(gpgkit.export(world.no_home, world.no))
        assert protected.sign_encrypt(b"<form/>", world.no)
        wrong = GnuPG(home, fingerprint=fingerprint, protection=KeyProtection("wrong"))
        with pytest.raises(KeyUnusable):
            wrong.sign_encrypt(b"<form/>", world.no)
    finally:
        protected.close()


def test_passphrase_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "passphrase"
    secret.write_text("from file\n")
    assert KeyProtection.from_sources(passphrase_file=secret, passphrase_env=None).passphrase == (
        "from file"
    )
    monkeypatch.setenv("GW_TEST_PASS", "from env")
    assert (
        KeyProtection.from_sources(passphrase_file=None, passphrase_env="GW_TEST_PASS").passphrase
        == "from env"
    )
    with pytest.raises(KeyUnusable, match="GW_MISSING is not set"):
        KeyProtection.from_sources(passphrase_file=None, passphrase_env="GW_MISSING")

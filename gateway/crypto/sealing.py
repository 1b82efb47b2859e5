"""Seal a form into a PGP/MIME message and open one, every check failing closed."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from gateway.core.errors import DecryptedTooBig
from gateway.core.limits import IntakeLimits
from gateway.crypto import pgpmime
from gateway.crypto.mimescan import check_structure
from gateway.crypto.openpgp import GnuPG, Verified
from gateway.crypto.pgpmime import Attachment, Envelope, Payload


@dataclass(frozen=True)
class Opened:
    """A message that decrypted and verified: the signed entity (what is spooled) and its parts."""

    envelope: Envelope
    entity: bytes
    payload: Payload
    verified: Verified

    @property
    def content_sha256(self) -> str:
        """SHA-256 of the signed content received: what the receipt (ACK) quotes."""
        return hashlib.sha256(self.entity).hexdigest()


def seal(
    gpg: GnuPG, form: bytes, attachments: Sequence[Attachment], recipient: str, envelope: Envelope
) -> bytes:
    """Sign with our key, encrypt to the recipient's pinned key, wrap as multipart/encrypted."""
    entity = pgpmime.build_entity(form, attachments)
    return pgpmime.wrap_encrypted(gpg.sign_encrypt(entity, recipient), envelope)


def open_message(gpg: GnuPG, raw: bytes, pinned: str, limits: IntakeLimits | None = None) -> Opened:
    """Take apart, decrypt and verify a message from the partner whose key is ``pinned``.

    Nothing is parsed before its MIME structure is checked against ``limits``, the message's
    and then the plaintext's; gpg is stopped as soon as the plaintext passes its cap."""
    limits = limits or IntakeLimits()
    check_structure(raw, limits.mime)
    envelope, ciphertext = pgpmime.parse_outer(raw)
    cap, why = limits.plaintext_cap(len(ciphertext))

    def split_signed(plaintext: bytes) -> tuple[bytes, bytes] | None:
        check_structure(plaintext, limits.mime)
        return pgpmime.split_signed(plaintext)

    try:
        verified = gpg.decrypt_verify(ciphertext, pinned, detached=split_signed, max_plaintext=cap)
    except DecryptedTooBig:
        raise DecryptedTooBig(f"the decrypted content {why}") from None
    check_structure(verified.plaintext, limits.mime)
    return Opened(
        envelope=envelope,
        entity=verified.plaintext,
        payload=pgpmime.parse_entity(verified.plaintext),
        verified=verified,
    )

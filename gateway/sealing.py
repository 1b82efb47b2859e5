"""Seal a form into a PGP/MIME message and open one, every check failing closed."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from gateway import pgpmime
from gateway.openpgp import GnuPG, Verified
from gateway.pgpmime import Attachment, Envelope, Payload


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


def open_message(gpg: GnuPG, raw: bytes, pinned: str) -> Opened:
    """Take apart, decrypt and verify a message from the partner whose key is ``pinned``."""
    envelope, ciphertext = pgpmime.parse_outer(raw)
    verified = gpg.decrypt_verify(ciphertext, pinned, detached=pgpmime.split_signed)
    return Opened(
        envelope=envelope,
        entity=verified.plaintext,
        payload=pgpmime.parse_entity(verified.plaintext),
        verified=verified,
    )

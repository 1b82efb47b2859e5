"""Secrets kept encrypted in the ledger (TOTP seeds): AES-256-GCM under a key in a file of its
own. The only module that imports cryptography.

A copy of the ledger (a backup, a dump) then holds no usable seed without the key file; the
user's name is bound in as associated data, so a sealed seed moved to another user's row does
not open.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BYTES = 32
NONCE_BYTES = 12
VERSION = "v1"


class SecretBoxError(ValueError):
    """A sealed value that does not open: another key, another context, or damaged."""


class SecretBox:
    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"the key is {KEY_BYTES} bytes")
        self._aead = AESGCM(key)

    def seal(self, plaintext: str, context: str) -> str:
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), context.encode())
        return f"{VERSION}:{base64.b64encode(nonce + sealed).decode('ascii')}"

    def open(self, sealed: str, context: str) -> str:
        version, _, text = sealed.partition(":")
        if version != VERSION:
            raise SecretBoxError("not a sealed value of this gateway")
        try:
            raw = base64.b64decode(text, validate=True)
            return self._aead.decrypt(
                raw[:NONCE_BYTES], raw[NONCE_BYTES:], context.encode()
            ).decode()
        except (InvalidTag, binascii.Error, ValueError) as error:
            raise SecretBoxError("the sealed value does not open with this key") from error


def load_key(path: Path, *, create: bool) -> bytes:
    """The key in ``path`` (64 hex digits); with ``create``, a new one is written first (0600,
    never over an existing file) when there is none. FileNotFoundError otherwise."""
    if create and not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(descriptor, "w") as handle:
                handle.write(secrets.token_hex(KEY_BYTES) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
    text = path.read_text().strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != KEY_BYTES:
        raise ValueError(f"{path}: not a key ({KEY_BYTES * 2} hexadecimal digits)")
    return key

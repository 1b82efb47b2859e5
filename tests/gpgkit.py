"""Test kit: throwaway GnuPG homes and messages made with the gpg command line alone.

Nothing here uses the gateway's code, so what it makes is what a foreign bureau with plain
GnuPG would send: interop tests rely on that.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
import tempfile
from pathlib import Path

BOUNDARY = "ipc-test-boundary-0123456789"


HOMES: list[Path] = []


def new_home() -> Path:
    """A short home path under /tmp: gpg-agent's socket path must stay short. The test session
    stops its agent and removes it at the end (tests/conftest.py)."""
    home = Path(tempfile.mkdtemp(prefix="g", dir="/tmp"))
    home.chmod(0o700)
    HOMES.append(home)
    return home


def remove_homes() -> None:
    while HOMES:
        home = HOMES.pop()
        kill_agent(home)
        shutil.rmtree(home, ignore_errors=True)


def gpg(
    home: Path,
    *args: str,
    data: bytes | None = None,
    faketime: str | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[bytes]:
    command = [
        "gpg",
        "--homedir",
        str(home),
        "--batch",
        "--yes",
        "--no-tty",
        "--pinentry-mode",
        "loopback",
        "--passphrase",
        "",
        "--trust-model",
        "always",
        "--status-fd",
        "2",
    ]
    if faketime:
        command += ["--faked-system-time", faketime]
    done = subprocess.run([*command, *args], input=data, capture_output=True, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"gpg {' '.join(args)} failed: {done.stderr.decode(errors='replace')}")
    return done


def make_key(home: Path, uid: str, *, faketime: str | None = None, expire: str = "2y") -> str:
    """An ed25519 signing primary with a cv25519 encryption subkey; returns the fingerprint."""
    gpg(home, "--quick-gen-key", uid, "ed25519", "sign", expire, faketime=faketime)
    fingerprint = fingerprint_of(home, uid)
    gpg(home, "--quick-add-key", fingerprint, "cv25519", "encr", expire, faketime=faketime)
    return fingerprint


def fingerprint_of(home: Path, uid: str) -> str:
    """The primary fingerprint of the key with ``uid`` in ``home``."""
    listing = gpg(home, "--with-colons", "--list-keys", uid).stdout.decode()
    return next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))


def export(home: Path, fingerprint: str) -> bytes:
    return gpg(home, "--armor", "--export", fingerprint).stdout


def import_key(home: Path, data: bytes) -> None:
    gpg(home, "--import", data=data)


def revoke(home: Path, fingerprint: str) -> None:
    """Revoke a key with the revocation certificate gpg made when it created the key."""
    certificate = (home / "openpgp-revocs.d" / f"{fingerprint}.rev").read_bytes()
    import_key(
        home,
        certificate.replace(
            b":-----BEGIN PGP PUBLIC KEY BLOCK", b"-----BEGIN PGP PUBLIC KEY BLOCK"
        ),
    )


def sign_encrypt(
    home: Path,
    signers: list[str],
    recipients: list[str],
    data: bytes,
    *extra: str,
    faketime: str | None = None,
) -> bytes:
    args = [arg for signer in signers for arg in ("--local-user", signer)]
    args += [arg for recipient in recipients for arg in ("--recipient", recipient)]
    sign = ["--sign"] if signers else []
    return gpg(
        home, *args, *sign, "--encrypt", "--armor", *extra, data=data, faketime=faketime
    ).stdout


def sign_detached(home: Path, signer: str, data: bytes) -> bytes:
    return gpg(home, "--local-user", signer, "--detach-sign", "--armor", data=data).stdout


def decrypt(home: Path, data: bytes) -> tuple[int, bytes, str]:
    done = gpg(home, "--decrypt", data=data, check=False)
    return done.returncode, done.stdout, done.stderr.decode(errors="replace")


def entity(form: bytes) -> bytes:
    """A MIME entity with the form, assembled by hand in CRLF, as a simple sender would."""
    return (
        b'Content-Type: multipart/mixed; boundary="inner-' + BOUNDARY.encode() + b'"\r\n'
        b"\r\n"
        b"--inner-" + BOUNDARY.encode() + b"\r\n"
        b"Content-Type: application/xml; charset=utf-8\r\n"
        b'Content-Disposition: attachment; filename="form.xml"\r\n'
        b"\r\n" + form.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n") + b"\r\n"
        b"--inner-" + BOUNDARY.encode() + b"--\r\n"
    )


def multipart_signed(content: bytes, signature: bytes) -> bytes:
    """RFC 3156 s5 multipart/signed around already-canonical content."""
    boundary = b"signed-" + BOUNDARY.encode()
    return (
        b"Content-Type: multipart/signed; micalg=pgp-sha512;\r\n"
        b' protocol="application/pgp-signature"; boundary="' + boundary + b'"\r\n'
        b"\r\n"
        b"--" + boundary + b"\r\n" + content + b"\r\n"
        b"--" + boundary + b"\r\n"
        b'Content-Type: application/pgp-signature; name="signature.asc"\r\n'
        b"\r\n" + signature + b"\r\n"
        b"--" + boundary + b"--\r\n"
    )


def pgp_mime(ciphertext: bytes, sender: str, recipient: str, subject: str) -> bytes:
    """RFC 3156 s4 multipart/encrypted, assembled by hand."""
    boundary = b"outer-" + BOUNDARY.encode()
    return (
        b"From: " + sender.encode() + b"\r\n"
        b"To: " + recipient.encode() + b"\r\n"
        b"Subject: " + subject.encode() + b"\r\n"
        b"Message-ID: <test-1@example.test>\r\n"
        b"MIME-Version: 1.0\r\n"
        b'Content-Type: multipart/encrypted; protocol="application/pgp-encrypted";\r\n'
        b' boundary="' + boundary + b'"\r\n'
        b"\r\n"
        b"--" + boundary + b"\r\n"
        b"Content-Type: application/pgp-encrypted\r\n"
        b"\r\n"
        b"Version: 1\r\n"
        b"\r\n"
        b"--" + boundary + b"\r\n"
        b"Content-Type: application/octet-stream\r\n"
        b"\r\n" + ciphertext + b"\r\n"
        b"--" + boundary + b"--\r\n"
    )


def kill_agent(home: Path) -> None:
    subprocess.run(
        ["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], check=False, capture_output=True
    )


def _crc24(data: bytes) -> int:
    """The OpenPGP armor checksum (RFC 4880 s6.1)."""
    crc = 0xB704CE
    for byte in data:
        crc ^= byte << 16
        for _ in range(8):
            crc <<= 1
            if crc & 0x1000000:
                crc ^= 0x1864CFB
    return crc & 0xFFFFFF


def dearmor(armored: bytes) -> bytes:
    lines = armored.strip().splitlines()
    body = lines[lines.index(b"") + 1 : -1]
    return base64.b64decode(b"".join(line for line in body if not line.startswith(b"=")))


def armor(binary: bytes) -> bytes:
    text = base64.b64encode(binary)
    rows = [text[i : i + 64] for i in range(0, len(text), 64)]
    checksum = base64.b64encode(_crc24(binary).to_bytes(3, "big"))
    return b"\n".join(
        [
            b"-----BEGIN PGP MESSAGE-----",
            b"",
            *rows,
            b"=" + checksum,
            b"-----END PGP MESSAGE-----",
            b"",
        ]
    )


def flip_byte(armored: bytes, position: int) -> bytes:
    """The same message with one byte changed (position may be negative), armor still valid."""
    binary = bytearray(dearmor(armored))
    binary[position] ^= 0x01
    return armor(bytes(binary))

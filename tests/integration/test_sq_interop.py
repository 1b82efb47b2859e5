"""Interop with Sequoia's ``sq`` (0.27): a bureau that uses Sequoia instead of GnuPG.

Keys, signatures and ciphertexts on the partner's side are made by ``sq`` alone; only the
RFC 3156 wrapping around them comes from the test kit. Skipped where ``sq`` is not installed
(Debian package ``sq``).

sq 0.27 command line used here: ``sq key generate --userid U --export KEY``, ``sq key
extract-cert --output CERT KEY``, ``sq inspect CERT`` (for the primary fingerprint), ``sq encrypt
--recipient-cert CERT --signer-key KEY FILE``, ``sq sign --detached --signer-key KEY FILE`` and
``sq decrypt --recipient-key KEY --signer-cert CERT`` (exit code 0 only if a signature by CERT
verifies; no plaintext otherwise).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import gpgkit
import pytest

from gateway.core.config import BUILTIN_FORMS
from gateway.core.errors import UnexpectedSigner, UnknownSigner
from gateway.crypto import pgpmime
from gateway.crypto.openpgp import GnuPG
from gateway.crypto.sealing import open_message, seal

pytestmark = pytest.mark.skipif(
    shutil.which("sq") is None,
    reason="Sequoia's sq command line (Debian package sq) is not installed",
)


FORM = (BUILTIN_FORMS / "samples" / "G" / "valid-person-arrested.xml").read_bytes()


@dataclass
class SqKey:
    key: Path  # the secret key, as sq made it
    cert: Path  # its certificate (sq key extract-cert)
    fingerprint: str  # primary-key fingerprint, as sq inspect reports it


@dataclass
class World:
    ours: GnuPG
    ro: str
    our_cert: Path
    no: SqKey  # the partner, pinned
    rs: SqKey  # another partner, whose key is in our keyring too
    xx: SqKey  # a stranger, unknown to us


def sq(
    *args: str, data: bytes | None = None, check: bool = True
) -> subprocess.CompletedProcess[bytes]:
    done = subprocess.run(["sq", *args], input=data, capture_output=True, check=False, timeout=120)
    if check and done.returncode != 0:
        raise RuntimeError(f"sq {' '.join(args)} failed: {done.stderr.decode(errors='replace')}")
    return done


def sq_key(directory: Path, name: str, uid: str) -> SqKey:
    key, cert = directory / f"{name}.key.pgp", directory / f"{name}.cert.pgp"
    sq("key", "generate", "--userid", uid, "--export", str(key))
    sq("key", "extract-cert", "--output", str(cert), str(key))
    listing = sq("inspect", str(cert)).stdout.decode()
    found = re.search(r"^\s*Fingerprint: ([0-9A-F]{40})$", listing, re.MULTILINE)
    assert found, f"no fingerprint in sq inspect output:\n{listing}"
    return SqKey(key, cert, found.group(1))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    directory = tmp_path_factory.mktemp("sq")
    ours = GnuPG(gpgkit.new_home())
    ro = ours.generate("RO-SIRENE", "sirene@ro.example")
    our_cert = directory / "ro.cert.asc"
    our_cert.write_text(ours.export_public())
    no = sq_key(directory, "no", "NO-SIRENE <sirene@no.example>")
    rs = sq_key(directory, "rs", "RS-NCB <ncb@rs.example>")
    xx = sq_key(directory, "xx", "Unknown <x@x.example>")
    for partner in (no, rs):
        imported = ours.import_partner_key(partner.cert.read_bytes())
        assert imported.fingerprint == partner.fingerprint
    yield World(ours, ro, our_cert, no, rs, xx)
    ours.close()


def sq_message(world: World, signer: SqKey | None, content: bytes) -> bytes:
    """What a Sequoia bureau sends: sq encrypts (and signs) to our cert, RFC 3156 around it."""
    plaintext = world.our_cert.parent / "plaintext"
    plaintext.write_bytes(content)
    args = ["encrypt", "--recipient-cert", str(world.our_cert)]
    if signer is not None:
        args += ["--signer-key", str(signer.key)]
    ciphertext = sq(*args, str(plaintext)).stdout
    assert ciphertext.startswith(pgpmime.ARMOR_BEGIN)
    return gpgkit.pgp_mime(ciphertext, "sirene@no.example", "sirene@ro.example", "SIRENE G")


def sealed_for_no(world: World) -> bytes:
    envelope = pgpmime.new_envelope(
        "sirene@ro.example", "sirene@no.example", "SIRENE G X", "ro.example"
    )
    _, ciphertext = pgpmime.parse_outer(seal(world.ours, FORM, [], world.no.fingerprint, envelope))
    return ciphertext


# ------------------------------------------------------------------------ sq -> gateway


def test_message_made_with_sq_is_accepted(world: World) -> None:
    raw = sq_message(world, world.no, gpgkit.entity(FORM))
    opened = open_message(world.ours, raw, world.no.fingerprint)
    assert opened.payload.form.replace(b"\r\n", b"\n") == FORM
    assert opened.verified.signer == world.no.fingerprint
    key = world.ours.key(world.no.fingerprint)
    assert key is not None and opened.verified.signing_key in key.subkeys
    assert opened.envelope.message_id == "<test-1@example.test>"


def test_sq_detached_signature_then_encryption_is_accepted(world: World) -> None:
    content = gpgkit.entity(FORM)
    unsigned = world.our_cert.parent / "content"
    unsigned.write_bytes(content)
    signature = sq("sign", "--detached", "--signer-key", str(world.no.key), str(unsigned)).stdout
    raw = sq_message(world, None, gpgkit.multipart_signed(content, signature))
    opened = open_message(world.ours, raw, world.no.fingerprint)
    assert opened.entity == content
    assert opened.verified.signer == world.no.fingerprint


def test_signed_by_a_stranger_with_sq_is_refused(world: World) -> None:
    raw = sq_message(world, world.xx, gpgkit.entity(FORM))
    with pytest.raises(UnknownSigner, match="unknown key"):
        open_message(world.ours, raw, world.no.fingerprint)


def test_signed_by_another_partner_with_sq_is_refused(world: World) -> None:
    raw = sq_message(world, world.rs, gpgkit.entity(FORM))
    with pytest.raises(UnexpectedSigner, match="not by the key pinned for this partner"):
        open_message(world.ours, raw, world.no.fingerprint)


# ------------------------------------------------------------------------ gateway -> sq


def test_gateway_message_decrypts_and_verifies_with_sq(world: World) -> None:
    done = sq(
        "decrypt",
        "--recipient-key",
        str(world.no.key),
        "--signer-cert",
        str(world.our_cert),
        data=sealed_for_no(world),
        check=False,
    )
    report = done.stderr.decode(errors="replace")
    assert done.returncode == 0, report
    assert "1 good signature" in report and world.ro[-16:] in report
    assert pgpmime.parse_entity(done.stdout).form == FORM


def test_sq_refuses_gateway_message_against_another_signer_cert(world: World) -> None:
    done = sq(
        "decrypt",
        "--recipient-key",
        str(world.no.key),
        "--signer-cert",
        str(world.rs.cert),
        data=sealed_for_no(world),
        check=False,
    )
    assert done.returncode != 0
    assert done.stdout == b"", "sq withholds the plaintext when verification fails"

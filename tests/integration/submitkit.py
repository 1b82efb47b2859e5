"""What the outbound submission tests share: forms turned into ours, a submitter on a fresh ledger
and spool, partners whose keys cannot be used, and a look at what was (not) queued.

Everything is real: gpg in the world's throwaway homes, the built-in XSDs, a SQLite file or a
private PostgreSQL schema. Only the clock is fake, so that numbers and deadlines are exact.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import gpgkit
from integration.inboundkit import World, gateway_config
from lxml import etree
from sqlalchemy import Engine, func, select

from gateway.core import config as configuration
from gateway.core.clock import FakeClock
from gateway.core.config import BUILTIN_FORMS, Config
from gateway.crypto.openpgp import GnuPG
from gateway.crypto.setup import open_gnupg
from gateway.forms.xmlforms import FormValidator
from gateway.outbound.submit import Submitter
from gateway.store import schema
from gateway.store.audit import AuditLog
from gateway.store.ledger import Ledger, events, make_engine, messages, sequences
from gateway.store.spool import FOLDERS, Spool

SAMPLES = BUILTIN_FORMS / "samples"
NOW = datetime(2027, 2, 1, 8, 0, tzinfo=UTC)  # another year than the samples': it is the clock's

G_ARRESTED = "G/valid-person-arrested.xml"  # urgent: routed to the duty desk
G_SEIZED = "G/valid-vehicle-seized.xml"  # lists seizure-report.pdf
IP_INFORMATION = "IP-MSG/valid-information-firearm.xml"  # owes no reply
IP_REPLY = "IP-MSG/valid-reply.xml"  # InReplyTo RS-2026-004417, lists register-photo.jpg
ACK = "ACK/valid-interpol-urgent.xml"


@dataclass(frozen=True)
class UnusableKeys:
    """Partners configured beside the world's two whose pinned keys cannot be encrypted to."""

    missing: str  # DE-SIRENE: a key that was never imported into our keyring
    expired: str  # FR-SIRENE: imported, expired in 2021
    revoked: str  # IT-SIRENE: imported, then its revocation too


def unusable_keys(world: World) -> UnusableKeys:
    """Make the three keys; the expired and the revoked one go into our keyring."""
    missing_home, expired_home, revoked_home = (gpgkit.new_home() for _ in range(3))
    missing = gpgkit.make_key(missing_home, "DE <sirene@de.example>")
    expired = gpgkit.make_key(
        expired_home, "FR <sirene@fr.example>", faketime="20200101T000000", expire="1y"
    )
    gpgkit.import_key(world.gnupg_home, gpgkit.export(expired_home, expired))
    revoked = gpgkit.make_key(revoked_home, "IT <sirene@it.example>")
    gpgkit.import_key(world.gnupg_home, gpgkit.export(revoked_home, revoked))
    gpgkit.revoke(revoked_home, revoked)
    gpgkit.import_key(world.gnupg_home, gpgkit.export(revoked_home, revoked))
    for home in (missing_home, expired_home, revoked_home):
        gpgkit.kill_agent(home)
    return UnusableKeys(missing, expired, revoked)


def _partner_table(code: str, fingerprint: str) -> str:
    country = code[:2]
    return f"""
[[partners]]
code = "{code}"
channel = "sirene"
country = "{country}"
address = "sirene@{country.lower()}.example"
smtp_host = "127.0.0.1"
fingerprint = "{fingerprint}"
"""


def write_config(
    world: World, folder: Path, keys: UnusableKeys | None = None, database_url: str | None = None
) -> Path:
    """The world's configuration in ``folder``, with the partners of ``keys`` added."""
    path = gateway_config(world, folder, database_url=database_url)
    if keys is not None:
        extra = (
            _partner_table("DE-SIRENE", keys.missing)
            + _partner_table("FR-SIRENE", keys.expired)
            + _partner_table("IT-SIRENE", keys.revoked)
        )
        path.write_text(path.read_text() + extra)
    return path


@dataclass
class Env:
    """A submitter with its own ledger and outbound spool, and the parts the tests look into."""

    config: Config
    config_path: Path
    clock: FakeClock
    engine: Engine
    ledger: Ledger
    audit: AuditLog
    outbound: Spool
    gpg: GnuPG
    submitter: Submitter


@contextlib.contextmanager
def environment(
    world: World,
    folder: Path,
    validator: FormValidator,
    keys: UnusableKeys | None = None,
    database_url: str | None = None,
) -> Iterator[Env]:
    path = write_config(world, folder, keys, database_url)
    config = configuration.load(path)
    config.paths.spool.mkdir(parents=True, exist_ok=True)
    clock = FakeClock(NOW)
    engine = make_engine(config.database_url)
    schema.upgrade(engine)
    ledger, audit = Ledger(engine, clock), AuditLog(engine, clock)
    outbound = Spool(config.paths.spool / "outbound")
    gpg = open_gnupg(config)
    submitter = Submitter(
        config=config,
        gpg=gpg,
        validator=validator,
        ledger=ledger,
        outbound=outbound,
        audit=audit,
        clock=clock,
    )
    try:
        yield Env(config, path, clock, engine, ledger, audit, outbound, gpg, submitter)
    finally:
        gpg.close()
        engine.dispose()


# ---------------------------------------------------------------------- forms


def outgoing(
    sample: str,
    *,
    sender: str,
    recipient: str,
    reference: str | None = None,
    created: str | None = None,
) -> bytes:
    """A sample form as a handler of ours writes it: ``sender`` and ``recipient`` as its bureaux,
    and Reference and Created as given, or left out (None) for the gateway to fill in."""
    data = (SAMPLES / sample).read_bytes()
    data = _substitute(data, rb"(<Sender><Bureau>)[^<]*", rb"\g<1>" + sender.encode())
    data = _substitute(data, rb"(<Recipient><Bureau>)[^<]*", rb"\g<1>" + recipient.encode())
    for name, value in ((b"Reference", reference), (b"Created", created)):
        if value is None:  # left out, with the line it stood on
            data = _substitute(data, rb"\n[ \t]*<" + name + rb">[^<]*</" + name + rb">", b"")
        else:
            data = _substitute(data, rb"(<" + name + rb">)[^<]*", rb"\g<1>" + value.encode())
    return data


def _substitute(data: bytes, pattern: bytes, replacement: bytes) -> bytes:
    changed, count = re.subn(pattern, replacement, data, count=1)
    assert count == 1, f"{pattern!r} is not in the sample"
    return changed


def with_attachment_digest(form: bytes, data: bytes) -> bytes:
    """The form with its (only) Attachment's SHA256 set to that of ``data``."""
    digest = hashlib.sha256(data).hexdigest().encode()
    return _substitute(form, rb"(<SHA256>)[0-9a-f]{64}", rb"\g<1>" + digest)


def header_field(form: bytes, name: str) -> str | None:
    element = etree.fromstring(form).find(f"{{*}}Header/{{*}}{name}")
    return None if element is None else str(element.text)


# ---------------------------------------------------------------------- what was queued


def spool_files(spool: Spool) -> list[str]:
    """Every file in every folder of a spool, as ``folder/name``."""
    return sorted(
        f"{name}/{path.name}" for name in FOLDERS for path in (spool.root / name).iterdir()
    )


def count_rows(engine: Engine, table: Any) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(table)).scalar_one())


def sequence_values(engine: Engine) -> dict[str, int]:
    with engine.connect() as connection:
        rows = connection.execute(select(sequences.c.name, sequences.c.value)).all()
    return {str(row.name): int(row.value) for row in rows}


def assert_nothing_queued(env: Env) -> None:
    """No spool file, no message or event, no audit entry, no number taken."""
    assert spool_files(env.outbound) == []
    assert count_rows(env.engine, messages) == 0
    assert count_rows(env.engine, events) == 0
    assert env.audit.entries() == []
    assert sequence_values(env.engine) == {}


# ---------------------------------------------------------------------- the partner's view


@dataclass(frozen=True)
class Opened:
    """A queued message as its partner sees it with plain gpg."""

    outer: EmailMessage
    inner: EmailMessage
    status: str  # gpg's status lines

    def parts(self) -> list[tuple[str, str, bytes]]:
        """(filename, content type, bytes) of each part of the signed entity, form first."""
        found = []
        for part in self.inner.iter_parts():
            assert isinstance(part, EmailMessage)
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            found.append((part.get_filename() or "", part.get_content_type(), payload))
        return found

    def signed_by(self) -> list[str]:
        """The primary-key fingerprints of the good signatures (VALIDSIG's last field)."""
        return [
            line.split()[-1]
            for line in self.status.splitlines()
            if line.startswith("[GNUPG:] VALIDSIG ")
        ]


def decrypt_as(home: Path, raw: bytes) -> tuple[int, bytes, str]:
    """Take the PGP/MIME message apart and decrypt it with the gpg command line in ``home``:
    gpg's exit code, the plaintext and the status lines."""
    outer = email.message_from_bytes(raw, _class=EmailMessage, policy=email.policy.default)
    assert isinstance(outer, EmailMessage)
    assert outer.get_content_type() == "multipart/encrypted"
    assert outer.get_param("protocol") == "application/pgp-encrypted"
    control, body = list(outer.iter_parts())
    assert control.get_content_type() == "application/pgp-encrypted"
    ciphertext = body.get_payload(decode=True)
    assert isinstance(ciphertext, bytes)
    return gpgkit.decrypt(home, ciphertext)


def open_as(home: Path, raw: bytes) -> Opened:
    """The message as the partner of ``home`` reads it; it must decrypt."""
    code, plaintext, status = decrypt_as(home, raw)
    assert code == 0, status
    outer = email.message_from_bytes(raw, _class=EmailMessage, policy=email.policy.default)
    inner = email.message_from_bytes(plaintext, _class=EmailMessage, policy=email.policy.default)
    assert isinstance(outer, EmailMessage) and isinstance(inner, EmailMessage)
    return Opened(outer, inner, status)

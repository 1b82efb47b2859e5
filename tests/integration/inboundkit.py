"""What the inbound integration tests share: a test world (keys, certificate, configuration), a
running gateway on port 0, messages made with the gpg command line, and a client to send them.

The pytest fixtures ``world`` and ``gateway`` that build on this are in ``conftest.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import mailbox
import ssl
import subprocess
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import aiosmtplib
import gpgkit
from dbkit import upgraded
from sqlalchemy import select

from gateway.core import config as configuration
from gateway.core.config import BUILTIN_FORMS
from gateway.crypto.openpgp import GnuPG
from gateway.service.server import Gateway
from gateway.service.services import open_services
from gateway.store.ledger import messages

FORM = (BUILTIN_FORMS / "samples" / "G" / "valid-person-arrested.xml").read_bytes()
LISTEN_ANCHOR = "max_message_bytes = 262144\n"


@dataclass
class Partner:
    home: Path
    fingerprint: str
    address: str


@dataclass
class World:
    root: Path
    config_path: Path
    tls_cert: Path
    no: Partner
    rs: Partner
    gnupg_home: Path


def _certificate(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "gateway.crt", folder / "gateway.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=gateway.ro.example",
            "-addext",
            "subjectAltName=DNS:gateway.ro.example,IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def make_world(root: Path) -> World:
    """Our key and two partners' keys (gpg homes of their own), a certificate, a config file."""
    cert, key = _certificate(root)
    gnupg_home = gpgkit.new_home()
    ours = GnuPG(gnupg_home)
    fingerprint = ours.generate("RO-SIRENE", "sirene@ro.example")
    no_home, rs_home = gpgkit.new_home(), gpgkit.new_home()
    no = Partner(no_home, gpgkit.make_key(no_home, "NO <sirene@no.example>"), "sirene@no.example")
    rs = Partner(rs_home, gpgkit.make_key(rs_home, "RS <ncb@rs.example>"), "ncb@rs.example")
    for partner in (no, rs):
        ours.import_partner_key(gpgkit.export(partner.home, partner.fingerprint))
        gpgkit.import_key(partner.home, ours.export_public().encode())
    ours.close()
    config_path = root / "gateway.toml"
    config_path.write_text(f"""
[identity]
country = "RO"
address = "sirene@ro.example"
bureaux = {{ sirene = "RO-SIRENE", interpol = "RO-NCB" }}

[paths]
gnupg_home = "{gnupg_home}"
spool = "spool"

[openpgp]
fingerprint = "{fingerprint}"

[smtp.listen]
host = "127.0.0.1"
port = 0
hostname = "gateway.ro.example"
tls_cert = "{cert}"
tls_key = "{key}"
{LISTEN_ANCHOR}
[[partners]]
code = "NO-SIRENE"
channel = "sirene"
country = "NO"
address = "{no.address}"
smtp_host = "127.0.0.1"
fingerprint = "{no.fingerprint}"

[[partners]]
code = "RS-NCB"
channel = "interpol"
country = "RS"
address = "{rs.address}"
smtp_host = "127.0.0.1"
fingerprint = "{rs.fingerprint}"
require_tls = false

[[desks]]
name = "sirene"
maildir = "desks/sirene"

[[desks]]
name = "duty"
maildir = "desks/duty"

[[routes]]
priority = "urgent"
desk = "duty"

[[routes]]
desk = "sirene"
""")
    return World(root, config_path, cert, no, rs, gnupg_home)


def end_world(world: World) -> None:
    for home in (world.gnupg_home, world.no.home, world.rs.home):
        gpgkit.kill_agent(home)


def gateway_config(
    world: World,
    folder: Path,
    listen: Mapping[str, str | int] | None = None,
    database_url: str | None = None,
) -> Path:
    """The world's configuration with its spool and desks in ``folder`` and, optionally, other
    ``[smtp.listen]`` settings (strings are written quoted, e.g. ``{"idle_timeout": "PT1S"}``)."""
    text = world.config_path.read_text().replace('spool = "spool"', f'spool = "{folder}/spool"')
    text = text.replace('maildir = "desks/', f'maildir = "{folder}/desks/')
    extra = "".join(
        f'{key} = "{value}"\n' if isinstance(value, str) else f"{key} = {value}\n"
        for key, value in (listen or {}).items()
    )
    text = text.replace(LISTEN_ANCHOR, LISTEN_ANCHOR + extra)
    if database_url is not None:
        text += f'\n[database]\nurl = "{database_url}"\n'
    path = folder / "gateway.toml"
    path.write_text(text)
    return path


@contextlib.asynccontextmanager
async def running_gateway(
    world: World,
    folder: Path,
    listen: Mapping[str, str | int] | None = None,
    database_url: str | None = None,
    *,
    extra: str = "",
) -> AsyncIterator[Gateway]:
    """A gateway listening on a free port of 127.0.0.1 for the duration of the block;
    ``extra``: TOML tables added to its configuration (retention rules, [desk_delivery])."""
    path = gateway_config(world, folder, listen, database_url)
    if extra:
        path.write_text(path.read_text() + extra)
    config = configuration.load(path)
    upgraded(config.database_url)
    with open_services(config) as services:
        running = Gateway(services)
        await running.start()
        try:
            yield running
        finally:
            await running.stop()


def message(
    world: World,
    form: bytes = FORM,
    *,
    partner: Partner | None = None,
    signer: Partner | None = None,
) -> bytes:
    sender = partner or world.no
    ciphertext = gpgkit.sign_encrypt(
        (signer or sender).home,
        [(signer or sender).fingerprint],
        [gateway_fingerprint(world)],
        gpgkit.entity(form),
    )
    return gpgkit.pgp_mime(ciphertext, sender.address, "sirene@ro.example", "SIRENE G")


def gateway_fingerprint(world: World) -> str:
    fingerprint = configuration.load(world.config_path).openpgp.fingerprint
    assert fingerprint is not None
    return fingerprint


async def send(
    world: World,
    gateway: Gateway,
    raw: bytes,
    *,
    sender: str = "sirene@no.example",
    recipient: str = "sirene@ro.example",
    tls: bool = True,
    source_address: str | None = None,
) -> tuple[int, str]:
    """One session, one message; ``source_address``: the client's own address (any of 127/8)."""
    context = ssl.create_default_context(cafile=str(world.tls_cert))
    client = aiosmtplib.SMTP(
        hostname="127.0.0.1",
        port=gateway.port,
        start_tls=False,
        tls_context=context,
        timeout=30,
        source_address=(source_address, 0) if source_address else None,
    )
    await client.connect()
    try:
        if tls:
            await client.starttls()
        try:
            await client.mail(sender)
            await client.rcpt(recipient)
            response = await client.data(raw)
        except aiosmtplib.SMTPResponseException as refused:
            return refused.code, refused.message
        return response.code, response.message
    finally:
        client.close()


async def settle(gateway: Gateway) -> None:
    """Let the hand-off run until the inbound spool is empty (it is woken after each 250)."""
    for _ in range(200):
        if not any(gateway.inbound.new.iterdir()) and not any(gateway.inbound.cur.iterdir()):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the hand-off did not finish")


def desk_messages(gateway: Gateway, desk: str) -> list[email.message.EmailMessage]:
    box = mailbox.Maildir(gateway.config.desk(desk).maildir, create=False)
    return [
        email.message_from_bytes(box.get_bytes(key), policy=email.policy.default)
        for key in box.iterkeys()
    ]


def spooled(gateway: Gateway) -> list[str]:
    """Every file in every folder of the inbound spool, as ``folder/name``."""
    spool = gateway.inbound
    return sorted(
        f"{folder.name}/{path.name}"
        for folder in (spool.tmp, spool.new, spool.cur, spool.done, spool.quarantine)
        for path in folder.iterdir()
    )


def ledger_messages(gateway: Gateway) -> list[tuple[str, str, str]]:
    """Every message of the ledger as (direction, partner, reference)."""
    with gateway.engine.connect() as connection:
        rows = connection.execute(
            select(messages.c.direction, messages.c.partner, messages.c.reference)
        ).all()
    return [(row.direction, row.partner, row.reference) for row in rows]


REFUSAL_KINDS = frozenset({"rejected", "session.refused"})
# What the scheduler's checks at start may audit, whatever arrives: the partners' SMTP servers
# of the test world do not run, so their certificate checks fail.
CHECK_KINDS = frozenset({"cert.warning"})


def assert_nothing_stored(gateway: Gateway) -> None:
    """No file in the inbound spool, no message in the ledger, nothing in the audit chain but
    the lines that record refusals."""
    assert spooled(gateway) == []
    assert ledger_messages(gateway) == []
    others = [
        entry for entry in gateway.audit.entries() if entry.kind not in REFUSAL_KINDS | CHECK_KINDS
    ]
    assert [(entry.kind, entry.reason) for entry in others] == []

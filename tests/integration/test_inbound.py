"""The inbound flow end to end: a real gateway on port 0, real STARTTLS, real gpg and SQLite."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import mailbox
import ssl
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiosmtplib
import gpgkit
import pytest
from sqlalchemy import select

from gateway import config as configuration
from gateway import pgpmime
from gateway.cli import main
from gateway.config import BUILTIN_FORMS
from gateway.ledger import deadlines
from gateway.openpgp import GnuPG
from gateway.server import Gateway

FORM = (BUILTIN_FORMS / "samples" / "G" / "valid-person-arrested.xml").read_bytes()
FORM_RO = FORM.replace(b"<Bureau>RO-SIRENE</Bureau>", b"<Bureau>RO-SIRENE</Bureau>")


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


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("inbound")
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
max_message_bytes = 262144

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
    yield World(root, config_path, cert, no, rs)
    for home in (gnupg_home, no_home, rs_home):
        gpgkit.kill_agent(home)


@pytest.fixture
async def gateway(world: World, tmp_path: Path) -> AsyncIterator[Gateway]:
    text = world.config_path.read_text().replace('spool = "spool"', f'spool = "{tmp_path}/spool"')
    text = text.replace('maildir = "desks/', f'maildir = "{tmp_path}/desks/')
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    running = Gateway(configuration.load(path))
    await running.start()
    yield running
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
        [_gateway_fpr(world)],
        gpgkit.entity(form),
    )
    return gpgkit.pgp_mime(ciphertext, sender.address, "sirene@ro.example", "SIRENE G")


def _gateway_fpr(world: World) -> str:
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
) -> tuple[int, str]:
    context = ssl.create_default_context(cafile=str(world.tls_cert))
    client = aiosmtplib.SMTP(
        hostname="127.0.0.1", port=gateway.port, start_tls=False, tls_context=context, timeout=30
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


async def test_a_form_reaches_its_desk_with_a_receipt_queued(
    world: World, gateway: Gateway
) -> None:
    code, text = await send(world, gateway, message(world))
    assert code == 250, text
    assert "accepted NO-2026-000123" in text
    await settle(gateway)
    delivered = desk_messages(gateway, "duty")  # urgent: the duty officer's desk
    assert len(delivered) == 1
    subject = delivered[0]["Subject"]
    assert subject.startswith("[URGENT] SIRENE G from NO-SIRENE NO-2026-000123, reply due ")
    row = gateway.ledger.find("inbound", "NO-SIRENE", "NO-2026-000123")
    assert row is not None and row.state == "delivered" and row.signer == world.no.fingerprint
    receipt = gateway.outbound.get(f"receipt.{row.id}")
    assert receipt.meta["to"] == "sirene@no.example"
    envelope, ciphertext = pgpmime.parse_outer(receipt.payload())
    assert envelope.subject.startswith("IPC ACK RO-2026-")
    status, plaintext, log = gpgkit.decrypt(world.no.home, ciphertext)
    assert status == 0 and "GOODMDC" in log
    assert b"disposition-notification" in plaintext and b"<Status>accepted</Status>" in plaintext
    assert row.content_sha256.encode() in plaintext
    with gateway.engine.connect() as connection:
        due = connection.execute(
            select(deadlines.c.due).where(deadlines.c.message_id == row.id)
        ).scalar()
    assert due is not None


async def test_duplicate_is_accepted_once(world: World, gateway: Gateway) -> None:
    raw = message(world)
    first = await send(world, gateway, raw)
    second = await send(world, gateway, raw)
    assert first[0] == 250 and second[0] == 250
    assert "duplicate" in second[1]
    await settle(gateway)
    assert len(desk_messages(gateway, "duty")) == 1


async def test_same_reference_other_content_is_refused(world: World, gateway: Gateway) -> None:
    assert (await send(world, gateway, message(world)))[0] == 250
    other = FORM.replace(b"Person arrested", b"Person detained")
    code, text = await send(world, gateway, message(world, other))
    assert (code, text.split()[0]) == (550, "5.7.1")


async def test_unknown_sender(world: World, gateway: Gateway) -> None:
    code, text = await send(world, gateway, message(world), sender="someone@else.example")
    assert (code, text.split()[0]) == (550, "5.7.1")


async def test_tls_required(world: World, gateway: Gateway) -> None:
    code, text = await send(world, gateway, message(world), tls=False)
    assert (code, text.split()[0]) == (530, "5.7.0")


async def test_no_relay(world: World, gateway: Gateway) -> None:
    code, text = await send(world, gateway, message(world), recipient="victim@elsewhere.example")
    assert (code, text.split()[0]) == (550, "5.7.1")


async def test_signed_by_another_partner(world: World, gateway: Gateway) -> None:
    code, text = await send(world, gateway, message(world, signer=world.rs))
    assert (code, text.split()[0]) == (550, "5.7.7")


async def test_invalid_form(world: World, gateway: Gateway) -> None:
    code, text = await send(
        world, gateway, message(world, FORM.replace(b"NO-2026-000123", b"NO-26-1"))
    )
    assert (code, text.split()[0]) == (550, "5.6.0")
    assert "/FormG/Header/Reference" in text


async def test_oversize(world: World, gateway: Gateway) -> None:
    code, text = await send(world, gateway, message(world) + (b"x" * 70 + b"\r\n") * 4000)
    assert (code, text.split()[0]) == (552, "5.3.4")


async def test_nothing_refused_is_stored(world: World, gateway: Gateway) -> None:
    await send(world, gateway, message(world, signer=world.rs))
    await send(world, gateway, message(world, FORM.replace(b"NO-2026-000123", b"bad")))
    assert list(gateway.inbound.new.iterdir()) == [] and list(gateway.inbound.done.iterdir()) == []
    assert gateway.ledger.in_state("inbound", "received") == []
    assert not gateway.audit.verify()


async def test_handlers_commands(
    world: World, gateway: Gateway, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (await send(world, gateway, message(world)))[0] == 250
    await settle(gateway)
    source = str(gateway.config.source)
    assert main(["-c", source, "inbox", "--json"]) == 0
    inbox = json.loads(capsys.readouterr().out)
    assert [
        (item["reference"], item["desk"], item["state"], item["priority"]) for item in inbox
    ] == [("NO-2026-000123", "duty", "delivered", "urgent")]
    assert inbox[0]["reply_due"]
    assert main(["-c", source, "show", "NO-2026-000123"]) == 0
    shown = capsys.readouterr().out
    assert shown.startswith("G NO-2026-000123 from NO-SIRENE (delivered)")
    assert "ActionTaken: Person arrested" in shown
    assert main(["-c", source, "status", "NO-2026-000123", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert [event["kind"] for event in status[0]["events"]] == ["received", "delivered"]
    assert main(["-c", source, "status", "NO-2026-999999"]) == 1
    assert main(["-c", source, "audit", "verify"]) == 0
    assert "intact" in capsys.readouterr().out

"""The inbound flow end to end: a real gateway on port 0, real STARTTLS, real gpg and SQLite."""

from __future__ import annotations

import json
import re
from pathlib import Path

import gpgkit
import pytest
from dbkit import upgraded
from integration.inboundkit import (
    FORM,
    World,
    assert_nothing_stored,
    desk_messages,
    gateway_config,
    gateway_fingerprint,
    message,
    send,
    settle,
)
from sqlalchemy import select

from gateway.cli.main import main
from gateway.core import config as configuration
from gateway.core.errors import ConfigError
from gateway.crypto import pgpmime
from gateway.service.server import Gateway
from gateway.service.services import open_services
from gateway.store.ledger import deadlines


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
    assert row.alert_article == "26"  # for the reports' hits per alert category
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


async def test_not_encrypted_to_us(world: World, gateway: Gateway) -> None:
    ciphertext = gpgkit.sign_encrypt(
        world.no.home, [world.no.fingerprint], [world.no.fingerprint], gpgkit.entity(FORM)
    )
    raw = gpgkit.pgp_mime(ciphertext, world.no.address, "sirene@ro.example", "SIRENE G")
    code, text = await send(world, gateway, raw)
    assert (code, text.split()[0]) == (550, "5.7.5")


async def test_inline_pgp_is_not_pgp_mime(world: World, gateway: Gateway) -> None:
    armored = gpgkit.sign_encrypt(
        world.no.home, [world.no.fingerprint], [gateway_fingerprint(world)], FORM
    )
    raw = (
        b"From: sirene@no.example\r\nTo: sirene@ro.example\r\nSubject: SIRENE G\r\n"
        b"Content-Type: text/plain\r\n\r\n" + armored.replace(b"\n", b"\r\n")
    )
    code, text = await send(world, gateway, raw)
    assert (code, text.split()[0]) == (550, "5.6.1")
    assert "inline PGP" in text


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
    replies = [
        await send(world, gateway, message(world, signer=world.rs)),
        await send(world, gateway, message(world, FORM.replace(b"NO-2026-000123", b"bad"))),
    ]
    # Both reached the pipeline and were refused there, for the reasons meant, each audited.
    assert [(code, text.split()[0]) for code, text in replies] == [(550, "5.7.7"), (550, "5.6.0")]
    refusals = [e for e in gateway.audit.entries() if e.kind == "rejected"]
    assert [(e.partner, e.reason) for e in refusals] == [
        ("NO-SIRENE", "5.7.7 UnexpectedSigner"),
        ("NO-SIRENE", "5.6.0 InvalidForm"),
    ]
    assert all(len(e.digest) == 64 for e in refusals)
    assert list(gateway.inbound.new.iterdir()) == [] and list(gateway.inbound.done.iterdir()) == []
    assert gateway.ledger.in_state("inbound", "received") == []
    assert_nothing_stored(gateway)
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
    assert shown.startswith("G NO-2026-000123 from NO-SIRENE (delivered, desk duty)\n")
    assert "  Action taken: Person arrested" in shown  # labels, as on the desk copy
    assert main(["-c", source, "status", "NO-2026-000123", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert [event["kind"] for event in status[0]["events"]] == ["received", "delivered"]
    assert main(["-c", source, "status", "NO-2026-999999"]) == 1
    assert main(["-c", source, "audit", "verify"]) == 0
    assert "intact" in capsys.readouterr().out


async def test_serve_refuses_a_configuration_it_cannot_honour(world: World, tmp_path: Path) -> None:
    path = gateway_config(world, tmp_path)
    text = path.read_text()
    no_key = tmp_path / "no-key.toml"
    no_key.write_text(re.sub(r'fingerprint = "[0-9A-F]{40}"\n\n\[smtp', "\n[smtp", text, count=1))
    without_key = configuration.load(no_key)
    upgraded(without_key.database_url)
    with (
        open_services(without_key) as services,
        pytest.raises(ConfigError, match=r"openpgp\.fingerprint: no key of ours"),
    ):
        Gateway(services)
    bad_cert = tmp_path / "bad-cert.toml"
    bad_cert.write_text(re.sub(r'tls_cert = "[^"]*"', f'tls_cert = "{tmp_path}/missing.crt"', text))
    loaded = configuration.load(bad_cert)
    with open_services(loaded) as services:
        running = Gateway(services)
        try:
            with pytest.raises(ConfigError, match=r"smtp\.listen\.tls_cert: cannot load"):
                await running.start()
        finally:
            await running.stop()

"""A partner's refused message is recorded for the duty desk's notice; an unknown sender's is
not; the notice holds the reply and the digest, never the message's plaintext."""

from __future__ import annotations

import email
import email.policy
import logging
from datetime import timedelta
from email.message import EmailMessage

import pytest
from integration.inboundkit import FORM, World, message, send
from sqlalchemy import select

from gateway.service.server import Gateway
from gateway.store.ledger import as_utc, refusals
from gateway.tracking.refusal_notices import notify_refusals

NAME = b"QUARTZLEWINSKY"  # a family name that must never reach a notice, a log or the audit


def form_with_name() -> bytes:
    return FORM.replace(b"<FamilyName>EXAMPLE", b"<FamilyName>" + NAME)


async def test_refusals_reach_the_duty_desk_without_plaintext(
    world: World, gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    signed_by_rs = message(world, form_with_name(), signer=world.rs)
    bad_reference = message(world, form_with_name().replace(b"NO-2026-000123", b"NO-26-1"))
    assert NAME in form_with_name()
    code, _ = await send(world, gateway, signed_by_rs)
    assert code == 550
    code, reply = await send(world, gateway, bad_reference)
    assert code == 550 and "/FormG/Header/Reference" in reply
    code, _ = await send(world, gateway, message(world), sender="someone@elsewhere.example")
    assert code == 550

    with gateway.engine.connect() as connection:
        rows = connection.execute(select(refusals).order_by(refusals.c.id)).all()
    assert [(row.partner, row.smtp_code, row.enhanced, row.kind) for row in rows] == [
        ("NO-SIRENE", 550, "5.7.7", "UnexpectedSigner"),
        ("NO-SIRENE", 550, "5.6.0", "InvalidForm"),
    ]  # nothing for the unknown sender: it is not a partner
    assert rows[0].raw_sha256 != rows[1].raw_sha256
    assert rows[1].reply.startswith("550 5.6.0 ") and "/FormG/Header/Reference" in rows[1].reply

    later = max(as_utc(row.at) for row in rows) + timedelta(hours=1)
    run = notify_refusals(gateway.config, gateway.ledger, gateway.audit, later)
    assert (run.notices, run.refusals) == (1, 2)
    # This configuration names no duty or supervisor desk: the first desk is told.
    duty = gateway.config.desk("sirene").maildir / "new"
    [notice] = [path for path in duty.iterdir() if path.name.startswith("notice.refusals.")]
    parsed = email.message_from_bytes(notice.read_bytes(), policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    text = f"{parsed['Subject']}\n{parsed.get_content()}".encode()
    assert b"2 refusals of messages from NO-SIRENE" in text
    assert b"550 5.7.7 UnexpectedSigner" in text and b"550 5.6.0 InvalidForm" in text
    assert b"/FormG/Header/Reference" in text  # the reply the partner got
    raw_digests = {row.raw_sha256.encode() for row in rows}
    assert all(digest in text for digest in raw_digests)
    assert NAME not in text and b"GivenName" not in text
    # The reply (which may quote the form) stays out of the gateway's logs and the audit chain.
    ours = [record.getMessage() for record in caplog.records if record.name.startswith("gateway")]
    assert ours and not any("/FormG" in line or NAME.decode() in line for line in ours)
    for entry in gateway.audit.entries():
        assert "/FormG" not in entry.reason and NAME.decode() not in entry.reason

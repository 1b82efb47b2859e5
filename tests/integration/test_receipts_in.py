"""A partner's receipts and replies, made with the gpg command line, matched to what we sent."""

from __future__ import annotations

from datetime import UTC, datetime

import gpgkit
from integration.inboundkit import World, gateway_fingerprint, send, settle
from integration.submitkit import outgoing
from sqlalchemy import select

from gateway.service.server import Gateway
from gateway.store.ledger import MessageRow, deadlines
from gateway.store.states import OutboundState
from gateway.tracking.receipts import ReceiptFacts, ack_form, mdn_entity

G_ARRESTED = "G/valid-person-arrested.xml"  # expects an M within 12 hours


async def _sent(gateway: Gateway) -> MessageRow:
    """A G of ours to NO-SIRENE, queued and then taken by NO's server (250), as delivery records
    it: state sent and the receipt deadline open."""
    form = outgoing(G_ARRESTED, sender="RO-SIRENE", recipient="NO-SIRENE")
    submitted = gateway.submitter.submit(form)
    now = gateway.clock.now()
    with gateway.audit.begin() as connection:
        gateway.ledger.set_state_in(
            connection,
            submitted.ledger_id,
            OutboundState.SENT,
            "250 by test",
            expected=(OutboundState.QUEUED,),
        )
        gateway.ledger.open_deadline_in(
            connection,
            submitted.ledger_id,
            kind="receipt",
            owed_by="partner",
            due=now + gateway.config.partner("NO-SIRENE").receipt_window,
        )
    # Nobody listens at NO's address in this test.
    gateway.outbound.delete(submitted.spool_key, "queued")
    return gateway.ledger.get(submitted.ledger_id)


def _receipt(world: World, row: MessageRow, reference: str, *, digest: str | None = None) -> bytes:
    """NO's receipt for ``row``, signed and encrypted with the gpg command line."""
    now = datetime.now(UTC).replace(microsecond=0)
    facts = ReceiptFacts(
        our_bureau="NO-SIRENE",
        partner_bureau="RO-SIRENE",
        our_address=world.no.address,
        our_host="gateway.no.example",
        reference=reference,
        original_reference=row.reference,
        original_message_id=row.message_id,
        content_sha256=digest or row.content_sha256,
        received_at=now,
        created=now,
    )
    ciphertext = gpgkit.sign_encrypt(
        world.no.home,
        [world.no.fingerprint],
        [gateway_fingerprint(world)],
        mdn_entity(facts, ack_form(facts)),
    )
    return gpgkit.pgp_mime(
        ciphertext, world.no.address, "sirene@ro.example", f"IPC ACK {reference}"
    )


def _deadline(gateway: Gateway, message_id: int, kind: str) -> str:
    with gateway.engine.connect() as connection:
        return str(
            connection.execute(
                select(deadlines.c.state).where(
                    deadlines.c.message_id == message_id, deadlines.c.kind == kind
                )
            ).scalar_one()
        )


def _audit_kinds(gateway: Gateway) -> list[str]:
    return [entry.kind for entry in gateway.audit.entries()]


def _maildir_files(gateway: Gateway) -> list[str]:
    return sorted(
        path.name
        for desk in gateway.config.desks
        if (desk.maildir / "new").is_dir()
        for path in (desk.maildir / "new").iterdir()
    )


async def test_a_matching_receipt_acknowledges_and_is_neither_filed_nor_receipted(
    world: World, gateway: Gateway
) -> None:
    row = await _sent(gateway)
    code, _ = await send(world, gateway, _receipt(world, row, "NO-2027-000501"))
    assert code == 250
    await settle(gateway)
    assert gateway.ledger.get(row.id).state == "acknowledged"
    assert _deadline(gateway, row.id, "receipt") == "met"
    assert _deadline(gateway, row.id, "reply") == "open"
    assert _audit_kinds(gateway).count("acknowledged") == 1
    receipt = gateway.ledger.find("inbound", "NO-SIRENE", "NO-2027-000501")
    assert receipt is not None and receipt.state == "delivered"
    assert _maildir_files(gateway) == []  # a receipt is not a desk's business
    assert not gateway.outbound.exists(f"receipt.{receipt.id}")  # and never receipted


async def test_the_same_receipt_again_and_a_second_receipt_change_nothing(
    world: World, gateway: Gateway
) -> None:
    row = await _sent(gateway)
    first = _receipt(world, row, "NO-2027-000502")
    assert (await send(world, gateway, first))[0] == 250
    await settle(gateway)
    code, text = await send(world, gateway, first)
    assert code == 250 and "duplicate" in text
    assert (await send(world, gateway, _receipt(world, row, "NO-2027-000503")))[0] == 250
    await settle(gateway)
    assert gateway.ledger.get(row.id).state == "acknowledged"
    assert _audit_kinds(gateway).count("acknowledged") == 1
    kinds = [kind for _, kind, _ in gateway.ledger.events_of(row.id)]
    assert kinds.count("acknowledged") == 1 and "receipt" in kinds


async def test_a_receipt_with_another_digest_or_for_nothing_of_ours_is_audited_and_dropped(
    world: World, gateway: Gateway
) -> None:
    row = await _sent(gateway)
    wrong = _receipt(world, row, "NO-2027-000504", digest="0" * 64)
    assert (await send(world, gateway, wrong))[0] == 250
    stranger = MessageRow(**{**row.__dict__, "reference": "RO-2027-999999"})
    assert (await send(world, gateway, _receipt(world, stranger, "NO-2027-000505")))[0] == 250
    await settle(gateway)
    assert gateway.ledger.get(row.id).state == "sent"
    assert _deadline(gateway, row.id, "receipt") == "open"
    assert _audit_kinds(gateway).count("receipt.unmatched") == 2
    assert "acknowledged" not in _audit_kinds(gateway)
    assert _maildir_files(gateway) == []


async def test_a_late_receipt_after_the_resends_still_acknowledges(
    world: World, gateway: Gateway
) -> None:
    row = await _sent(gateway)
    assert gateway.ledger.set_state(
        row.id, OutboundState.UNACKNOWLEDGED, "no receipt", expected=OutboundState.SENT
    )
    assert (await send(world, gateway, _receipt(world, row, "NO-2027-000506")))[0] == 250
    await settle(gateway)
    assert gateway.ledger.get(row.id).state == "acknowledged"


async def test_a_reply_answers_our_message_and_meets_its_deadlines(
    world: World, gateway: Gateway
) -> None:
    row = await _sent(gateway)
    reply = outgoing(
        "M/valid-reply-to-hit.xml",
        sender="NO-SIRENE",
        recipient="RO-SIRENE",
        reference="NO-2027-000507",
        created="2026-11-26T08:00:00Z",
    ).replace(
        b"<InReplyTo>NO-2026-000123</InReplyTo>", f"<InReplyTo>{row.reference}</InReplyTo>".encode()
    )
    ciphertext = gpgkit.sign_encrypt(
        world.no.home, [world.no.fingerprint], [gateway_fingerprint(world)], gpgkit.entity(reply)
    )
    raw = gpgkit.pgp_mime(ciphertext, world.no.address, "sirene@ro.example", "SIRENE M")
    code, text = await send(world, gateway, raw)
    assert code == 250, text
    await settle(gateway)
    assert gateway.ledger.get(row.id).state == "answered"
    assert _deadline(gateway, row.id, "reply") == "met"
    assert _deadline(gateway, row.id, "receipt") == "met"
    assert _audit_kinds(gateway).count("answered") == 1
    answer = gateway.ledger.find("inbound", "NO-SIRENE", "NO-2027-000507")
    assert answer is not None and answer.in_reply_to == row.reference
    assert answer.state == "delivered"  # on the desk, like any form

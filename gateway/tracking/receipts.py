"""Receipts: the RFC 8098 MDN carrying the ACK form that tells a partner we took its message."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from xml.sax.saxutils import escape

from gateway import __version__

ACK_NAMESPACE = "urn:ipc-gateway:ack:1"
DISPOSITION = "automatic-action/MDN-sent-automatically; processed"


@dataclass(frozen=True)
class ReceiptFacts:
    """What a receipt states about the message it acknowledges."""

    our_bureau: str
    partner_bureau: str
    our_address: str
    our_host: str
    reference: str  # the receipt's own Reference, numbered by us
    original_reference: str
    original_message_id: str
    content_sha256: str
    received_at: datetime
    created: datetime


def ack_form(facts: ReceiptFacts) -> bytes:
    """The ACK form (xsd/ack.xsd); the caller validates it before it leaves."""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<Ack xmlns="{ACK_NAMESPACE}">
  <Header>
    <Created>{_instant(facts.created)}</Created>
    <Reference>{escape(facts.reference)}</Reference>
    <Sender><Bureau>{escape(facts.our_bureau)}</Bureau></Sender>
    <Recipient><Bureau>{escape(facts.partner_bureau)}</Bureau></Recipient>
    <Priority><Normal/></Priority>
    <Language>en</Language>
  </Header>
  <OriginalReference>{escape(facts.original_reference)}</OriginalReference>
  <OriginalMessageId>{escape(facts.original_message_id)}</OriginalMessageId>
  <ContentSHA256>{facts.content_sha256}</ContentSHA256>
  <ReceivedAt>{_instant(facts.received_at)}</ReceivedAt>
  <Status>accepted</Status>
</Ack>
""".encode()


def mdn_entity(facts: ReceiptFacts, ack: bytes) -> bytes:
    """multipart/report; report-type=disposition-notification (RFC 8098), with the ACK form as
    its third part. This entity is what gets signed and encrypted, like any form."""
    for value in (facts.our_address, facts.our_host, facts.original_message_id):
        if any(character in value for character in "\r\n"):
            raise ValueError("header values must not contain CR or LF")
    boundary = f"report-{uuid.uuid4().hex}"
    human = (
        f"The message {facts.original_reference} {facts.original_message_id} was received "
        f"and processed by {facts.our_bureau} at {_instant(facts.received_at)}.\r\n"
        f"SHA-256 of the signed content received: {facts.content_sha256}\r\n"
    )
    notification = (
        f"Reporting-UA: {facts.our_host}; IPC Gateway {__version__}\r\n"
        f"Original-Recipient: rfc822;{facts.our_address}\r\n"
        f"Final-Recipient: rfc822;{facts.our_address}\r\n"
        f"Original-Message-ID: {facts.original_message_id}\r\n"
        f"Disposition: {DISPOSITION}\r\n"
    )
    parts = [
        f"Content-Type: text/plain; charset=us-ascii\r\n\r\n{human}",
        f"Content-Type: message/disposition-notification\r\n\r\n{notification}",
        "Content-Type: application/xml; charset=utf-8\r\n"
        'Content-Disposition: attachment; filename="ack.xml"\r\n'
        "\r\n" + ack.decode().replace("\r\n", "\n").replace("\n", "\r\n"),
    ]
    body = "".join(f"--{boundary}\r\n{part}\r\n" for part in parts) + f"--{boundary}--\r\n"
    head = (
        "Content-Type: multipart/report; report-type=disposition-notification;\r\n"
        f' boundary="{boundary}"\r\n\r\n'
    )
    return (head + body).encode()


def _instant(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")

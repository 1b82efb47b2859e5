"""MIME shapes the intake's tests send: nested multiparts, a flat multipart of many parts, and
the facts of a receipt whose MDN entity they read."""

from __future__ import annotations

from datetime import UTC, datetime

from gateway.tracking.receipts import ReceiptFacts

RECEIPT_FACTS = ReceiptFacts(
    our_bureau="RO-SIRENE",
    partner_bureau="NO-SIRENE",
    our_address="sirene@ro.example",
    our_host="gateway.ro.example",
    reference="RO-2026-000001",
    original_reference="NO-2026-000042",
    original_message_id="<42@no.example>",
    content_sha256="0" * 64,
    received_at=datetime(2026, 5, 1, tzinfo=UTC),
    created=datetime(2026, 5, 1, tzinfo=UTC),
)


def nested_multiparts(depth: int, leaf: bytes = b"x") -> bytes:
    """``depth`` multipart/mixed levels, each inside the one before, around one text part."""
    head = b"".join(
        b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (level, level)
        for level in range(depth)
    )
    tail = b"".join(b"\r\n--b%d--" % level for level in reversed(range(depth)))
    return head + b"Content-Type: text/plain\r\n\r\n" + leaf + tail + b"\r\n"


def many_parts(count: int) -> bytes:
    """A multipart/mixed of ``count`` text parts, side by side."""
    part = b"--m\r\nContent-Type: text/plain\r\n\r\nx\r\n"
    return b"Content-Type: multipart/mixed; boundary=m\r\n\r\n" + part * count + b"--m--\r\n"

"""The short ways around the email package must answer exactly what the long ways answer.

The MAIL/RCPT address fast path against aiosmtpd's own parser, the plain-header writer
against compat32's folding, and the PGP/MIME message and the desk's copy written straight out
against the email package's generator, each on a table of edge cases and on random input.
"""

from __future__ import annotations

import asyncio
import email.policy
import random
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from email.message import Message
from functools import cache
from typing import cast

import pytest
from aiosmtpd.smtp import SMTP

from gateway.core.config import BUILTIN_FORMS
from gateway.crypto import pgpmime
from gateway.crypto.pgpmime import Attachment
from gateway.desks import maildir
from gateway.forms.setup import load_validator
from gateway.inbound.smtp_server import GatewaySMTP, Handler, Limits

ADDRESSES = [
    "<sirene@no.example>",
    "<sirene@no.example> SIZE=12345",
    "<sirene@no.example> SIZE=12345 BODY=8BITMIME",
    "<SIRENE@NO.EXAMPLE>",
    "<Sirene.Desk+g@Sub.No-Example.org>",
    "<a_b-c@localhost>",
    "<a@b>",
    "<a@1.2.3.4>",
    "<a@-b.example>",
    "<a@b-.example>",
    "<1@2>",
    "  <sirene@no.example>  ",
    "\t<sirene@no.example>\tSIZE=1",
    "<sirene@no.example>SIZE=1",
    "<sirene@no.example>>",
    "<sirene@no.example> (a comment)",
    "<sirene@no.example>(a comment)",
    "<sirene@no.example> SIZE=1 (comment)",
    '<"quoted local"@no.example>',
    '<"a"@no.example>',
    '<"a\\"b"@no.example>',
    "<a@[192.0.2.1]>",
    "<a@[IPv6:2001:db8::1]>",
    "<>",
    "<> SIZE=0",
    "",
    "<@relay.example:sirene@no.example>",
    "<@r1.example,@r2.example:sirene@no.example>",
    "sirene@no.example",
    "sirene@no.example SIZE=1",
    "<sirene@no.example",
    "sirene@no.example>",
    "<.a@b.example>",
    "<a.@b.example>",
    "<a..b@c.example>",
    "<a@b..example>",
    "<a@b.example.>",
    "<a@.b.example>",
    "<a@>",
    "<@b.example>",
    "<a b@c.example>",
    "<a@b c.example>",
    "<a@b_c.example>",
    "<a!#$%&'*/=?^`{|}~@b.example>",
    "<ü@b.example>",
    "<a@ü.example>",
    "<a@@b.example>",
    "<a@b@c.example>",
    "<<a@b.example>>",
    "<a@b.example> <c@d.example>",
    "<" + "l" * 64 + "@b.example>",
    "<" + "l" * 65 + "@b.example>",
    "<" + "l" * 300 + "@b.example>",
    "<a@" + "d" * 300 + ".example>",
]


@pytest.fixture
def session() -> Iterator[GatewaySMTP]:
    loop = asyncio.new_event_loop()
    try:
        limits = Limits(max_sessions=1, idle_timeout=60.0, session_timeout=600.0)
        yield GatewaySMTP(cast(Handler, object()), limits, loop=loop)
    finally:
        loop.close()


@pytest.mark.parametrize("limit", [0, 64])
@pytest.mark.parametrize("arg", ADDRESSES)
def test_address_fast_path_equals_aiosmtpd(session: GatewaySMTP, arg: str, limit: int) -> None:
    session.local_part_limit = limit
    assert session._getaddr(arg) == SMTP._getaddr(session, arg)


def outcome(parse: Callable[[str], tuple[str | None, str | None]], arg: str) -> object:
    """What parsing answers, or the class of what it raises (the email package's parser raises
    IndexError on some malformed input, e.g. ``a@``: both ways must then raise alike)."""
    try:
        return parse(arg)
    except Exception as error:  # compared below
        return type(error)


def test_address_fast_path_on_random_addresses(session: GatewaySMTP) -> None:
    rng = random.Random(3156)  # noqa: S311 - reproducible cases, not secrets
    alphabet = 'aZ09._+-@<> \t()"[]:,;!='
    for _ in range(3000):
        arg = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 14)))
        for candidate in (arg, f"<{arg}>", f"<a{arg}@b.example>", f"<a@b{arg}>"):
            ours = outcome(session._getaddr, candidate)
            assert ours == outcome(lambda arg: SMTP._getaddr(session, arg), candidate), candidate


# Header writing

COMPAT32 = email.policy.compat32.clone(linesep="\r\n")
LONG_WORDS = " ".join(f"word{n}" for n in range(40))

HEADERS = [
    ("Subject", "SIRENE G RO-2026-000001"),
    ("Subject", ""),
    ("Subject", "x"),
    ("Subject", "a" * 69),  # 78 characters with "Subject: "
    ("Subject", "a" * 70),
    ("Subject", "a" * 200),
    ("Subject", "b " * 34 + "b"),
    ("Subject", "b " * 35 + "b"),
    ("Subject", LONG_WORDS),
    ("To", ", ".join(f"desk{n}@ro.example" for n in range(12))),
    (
        "Content-Type",
        'multipart/encrypted; protocol="application/pgp-encrypted"; boundary="' + "=" * 30 + 'abc"',
    ),
    ("Content-Type", 'application/xml; name="form.xml"'),
    ("Message-ID", "<20261125080000.1234.5678@gateway.ro.example>"),
    ("Date", "Wed, 25 Nov 2026 08:00:00 +0000"),
    ("X-Very-Long-Header-Name-That-Takes-Most-Of-The-Line-By-Itself-Already", "value"),
    ("X-" + "N" * 80, "v"),
    ("Subject", "two  spaces"),
    ("Subject", " leading"),
    ("Subject", "trailing "),
    ("Subject", "tab\there"),
    ("Subject", "line\r\n continued"),
    ("Subject", "=?utf-8?q?encoded?="),
    ("Subject", "a =? b"),
    ("Subject", "Zürich"),
    ("Subject", "Ελλάδα " * 12),
    ("From", "Jürgen Müller <sirene@de.example>"),
    ("Subject", "\x7f control"),
    ("Subject", "semi;colons,and,commas;" * 5),
    ("Subject", "x" * 30 + " " + "y" * 60),
]


@pytest.mark.parametrize(("name", "value"), HEADERS)
def test_header_fold_equals_compat32(name: str, value: str) -> None:
    assert pgpmime.WRITE_POLICY.fold(name, value) == COMPAT32.fold(name, value)
    assert pgpmime.WRITE_POLICY.fold_binary(name, value) == COMPAT32.fold_binary(name, value)


@pytest.mark.parametrize("max_line_length", [None, 0, 40, 78, 100])
def test_header_fold_equals_compat32_at_other_line_lengths(max_line_length: int | None) -> None:
    ours = pgpmime.WRITE_POLICY.clone(max_line_length=max_line_length)
    theirs = COMPAT32.clone(max_line_length=max_line_length)
    for name, value in HEADERS:
        assert ours.fold(name, value) == theirs.fold(name, value), (name, value)


def test_header_fold_on_random_ascii_values() -> None:
    rng = random.Random(2034)  # noqa: S311 - reproducible cases, not secrets
    alphabet = "abcXYZ019 ;,:=?<>\"'()-."
    for _ in range(3000):
        value = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 90)))
        name = rng.choice(["Subject", "To", "X-A", "Content-Type"])
        assert pgpmime.WRITE_POLICY.fold(name, value) == COMPAT32.fold(name, value), value


def test_whole_message_is_written_as_compat32_writes_it() -> None:
    message = Message()
    for name, value in HEADERS:
        message[name] = value
    message.set_payload("body\r\n")
    assert message.as_bytes(policy=pgpmime.WRITE_POLICY) == message.as_bytes(policy=COMPAT32)


def test_envelope_written_by_the_gateway_equals_compat32() -> None:
    envelope = pgpmime.new_envelope(
        "sirene@ro.example",
        "sirene@no.example",
        pgpmime.subject("sirene", "G", "RO-2026-000001"),
        "ro.example",
    )
    armored = b"-----BEGIN PGP MESSAGE-----\n\nAAAA\n-----END PGP MESSAGE-----\n"
    written = pgpmime.wrap_encrypted(armored, envelope)
    reparsed = email.message_from_bytes(written, policy=email.policy.compat32)
    assert reparsed.as_bytes(policy=pgpmime.WRITE_POLICY) == reparsed.as_bytes(policy=COMPAT32)


ARMOR = "-----BEGIN PGP MESSAGE-----\n\nhQEMA0{}\n=abcd\n-----END PGP MESSAGE-----\n"


@pytest.mark.parametrize(
    "ciphertext",
    [
        ARMOR.format("xyz").encode(),
        ARMOR.format("xyz").replace("\n", "\r\n").encode(),
        ARMOR.format("xyz").rstrip("\n").encode(),  # no line end at the end
        ARMOR.format("a\rb\r\nc\n\nd").encode(),  # mixed line ends
        ARMOR.format("x" * 5000).encode(),
        ("  " + ARMOR.format("lead")).encode(),
        ARMOR.format("caf\u00e9").encode("utf-8"),  # not ASCII: the email package writes it
    ],
)
@pytest.mark.parametrize(
    "envelope",
    [
        pgpmime.Envelope(
            "sirene@ro.example",
            "sirene@no.example",
            "IPC ACK RO-2026-000001",
            "<receipt.1.RO-2026-000001@gw.ro.example>",
            "Sun, 06 Dec 2026 07:00:00 +0000",
        ),
        pgpmime.Envelope(
            "sirene@ro.example",
            "sirene@no.example",
            "SIRENE G " + "R" * 80,  # folded by compat32
            "<" + "m" * 70 + "@x>",
            "Sun, 06 Dec 2026 07:00:00 +0000",
        ),
        pgpmime.Envelope("a@b", "c@d", "two  spaces", "<=?x?=>", " lead"),
        pgpmime.Envelope("a@b", "c@d", "", "<m@x>", "Mon, 7 Dec 2026 01:02:03 -0000"),
    ],
)
def test_encrypted_message_is_written_as_the_email_package_writes_it(
    ciphertext: bytes, envelope: pgpmime.Envelope, monkeypatch: pytest.MonkeyPatch
) -> None:
    try:
        ciphertext.decode("ascii")
    except UnicodeDecodeError:
        with pytest.raises(UnicodeDecodeError):
            pgpmime.wrap_encrypted(ciphertext, envelope)
        return
    monkeypatch.setattr(pgpmime, "new_boundary", lambda: "=_" + "5" * 32)
    written = pgpmime.wrap_encrypted(ciphertext, envelope)
    generated = pgpmime._generated_encrypted(ciphertext, envelope, "=_" + "5" * 32)
    assert written == generated
    parsed, armored = pgpmime.parse_outer(written)
    assert parsed.message_id.strip() == envelope.message_id  # a folded one starts a new line
    assert (
        armored.replace(b"\r\n", b"\n").strip()
        == ciphertext.replace(b"\r\n", b"\n").replace(b"\r", b"\n").strip()
    )


def test_encrypted_message_on_random_headers() -> None:
    chooser = random.Random(20261206)  # noqa: S311 - test data, not secrecy
    alphabet = "abcXYZ019<>@.=?-_:,+ "
    compared = 0
    for _ in range(2000):
        values = [
            "".join(chooser.choice(alphabet) for _ in range(chooser.randint(0, 80)))
            for _ in range(5)
        ]
        envelope = pgpmime.Envelope(*values)
        if not all(pgpmime._SAFE_HEADER.fullmatch(value) for value in values):
            continue
        boundary = "=_" + "a" * 32
        text = ARMOR.format(values[0].replace(" ", "")).encode()
        headers = (
            ("From", envelope.sender),
            ("To", envelope.recipient),
            ("Date", envelope.date),
            ("Message-ID", envelope.message_id),
            ("Subject", envelope.subject),
        )
        fast = pgpmime._written_encrypted(text, headers, boundary)
        plain = all(pgpmime._plain_header(name, value) for name, value in headers)
        if plain:
            assert fast == pgpmime._generated_encrypted(text, envelope, boundary), values
            compared += 1
    assert compared > 50, "the random headers reach the plain path"


# The desk's copy


@cache
def desk_form() -> bytes:
    return (BUILTIN_FORMS / "samples" / "G" / "valid-person-arrested.xml").read_bytes()


def desk_delivery(attachments: tuple[Attachment, ...]) -> maildir.Delivery:
    """An urgent form with its reply due: a Subject long enough to be folded."""
    validation = load_validator(None).validate(desk_form())
    validation.raise_for_errors()
    return maildir.Delivery(
        partner="NO-SIRENE",
        partner_address="sirene@no.example",
        channel="sirene",
        form="G",
        title="Hit, action taken",
        header=validation.header(),
        outline=tuple(validation.outline()),
        form_xml=desk_form(),
        received_at=datetime(2026, 11, 25, 8, 15, 30, tzinfo=UTC),
        desk="sirene",
        attachments=attachments,
        reply_due=datetime(2026, 11, 25, 20, 15, tzinfo=UTC),
    )


MEDIA_TYPES = ["application/xml", "application/pdf", "image/svg+xml", "application/vnd.ms-excel"]


def desk_parts(chooser: random.Random) -> list[tuple[str, str, bytes]]:
    names = ["form.xml", "a b.pdf", 'say "x".txt', "back\\slash", "n" * 90 + ".pdf", "x;y=z"]
    return [
        (
            chooser.choice(names),
            chooser.choice(MEDIA_TYPES),
            bytes(chooser.randrange(256) for _ in range(chooser.choice([0, 1, 56, 57, 58, 700]))),
        )
        for _ in range(chooser.randint(1, 4))
    ]


def test_desk_copy_is_written_as_the_email_package_writes_it() -> None:
    chooser = random.Random(20261207)  # noqa: S311 - test data, not secrecy
    alphabet = 'abcXYZ019<>@.=?-_:,;+ "\\()\t\u00e9\u0394'  # headers: one line each
    for _ in range(600):
        headers = [
            (name, "".join(chooser.choice(alphabet) for _ in range(chooser.randint(0, 120))))
            for name in ("From", "To", "Date", "Message-ID", "Subject", "X-IPC-Reference")
        ]
        text = "".join(chooser.choice(alphabet + "\n\r") for _ in range(chooser.randint(1, 400)))
        parts = desk_parts(chooser)
        boundary = "=_" + "c" * 32
        assert all(maildir._plain_part(name, media_type) for name, media_type, _ in parts)
        written = maildir._written(headers, text, parts, boundary)
        assert written == maildir._generated(headers, text, parts, boundary), (headers, text)


@pytest.mark.parametrize(
    ("filename", "media_type", "plain"),
    [
        ("form.xml", "application/xml", True),
        ("report.pdf", "application/pdf", True),
        ("rapport-\u00e9t\u00e9.pdf", "application/pdf", False),  # RFC 2231: the email package
        ("tab\there.txt", "text/plain", False),
        ("", "application/pdf", False),
        ("a.bin", "application", False),
        ("a.bin", "application/", False),
        ("a.bin", "application/x; y=z", False),
    ],
)
def test_desk_copy_names_the_email_package_must_write(
    filename: str, media_type: str, plain: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert maildir._plain_part(filename, media_type) is plain
    monkeypatch.setattr(maildir, "new_boundary", lambda: "=_" + "d" * 32)
    monkeypatch.setattr(maildir, "make_msgid", lambda domain: f"<1.2.3@{domain}>")
    delivery = desk_delivery((Attachment(filename, media_type, b"%PDF-1.7\n" * 40),))
    headers = (
        ("From", "NO-SIRENE <sirene@no.example>"),
        ("To", "sirene desk <desk-sirene@gateway.invalid>"),
        ("Date", "Wed, 25 Nov 2026 08:15:30 GMT"),
        ("Message-ID", "<1.2.3@gateway.invalid>"),
        ("Subject", maildir.subject(delivery)),
        ("X-IPC-Reference", delivery.header.reference),
        ("X-IPC-Form", "G"),
        ("X-IPC-Partner", "NO-SIRENE"),
    )
    parts = [
        ("form.xml", "application/xml", delivery.form_xml),
        (filename, media_type, delivery.attachments[0].data),
    ]
    assert len(maildir.subject(delivery)) > 78 - len("Subject: ")  # folded
    expected = maildir._generated(headers, maildir.body(delivery), parts, "=_" + "d" * 32)
    assert maildir.render(delivery) == expected


@pytest.mark.parametrize("max_line_length", [20, 40, 78, 100])
def test_long_plain_headers_fold_as_compat32_folds_them(max_line_length: int) -> None:
    """Values of single-spaced printable words, many longer than a line: those folded here."""
    rng = random.Random(max_line_length)  # noqa: S311 - reproducible cases, not secrets
    ours = pgpmime.WRITE_POLICY.clone(max_line_length=max_line_length)
    theirs = COMPAT32.clone(max_line_length=max_line_length, linesep="\r\n")
    alphabet = "abcXYZ019;,:=?<>\"'()-."
    for _ in range(3000):
        words = [
            "".join(rng.choice(alphabet) for _ in range(rng.choice([1, 2, 3, 5, 9, 30, 90])))
            for _ in range(rng.randint(1, 30))
        ]
        value = " ".join(words)
        name = rng.choice(["Subject", "To", "X-A", "X-A-Rather-Long-Header-Name"])
        assert ours.fold(name, value) == theirs.fold(name, value), (name, value)

"""mimetree.parse against the email package's parser: the same tree (headers, payloads, preamble,
epilogue, defects) for the gateway's own messages, the malformed and bomb shapes of the intake's
tests and generated messages; and parse_outer, parse_entity and split_signed giving the same
result or the same refusal whichever path read the message."""

from __future__ import annotations

import email
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from email.message import Message
from email.policy import compat32
from typing import Any
from unittest import mock

import gpgkit
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mimekit import RECEIPT_FACTS, many_parts, nested_multiparts

from gateway.core.errors import GatewayError
from gateway.crypto import mimetree, pgpmime
from gateway.crypto.pgpmime import Attachment, Envelope
from gateway.tracking.receipts import ack_form, mdn_entity

FORM = b'<?xml version="1.0"?>\r\n<FormG xmlns="urn:x"><Name>Ion</Name></FormG>\r\n'
ARMOR = b"-----BEGIN PGP MESSAGE-----\r\n\r\nhQEMA0xyz\r\n=abcd\r\n-----END PGP MESSAGE-----\r\n"
ENVELOPE = Envelope("sirene@no.example", "sirene@ro.example", "SIRENE G X-1", "<m@x>", "now")
FACTS = RECEIPT_FACTS


def parser(data: bytes) -> Message:
    return email.message_from_bytes(data, policy=compat32)


def tree(message: Message) -> list[tuple[Any, ...]]:
    """Everything of a parsed Message that its methods read, its parts' too (walked without
    recursion: the bombs nest deeper than Python recurses)."""
    nodes: list[tuple[Any, ...]] = []
    stack = [message]
    while stack:
        node = stack.pop()
        fields = dict(vars(node))  # headers, policy, preamble, epilogue, default type, ...
        payload = fields.pop("_payload")
        fields["defects"] = [type(defect) for defect in fields["defects"]]
        parts = payload if isinstance(payload, list) else None
        nodes.append((type(node), fields, len(parts) if parts is not None else payload))
        stack += reversed(parts or [])
    return nodes


def same_tree(data: bytes) -> bool:
    """Assert that parse builds the parser's tree, or fails as it fails; whether the direct
    reading was taken."""
    direct = mimetree.parse_plain(data)
    try:
        expected = tree(parser(data))
    except RecursionError:  # the parser's own
        assert direct is None
        with pytest.raises(RecursionError):
            mimetree.parse(data)
        return False
    assert tree(mimetree.parse(data)) == expected
    if direct is None:
        return False
    assert tree(direct) == expected
    assert not direct.defects
    return True


@contextmanager
def old_path() -> Iterator[None]:
    with mock.patch.object(mimetree, "parse", parser):
        yield


def outcome(read: Callable[[bytes], object], data: bytes) -> object:
    try:
        return ("read", read(data))
    except GatewayError as error:
        return ("refused", type(error), str(error), error.smtp_code, error.enhanced)
    except (RecursionError, LookupError, ValueError, UnicodeError) as error:
        return ("raised", type(error))


def same_verdicts(data: bytes) -> None:
    for read in (pgpmime.parse_outer, pgpmime.parse_entity, pgpmime.split_signed):
        new = outcome(read, data)
        with old_path():
            assert outcome(read, data) == new


# ---------------------------------------------------------------------- known messages


def own_messages() -> list[bytes]:
    attachments = [
        Attachment(f"scan-{index}.pdf", "application/pdf", bytes(range(256)) * 8)
        for index in range(3)
    ]
    entity = pgpmime.build_entity(FORM, attachments)
    return [
        pgpmime.wrap_encrypted(ARMOR, ENVELOPE),
        pgpmime.build_entity(FORM),
        entity,
        gpgkit.pgp_mime(ARMOR, "a@b.example", "c@d.example", "SIRENE G"),
        gpgkit.entity(FORM),
        b"Content-Type: application/xml\r\n\r\n" + FORM,
    ]


def test_the_gateways_messages_are_read_directly_into_the_parsers_tree() -> None:
    for data in own_messages():
        assert same_tree(data), data[:200]
        same_verdicts(data)
    opened = pgpmime.parse_entity(pgpmime.build_entity(FORM, [Attachment("a.pdf", "x/y", b"1")]))
    assert opened.form == FORM
    assert opened.attachments == (Attachment("a.pdf", "x/y", b"1"),)


def test_nested_and_odd_entities_go_to_the_parser() -> None:
    deferred = [
        gpgkit.multipart_signed(gpgkit.entity(FORM), ARMOR),  # a multipart inside
        mdn_entity(FACTS, ack_form(FACTS)),  # a message/disposition-notification part
        b"Content-Type: message/rfc822\r\n\r\n" + FORM,
        b"Content-Type: multipart/digest; boundary=b\r\n\r\n--b\r\n\r\nX: y\r\n\r\nz\r\n--b--\r\n",
        b"Content-Type: multipart/mixed\r\n\r\nno boundary\r\n",
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nx\r\n",  # never closed
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b--\r\n",  # closed, never opened
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n--b\r\n\r\nx\r\n--b--\r\n",
        b"Content-Type: multipart/mixed; boundary=b\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        b"--b\r\n\r\nx\r\n--b--\r\n",
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nX: y\r\n--b--\r\n",
        b"From someone Mon Jan 1 00:00:00 2026\r\nX: y\r\n\r\nbody\r\n",
        b" continued\r\nX: y\r\n\r\nbody\r\n",
        b":\r\nX: y\r\n\r\nbody\r\n",
        b"X: y\r\nbody without a blank line\r\n",
        FORM,  # no header block: its first line is the body's
        b"X: y\nZ: w\n\nbody\n",
        b"X: y\r\n\r\nbare\rCR\r\n",
        b"",
    ]
    for data in deferred:
        assert not same_tree(data), data
        same_verdicts(data)


def test_the_shapes_the_intakes_tests_send_read_alike() -> None:
    """The bombs and malformed structures of test_intake_limits and test_mimescan."""
    assert same_tree(many_parts(2000))  # flat: read directly, as the parser reads it
    rfc822 = b"Content-Type: message/rfc822\r\n\r\n"
    for data in (
        nested_multiparts(1),
        nested_multiparts(30),
        nested_multiparts(1000),
        rfc822 * 900,
    ):
        same_tree(data)
        same_verdicts(data)
    wide = b"X-Many: 1\r\n" * 5000 + b"Content-Type: text/plain\r\n\r\nbody"
    assert same_tree(wide)


class _Scanned(str):
    """A text that counts how many characters its ``find`` calls pass over."""

    passed = 0

    def find(self, sub: str, start: Any = None, end: Any = None) -> int:
        begin = 0 if start is None else start
        found = str.find(self, sub, begin, len(self) if end is None else end)
        _Scanned.passed += (len(self) if found < 0 else found) - begin
        return found


def test_a_line_of_delimiters_is_read_in_one_pass() -> None:
    """A body line of nothing but the delimiter (``--a--a--a...``, anyone can send one inside a
    signed entity) is passed over once, not once per delimiter in it: the reading stays linear
    in the entity's size, as the parser's does."""
    line = "--a" * 20_000
    text = _Scanned("--a\r\nContent-Type: text/plain\r\n\r\n" + line + "\r\n--a--\r\n")
    _Scanned.passed = 0
    found = mimetree._delimiter(text, 5, "--a")
    assert found is not None and found[2]  # the closing delimiter after the long line
    assert _Scanned.passed < 3 * len(text), f"{_Scanned.passed} characters for {len(text)}"
    entity = b'Content-Type: multipart/mixed; boundary="a"\r\n\r\n' + text.encode()
    assert same_tree(entity)


# ---------------------------------------------------------------------- generated messages

BOUNDARY = "=_0123456789abcdef"
EDGES = [
    b"\r\n",
    b"\n",
    b"\r",
    b"\r\n\r\n",
    b"--",
    b" ",
    b"\t",
    b":",
    b"From x\r\n",
    b" folded\r\n",
    b":x\r\n",
    b"X-A: 1\r\n",
    b"\x00",
    b"\xc3\xa9",
    b"--" + BOUNDARY.encode(),
    b"--" + BOUNDARY.encode() + b"--",
    b"\r\n--" + BOUNDARY.encode() + b"\r\n",
    b"\r\n--" + BOUNDARY.encode() + b" \t\r\n",
    b"\r\n--" + BOUNDARY.encode() + b"--\r\n",
    b"\r\n--" + BOUNDARY.encode() + b"x\r\n",
    b"Content-Type: multipart/mixed; boundary=z\r\n\r\n--z\r\n",
    b"Content-Type: message/rfc822\r\n\r\n",
    b"Content-Type: multipart/digest; boundary=z\r\n",
    b"Content-Type: multipart/mixed\r\n",
    b"Content-Type: text/xml\r\n",
    b"Content-Transfer-Encoding: base64\r\n",
    b"Content-Transfer-Encoding: quoted-printable\r\n",
    b"Content-Disposition: attachment; filename=x.pdf\r\n",
]


def _bases() -> list[bytes]:
    """The gateway's messages with one boundary: the edges above hit it."""
    envelope = Envelope("sirene@no.example", "sirene@ro.example", "SIRENE G", "<m@x>", "now")
    outer = pgpmime.wrap_encrypted(ARMOR, envelope)
    entity = pgpmime.build_entity(FORM, [Attachment("a.pdf", "application/pdf", b"%PDF" * 30)])
    unified = []
    for data in (outer, entity, gpgkit.pgp_mime(ARMOR, "a@b", "c@d", "SIRENE G")):
        boundary = mimetree.parse(data).get_boundary()
        assert boundary is not None
        unified.append(data.replace(boundary.encode(), BOUNDARY.encode()))
    return [*unified, b"Content-Type: application/xml\r\n\r\n" + FORM]


BASES = _bases()


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A message of the gateway's with up to four edits where its structure can go wrong."""
    data = draw(st.sampled_from(BASES))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["insert", "insert", "delete", "replace", "line"]))
        if kind == "insert":
            data = data[:at] + draw(st.sampled_from(EDGES)) + data[at:]
        elif kind == "delete":
            data = data[:at] + data[at + draw(st.integers(1, 40)) :]
        elif kind == "replace":
            data = data[:at] + draw(st.sampled_from(EDGES)) + data[at + draw(st.integers(1, 8)) :]
        else:  # a line start: where headers and delimiters are read
            starts = [0, *(i + 2 for i in range(len(data)) if data.startswith(b"\r\n", i))]
            start = draw(st.sampled_from(starts))
            data = data[:start] + draw(st.sampled_from(EDGES)) + data[start:]
    return data


@settings(max_examples=10 * settings().max_examples, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_messages_read_alike(data: bytes) -> None:
    same_tree(data)
    same_verdicts(data)


def test_mutations_take_both_paths() -> None:
    """The generated messages above exercise the direct reading, not only the fallback."""
    chooser = random.Random(18)  # noqa: S311 (test data)
    taken = 0
    for _ in range(3000):
        data = chooser.choice(BASES)
        at = chooser.randrange(len(data) + 1)
        data = data[:at] + chooser.choice(EDGES) + data[at:]
        taken += same_tree(data)
        same_verdicts(data)
    assert 300 < taken < 2900

"""mimescan.check_structure: every limit at its edge, the ways a structure can be written (line
ends, white space, implicit closings, digests, reports), bombs refused in linear time, the
messages the gateway itself writes accepted, and the scan never more lenient than the parser."""

from __future__ import annotations

import email
import email.policy
from email.message import Message

import gpgkit
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mimekit import RECEIPT_FACTS

from gateway.core.errors import MalformedMessage
from gateway.core.limits import MimeLimits
from gateway.crypto import pgpmime
from gateway.crypto.mimescan import MimeLimitExceeded, check_structure
from gateway.crypto.pgpmime import Attachment, Envelope
from gateway.tracking.receipts import ack_form, mdn_entity

DEFAULT = MimeLimits()
FORM = b'<?xml version="1.0"?>\n<FormG xmlns="urn:x"><Name>Ion</Name></FormG>\n'
ARMOR = b"-----BEGIN PGP MESSAGE-----\r\n\r\nhQEMA0xyz\r\n=abcd\r\n-----END PGP MESSAGE-----\r\n"
ENVELOPE = Envelope("sirene@no.example", "sirene@ro.example", "SIRENE G", "<m@x>", "now")


def multipart(parts: list[bytes], boundary: str = "b", kind: str = "mixed") -> bytes:
    head = f'Content-Type: multipart/{kind}; boundary="{boundary}"\r\n\r\n'.encode()
    body = b"".join(b"--" + boundary.encode() + b"\r\n" + part + b"\r\n" for part in parts)
    return head + body + b"--" + boundary.encode() + b"--\r\n"


def leaf(text: bytes = b"hello") -> bytes:
    return b"Content-Type: text/plain\r\n\r\n" + text


def nested(levels: int) -> bytes:
    """``levels`` multiparts one inside the other (distinct boundaries), a text leaf inside."""
    entity = leaf()
    for level in range(levels):
        entity = multipart([entity], boundary=f"level-{level}")
    return entity


def rfc822_nested(levels: int) -> bytes:
    """``levels`` message/rfc822 entities one inside the other."""
    entity = leaf()
    for _ in range(levels):
        entity = b"Content-Type: message/rfc822\r\n\r\n" + entity
    return entity


def refused(data: bytes, limits: MimeLimits = DEFAULT) -> str:
    with pytest.raises(MimeLimitExceeded) as raised:
        check_structure(data, limits)
    assert raised.value.smtp_code == 550
    assert raised.value.enhanced == "5.6.0"
    assert isinstance(raised.value, MalformedMessage)
    return str(raised.value)


# ---------------------------------------------------------------------- limits at their edges


def test_depth_8_passes_and_9_is_refused() -> None:
    check_structure(nested(8), DEFAULT)
    assert "deeper than 8" in refused(nested(9))


def test_message_rfc822_levels_count_as_depth() -> None:
    check_structure(rfc822_nested(8), DEFAULT)
    assert "deeper than 8" in refused(rfc822_nested(9))
    mixed = multipart([b"Content-Type: message/rfc822\r\n\r\n" + nested(6)], boundary="outer")
    check_structure(mixed, DEFAULT)  # 1 + 1 + 6
    deeper = multipart([b"Content-Type: message/rfc822\r\n\r\n" + nested(7)], boundary="outer")
    assert "deeper than 8" in refused(deeper)


def test_64_parts_pass_and_65_are_refused() -> None:
    check_structure(multipart([leaf()] * 64), DEFAULT)
    assert "more than 64 MIME parts" in refused(multipart([leaf()] * 65))


def test_parts_of_every_level_count_together() -> None:
    inner = multipart([leaf()] * 31, boundary="inner")
    check_structure(multipart([inner, *[leaf()] * 32], boundary="outer"), DEFAULT)  # 64
    assert "MIME parts" in refused(multipart([inner, *[leaf()] * 33], boundary="outer"))


def headers(count: int) -> bytes:
    return b"".join(b"X-Field-%d: value\r\n" % index for index in range(count))


def test_100_header_fields_pass_and_101_are_refused() -> None:
    check_structure(headers(100) + b"\r\nbody", DEFAULT)
    assert "more than 100 header fields" in refused(headers(101) + b"\r\nbody")


def test_header_fields_are_counted_in_every_part_not_continuation_lines() -> None:
    part = headers(99) + b"Content-Type: text/plain;\r\n charset=utf-8\r\n\r\nx"
    check_structure(multipart([part]), DEFAULT)
    assert "header fields" in refused(multipart([headers(100) + part]))


def header_block(size: int) -> bytes:
    """A header block of exactly ``size`` bytes (its lines with their CRLF)."""
    line = b"X-Pad: " + b"a" * (size - len(b"X-Pad: \r\n")) + b"\r\n"
    assert len(line) == size
    return line


def test_header_block_of_64_kib_passes_and_one_byte_more_is_refused() -> None:
    check_structure(header_block(64 * 1024) + b"\r\nbody", DEFAULT)
    assert "header block over 65536 bytes" in refused(header_block(64 * 1024 + 1) + b"\r\nbody")
    assert "header block" in refused(multipart([header_block(64 * 1024 + 1) + b"\r\nx"]))


def test_header_block_without_end_is_refused_past_its_cap() -> None:
    """A block that never ends (no blank line, no body) is measured as far as the cap only."""
    assert "header block" in refused(b"X-Pad: " + b"a" * (10 << 20))
    check_structure(b"X-Pad: " + b"a" * 1000, DEFAULT)


def test_boundary_of_70_passes_and_71_is_refused() -> None:
    check_structure(multipart([leaf()], boundary="b" * 70), DEFAULT)
    assert "longer than 70" in refused(multipart([leaf()], boundary="b" * 71))


@pytest.mark.parametrize(
    "content_type",
    [
        b"multipart/mixed",
        b'multipart/mixed; boundary=""',
        b"multipart/mixed; boundary=",
        b'multipart/mixed; boundary="\xc3\xa9t\xc3\xa9"',
        b'multipart/mixed; boundary="a\tb"',
    ],
    ids=["missing", "empty-quoted", "empty", "not-ascii", "control"],
)
def test_multipart_without_a_usable_boundary_is_refused(content_type: bytes) -> None:
    assert "usable boundary" in refused(b"Content-Type: " + content_type + b"\r\n\r\n--\r\n")


# ---------------------------------------------------------------------- ways of writing MIME


@pytest.mark.parametrize("line_end", [b"\r\n", b"\n", b"\r"], ids=["crlf", "lf", "cr"])
def test_every_line_end_the_parser_knows_is_read_as_one(line_end: bytes) -> None:
    """CRLF, LF and a bare CR all end lines for the parser: depth and parts are counted alike."""
    for data, limit in ((nested(9), "deeper"), (multipart([leaf()] * 65), "MIME parts")):
        assert limit in refused(data.replace(b"\r\n", line_end))
    check_structure(nested(8).replace(b"\r\n", line_end), DEFAULT)


def test_delimiters_with_trailing_white_space_are_delimiters() -> None:
    data = multipart([leaf()] * 65).replace(b"--b\r\n", b"--b \t \r\n")
    assert "MIME parts" in refused(data)
    closing = multipart([leaf()]).replace(b"--b--\r\n", b"--b--\t \r\n")
    epilogue = b"".join(b"--b\r\n" + leaf() + b"\r\n" for _ in range(70))
    check_structure(closing + epilogue, DEFAULT)  # after the closing delimiter: epilogue


def test_closing_delimiter_of_an_outer_multipart_closes_the_inner_ones() -> None:
    """An inner multipart left open is closed by the outer one's closing delimiter: what
    follows is the outer epilogue, where the inner boundary means nothing any more."""
    inner = b'Content-Type: multipart/mixed; boundary="inner"\r\n\r\n--inner\r\n' + leaf()
    data = multipart([inner], boundary="outer")
    epilogue = b"".join(b"--inner\r\n" + nested(8) + b"\r\n" for _ in range(10))
    check_structure(data + epilogue, DEFAULT)
    # but an outer delimiter (not closing) opens a new outer part after an unclosed inner one
    reopened = data.replace(b"--outer--", b"--outer\r\n" + nested(8) + b"\r\n--outer--")
    assert "deeper" in refused(reopened)


def test_unclosed_multiparts_pass_to_the_parser() -> None:
    check_structure(b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\nhi', DEFAULT)


def test_a_receipt_passes() -> None:
    facts = RECEIPT_FACTS
    entity = mdn_entity(facts, ack_form(facts))
    assert b"message/disposition-notification" in entity
    check_structure(entity, DEFAULT)
    check_structure(
        entity, MimeLimits(max_depth=2, max_parts=3, max_headers=5, max_boundary_length=70)
    )


def test_the_gateways_own_messages_pass() -> None:
    attachments = [
        Attachment(f"scan-{index}.pdf", "application/pdf", bytes(range(256)) * 40)
        for index in range(5)
    ]
    entity = pgpmime.build_entity(FORM, attachments)
    check_structure(entity, DEFAULT)
    check_structure(pgpmime.build_entity(FORM), DEFAULT)
    check_structure(pgpmime.wrap_encrypted(ARMOR, ENVELOPE), DEFAULT)


def test_what_a_plain_gpg_sender_writes_passes() -> None:
    entity = gpgkit.entity(FORM)
    check_structure(entity, DEFAULT)
    check_structure(gpgkit.multipart_signed(entity, ARMOR), DEFAULT)
    check_structure(gpgkit.pgp_mime(ARMOR, "a@b.example", "c@d.example", "SIRENE G"), DEFAULT)


def test_delivery_status_is_refused() -> None:
    """The parser makes an object of each blank-line-separated block of a
    message/delivery-status, and reads each block as an entity again, where a multipart nests
    without blank lines and without end (1,000 levels in 57 KB raise RecursionError)."""
    report = (
        b'Content-Type: multipart/report; report-type=delivery-status; boundary="r"\r\n\r\n'
        b"--r\r\nContent-Type: message/delivery-status\r\n\r\n"
    )
    assert "delivery-status" in refused(report + b"Action: failed\r\n\r\n--r--\r\n")
    assert "delivery-status" in refused(report + b"Action: failed\r\n\r\n" * 20_000)
    blocks = b"".join(
        b"Content-Type: multipart/mixed; boundary=z%d\r\nX\r\n--z%d\r\n" % (i, i)
        for i in range(1000)
    )
    data = b"Content-Type: message/delivery-status\r\n\r\n" + blocks
    with pytest.raises(RecursionError):
        email.message_from_bytes(data, policy=email.policy.compat32)
    assert "delivery-status" in refused(data)


# ---------------------------------------------------------------------- seen as the parser sees


def test_a_header_block_ends_at_its_first_line_that_is_no_header() -> None:
    """No blank line between a part's header and its first delimiter: the parser takes the
    delimiter as the start of the body, and so does the scan (1,000 levels, not one)."""
    lines = [b"Content-Type: multipart/mixed; boundary=b0", b""]
    for level in range(1000):
        lines += [b"--b%d" % level, b"Content-Type: multipart/mixed; boundary=b%d" % (level + 1)]
    assert "deeper" in refused(b"\r\n".join(lines))


def test_delimiter_lines_after_a_delimiter_are_skipped_a_closing_one_too() -> None:
    """The parser skips delimiter lines that follow a delimiter, a closing one included: the
    multipart is not closed and what follows is a part."""
    tail = b"".join(
        b"Content-Type: multipart/mixed; boundary=z%d\r\n\r\n--z%d\r\n" % (i, i) for i in range(20)
    )
    data = b"Content-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\n--a--\r\n" + tail
    assert "deeper" in refused(data)


def test_an_enclosing_multipart_takes_a_delimiter_line_before_the_innermost() -> None:
    """Boundaries "a--" (outer) and "a" (inner): the line "--a--" is a delimiter of the outer
    one for the parser, not the closing delimiter of the inner one."""
    tail = b"".join(
        b"Content-Type: multipart/mixed; boundary=z%d\r\n\r\n--z%d\r\n" % (i, i) for i in range(20)
    )
    data = (
        b'Content-Type: multipart/mixed; boundary="a--"\r\n\r\n--a--\r\n'
        b'Content-Type: multipart/mixed; boundary="a"\r\n\r\n--a--\r\n' + tail
    )
    assert "deeper" in refused(data)


def test_a_delimiter_that_looks_like_a_header_field_ends_the_part() -> None:
    """A boundary with a colon makes delimiter lines that match a header field's pattern; the
    parser ends the part there all the same."""
    inner = b"Content-Type: text/plain\r\n--a:b\r\n" + nested(8)
    data = b'Content-Type: multipart/mixed; boundary="a:b"\r\n\r\n--a:b\r\n' + inner
    assert "deeper" in refused(data)


def test_parts_of_a_digest_are_messages_by_default() -> None:
    data = rfc822_nested(0)
    for level in range(9):
        data = multipart([b"\r\n" + data], boundary=f"d{level}", kind="digest")
    parsed = email.message_from_bytes(data, policy=email.policy.compat32)
    assert parsed.get_payload(0).get_content_type() == "message/rfc822"  # type: ignore[union-attr]
    assert "deeper" in refused(data)


def test_the_content_type_is_the_field_the_parser_reads() -> None:
    """A quoted boundary with two spaces keeps them; "Content-Type :" (a space before the
    colon) is no header field for the parser but the first line of the body, and the entity
    is text/plain, whatever follows."""
    head = b"Content-Type : text/plain\r\nContent-Type: multipart/mixed; boundary=a\r\n\r\n"
    body = head + b"--a\r\n" + nested(8) + b"\r\n--a--\r\n"
    check_structure(body, DEFAULT)
    assert parsed_shape(body) == (0, 0, 0)
    spaced = b'Content-Type: multipart/mixed; boundary="x  y"\r\n\r\n'
    assert "deeper" in refused(spaced + b"--x  y\r\n" + nested(8) + b"\r\n--x  y--\r\n")


# ---------------------------------------------------------------------- bombs, linear time


def test_1000_nested_multiparts_are_refused_without_recursion() -> None:
    assert "deeper" in refused(nested(1000))
    assert "deeper" in refused(rfc822_nested(1000))


def test_100000_parts_are_refused() -> None:
    assert "MIME parts" in refused(multipart([b""] * 100_000))


def test_scan_is_linear_in_the_parts() -> None:
    """With the part limit out of the way the scan walks 200,000 parts, and 2,000 parts each 8
    levels deep: work quadratic in the parts would be 10^10 steps, never done within the
    test's timeout. (Its work per delimiter grows with the levels open, at most max_depth.)"""
    roomy = MimeLimits(max_parts=10**7)
    check_structure(multipart([b"x"] * 200_000), roomy)
    check_structure(multipart([nested(7)] * 2000, boundary="outer"), roomy)


def test_a_delimiter_that_never_comes_is_not_searched_for_again_and_again() -> None:
    """Every part of the outer multipart opens a multipart of its own (a boundary of its own)
    whose delimiter never comes, and 5 MiB follow the outer one's end: searching each inner
    boundary's delimiter to the end of the data would read 20,000 x 5 MiB. The parts are
    counted as the parser counts them: the outer one's 20,000."""
    inner = [
        f'Content-Type: multipart/mixed; boundary="never-{n}"\r\n\r\ntext'.encode()
        for n in range(20_000)
    ]
    data = multipart(inner, boundary="outer") + b"x" * (5 << 20)
    check_structure(data, MimeLimits(max_parts=20_000))
    assert "parts" in refused(data, MimeLimits(max_parts=19_999))


def test_deep_nesting_within_roomy_limits_needs_no_recursion() -> None:
    check_structure(nested(300), MimeLimits(max_depth=300, max_parts=300))
    check_structure(rfc822_nested(5000), MimeLimits(max_depth=5000))


def test_big_bodies_without_structure_are_scanned_quickly() -> None:
    """10 MiB of body lines that start like a delimiter, of blank lines, of one long line."""
    head = b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n\r\n'
    for body in (b"--c\r\n" * (2 << 20), b"\r\n" * (5 << 20), b"x" * (10 << 20)):
        check_structure(head + body + b"\r\n--b--\r\n", DEFAULT)


# ---------------------------------------------------------------------- never more lenient


SMALL = MimeLimits(
    max_depth=3, max_parts=6, max_headers=4, max_header_bytes=200, max_boundary_length=70
)
BOUNDARIES = ["a", "a--", "b", "a:b", "x  y", "=_q"]
LINE_ENDS = [b"\r\n", b"\n", b"\r"]
JUNK = [b"", b"--a", b"--a--", b"--b", b"--b--", b"x: y", b"From x", b" folded", b"text", b"--"]


@st.composite
def entities(draw: st.DrawFn, depth: int = 0) -> list[bytes]:
    """The lines of a random entity: content types that nest, with the ways MIME can go wrong
    (boundaries that collide, headers with no blank line after them, missing and repeated
    delimiters, header fields the parser does not read as Content-Type)."""
    boundary = draw(st.sampled_from(BOUNDARIES)).encode()
    kind = draw(
        st.sampled_from(
            ["mixed", "digest", "rfc822", "status", "text", "none", "spaced"]
            if depth < 5
            else ["text", "none", "status"]
        )
    )
    lines = draw(st.lists(st.sampled_from([b"X-A: 1", b"Subject: s", b" cont"]), max_size=5))
    content_type = {
        "mixed": b'Content-Type: multipart/mixed; boundary="' + boundary + b'"',
        "digest": b'Content-Type: multipart/digest; boundary="' + boundary + b'"',
        "rfc822": b"Content-Type: message/rfc822",
        "status": b"Content-Type: message/delivery-status",
        "text": b"Content-Type: text/plain",
        "none": b"",
        "spaced": b"Content-Type : multipart/mixed; boundary=" + boundary,
    }[kind]
    if content_type:
        lines.insert(draw(st.integers(0, len(lines))), content_type)
    if draw(st.booleans()):
        lines.append(b"")  # the separator; without it the body starts at its first line
    if kind in {"mixed", "digest", "spaced"}:
        lines += draw(st.lists(st.sampled_from(JUNK), max_size=2))
        for _ in range(draw(st.integers(0, 4))):
            lines.append(b"--" + boundary + draw(st.sampled_from([b"", b" ", b"--"])))
            lines += draw(entities(depth + 1))
        if draw(st.booleans()):
            lines.append(b"--" + boundary + b"--")
    elif kind == "rfc822":
        lines += draw(entities(depth + 1))
    lines += draw(st.lists(st.sampled_from(JUNK), max_size=3))
    return lines


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    lines = draw(entities())
    return b"".join(line + draw(st.sampled_from(LINE_ENDS)) for line in lines)


def parsed_shape(data: bytes) -> tuple[int, int, int]:
    """What the parser built: deepest nesting, parts (blocks of delivery-status included), the
    most header fields of one entity. Walked without recursion."""
    root = email.message_from_bytes(data, policy=email.policy.compat32)
    deepest = parts = most_fields = 0
    stack = [(root, 0)]
    while stack:
        entity, depth = stack.pop()
        most_fields = max(most_fields, len(entity.keys()))
        children = entity.get_payload()
        if not isinstance(children, list):
            continue
        if entity.get_content_type() == "message/delivery-status":
            parts += len(children)
            stack += [(child, depth) for child in children if isinstance(child, Message)]
            continue
        deepest = max(deepest, depth + 1)
        if entity.get_content_maintype() != "message":
            parts += len(children)
        stack += [(child, depth + 1) for child in children if isinstance(child, Message)]
    return deepest, parts, most_fields


@settings(max_examples=4 * settings().max_examples, suppress_health_check=[HealthCheck.too_slow])
@given(messages())
def test_what_the_scan_passes_the_parser_builds_within_the_limits(data: bytes) -> None:
    try:
        check_structure(data, SMALL)
    except MimeLimitExceeded:
        return
    depth, parts, fields = parsed_shape(data)
    assert depth <= SMALL.max_depth
    assert parts <= SMALL.max_parts
    assert fields <= SMALL.max_headers


def test_a_line_belongs_to_the_outermost_multipart_it_delimits() -> None:
    """Found by the property above: boundaries "a--", "a", "a--" one inside the other; the line
    "--a--" closes the middle one for its own loop, but the outermost one reads it first, as a
    delimiter, and its next part has header fields of its own."""
    data = (
        b'Content-Type: multipart/mixed; boundary="a--"\r\n--a--\r\n'
        b'Content-Type: multipart/mixed; boundary="a"\r\n--a\r\n'
        b'Content-Type: multipart/mixed; boundary="a--"\r\n--a--\r\n' + headers(101)
    )
    assert parsed_shape(data)[2] == 101
    assert "header fields" in refused(data)


def test_header_fields_are_counted_up_to_a_delimiter_that_ends_them() -> None:
    """Found by the property above: a header block cut short by a delimiter line that looks
    like a header field is still counted."""
    data = (
        b'Content-Type: multipart/mixed; boundary="a:b"\r\n\r\n--a:b\r\n'
        + headers(101)
        + b"--a:b--\r\n"
    )
    assert parsed_shape(data)[2] == 101
    assert "header fields" in refused(data)

"""The email package's parse of a MIME entity, built directly when the entity is plain enough.

PGP/MIME's layers are simple: the outer message is a multipart/encrypted of two leaf parts, the
signed content a multipart/mixed of leaf parts or one XML entity. For those, the email package's
feed parser (a generator per entity, every line pushed, matched and popped one by one) was a
fifth of a received message's intake. ``parse`` builds the very tree that
``email.message_from_bytes(data, policy=compat32)`` builds (the same Message class, the same
header list through compat32's own ``header_source_parse``, the same payload strings, preamble
and epilogue) for an entity that is:

- written with CRLF line ends only (no bare CR or LF anywhere);
- headed by a block of header fields (a name of printable ASCII but ":", then ":"; continuation
  lines after a field) ended by an empty line, with no "From " line;
- a leaf (neither multipart/* nor message/*), or a multipart (not a digest) with a boundary, a
  content transfer encoding of 7bit, 8bit or binary (or none), whose body is an optional
  preamble, then parts each opened by one delimiter line and made of such a header block and a
  leaf's body, then the closing delimiter line and an optional epilogue.

The policy is compat32, as it was for the parser: a dozen times faster than
email.policy.default (which builds header objects), and only content types, parameters,
payloads and a few plain ASCII header values are read from the tree.

Anything else (where the parser notes a defect, reads a line otherwise, or recurses) is given
to the email package's parser itself, so that no message is read here otherwise than there; a
test compares the two trees on the malformed and bomb corpora and on generated messages.
"""

from __future__ import annotations

import email
import re
from email.message import Message
from email.policy import compat32

_CRLF = "\r\n"
# A block of header fields as the feed parser's headerRE takes them (without the "From "
# lines it also takes, which it reads otherwise), each field with its continuation lines.
_FIELDS = re.compile(r"(?:[\x21-\x39\x3b-\x7e]+:[^\r\n]*\r\n(?:[ \t][^\r\n]*\r\n)*)*")
_FIELD = re.compile(r"[\x21-\x39\x3b-\x7e]+:[^\r\n]*\r\n(?:[ \t][^\r\n]*\r\n)*")
_PLAIN_TRANSFER = ("7bit", "8bit", "binary")


def parse(data: bytes) -> Message:
    """``email.message_from_bytes(data, policy=compat32)``, built directly when ``data`` is a
    plain entity (see the module's text), by the email package otherwise."""
    return parse_plain(data) or email.message_from_bytes(data, policy=compat32)


def parse_plain(data: bytes) -> Message | None:
    """The email package's tree of ``data`` if it is a plain entity, else None."""
    text = data.decode("ascii", "surrogateescape")  # as BytesParser decodes it
    if not (text.count("\r") == text.count(_CRLF) == text.count("\n")):
        return None
    message, body = _headed(text, 0, len(text))
    if message is None:
        return None
    kind = message.get_content_maintype()
    if kind == "message":
        return None
    if kind != "multipart":
        message.set_payload(text[body:])
        return message
    if message.get_content_type() == "multipart/digest":
        return None  # its parts are message/rfc822 by default: entities of their own
    boundary = message.get_boundary()
    if boundary is None:
        return None
    if str(message.get("content-transfer-encoding", "8bit")).lower() not in _PLAIN_TRANSFER:
        return None
    return message if _parts(message, text, body, "--" + boundary) else None


def _headed(text: str, start: int, end: int) -> tuple[Message | None, int]:
    """A Message holding the header fields of the block at ``start`` (ended by an empty line
    before ``end``), and where its body starts; None if the block is not plain."""
    fields = _FIELDS.match(text, start, end)
    assert fields is not None  # noqa: S101 (the pattern matches the empty string)
    if not text.startswith(_CRLF, fields.end(), end):
        return None, start  # no empty line after the fields: the parser notes a defect
    message = Message(policy=compat32)
    for field in _FIELD.finditer(text, start, fields.end()):
        lines = field.group()
        first = lines.index(_CRLF) + len(_CRLF)  # the field's line, then its continuation lines
        message.set_raw(*compat32.header_source_parse([lines[:first], lines[first:]]))
    return message, fields.end() + len(_CRLF)


def _parts(message: Message, text: str, body: int, delimiter: str) -> bool:
    """Attach the leaf parts of the multipart ``message`` whose body starts at ``body`` and set
    its preamble and epilogue, as the parser does; False if the body is not plain."""
    found = _delimiter(text, body, delimiter)
    if found is None or found[2]:
        return False  # no opening delimiter, or a closing one first: the parser notes a defect
    start, after, _ = found
    if start > body:
        message.preamble = text[body : start - len(_CRLF)]  # the last line end is the delimiter's
    while True:
        following = _delimiter(text, after, delimiter)
        if following is None or following[0] == after:
            return False  # no closing delimiter, or delimiter lines one after the other
        part, part_body = _headed(text, after, following[0])
        if part is None or part.get_content_maintype() in ("multipart", "message"):
            return False
        payload = text[part_body : following[0]]
        part.set_payload(payload.removesuffix(_CRLF))  # the line end before a delimiter is its
        message.attach(part)
        _, after, closing = following
        if closing:
            message.epilogue = text[after:]
            return True


def _delimiter(text: str, position: int, delimiter: str) -> tuple[int, int, bool] | None:
    """The first delimiter line at or after ``position`` (a line's start): where it starts,
    where the next line starts and whether it is the closing one. A delimiter line is the
    boundary's delimiter, an optional "--" and spaces or tabs, as the parser's pattern reads."""
    while (start := text.find(delimiter, position)) >= 0:
        if start == 0 or text[start - 1] == "\n":  # only a line's start looks for its end:
            line_end = text.find(_CRLF, start)  # a line of delimiters stays one pass
            end = len(text) if line_end < 0 else line_end
            rest = text[start + len(delimiter) : end].rstrip(" \t")
            if rest in ("", "--"):
                return start, len(text) if line_end < 0 else end + len(_CRLF), rest == "--"
        position = start + 1
    return None

"""MIME structure limits (depth, parts, headers, boundaries), checked before the email parser.

The email package's parser recurses once per nesting level (1,000 nested multiparts raise
RecursionError) and builds an object per part and per header. This scan walks the same structure
without recursion and without building anything, and refuses what is over a limit first.
"""

from __future__ import annotations

import re
from email.message import Message

from gateway.errors import MalformedMessage
from gateway.limits import MimeLimits


class MimeLimitExceeded(MalformedMessage):
    summary = "MIME structure over the limits"


# The start of a line that may be a delimiter: "--" at the start of the data or after a LF.
_DASHES = re.compile(rb"(?:\A|\n)--")
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")
_FIELD_START = re.compile(rb"(?:\A|\n)(?![ \t\r\n])")
_CONTENT_TYPE = re.compile(rb"(?:\A|\n)content-type[ \t]*:([^\n]*(?:\n[ \t][^\n]*)*)", re.I)


def check_structure(data: bytes, limits: MimeLimits) -> None:
    """Raise MimeLimitExceeded (550 5.6.0) if ``data`` has more MIME structure than ``limits``
    allow: nesting deeper than ``max_depth``, more than ``max_parts`` parts, an entity with more
    than ``max_headers`` header fields or a header block over ``max_header_bytes``, or a boundary
    longer than ``max_boundary_length`` (or empty). Linear in the size of ``data``."""
    # Open levels, innermost last: the boundary of a multipart, or None for a message/* part
    # (whose body is itself an entity).
    levels: list[bytes | None] = []
    parts = 0
    position = _entity(data, 0, levels, limits)
    while levels:
        boundaries = [boundary for boundary in levels if boundary is not None]
        if not boundaries:
            return
        # From the line end before ``position``: a delimiter may open the very first line.
        found = _DASHES.search(data, max(position - 1, 0))
        if found is None:
            return  # unclosed multiparts: the parser reports what it finds, depth is known
        start = found.end()
        end = data.find(b"\n", start)
        end = len(data) if end < 0 else end
        line = data[start:end].rstrip(b" \t\r")
        position = end
        level = _level_of(line, levels)
        if level is None:
            continue  # a body line that happens to start with "--"
        boundary = levels[level]
        del levels[level + 1 :]
        if boundary is not None and line == boundary + b"--":
            levels.pop()  # the multipart's closing delimiter
            continue
        parts += 1
        if parts > limits.max_parts:
            raise MimeLimitExceeded(f"more than {limits.max_parts} MIME parts")
        position = _entity(data, min(end + 1, len(data)), levels, limits)


def _level_of(line: bytes, levels: list[bytes | None]) -> int | None:
    """The index of the open multipart whose delimiter ``line`` is (after "--"), or None."""
    for index in range(len(levels) - 1, -1, -1):
        boundary = levels[index]
        if boundary is not None and (line == boundary or line == boundary + b"--"):
            return index
    return None


def _entity(data: bytes, start: int, levels: list[bytes | None], limits: MimeLimits) -> int:
    """Check the header block of the entity at ``start`` (and of the entities a message/* part
    opens), push its level, and return where its body starts."""
    while True:
        position, content_type = _headers(data, start, limits)
        kind, boundary = _kind(content_type)
        if kind.startswith("multipart/"):
            if not boundary or not boundary.isascii():
                raise MimeLimitExceeded(f"a {kind} part without a usable boundary")
            if len(boundary) > limits.max_boundary_length:
                raise MimeLimitExceeded(
                    f"a boundary longer than {limits.max_boundary_length} characters"
                )
            _push(levels, boundary.encode("ascii"), limits)
            return position
        if kind.startswith("message/") and kind != "message/delivery-status":
            _push(levels, None, limits)  # its body is an entity with headers of its own
            start = position
            continue
        return position


def _push(levels: list[bytes | None], level: bytes | None, limits: MimeLimits) -> None:
    levels.append(level)
    if len(levels) > limits.max_depth:
        raise MimeLimitExceeded(f"MIME nesting deeper than {limits.max_depth} levels")


def _headers(data: bytes, start: int, limits: MimeLimits) -> tuple[int, bytes | None]:
    """The end of the header block at ``start`` and its Content-Type value (None: none)."""
    window_end = start + limits.max_header_bytes + 4
    if data.startswith(b"\r\n", start) or data.startswith(b"\n", start):
        return start + (2 if data.startswith(b"\r\n", start) else 1), None
    blank = _BLANK_LINE.search(data, start, window_end)
    if blank is None:
        if len(data) - start > limits.max_header_bytes:
            raise MimeLimitExceeded(f"a header block over {limits.max_header_bytes} bytes")
        block_end = body = len(data)
    else:
        block_end, body = blank.start(), blank.end()
        if block_end - start > limits.max_header_bytes:
            raise MimeLimitExceeded(f"a header block over {limits.max_header_bytes} bytes")
    block = data[start:block_end]
    fields = sum(1 for _ in _FIELD_START.finditer(block))
    if fields > limits.max_headers:
        raise MimeLimitExceeded(f"more than {limits.max_headers} header fields in one part")
    found = _CONTENT_TYPE.search(block)
    return body, found.group(1) if found else None


def _kind(value: bytes | None) -> tuple[str, str | None]:
    """The content type (lower case, default text/plain) and boundary of a Content-Type value."""
    if value is None:
        return "text/plain", None
    if not value.isascii():
        raise MimeLimitExceeded("a Content-Type header that is not ASCII")
    header = Message()
    header["Content-Type"] = " ".join(value.decode("ascii").split())
    return header.get_content_type(), header.get_boundary()

"""MIME structure limits (depth, parts, headers, boundaries), checked before the email parser.

The email package's parser recurses once per nesting level (1,000 nested multiparts raise
RecursionError) and builds an object per part and per header. This scan walks the same structure
without recursion and without building anything but one entity's headers at a time, and refuses
what is over a limit first.

It reads the data as the parser (email.feedparser, any policy) reads it, or the limits could be
passed by a structure that the scan and the parser see differently: lines end at CRLF, CR or
LF; a header block ends at its first line that is not a header field (a blank line or any other);
a line that is a delimiter of an open multipart ends the part it is in, and belongs to the
outermost multipart whose boundary it holds; delimiter lines that follow a delimiter (a closing one
too) are skipped; a part of a multipart/digest without a Content-Type is a message/rfc822; every
message/* but message/delivery-status holds an entity of its own. A message/delivery-status is
refused: its blocks of header fields are entities again, under rules of their own.
"""

from __future__ import annotations

import functools
import itertools
import re
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from email.policy import compat32

from gateway.core.errors import MalformedMessage
from gateway.core.limits import MimeLimits


class MimeLimitExceeded(MalformedMessage):
    summary = "MIME structure over the limits"


# A run of header lines as email.feedparser's headerRE takes them, each with its line end.
_HEADER_LINES = re.compile(rb"(?:(?:From |[\x21-\x39\x3b-\x7e]*:|[ \t])[^\r\n]*(?:\r\n|\r|\n|\Z))*")
# The first character of a header field (not of a continuation line) at the start of a line.
_FIELD_START = re.compile(rb"(?:\A|(?<=[\r\n]))[^ \t\r\n]")
# A line that starts with "--" (a delimiter may be there).
_DASH_LINE = re.compile(rb"(?:\A|(?<=[\r\n]))--")
# An empty line: a line end at the start of a line (not the LF of a CRLF).
_BLANK_LINE = re.compile(rb"(?:\A|(?<=\n)|(?<=\r)(?!\n))(?:\r\n|\r|\n)")
_LINE_END = re.compile(rb"[\r\n]")
# The first Content-Type field of a header block, with its continuation lines.
_CONTENT_TYPE = re.compile(
    rb"(?:\A|(?<=[\r\n]))content-type:[^\r\n]*(?:(?:\r\n|\r|\n)[ \t][^\r\n]*)*", re.IGNORECASE
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Content-Type fields up to this long have their reading kept (256 of them: 64 KiB at most).
_KEPT_FIELD_BYTES = 256


@dataclass(frozen=True)
class _Level:
    """An open nesting level: a multipart (its boundary) or a message/* part (boundary None)."""

    boundary: bytes | None
    digest: bool = False  # a multipart/digest: its parts are message/rfc822 by default


def _content_type(field: bytes, *, in_digest: bool) -> tuple[str, str | None]:
    """The content type that a header block whose first Content-Type field is ``field`` (empty:
    none) gives its entity, and its boundary parameter, read by the email package's own header
    code. The same short field comes in every message (application/pgp-encrypted, text/xml):
    its reading is kept, for fields short enough that the kept ones stay small."""
    if len(field) > _KEPT_FIELD_BYTES:
        return _read_content_type(field, in_digest)
    return _kept_content_type(field, in_digest)


def _read_content_type(field: bytes, in_digest: bool) -> tuple[str, str | None]:
    headers = BytesHeaderParser(policy=compat32).parsebytes(field)
    if in_digest:
        headers.set_default_type("message/rfc822")
    kind = headers.get_content_type()
    return kind, headers.get_boundary() if kind.startswith("multipart/") else None


_kept_content_type = functools.lru_cache(maxsize=256)(_read_content_type)


def check_structure(data: bytes, limits: MimeLimits) -> None:
    """Raise MimeLimitExceeded (550 5.6.0) if ``data`` has more MIME structure than ``limits``
    allow: nesting deeper than ``max_depth``, more than ``max_parts`` parts, an entity with more
    than ``max_headers`` header fields or a header block over ``max_header_bytes``, or a
    multipart boundary that is empty, not ASCII, holds a control character or is longer than
    ``max_boundary_length``; or a message/delivery-status part. Linear in the size of ``data``."""
    _Scan(data, limits).run()


class _Scan:
    """One pass over one message; ``levels`` are the open levels, innermost last."""

    def __init__(self, data: bytes, limits: MimeLimits) -> None:
        self.data = data
        self.limits = limits
        self.levels: list[_Level] = []
        self.parts = 0
        self.clear: dict[bytes, int] = {}  # per boundary: no delimiter line of it before this

    def run(self) -> None:
        position = self._entity(0, in_digest=False)
        while True:
            found = self._next_delimiter(position)
            if found is None:
                return  # the end of the data: unclosed multiparts are the parser's concern
            _, after, level, closing = found
            del self.levels[level + 1 :]
            if closing:
                self.levels.pop()
                position = after
                continue
            position = self._skip_repeated(after, level)
            self._count_part()
            position = self._entity(position, in_digest=self.levels[level].digest)

    # ------------------------------------------------------------------ delimiters

    def _next_delimiter(self, position: int) -> tuple[int, int, int, bool] | None:
        """The next delimiter line of an open multipart: its start, the start of the next line,
        the level it belongs to and whether it closes that level."""
        boundaries = dict.fromkeys(
            level.boundary for level in self.levels if level.boundary is not None
        )
        if not boundaries:
            return None
        best = len(self.data) + 1  # outermost first: its delimiter bounds the inner ones' search
        for boundary in boundaries:
            best = min(best, self._next_line_of(boundary, position, best))
        if best > len(self.data):
            return None
        match = self._delimiter_of(best)
        assert match is not None  # noqa: S101 (a delimiter line of one of the boundaries)
        return best, self._next_line(best), *match

    def _next_line_of(self, boundary: bytes, position: int, before: int) -> int:
        """Where the first delimiter line of ``boundary`` at or after ``position`` starts, if it
        starts before ``before``; ``before`` otherwise. What was searched is remembered (none
        up to ``clear``), so that each boundary's search goes over the data once: a multipart
        whose delimiter never comes is not searched to the end again for every part of the
        multipart around it. Positions only grow during a scan."""
        start = max(position, self.clear.get(boundary, position))
        needle = b"--" + boundary
        end = min(len(self.data), before + len(needle))
        while (found := self.data.find(needle, start, end)) >= 0:
            if (found == 0 or self.data[found - 1] in b"\r\n") and self._closes_line(
                found + len(needle)
            ):
                self.clear[boundary] = found
                return found
            start = found + 1
        self.clear[boundary] = max(position, min(before, len(self.data)))
        return before

    def _closes_line(self, position: int) -> bool:
        """Whether the line goes on from ``position`` with nothing but an optional "--" and
        spaces or tabs: the rest of a delimiter line."""
        end = _LINE_END.search(self.data, position)
        rest = self.data[position : end.start() if end else len(self.data)].rstrip(b" \t")
        return rest in (b"", b"--")

    def _delimiter_of(self, start: int) -> tuple[int, bool] | None:
        """The level whose delimiter the line at ``start`` is, and whether it is the closing one,
        as the parser decides: the outermost open multipart whose boundary the line holds (a
        line that an enclosing multipart's boundary matches ends every part inside it before
        the inner multipart's own loop would read it). None if the line is no delimiter."""
        if not self.data.startswith(b"--", start):
            return None
        end = _LINE_END.search(self.data, start)
        line = self.data[start + 2 : end.start() if end else len(self.data)].rstrip(b" \t")
        for index, level in enumerate(self.levels):
            boundary = level.boundary
            if boundary is None:
                continue
            if line == boundary:
                return index, False
            if line == boundary + b"--":
                return index, True
        return None

    def _skip_repeated(self, position: int, level: int) -> int:
        """Past the delimiter lines of ``level`` that follow one of its delimiters: the parser
        skips them all, a closing one too (no empty part, and the multipart goes on)."""
        while position < len(self.data):
            match = self._delimiter_of(position)
            if match is None or match[0] != level:
                break
            position = self._next_line(position)
        return position

    def _next_line(self, position: int) -> int:
        end = _LINE_END.search(self.data, position)
        if end is None:
            return len(self.data)
        return end.start() + (2 if self.data.startswith(b"\r\n", end.start()) else 1)

    # ------------------------------------------------------------------ entities

    def _entity(self, start: int, *, in_digest: bool) -> int:
        """Check the header block of the entity at ``start`` (and of the entities a message/*
        part opens), push its level, and return where the scan goes on."""
        while True:
            block_end, body = self._header_block(start)
            # Only the first Content-Type field decides (as Message.get does); the parser's own
            # header code reads it, and it alone: the block's other fields cost nothing here.
            field = _CONTENT_TYPE.search(self.data, start, block_end)
            kind, boundary = _content_type(field.group() if field else b"", in_digest=in_digest)
            if kind == "message/delivery-status":
                # The parser reads its body as blocks of header fields ended by blank lines, one
                # object each, and a block is an entity again (a multipart in a block nests
                # without a blank line, without end). No message taken here carries one.
                raise MimeLimitExceeded("a message/delivery-status part")
            if kind.startswith("message/"):
                self._push(_Level(None))  # its body is an entity with headers of its own
                start, in_digest = body, False
                continue
            if kind.startswith("multipart/"):
                self._push(_Level(self._boundary(kind, boundary), kind == "multipart/digest"))
            return body

    def _header_block(self, start: int) -> tuple[int, int]:
        """Where the header block at ``start`` ends, and where the body after it starts.

        The block ends at the first line that is not a header field, or that is a delimiter of
        an open multipart (which ends the entity); an empty line after it is the separator."""
        limit = self.limits.max_header_bytes
        window = min(len(self.data), start + limit + 2)
        end = _HEADER_LINES.match(self.data, start, window).end()  # type: ignore[union-attr]
        if end - start > limit:
            raise MimeLimitExceeded(f"a header block over {limit} bytes")
        for dashes in _DASH_LINE.finditer(self.data, start, end):
            if self._delimiter_of(dashes.start()) is not None:
                self._check_fields(start, dashes.start())
                return dashes.start(), dashes.start()
        self._check_fields(start, end)
        blank = _BLANK_LINE.match(self.data, end)
        return end, blank.end() if blank else end

    def _check_fields(self, start: int, end: int) -> None:
        limit = self.limits.max_header_bytes
        if end - start > limit:
            raise MimeLimitExceeded(f"a header block over {limit} bytes")
        fields = _FIELD_START.finditer(self.data, start, end)
        if next(itertools.islice(fields, self.limits.max_headers, None), None) is not None:
            raise MimeLimitExceeded(
                f"more than {self.limits.max_headers} header fields in one part"
            )

    def _boundary(self, kind: str, boundary: str | None) -> bytes:
        if not boundary or not boundary.isascii() or _CONTROL.search(boundary):
            raise MimeLimitExceeded(f"a {kind} part without a usable boundary")
        if len(boundary) > self.limits.max_boundary_length:
            raise MimeLimitExceeded(
                f"a boundary longer than {self.limits.max_boundary_length} characters"
            )
        return boundary.encode("ascii")

    def _push(self, level: _Level) -> None:
        self.levels.append(level)
        if len(self.levels) > self.limits.max_depth:
            raise MimeLimitExceeded(f"MIME nesting deeper than {self.limits.max_depth} levels")

    def _count_part(self) -> None:
        self.parts += 1
        if self.parts > self.limits.max_parts:
            raise MimeLimitExceeded(f"more than {self.limits.max_parts} MIME parts")

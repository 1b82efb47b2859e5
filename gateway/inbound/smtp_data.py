"""DATA read in pieces rather than lines: its end, the size and line limits and dot-stuffing
decided on bytes, with the outcome aiosmtpd's line-by-line reading gives on the same stream.

aiosmtpd 1.4.6 reads DATA one line at a time (a ``StreamReader.readuntil`` coroutine, a debug
log call, two joins and a list append a line): for a signed and encrypted form of a few hundred
armored lines that was most of the event loop's Python per message. Here each read takes what
the stream holds up to the next ``.\\r\\n`` (or, when none is near, what is buffered), and one
``bytes.split`` in C measures the lines of the piece. Only a piece that may cross a limit is
looked at line by line, exactly as aiosmtpd counts, so that the reply (552 or 500 line too
long, whichever aiosmtpd would give first) is the same. Memory stays bounded: past a limit
nothing more is kept, and the StreamReader's own limit still pauses the transport.

``ChunkedData`` overrides aiosmtpd's ``smtp_DATA`` (a command method, but it calls aiosmtpd's
private helpers: ``_set_post_data_state``, ``_call_handler_hook``, ``_handle_hooks``,
``_reader``); tests/unit/test_smtp_data.py pins aiosmtpd's version and compares the two on the
same streams, hypothesis-generated ones included.
"""

from __future__ import annotations

import asyncio
import enum
import logging

from aiosmtpd.smtp import MISSING, SMTP

log = logging.getLogger("gateway.smtp")

END_OF_DATA = b".\r\n"


class DataState(enum.Enum):
    """What became of the DATA read so far (aiosmtpd's ``_DataState``)."""

    NOMINAL = "nominal"
    TOO_LONG = "a line too long"
    TOO_MUCH = "too much data"


class DataScan:
    """The pieces of one DATA stream, fed in order: the content kept while within the limits,
    or which limit was passed first, as aiosmtpd's line-by-line loop decides it.

    aiosmtpd, for each line (up to and including its CRLF): a line whose CRLF lies more than
    ``line_limit`` bytes in is too long at once (its StreamReader's limit); otherwise the line
    is counted, then the total checked against ``size_limit`` (552), then the line's length
    against ``line_limit`` (500). The first of these to happen decides; after it nothing is
    kept. A line ends only at CRLF: a bare CR or LF is part of the line."""

    def __init__(self, size_limit: int | None, line_limit: int) -> None:
        self.size_limit = size_limit or 0  # 0: none, as aiosmtpd takes it
        self.line_limit = line_limit
        self.state = DataState.NOMINAL
        self._kept: list[bytes] = []
        self._counted = 0  # bytes of the complete lines, as aiosmtpd's num_bytes
        self._partial = 0  # bytes of the line not yet ended
        self._cr = False  # the last piece ended with a CR held back (its LF may come next)

    def feed(self, piece: bytes, *, last: bool = False) -> None:
        """Take the next piece of the stream; ``last`` when it ends with the content's last
        CRLF (the end of DATA comes next)."""
        if self._cr:
            piece = b"\r" + piece
            self._cr = False
        if not last and piece.endswith(b"\r"):
            piece = piece[:-1]
            self._cr = True
        if self.state is not DataState.NOMINAL or not piece:
            return
        lines = piece.split(b"\r\n")
        if len(lines) == 1:
            self._partial += len(piece)
            if self._partial > self.line_limit:
                self._fail(DataState.TOO_LONG)
                return
            self._kept.append(piece)
            return
        counted = self._counted + self._partial + len(piece) - len(lines[-1])
        # Every line ended here within the line limit (the longest part and what came before
        # it on its line, at most), the total within the size limit: no line needs a look.
        if self._partial + max(map(len, lines)) + 2 <= self.line_limit and (
            not self.size_limit or counted <= self.size_limit
        ):
            self._counted = counted
            self._partial = len(lines[-1])
            self._kept.append(piece)
            return
        self._line_by_line(lines)
        if self.state is DataState.NOMINAL:
            self._kept.append(piece)

    def _line_by_line(self, lines: list[bytes]) -> None:
        """The lines ended in one piece (and the part of the next), counted as aiosmtpd does."""
        for ended in lines[:-1]:
            length = self._partial + len(ended)
            self._partial = 0
            if length > self.line_limit:  # readuntil's LimitOverrunError
                self._fail(DataState.TOO_LONG)
                return
            self._counted += length + 2
            if self.size_limit and self._counted > self.size_limit:
                self._fail(DataState.TOO_MUCH)
                return
            if length + 2 > self.line_limit:
                self._fail(DataState.TOO_LONG)
                return
        self._partial = len(lines[-1])
        if self._partial > self.line_limit:
            self._fail(DataState.TOO_LONG)

    def _fail(self, state: DataState) -> None:
        self.state = state
        self._kept = []  # nothing more is kept: memory stays bounded whatever comes

    def content(self) -> bytes:
        """The message as received, dot-stuffing undone (RFC 5321 4.5.2): one leading dot
        removed from every line that has one."""
        data = b"".join(self._kept)
        self._kept = []
        if data.startswith(b"."):
            data = data[1:]
        return data.replace(b"\r\n.", b"\r\n")


async def read_data(reader: asyncio.StreamReader, scan: DataScan) -> None:
    """Read DATA from ``reader`` into ``scan`` up to and including its end, a line holding a
    lone dot; what follows (pipelined commands) stays in the reader.

    Each read goes up to the next ``.\\r\\n``: the end when it starts a line. Where none is
    within the reader's limit, readuntil says how much it looked at, and that much is taken."""
    tail = b"\r\n"  # the stream's last two bytes read so far (DATA's own line ended so)
    while True:
        try:
            piece = await reader.readuntil(END_OF_DATA)
        except asyncio.LimitOverrunError as overrun:
            piece = await reader.read(overrun.consumed)
            scan.feed(piece)
            tail = (tail + piece)[-2:]
            continue
        before = (tail + piece[:-3])[-2:]
        if before == b"\r\n":
            scan.feed(piece[:-3], last=True)
            return
        scan.feed(piece)
        tail = b"\r\n"


class ChunkedData(SMTP):
    """aiosmtpd's SMTP with DATA read by ``read_data``: the same replies, checks and handler
    call as aiosmtpd's ``smtp_DATA`` (1.4.6), for servers that take bytes (``decode_data``
    False) and have a ``handle_DATA`` hook; any other goes to aiosmtpd's own."""

    reading_data = False  # inside read_data: what arrives is DATA

    async def smtp_DATA(self, arg: str) -> None:
        if self._decode_data or "DATA" not in self._handle_hooks:
            await super().smtp_DATA(arg)
            return
        if await self.check_helo_needed():
            return
        if await self.check_auth_needed("DATA"):
            return
        envelope = self.envelope
        if envelope is None or not envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        scan = DataScan(self.data_size_limit, self.line_length_limit)
        self.reading_data = True
        try:
            await read_data(self._reader, scan)
        except asyncio.CancelledError:
            log.info("connection lost during DATA")
            self._writer.close()
            raise
        finally:
            self.reading_data = False
        if scan.state is DataState.TOO_LONG:
            await self.push("500 Line too long (see RFC5321 4.5.3.1.6)")
            self._set_post_data_state()  # type: ignore[no-untyped-call]
            return
        if scan.state is DataState.TOO_MUCH:
            await self.push("552 Error: Too much mail data")
            self._set_post_data_state()  # type: ignore[no-untyped-call]
            return
        content = scan.content()
        envelope.content = content
        envelope.original_content = content
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()  # type: ignore[no-untyped-call]
        await self.push("250 OK" if status is MISSING else status)

"""DATA read in pieces must end where aiosmtpd's line-by-line reading ends, keep the same bytes,
and refuse with the same reply, on the same stream arriving in the same pieces.

Both run on the same aiosmtpd session state with a StreamReader fed piece by piece (each piece
once the reader waits for more), on a table of edge cases and on hypothesis-generated streams:
dots and dot-stuffing, bare CR and LF, CRLF split between pieces, lines at and over the line
limit, totals at and over the size limit, commands pipelined after the end.
"""

from __future__ import annotations

import asyncio
import tracemalloc
from dataclasses import dataclass, field
from importlib.metadata import version

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.inbound.smtp_data import ChunkedData, DataScan, DataState
from gateway.inbound.smtp_server import GatewaySMTP, Limits

AFTER = b"QUIT\r\n"  # a command pipelined after the end of DATA: it must stay unread


def test_aiosmtpd_is_the_version_whose_smtp_DATA_is_mirrored() -> None:
    # ChunkedData.smtp_DATA mirrors aiosmtpd 1.4.6's: compare it again before moving the pin.
    assert version("aiosmtpd") == "1.4.6"


class Recorder:
    """A handler that keeps what DATA handed it."""

    def __init__(self) -> None:
        self.contents: list[bytes] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.original_content, bytes)
        assert envelope.content == envelope.original_content
        self.contents.append(envelope.original_content)
        return "250 2.0.0 taken"


@dataclass
class Writer:
    """What a session writes back (the replies)."""

    written: list[bytes] = field(default_factory=list)
    closed: bool = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    async def drain(self) -> None:
        return None

    def close(self) -> None:
        self.closed = True


class Transport:
    def get_extra_info(self, name: str, default: object = None) -> object:
        return ("192.0.2.1", 25) if name == "peername" else default

    def is_closing(self) -> bool:
        return False


@dataclass(frozen=True)
class Outcome:
    replies: tuple[bytes, ...]
    contents: tuple[bytes, ...]
    left: bytes  # what DATA did not read


async def _run(
    kind: type[SMTP], pieces: list[bytes], size_limit: int | None, line_limit: int
) -> Outcome:
    recorder = Recorder()
    loop = asyncio.get_running_loop()
    session = kind(recorder, loop=loop, data_size_limit=size_limit, decode_data=False)
    session.line_length_limit = line_limit
    reader = asyncio.StreamReader(limit=line_limit, loop=loop)
    writer = Writer()
    session._reader = reader
    session._writer = writer  # type: ignore[assignment]
    session.transport = Transport()  # type: ignore[assignment]
    session.session = Session(loop)
    session.session.host_name = "client.example"
    session.envelope = Envelope()
    session.envelope.mail_from = "a@b.example"
    session.envelope.rcpt_tos.append("c@d.example")

    data = asyncio.create_task(session.smtp_DATA(""))
    for piece in pieces:
        # the next piece arrives when the reader has taken what it could of the last
        while reader._buffer and not reader._waiter and not data.done():  # type: ignore[attr-defined]
            await asyncio.sleep(0)
        reader.feed_data(piece)
        await asyncio.sleep(0)
    reader.feed_eof()
    async with asyncio.timeout(10):
        await data
    return Outcome(tuple(writer.written), tuple(recorder.contents), await reader.read())


def outcome(
    kind: type[SMTP], pieces: list[bytes], size_limit: int | None = None, line_limit: int = 1001
) -> Outcome:
    return asyncio.run(_run(kind, pieces, size_limit, line_limit))


def assert_same(pieces: list[bytes], size_limit: int | None = None, line_limit: int = 1001) -> None:
    ours = outcome(ChunkedData, pieces, size_limit, line_limit)
    theirs = outcome(SMTP, pieces, size_limit, line_limit)
    assert ours == theirs


ARMOR = b"".join(b"hQIMA" + bytes([65 + n % 26]) * 59 + b"\r\n" for n in range(200))

CASES: list[tuple[list[bytes], int | None]] = [
    ([b".\r\n" + AFTER], None),
    ([b"Subject: x\r\n\r\nbody\r\n.\r\n" + AFTER], None),
    ([b"a\r\n..\r\n.b\r\n..c\r\n.\r\n" + AFTER], None),
    ([b"..\r\n.\r\n"], None),
    ([b"a.\r\n.\r\n"], None),
    ([b"a\r\n.", b"\r\n"], None),
    ([b"a\r", b"\n.\r\n"], None),
    ([b"a\r", b"\n", b".", b"\r", b"\n", AFTER], None),
    ([b"a\n.\r\nb\r.\r\n.\n.\r\n.\r\n" + AFTER], None),  # bare LF and CR do not end a line
    ([b"a\r\n.\r\nMAIL FROM:<x@y>\r\n"], None),
    ([ARMOR + b".\r\n" + AFTER], None),
    ([ARMOR[:5000], ARMOR[5000:7001], ARMOR[7001:] + b".\r\n"], None),
    ([ARMOR + b".\r\n"], len(ARMOR)),
    ([ARMOR + b".\r\n"], len(ARMOR) - 1),
    ([ARMOR + b".\r\n"], 100),
    ([b"x" * 999 + b"\r\n.\r\n"], None),
    ([b"x" * 1000 + b"\r\n.\r\n"], None),
    ([b"x" * 1001 + b"\r\n.\r\n"], None),
    ([b"x" * 1002 + b"\r\n.\r\n"], None),
    ([b"x" * 5000 + b"\r\n.\r\n" + AFTER], None),
    ([b"x" * 600, b"x" * 600, b"\r\n.\r\n"], None),
    ([b"a\r\n" + b"x" * 1000 + b"\r\n.\r\n"], 1003),  # both limits on one line: 552 first
    ([b"a\r\n" + b"x" * 1002 + b"\r\n.\r\n"], 1003),  # over the reader's limit: 500 first
    ([b"x" * 1000 + b"\r\n" + b"y" * 10 + b"\r\n.\r\n"], 1004),
    ([b"x" * 999 + b"\r\n" + b"y" * 10 + b"\r\n.\r\n"], 1005),  # a line at the limit is not long
    ([b"x" * 20000 + b".\r\n" + b"\r\n.\r\n" + AFTER], 10),
]


@pytest.mark.parametrize(("pieces", "size_limit"), CASES)
def test_data_read_in_pieces_equals_aiosmtpd(pieces: list[bytes], size_limit: int | None) -> None:
    assert_same(pieces, size_limit)


ATOMS = st.sampled_from(
    [b"a", b"x" * 7, b".", b"..", b"\r", b"\n", b"\r\n", b".\r\n", b"\r\n.", b"\r\n.\r\n", b"\xff"]
)


@st.composite
def streams(draw: st.DrawFn) -> tuple[list[bytes], int | None, int]:
    """A stream that ends DATA (somewhere, perhaps early), cut at random places."""
    stream = b"".join(draw(st.lists(ATOMS, max_size=60))) + b"\r\n.\r\n" + AFTER
    cuts = sorted(draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    pieces = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    size_limit = draw(st.one_of(st.none(), st.integers(1, 80)))
    line_limit = draw(st.integers(3, 24))
    return [piece for piece in pieces if piece], size_limit, line_limit


@settings(max_examples=400, deadline=None)
@given(streams())
def test_data_read_in_pieces_equals_aiosmtpd_on_random_streams(
    case: tuple[list[bytes], int | None, int],
) -> None:
    pieces, size_limit, line_limit = case
    assert_same(pieces, size_limit, line_limit)


class Refusals(Recorder):
    """The gateway's handler as GatewaySMTP calls it when aiosmtpd's checks refuse a DATA."""

    def __init__(self) -> None:
        super().__init__()
        self.refused: list[str] = []

    def data_refused(self, client: str, status: str, mail_from: str) -> None:
        self.refused.append(status)


async def _endless_line(megabytes: int) -> tuple[int, list[bytes], list[str]]:
    """The gateway's session fed one line of ``megabytes`` MiB in 16 KiB pieces, then the end:
    the most memory allocated meanwhile, the replies, the refusals audited."""
    loop = asyncio.get_running_loop()
    handler = Refusals()
    limits = Limits(max_sessions=1, idle_timeout=60.0, session_timeout=600.0)
    session = GatewaySMTP(
        handler,  # type: ignore[arg-type]
        limits,
        loop=loop,
        data_size_limit=262_144,
        decode_data=False,
    )
    reader = asyncio.StreamReader(limit=session.line_length_limit, loop=loop)
    writer = Writer()
    session._reader = reader
    session._writer = writer  # type: ignore[assignment]
    session.transport = Transport()  # type: ignore[assignment]
    session.session = Session(loop)
    session.session.host_name = "client.example"
    session.envelope = Envelope()
    session.envelope.mail_from = "a@b.example"
    session.envelope.rcpt_tos.append("c@d.example")
    data = asyncio.create_task(session.smtp_DATA(""))
    piece = b"x" * 16_384
    tracemalloc.start()
    try:
        for _ in range(megabytes * 64):
            reader.feed_data(piece)
            await asyncio.sleep(0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    reader.feed_data(b"\r\n.\r\n")
    async with asyncio.timeout(10):
        await data
    return peak, writer.written, handler.refused


def test_a_line_that_never_ends_is_not_kept() -> None:
    # aiosmtpd 1.4.6 keeps every fragment of an over-long line until its CRLF comes: 8 MiB of
    # one line held 8 MiB, whatever the size limit (256 KiB here).
    peak, replies, refused = asyncio.run(_endless_line(8))
    assert peak < 1 << 20, peak
    assert replies[-1].startswith(b"500 5.5.2 Line too long"), replies
    assert refused == ["500 Line too long (see RFC5321 4.5.3.1.6)"]


def test_nothing_is_kept_past_a_limit() -> None:
    scan = DataScan(size_limit=1000, line_limit=1001)
    for _ in range(10_000):
        scan.feed(b"y" * 98 + b"\r\n")
    assert scan.state is DataState.TOO_MUCH
    assert scan._kept == []
    endless = DataScan(size_limit=None, line_limit=1001)
    for _ in range(10_000):
        endless.feed(b"z" * 1000)  # one line that never ends
    assert endless.state is DataState.TOO_LONG
    assert endless._kept == []

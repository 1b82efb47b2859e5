"""The SMTP server against hostile and odd clients, and with mail clients nobody here wrote.

Most dialogues are written by hand over a raw socket (``Wire``), so that nothing a client library
does (normalising line ends, refusing to pipeline, waiting for replies) hides what the server does.
Every refusal is checked for its reply code and RFC 3463 enhanced status code, and for leaving
nothing behind: no file in the inbound spool, no message in the ledger, no audit entry.

swaks (Debian package ``swaks``) is used where installed; its test is skipped otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import smtplib
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from integration.inboundkit import (
    FORM,
    World,
    assert_nothing_stored,
    desk_messages,
    ledger_messages,
    message,
    running_gateway,
    settle,
    spooled,
)

from gateway.service.server import Gateway

SENDER = "sirene@no.example"
US = "sirene@ro.example"
SERVER_NAME = "gateway.ro.example"
ENHANCED = re.compile(r"[245]\.\d{1,3}\.\d{1,3}")


@dataclass
class Reply:
    code: int
    lines: list[str]  # the text of each line, after the code and its separator

    @property
    def enhanced(self) -> str:
        """The RFC 3463 code that starts the text, or "" when there is none."""
        first = self.lines[0].split(" ", 1)[0] if self.lines else ""
        return first if ENHANCED.fullmatch(first) else ""

    def __str__(self) -> str:
        return " / ".join(f"{self.code} {line}" for line in self.lines)


@dataclass
class Wire:
    """An SMTP client that writes exactly the bytes it is given and reads replies as they come.

    ``transcript`` keeps the dialogue (``C:`` client, ``S:`` server) for failure messages."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    transcript: list[str] = field(default_factory=list)

    @classmethod
    async def connect(cls, port: int) -> Wire:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    def __str__(self) -> str:
        return "\n".join(self.transcript)

    async def write(self, data: bytes) -> None:
        shown = data if len(data) <= 300 else data[:150] + b"..." + data[-150:]
        self.transcript.append(f"C: {shown!r}")
        self.writer.write(data)
        await self.writer.drain()

    async def reply(self, timeout: float = 30) -> Reply:
        lines: list[str] = []
        while True:
            raw = await asyncio.wait_for(self.reader.readline(), timeout)
            if not raw:
                self.transcript.append("S: <connection closed>")
                raise EOFError(f"connection closed after {lines!r}\n{self}")
            self.transcript.append(f"S: {raw!r}")
            assert raw.endswith(b"\r\n"), f"reply line without CRLF\n{self}"
            line = raw[:-2].decode("utf-8", "replace")
            code, separator, text = line[:3], line[3:4], line[4:]
            assert code.isdigit() and separator in (" ", "-", ""), f"not a reply\n{self}"
            lines.append(text)
            if separator != "-":
                return Reply(int(code), lines)

    async def command(self, line: str, timeout: float = 30) -> Reply:
        await self.write(line.encode("ascii") + b"\r\n")
        return await self.reply(timeout)

    async def starttls(self, cafile: Path) -> None:
        ready = await self.command("STARTTLS")
        assert ready.code == 220, str(self)
        await self.handshake(cafile)

    async def handshake(self, cafile: Path) -> None:
        context = ssl.create_default_context(cafile=str(cafile))
        await self.writer.start_tls(context, server_hostname=SERVER_NAME)
        self.transcript.append("-- TLS handshake done --")

    async def nothing_more(self, seconds: float = 0.3) -> None:
        """No byte arrives within ``seconds``."""
        try:
            data = await asyncio.wait_for(self.reader.read(4096), seconds)
        except TimeoutError:
            return
        self.transcript.append(f"S: {data!r}")
        raise AssertionError(f"unexpected bytes from the server: {data!r}\n{self}")

    async def until_closed(self, timeout: float) -> bytes:
        """Everything the server sends until it closes the connection (TimeoutError if it does
        not within ``timeout``)."""
        received = b""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"still open after {timeout} s, got {received!r}\n{self}")
            try:
                chunk = await asyncio.wait_for(self.reader.read(4096), left)
            except (ConnectionError, ssl.SSLError) as error:
                self.transcript.append(f"S: <{type(error).__name__}: {error}>")
                return received
            except TimeoutError:
                continue
            if not chunk:
                self.transcript.append(f"S: {received!r} <connection closed>")
                return received
            received += chunk

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError, TimeoutError):
            await asyncio.wait_for(self.writer.wait_closed(), 5)


def replies(data: bytes) -> list[str]:
    """The reply lines in ``data``, without their CRLF."""
    return [line.decode("utf-8", "replace") for line in data.split(b"\r\n") if line]


async def tls_session(world: World, gateway: Gateway, *, mail: bool = False) -> Wire:
    """Greeting, EHLO, STARTTLS, EHLO again; then MAIL and RCPT when ``mail``."""
    wire = await Wire.connect(gateway.port)
    greeting = await wire.reply()
    assert greeting.code == 220, str(wire)
    assert (await wire.command("EHLO client.no.example")).code == 250, str(wire)
    await wire.starttls(world.tls_cert)
    assert (await wire.command("EHLO client.no.example")).code == 250, str(wire)
    if mail:
        assert (await wire.command(f"MAIL FROM:<{SENDER}>")).code == 250, str(wire)
        assert (await wire.command(f"RCPT TO:<{US}>")).code == 250, str(wire)
    return wire


def on_the_wire(raw: bytes) -> bytes:
    """A message as an SMTP client sends it inside DATA: every line end CRLF (the test kit's
    armored ciphertext has bare LFs, which client libraries convert), then RFC 5321 s4.5.2
    dot-stuffing. Without the final ".\r\n"."""
    raw = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
    assert raw.endswith(b"\r\n")
    return b"\r\n".join(
        b"." + line if line.startswith(b".") else line for line in raw.split(b"\r\n")
    )


def nothing_from_the_dialogue(gateway: Gateway, wire: Wire) -> None:
    try:
        assert_nothing_stored(gateway)
    except AssertionError as error:
        raise AssertionError(f"{error}\n{wire}") from None


# ---------------------------------------------------------------------- 1. SMTP smuggling

SMUGGLE = b"MAIL FROM:<sirene@no.example>\r\nRCPT TO:<sirene@ro.example>\r\nDATA\r\n"


@pytest.mark.parametrize(
    "fake_end",
    [b"\n.\n", b"\n.\r\n", b"\r.\r\n", b"\r\n.\r"],
    ids=["LF.LF", "LF.CRLF", "CR.CRLF", "CRLF.CR"],
)
async def test_a_bare_lf_or_cr_end_of_data_does_not_split_the_message(
    world: World, gateway: Gateway, fake_end: bytes
) -> None:
    first = message(world)
    smuggled = message(world, FORM.replace(b"NO-2026-000123", b"NO-2026-000124"))
    assert b"NO-2026-000124" not in first
    # The first message as a sender would end it, except that its last CRLF is replaced by the
    # fake end of data; then a whole second transaction; then the only real CRLF.CRLF.
    body = on_the_wire(first)[:-2] + fake_end + SMUGGLE + on_the_wire(smuggled) + b".\r\n"
    wire = await tls_session(world, gateway, mail=True)
    try:
        assert (await wire.command("DATA")).code == 354, str(wire)
        await wire.write(body)
        answer = await wire.reply()
        assert (answer.code, answer.enhanced) == (250, "2.0.0"), str(wire)
        assert answer.lines[0].endswith("accepted NO-2026-000123"), str(wire)
        # The server said one thing and then waits for a command: no reply to a second MAIL,
        # RCPT or DATA, no second 250.
        await wire.nothing_more(1.0)
        await wire.write(b"QUIT\r\n")
        rest = replies(await wire.until_closed(10))
        assert [line[:3] for line in rest] == ["221"], str(wire)
    finally:
        await wire.close()
    await settle(gateway)
    inbound = [row for row in ledger_messages(gateway) if row[0] == "inbound"]
    assert inbound == [("inbound", "NO-SIRENE", "NO-2026-000123")]
    verdicts = [
        (entry.kind, entry.reference)
        for entry in gateway.audit.entries()
        if entry.kind in ("received", "rejected")
    ]
    assert verdicts == [("received", "NO-2026-000123")]
    assert spooled(gateway), "the accepted message should be in done/"
    assert all(".NO-2026-000123." in name for name in spooled(gateway)), spooled(gateway)
    # The would-be second transaction is in the one message, as data.
    assert all(SMUGGLE in (gateway.inbound.root / name).read_bytes() for name in spooled(gateway))
    delivered = desk_messages(gateway, "duty")
    assert [item["Subject"].split(",")[0] for item in delivered] == [
        "[URGENT] SIRENE G from NO-SIRENE NO-2026-000123"
    ]


# ---------------------------------------------------------------------- 2. STARTTLS injection


async def test_commands_pipelined_after_starttls_are_discarded(
    world: World, gateway: Gateway
) -> None:
    wire = await Wire.connect(gateway.port)
    try:
        assert (await wire.reply()).code == 220, str(wire)
        assert (await wire.command("EHLO client.no.example")).code == 250, str(wire)
        # STARTTLS and a plaintext MAIL in one write, before the handshake (CVE-2011-0411 kind).
        await wire.write(f"STARTTLS\r\nMAIL FROM:<{SENDER}>\r\n".encode())
        assert (await wire.reply()).code == 220, str(wire)
        await wire.handshake(world.tls_cert)
        await wire.nothing_more(0.5)  # no late reply to the injected MAIL
        assert (await wire.command("EHLO client.no.example")).code == 250, str(wire)
        # Had the injected MAIL counted, this RCPT would be accepted.
        refused = await wire.command(f"RCPT TO:<{US}>")
        assert refused.code == 503, str(wire)
        # and this MAIL refused as nested.
        fresh = await wire.command(f"MAIL FROM:<{SENDER}>")
        assert (fresh.code, fresh.enhanced) == (250, "2.1.0"), str(wire)
        assert refused.enhanced == "5.5.1", f"503 without RFC 3463 code 5.5.1\n{wire}"
    finally:
        await wire.close()
    nothing_from_the_dialogue(gateway, wire)


# ---------------------------------------------------------------------- 3. open relay

RELAY_ATTEMPTS = [
    "<victim@elsewhere.example>",
    "<sirene@elsewhere.example>",
    "<sirene@ro.example.elsewhere.example>",
    "<@ro.example:victim@elsewhere.example>",
    "<@ro.example,@gateway.ro.example:victim@elsewhere.example>",
    "<victim%elsewhere.example@ro.example>",
    "<sirene%elsewhere.example@ro.example>",
    "<elsewhere.example!victim@ro.example>",
    '<"victim@elsewhere.example"@ro.example>',
    "<victim@[192.0.2.1]>",
]


async def test_no_relaying_to_any_other_address(world: World, gateway: Gateway) -> None:
    wire = await tls_session(world, gateway)
    try:
        assert (await wire.command(f"MAIL FROM:<{SENDER}>")).code == 250, str(wire)
        answers = {target: await wire.command(f"RCPT TO:{target}") for target in RELAY_ATTEMPTS}
        refused = await wire.command("DATA")
    finally:
        await wire.close()
    wrong = {
        target: str(answer)
        for target, answer in answers.items()
        if (answer.code, answer.enhanced) != (550, "5.7.1")
    }
    assert wrong == {}, str(wire)
    assert refused.code == 503, str(wire)  # no recipient: no transaction
    nothing_from_the_dialogue(gateway, wire)


# ---------------------------------------------------------------------- 4. time limits


async def test_a_client_stalling_in_data_is_cut_off_with_421(world: World, tmp_path: Path) -> None:
    limits = {"session_timeout": "PT2S", "idle_timeout": "PT1S"}
    async with running_gateway(world, tmp_path, limits) as gateway:
        wire = await tls_session(world, gateway, mail=True)
        try:
            assert (await wire.command("DATA")).code == 354, str(wire)
            await wire.write(b"From: sirene@no.example\r\nTo: sirene@ro.example\r\nSubject: x\r\n")
            started = time.monotonic()
            said = await wire.until_closed(8)
            waited = time.monotonic() - started
        finally:
            await wire.close()
        assert waited < 3.5, f"closed after {waited:.1f} s\n{wire}"
        lines = replies(said)
        assert len(lines) == 1, f"closed after {waited:.1f} s, said {said!r}\n{wire}"
        assert lines[0].split()[:2] == ["421", "4.4.2"], f"after {waited:.1f} s\n{wire}"
        nothing_from_the_dialogue(gateway, wire)


async def test_a_client_trickling_data_is_cut_off_at_the_session_limit(
    world: World, tmp_path: Path
) -> None:
    limits = {"session_timeout": "PT2S", "idle_timeout": "PT30S"}
    async with running_gateway(world, tmp_path, limits) as gateway:
        wire = await tls_session(world, gateway, mail=True)
        said = b""
        try:
            assert (await wire.command("DATA")).code == 354, str(wire)
            started = time.monotonic()
            while time.monotonic() - started < 8:
                try:
                    wire.writer.write(b"X-Trickle: one more line\r\n")
                    chunk = await asyncio.wait_for(wire.reader.read(4096), 0.2)
                except TimeoutError:
                    continue
                except (ConnectionError, ssl.SSLError):
                    break
                said += chunk
                if not chunk:
                    break
            waited = time.monotonic() - started
            wire.transcript.append(f"S: {said!r} after {waited:.1f} s")
        finally:
            await wire.close()
        assert 1.5 < waited < 3.5, f"closed after {waited:.1f} s\n{wire}"
        lines = replies(said)
        assert len(lines) == 1, str(wire)
        assert lines[0].split()[:2] == ["421", "4.4.2"], str(wire)
        nothing_from_the_dialogue(gateway, wire)


async def test_a_slow_but_active_sender_is_not_cut_off_as_idle(
    world: World, tmp_path: Path
) -> None:
    """idle_timeout is 'a session silent this long is closed': data arriving is not silence."""
    limits = {"session_timeout": "PT30S", "idle_timeout": "PT1S"}
    lines = on_the_wire(message(world)).split(b"\r\n")
    async with running_gateway(world, tmp_path, limits) as gateway:
        wire = await tls_session(world, gateway, mail=True)
        try:
            assert (await wire.command("DATA")).code == 354, str(wire)
            started = time.monotonic()
            step = len(lines) // 8 + 1
            try:
                for start in range(0, len(lines), step):  # 8 pieces, 0.4 s apart: about 3 s
                    await wire.write(b"\r\n".join(lines[start : start + step]) + b"\r\n")
                    await asyncio.sleep(0.4)
                await wire.write(b".\r\n")
                answer = await wire.reply(10)
            except (EOFError, ConnectionError, ssl.SSLError) as error:
                waited = time.monotonic() - started
                raise AssertionError(
                    f"cut off {waited:.1f} s into DATA while sending: {error!r}\n{wire}"
                ) from None
        finally:
            await wire.close()
        assert (answer.code, answer.enhanced) == (250, "2.0.0"), str(wire)
        assert answer.lines[0].endswith("accepted NO-2026-000123"), str(wire)


# ---------------------------------------------------------------------- 5. session count


async def test_a_session_beyond_max_sessions_gets_421(world: World, tmp_path: Path) -> None:
    async with running_gateway(world, tmp_path, {"max_sessions": 2}) as gateway:
        first = await Wire.connect(gateway.port)
        second = await Wire.connect(gateway.port)
        third = await Wire.connect(gateway.port)
        try:
            assert (await first.reply()).code == 220, str(first)
            assert (await second.reply()).code == 220, str(second)
            said = await third.until_closed(5)
            assert said == b"421 4.7.0 too many sessions, try again later\r\n", str(third)
            # The two sessions in use carry on.
            for wire in (first, second):
                assert (await wire.command("NOOP")).code == 250, str(wire)
        finally:
            for wire in (first, second, third):
                await wire.close()
        nothing_from_the_dialogue(gateway, third)


async def test_two_starttls_sessions_fit_in_max_sessions_2(world: World, tmp_path: Path) -> None:
    async with running_gateway(world, tmp_path, {"max_sessions": 2}) as gateway:
        first = await tls_session(world, gateway)
        second = await Wire.connect(gateway.port)
        try:
            greeting = await second.reply()
            assert greeting.code == 220, f"{second}\nwith open = {gateway.limits.open}"
            await second.command("EHLO client.no.example")
            await second.starttls(world.tls_cert)
            for wire in (first, second):
                try:
                    noop = await wire.command("NOOP")
                except EOFError as closed:
                    raise AssertionError(f"{closed}\nwith open = {gateway.limits.open}") from None
                assert noop.code == 250, str(wire)
        finally:
            await first.close()
            await second.close()


async def test_a_session_that_ended_frees_its_place(world: World, tmp_path: Path) -> None:
    """One session after another, never two at once: each must be let in."""
    async with running_gateway(world, tmp_path, {"max_sessions": 2}) as gateway:
        for number in range(1, 5):
            wire = await Wire.connect(gateway.port)
            try:
                greeting = await wire.reply()
                assert greeting.code == 220, f"session {number}\n{wire}"
                await wire.command("EHLO client.no.example")
                await wire.starttls(world.tls_cert)
                try:
                    noop = await wire.command("NOOP")
                except EOFError as closed:
                    raise AssertionError(f"session {number}: {closed}") from None
                assert noop.code == 250, f"session {number}\n{wire}"
                await wire.write(b"QUIT\r\n")
                await wire.until_closed(5)
            finally:
                await wire.close()
            for _ in range(50):  # the server's side of the close
                if gateway.limits.open == 0:
                    break
                await asyncio.sleep(0.02)
        assert gateway.limits.open == 0, f"open = {gateway.limits.open} with no session open"


# ---------------------------------------------------------------------- 6. other clients


def _smtplib_send(port: int, cafile: Path, raw: str) -> tuple[int, bytes]:
    """smtplib as a script would use it; given a str, it makes every line end CRLF itself."""
    context = ssl.create_default_context(cafile=str(cafile))
    with smtplib.SMTP("127.0.0.1", port, local_hostname="client.no.example", timeout=30) as client:
        client.starttls(context=context)
        client.ehlo()  # RFC 3207: the session starts again after STARTTLS
        code, text = client.mail(SENDER)
        assert code == 250, text
        code, text = client.rcpt(US)
        assert code == 250, text
        return client.data(raw)


async def test_python_smtplib_delivers(world: World, gateway: Gateway) -> None:
    code, text = await asyncio.to_thread(
        _smtplib_send, gateway.port, world.tls_cert, message(world).decode("ascii")
    )
    assert (code, text.split()[0]) == (250, b"2.0.0"), text
    assert text.endswith(b"accepted NO-2026-000123")
    await settle(gateway)
    assert len(desk_messages(gateway, "duty")) == 1


@pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks (Debian package swaks) is absent")
async def test_swaks_delivers(world: World, gateway: Gateway, tmp_path: Path) -> None:
    eml = tmp_path / "message.eml"
    eml.write_bytes(message(world))
    process = await asyncio.create_subprocess_exec(
        "swaks",
        "--server",
        f"127.0.0.1:{gateway.port}",
        "--tls",
        "--tls-verify",
        "--tls-ca-path",
        str(world.tls_cert),
        "--ehlo",
        "client.no.example",
        "--from",
        SENDER,
        "--to",
        US,
        "--data",
        f"@{eml}",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 60)
    transcript = output.decode("utf-8", "replace")
    assert process.returncode == 0, transcript
    assert re.search(r"^<~ +250 2\.0\.0 accepted NO-2026-000123$", transcript, re.M), transcript
    await settle(gateway)
    assert len(desk_messages(gateway, "duty")) == 1


# ---------------------------------------------------------------------- 7. SIZE


async def test_mail_with_a_size_over_the_limit_gets_552(world: World, gateway: Gateway) -> None:
    limit = gateway.config.listen.max_message_bytes
    wire = await Wire.connect(gateway.port)
    try:
        assert (await wire.reply()).code == 220, str(wire)
        await wire.command("EHLO client.no.example")
        await wire.starttls(world.tls_cert)
        ehlo = await wire.command("EHLO client.no.example")
        assert f"SIZE {limit}" in ehlo.lines, str(wire)
        too_big = await wire.command(f"MAIL FROM:<{SENDER}> SIZE={limit + 1}")
        assert (too_big.code, too_big.enhanced) == (552, "5.3.4"), str(wire)
        fits = await wire.command(f"MAIL FROM:<{SENDER}> SIZE={limit}")
        assert (fits.code, fits.enhanced) == (250, "2.1.0"), str(wire)
    finally:
        await wire.close()
    nothing_from_the_dialogue(gateway, wire)
